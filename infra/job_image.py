"""The default container image of the jobs: built at deploy from a folder staged at synth.

The folder holds the Dockerfile and just the job runner (``sfn_pipelines/runner.py``,
stdlib + boto3), not the whole library, so the image stays small and synth needs no Docker.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from aws_cdk import aws_ecs as ecs

HERE = Path(__file__).resolve().parent
RUNNER = HERE.parent / "constructs" / "sfn_pipelines" / "runner.py"


def stage_job_image() -> Path:
    """A content-named folder, so repeated synths reuse it and the asset hash is stable."""
    files = {
        "Dockerfile": (HERE / "job_image" / "Dockerfile").read_bytes(),
        "sfn_pipelines/__init__.py": b'"""The sfn-pipelines job runner only."""\n',
        "sfn_pipelines/runner.py": RUNNER.read_bytes(),
    }
    digest = hashlib.sha256(b"".join(k.encode() + b"\0" + v for k, v in sorted(files.items()))).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"sfn-pipelines-job-image-{digest}"
    if not out.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix="sfn-pipelines-job-image-"))
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        try:
            tmp.rename(out)
        except OSError:  # staged by a concurrent synth meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_job_image() -> ecs.ContainerImage:
    return ecs.ContainerImage.from_asset(str(stage_job_image()))
