"""Toxicity: per-assay regression model (independent chain, step 2)."""

WORKBENCH_BATCH = {"inputs": ["fs:tox_assays_clean"], "outputs": ["model:tox-assay-reg"]}

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tox_shared

    sys.exit(tox_shared.run(__file__, WORKBENCH_BATCH))
