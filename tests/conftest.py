"""Shared test helpers: where the repo and shared/ are, and quiet CDK settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="session")
def shared_examples() -> Path:
    path = SHARED / "workbench-examples"
    if not path.is_dir():
        pytest.skip(f"{path} not found (shared/ must sit beside the repo)")
    return path
