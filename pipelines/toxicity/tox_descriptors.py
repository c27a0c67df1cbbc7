"""Toxicity: molecular descriptors (left side of the diamond)."""

WORKBENCH_BATCH = {"inputs": ["fs_tox_features"], "outputs": ["fs_tox_descriptors"]}

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tox_shared

    sys.exit(tox_shared.run(__file__, WORKBENCH_BATCH))
