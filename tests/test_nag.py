"""cdk-nag 3 (AwsSolutions) over the whole default app, as ``cdk synth -c nag=true`` runs it.

Zero unacknowledged findings; every acknowledgment names the rule (and for IAM5 the exact
wildcard) and says why it is acceptable. One synth of the default app with the checks on.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sns as sns

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # app.py and infra/ live at the repo root, beside tests/

import app as default_app  # noqa: E402
from infra import nag  # noqa: E402

EXAMPLES = REPO / "pipelines"
ACK_ID = re.compile(r"^(?i:annotation::)?(AwsSolutions::)?AwsSolutions-[A-Z]+\d+(\[(Action|Resource|Policy)::.+\])?$")
# Reasons that explain nothing.
VAGUE = re.compile(r"^(n/?a|ok|fine|false positive|not needed|suppress(ed)?|todo|tbd|required|by design)\.?$", re.I)


@dataclass
class Nagged:
    app: cdk.App
    out: Path
    error: Exception | None
    enabled: list[bool]


@pytest.fixture(scope="module")
def nagged(tmp_path_factory: pytest.TempPathFactory) -> Nagged:
    out = tmp_path_factory.mktemp("nag")
    enabled: list[bool] = []

    def spy(app: cdk.App) -> bool:
        enabled.append(nag.enable_checks(app))
        return enabled[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(default_app, "enable_checks", spy)
        app = default_app.build_app(cdk.App(outdir=str(out), context={"pipelines_dir": str(EXAMPLES), "nag": "true"}))
    try:
        app.synth()
        error = None
    except Exception as e:  # jsii surfaces the failed validation as a RuntimeError
        error = e
    return Nagged(app=app, out=out, error=error, enabled=enabled)


def findings(out: Path) -> list[str]:
    report = out / "validation-report.json"
    if not report.is_file():
        return []
    lines = []
    for plugin in json.loads(report.read_text()).get("pluginReports", []):
        for violation in plugin.get("violations", []):
            for construct in violation.get("violatingConstructs", []):
                lines.append(f"{violation['ruleName']} on {construct.get('constructPath')}")
    return lines


def acknowledgments(app: cdk.App) -> list[tuple[str, str, str]]:
    """(construct path, rule id, reason) of every cdk-nag acknowledgment in the app (CDK
    acknowledges some of its own CloudFormation-Validate warnings too: not ours)."""
    found = []
    for construct in app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY and entry.data:
                found += [(construct.node.path, rule, reason) for rule, reason in entry.data.items()
                          if "AwsSolutions" in rule]
    return found


def test_no_unacknowledged_findings(nagged: Nagged) -> None:
    assert nagged.enabled == [True], "build_app did not turn the checks on for context nag=true"
    listed = "\n".join(findings(nagged.out))
    assert nagged.error is None, f"{nagged.error}\n{listed}"
    assert not listed


def test_nag_pack_agrees_when_run_directly(nagged: Nagged) -> None:
    """The same pack over the same tree, outside the synth: no violations."""
    from cdk_nag import AwsSolutionsChecks

    report = AwsSolutionsChecks().validate_scope(nagged.app)
    assert report.success, [(v.rule_name, [r.construct_path for r in v.violating_resources])
                            for v in report.violations]


def test_every_acknowledgment_says_why(nagged: Nagged) -> None:
    acks = acknowledgments(nagged.app)
    assert len(acks) >= 10
    for path, rule, reason in acks:
        assert ACK_ID.match(rule), (path, rule)
        assert not VAGUE.match(reason.strip()) and len(reason) >= 60, (path, rule, reason)
    # Granular IAM findings are acknowledged one wildcard at a time, never the whole rule.
    rules = {re.sub(r"^(?i:annotation::)?(AwsSolutions::)?", "", rule) for _, rule, _ in acks}
    assert not rules & {"AwsSolutions-IAM4", "AwsSolutions-IAM5"}, rules


def test_checks_are_off_unless_asked_and_catch_findings(tmp_path: Path) -> None:
    assert not nag.enable_checks(cdk.App(outdir=str(tmp_path / "a")))
    assert not nag.enable_checks(cdk.App(outdir=str(tmp_path / "b"), context={"nag": "false"}))
    app = cdk.App(outdir=str(tmp_path / "c"), context={"nag": "true"})
    assert nag.enable_checks(app)
    sns.Topic(cdk.Stack(app, "Plain"), "Topic")  # publishers may use plain HTTP: AwsSolutions-SNS3
    with pytest.raises(Exception, match="ValidationFailed"):
        app.synth()
    assert any(f.startswith("AwsSolutions-SNS3 on Plain/Topic") for f in findings(tmp_path / "c"))


def test_nag_text_spells_resources_like_cdk_nag() -> None:
    stack = cdk.Stack()
    arn = stack.format_arn(service="batch", resource="job", resource_name="*")
    assert nag.nag_text(stack, arn) == "arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/*"
    value: Any = cdk.Fn.join(":", [cdk.Fn.select(6, cdk.Fn.split(":", cdk.Fn.ref("M"))), "*"])
    assert nag.nag_text(stack, value) == '{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"M"}]}]}:*'
    assert nag.nag_text(stack, cdk.Fn.get_att("Q", "Arn").to_string()) == "<Q.Arn>"
    assert nag.nag_text(stack, cdk.Fn.sub("cdk-${AWS::Region}")) == "cdk-<AWS::Region>"
