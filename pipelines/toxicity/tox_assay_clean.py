"""Toxicity: clean the assay results (independent chain, step 1)."""

WORKBENCH_BATCH = {"inputs": ["ds:tox_assays"], "outputs": ["fs:tox_assays_clean"]}

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tox_shared

    sys.exit(tox_shared.run(__file__, WORKBENCH_BATCH))
