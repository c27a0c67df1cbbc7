"""Snapshots of what the default app synthesizes for the repo's ``pipelines/``.

Each group's state machine definition is stored alone, as parsed ASL with CloudFormation
tokens replaced by fixed placeholders (``${Ref:Id}``, ``${GetAtt:Id.Attr}``,
``${Sub:...}``), so a change to the generated machines shows up as a readable JSON diff.
One snapshot holds the whole stack template. Only asset hashes are masked: a 64-hex
content hash directly followed by ``.zip`` (S3 keys of the scripts and Lambda assets),
wherever it appears; nothing else is rewritten.

When a change to the construct or the app is intended, review the diff, then regenerate:

    ./dev test tests/test_snapshots.py --snapshot-update

and commit ``tests/__snapshots__/test_snapshots/``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import synth_default_app
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from sfn_pipelines.definition import definition_text

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # app.py and infra/ live at the repo root, beside tests/


EXAMPLES = REPO / "pipelines"
STACK = "SfnPipelines"
GROUPS = ("churn", "solubility", "solubility_hpo", "toxicity-tox_assay_clean", "toxicity-tox_deploy")
# A CDK asset hash is the SHA-256 of the asset's content, used as its S3 key "<hash>.zip".
# A container image asset is tagged with its hash in the CDK container-assets repository.
ASSET_HASH = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?=\.zip\b)|(?<=-container-assets-\$\{AWS::AccountId\}-"
                        r"\$\{AWS::Region\}:)[0-9a-f]{64}$")
MASK = "ASSET_HASH"




def mask_asset_hashes(value: Any) -> Any:
    if isinstance(value, str):
        return ASSET_HASH.sub(MASK, value)
    if isinstance(value, list):
        return [mask_asset_hashes(v) for v in value]
    if isinstance(value, dict):
        return {k: mask_asset_hashes(v) for k, v in value.items()}
    return value


def placeholder(token: dict[str, Any]) -> str:
    """A fixed stand-in for a token inside the definition (no quotes: it sits in a JSON string)."""
    ((kind, arg),) = token.items()
    if kind == "Ref":
        return f"${{Ref:{arg}}}"
    if kind == "Fn::GetAtt":
        return f"${{GetAtt:{'.'.join(arg)}}}"
    if kind == "Fn::Sub" and isinstance(arg, str):
        return f"${{Sub:{mask_asset_hashes(arg)}}}"
    raise AssertionError(f"no placeholder for token {token}")


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = synth_default_app(tmp_path_factory)
    return json.loads((out / f"{STACK}.template.json").read_text())


def test_mask_is_anchored_to_asset_keys() -> None:
    digest = "0123456789abcdef" * 4
    assert mask_asset_hashes({"S3Key": f"{digest}.zip", "Other": digest, "Url": f"s3://b/{digest}.zip"}) == {
        "S3Key": f"{MASK}.zip", "Other": digest, "Url": f"s3://b/{MASK}.zip"}
    image = "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/cdk-hnb659fds-container-assets-" \
            "${AWS::AccountId}-${AWS::Region}:"
    assert mask_asset_hashes({"Image": image + digest, "Tag": f"repo:{digest}"}) == {
        "Image": image + MASK, "Tag": f"repo:{digest}"}
    assert mask_asset_hashes(f"x{digest}.zipper") == f"x{digest}.zipper"


@pytest.mark.parametrize("group", GROUPS)
def test_definition(template: dict[str, Any], group: str, snapshot_json: SnapshotAssertion) -> None:
    (props,) = [r["Properties"] for r in template["Resources"].values()
                if r["Type"] == "AWS::StepFunctions::StateMachine"
                and r["Properties"]["StateMachineName"] == f"{STACK}-{group}"]
    asl = json.loads(definition_text(props["DefinitionString"], resolve=placeholder))
    assert asl == snapshot_json


def test_whole_stack_template(template: dict[str, Any], snapshot_json: SnapshotAssertion) -> None:
    assert mask_asset_hashes(template) == snapshot_json
