"""Toxicity: feature set from the raw Tox21 data (top of the diamond)."""

WORKBENCH_BATCH = {"inputs": ["ds:tox21_raw"], "outputs": ["fs_tox_features"]}

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tox_shared

    sys.exit(tox_shared.run(__file__, WORKBENCH_BATCH))
