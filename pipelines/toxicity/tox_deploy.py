"""Toxicity: deploy the classifier (the diamond continues as a chain)."""

WORKBENCH_BATCH = {"inputs": ["model:tox-classifier"], "outputs": ["endpoint:tox-classifier"]}

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tox_shared

    sys.exit(tox_shared.run(__file__, WORKBENCH_BATCH))
