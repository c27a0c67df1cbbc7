"""Static checks of what the default app deploys: cfn-lint on the templates, and npm
asl-validator on every generated state machine definition.

cfn-lint does not look inside the ``DefinitionString`` (an ``Fn::Join`` of ASL text and
tokens), so each definition is read back with ``definition_text``, its tokens replaced
by plausible ARNs, and validated as ASL on its own. The cloud assembly is the one
test_app.py / test_snapshots.py / test_operations.py share (synthesized once a session).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import synth_default_app

from sfn_pipelines.definition import definition_text

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # app.py and infra/ live at the repo root, beside tests/


EXAMPLES = REPO / "pipelines"
ASL_VALIDATOR = REPO / "node_modules" / ".bin" / "asl-validator"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "SfnPipelines"}
# resource type -> (service, resource prefix, suffix) of the ARN a Ref / GetAtt ...Arn stands for
ARN_SHAPES = {
    "AWS::Batch::JobDefinition": ("batch", "job-definition/", ":1"),
    "AWS::Batch::JobQueue": ("batch", "job-queue/", ""),
    "AWS::SNS::Topic": ("sns", "", ""),
    "AWS::StepFunctions::StateMachine": ("states", "stateMachine:", ""),
    "AWS::Lambda::Function": ("lambda", "function:", ""),
    "AWS::SQS::Queue": ("sqs", "", ""),
}




@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = synth_default_app(tmp_path_factory)
    found = {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.template.json"))}
    assert found, f"no templates in {out}"
    return found


# --- cfn-lint --------------------------------------------------------------------------------
def cfn_lint(template: dict[str, Any]) -> list[Any]:
    from cfnlint.api import ManualArgs, lint

    return lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))


def test_cfn_lint_finds_no_errors(templates: dict[str, dict[str, Any]]) -> None:
    """Errors fail the test; warnings are listed in pytest's warnings summary."""
    errors = []
    for name, template in templates.items():
        for match in cfn_lint(template):
            line = f"{name}: {match.rule.id} {match.message} (at {'/'.join(map(str, match.path))})"
            if match.rule.severity == "error":
                errors.append(line)
            else:
                warnings.warn(f"cfn-lint {match.rule.severity}: {line}", UserWarning, stacklevel=1)
    assert not errors, "\n".join(errors)


def test_cfn_lint_reports_errors() -> None:
    """The check above can fail: a template with a misspelt property is an error."""
    bad = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicNme": "x"}}}}
    assert [m.rule.id for m in cfn_lint(bad) if m.rule.severity == "error"] == ["E3002"]


# --- ASL -------------------------------------------------------------------------------------
def plausible(resources: dict[str, Any]) -> Any:
    """A ``resolve`` for definition_text: each token becomes the kind of text AWS puts there."""
    def arn(logical_id: str) -> str:
        kind = resources[logical_id]["Type"]
        assert kind in ARN_SHAPES, f"no ARN shape for {kind} ({logical_id}): add it to ARN_SHAPES"
        service, prefix, suffix = ARN_SHAPES[kind]
        return f"arn:aws:{service}:us-east-1:123456789012:{prefix}{logical_id}{suffix}"

    def resolve(token: Any) -> str:
        if isinstance(token, dict) and set(token) == {"Ref"}:
            ref = token["Ref"]
            return PSEUDO[ref] if ref in PSEUDO else arn(ref)
        if isinstance(token, dict) and set(token) == {"Fn::GetAtt"}:
            logical_id, attribute = token["Fn::GetAtt"]
            assert attribute.endswith("Arn"), f"unexpected attribute in a definition: {token}"
            return arn(logical_id)
        if isinstance(token, dict) and set(token) == {"Fn::Sub"} and isinstance(token["Fn::Sub"], str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: PSEUDO[m[1]], token["Fn::Sub"])
        raise AssertionError(f"unexpected token in a definition: {token}")

    return resolve


def definitions(templates: dict[str, dict[str, Any]]) -> dict[str, str]:
    """ASL text of every state machine, by logical id."""
    found = {}
    for template in templates.values():
        resources = template["Resources"]
        for lid, res in resources.items():
            if res["Type"] == "AWS::StepFunctions::StateMachine":
                found[lid] = definition_text(res["Properties"]["DefinitionString"], resolve=plausible(resources))
    return found


@pytest.fixture(scope="module")
def asl_validator() -> Path:
    if not ASL_VALIDATOR.exists():
        pytest.skip(f"{ASL_VALIDATOR.relative_to(REPO)} is missing: run ./dev setup (npm ci installs asl-validator)")
    return ASL_VALIDATOR


def validate_asl(validator: Path, paths: list[Path]) -> subprocess.CompletedProcess[str]:
    args = [str(validator)]
    for path in paths:
        args += ["--json-path", str(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_every_definition_is_valid_asl(templates: dict[str, dict[str, Any]], asl_validator: Path,
                                       tmp_path: Path) -> None:
    found = definitions(templates)
    assert len(found) >= 4
    paths = []
    for lid, text in found.items():
        json.loads(text)  # plain JSON once the tokens are resolved
        paths.append(tmp_path / f"{lid}.asl.json")
        paths[-1].write_text(text)
    result = validate_asl(asl_validator, paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" is valid") == len(paths), result.stdout


def test_asl_validator_rejects_a_broken_definition(templates: dict[str, dict[str, Any]], asl_validator: Path,
                                                   tmp_path: Path) -> None:
    """The check above can fail: one transition to a state that does not exist."""
    lid, text = next(iter(definitions(templates).items()))
    asl = json.loads(text)
    asl["StartAt"] = "No such state"
    path = tmp_path / f"{lid}.broken.json"
    path.write_text(json.dumps(asl))
    result = validate_asl(asl_validator, [path])
    assert result.returncode != 0
    assert "MISSING_TRANSITION_TARGET" in result.stdout + result.stderr
