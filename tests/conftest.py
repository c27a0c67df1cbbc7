"""Shared test helpers: where the repo and shared/ are, and quiet CDK settings."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # app.py and infra/ live at the top of the repo
# CI clones the repo into another folder with a copy of shared/ beside it.
SHARED = REPO.parent / "shared"
EXAMPLES = REPO / "pipelines"

for key, value in {
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "CDK_DISABLE_VERSION_CHECK": "true",
    "CDK_DISABLE_CLI_TELEMETRY": "true",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(key, value)


def synth_default_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default app (``app.build_app``) over the repo's ``pipelines/``, synthesized once
    per session into the session's temp folder; later callers reuse the cloud assembly."""
    out = tmp_path_factory.getbasetemp() / "default-app.out"
    if not (out / "manifest.json").is_file():
        import aws_cdk as cdk  # only the tests that need a synth pay for jsii

        import app as default_app

        default_app.build_app(cdk.App(context={"pipelines_dir": str(EXAMPLES)}, outdir=str(out))).synth()
    return out


def make(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (root-relative path -> text, dedented) under ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@pytest.fixture(scope="session")
def shared_examples() -> Path:
    path = SHARED / "workbench-examples"
    if not path.is_dir():
        pytest.skip(f"{path} not found (shared/ must sit beside the repo)")
    return path
