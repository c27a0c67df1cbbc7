"""Toxicity: publish the assay report (independent chain, step 3)."""

WORKBENCH_BATCH = {"inputs": ["model:tox-assay-reg"], "outputs": ["public:tox-assay-report"]}

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tox_shared

    sys.exit(tox_shared.run(__file__, WORKBENCH_BATCH))
