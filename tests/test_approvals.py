"""Approval gates, executed: a step with ``approval`` waits for `sfn-pipelines approve|reject`.

The generated machine runs under moto (``aslrun``'s patches and fake Batch); the gate's
SNS publish carries the task token, and the real CLI finds it in the history and answers.
Approved: the step runs. Rejected: the step fails, its dependants are skipped, independent
steps finish and the run ends FAILED.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from aslrun import (
    JOB_DEFINITIONS,
    MOTO_CONFIG,
    QUEUE_ARN,
    REGION,
    FakeBatch,
    _create_resources,
    job_definition_arn,
    only_workflow,
    write_pipelines,
)
from moto import mock_aws
from moto_patches import patched_moto

from sfn_pipelines import approvals, cli
from sfn_pipelines.definition import definition_text
from sfn_pipelines.layout import flatten_statuses

TOPIC_NAME = "approvals"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:{TOPIC_NAME}"


@pytest.fixture(scope="module")
def definition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """prep -> train -> (gate) promote -> report, and prep -> audit, independent of the gate."""
    import aws_cdk as cdk
    from aws_cdk import aws_batch as batch
    from aws_cdk import aws_sns as sns

    from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine

    root = write_pipelines(tmp_path_factory.mktemp("gated"), {"gated": [
        {"script": "prep.py", "outputs": ["fs:x"]},
        {"script": "train.py", "inputs": ["fs:x"], "outputs": ["model:m"]},
        {"script": "promote.py", "inputs": ["model:m"], "outputs": ["endpoint:e"], "approval": "Ship model m?"},
        {"script": "report.py", "inputs": ["endpoint:e"]},
        {"script": "audit.py", "inputs": ["fs:x"]},
    ]})
    workflow = only_workflow(Path(root))
    app = cdk.App()
    stack = cdk.Stack(app, "Gated")
    machine = WorkbenchPipelineStateMachine(
        stack, "M", workflow=workflow,
        job_queue=batch.JobQueue.from_job_queue_arn(stack, "Q", QUEUE_ARN),
        job_definitions={n: batch.EcsJobDefinition.from_job_definition_arn(stack, f"J{n}", job_definition_arn(n))
                         for n in JOB_DEFINITIONS},
        approval_topic=sns.Topic.from_topic_arn(stack, "T", TOPIC_ARN),
        api_retry_interval=cdk.Duration.seconds(1), job_retry_interval=cdk.Duration.seconds(1),
    )
    template = app.synth().get_stack_artifact(stack.artifact_id).template
    logical_id = stack.resolve(stack.get_logical_id(machine.state_machine.node.default_child))
    return definition_text(template["Resources"][logical_id]["Properties"]["DefinitionString"],
                           resolve=lambda t: {"AWS::Partition": "aws"}[t["Ref"]])


def _run_with_decision(definition: str, decide: list[str] | None) -> dict[str, Any]:
    """Start a run, wait for the gate, run the CLI with ``decide`` args, wait for the end."""
    batch = FakeBatch()
    with patched_moto(batch), mock_aws(config=MOTO_CONFIG):
        role = _create_resources()
        boto3.client("sns", region_name=REGION).create_topic(Name=TOPIC_NAME)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(name="gated", definition=definition, roleArn=role)["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=machine, name="run-1", input="{}")["executionArn"]
        deadline = time.monotonic() + 30
        while "promote" not in approvals.pending_gates(sfn, arn):
            assert time.monotonic() < deadline, "the gate never started waiting"
            assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
            time.sleep(0.1)
        submitted_before = sorted(j.step for j in batch.jobs)
        code = cli.main([*(decide or []), arn, "promote", "--region", REGION]) if decide else None
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            assert time.monotonic() < deadline + 30, "the run did not end after the decision"
            time.sleep(0.1)
        desc = sfn.describe_execution(executionArn=arn)
        batch.wait()
        pending_after = approvals.pending_gates(sfn, arn)
    statuses = flatten_statuses(json.loads(desc["output"])["st"] if desc.get("output")
                                else json.loads(desc["cause"]))
    return {"code": code, "status": desc["status"], "error": desc.get("error"), "statuses": statuses,
            "before": submitted_before, "jobs": sorted(j.step for j in batch.jobs), "pending_after": pending_after}


def test_the_gate_waits_and_an_approval_lets_the_step_run(definition: str) -> None:
    r = _run_with_decision(definition, ["approve", "--reason", "looks good"])
    assert "promote" not in r["before"]  # nothing of the gated step ran while waiting
    assert set(r["before"]) >= {"prep", "train"}
    assert r["code"] == 0
    assert r["status"] == "SUCCEEDED"
    assert r["jobs"] == ["audit", "prep", "promote", "report", "train"]
    assert {s: st["status"] for s, st in r["statuses"].items()} == dict.fromkeys(r["jobs"], "SUCCEEDED")
    assert r["pending_after"] == {}


def test_a_rejection_fails_the_step_and_skips_its_dependants(definition: str) -> None:
    r = _run_with_decision(definition, ["reject", "--reason", "metrics regressed"])
    assert r["code"] == 0
    assert r["status"] == "FAILED" and r["error"] == "PipelineStepsFailed"
    assert "promote" not in r["jobs"] and "report" not in r["jobs"]
    assert r["jobs"] == ["audit", "prep", "train"]  # independent work finished
    got = {s: (st["status"], st.get("error")) for s, st in r["statuses"].items()}
    assert got == {"prep": ("SUCCEEDED", None), "train": ("SUCCEEDED", None), "audit": ("SUCCEEDED", None),
                   "promote": ("FAILED", approvals.REJECTED_ERROR), "report": ("SKIPPED", None)}


def test_deciding_a_gate_that_is_not_waiting_is_a_clear_error(definition: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with mock_aws(config=MOTO_CONFIG):
        role = _create_resources()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(name="gated", definition=definition, roleArn=role)["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=machine, name="run-2", input='{"select": {"audit": true}}')[
            "executionArn"]
        code = cli.main(["approve", arn, "promote", "--region", REGION])
    assert code == 2
    assert "no approval gate is waiting for step 'promote'" in capsys.readouterr().err
