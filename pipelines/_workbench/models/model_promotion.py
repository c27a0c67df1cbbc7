"""Stand-in for Workbench's own ``workbench:models/model_promotion.py``, for local runs.

The real script ships with Workbench, not with this repo. Point local runs at this folder:
``PIPELINE_REF_ROOTS='{"workbench:": "pipelines/_workbench"}' sfn-pipelines run pipelines``.
It has no WORKBENCH_BATCH dict, so the loader treats it as a helper, not as a step.
"""

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_common"))
    from artifacts import run_step

    sys.exit(run_step(__file__))
