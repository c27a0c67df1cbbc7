"""The default container image of the jobs: built at deploy from a folder staged at synth.

The folder holds the Dockerfile and just the job runner (``sfn_pipelines/runner.py``,
stdlib + boto3), not the whole library, so the image stays small and synth needs no Docker.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecs as ecs

from infra.staging import stage_folder

HERE = Path(__file__).resolve().parent
RUNNER = HERE.parent / "constructs" / "sfn_pipelines" / "runner.py"


def stage_job_image() -> Path:
    """A content-named folder, so repeated synths reuse it and the asset hash is stable."""
    files = {
        "Dockerfile": (HERE / "job_image" / "Dockerfile").read_bytes(),
        "sfn_pipelines/__init__.py": b'"""The sfn-pipelines job runner only."""\n',
        "sfn_pipelines/runner.py": RUNNER.read_bytes(),
    }
    return stage_folder("sfn-pipelines-job-image", files)


def default_job_image() -> ecs.ContainerImage:
    return ecs.ContainerImage.from_asset(str(stage_job_image()))
