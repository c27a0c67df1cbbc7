"""Toxicity: classifier on descriptors + fingerprints (bottom of the diamond)."""

WORKBENCH_BATCH = {
    "inputs": ["fs_tox_descriptors", "fs_tox_fingerprints"],
    "outputs": ["model:tox-classifier"],
    "environment": {"SEED": "42"},
}

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tox_shared

    sys.exit(tox_shared.run(__file__, WORKBENCH_BATCH))
