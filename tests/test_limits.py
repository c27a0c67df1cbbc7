"""Soft limits checked at synth: the failure cause size and the history events of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aslrun import write_pipelines

from sfn_pipelines import limits
from sfn_pipelines.workflow import Workflow, load_pipeline_set


def _fan(root: Path, width: int) -> Workflow:
    """One feature set feeding ``width`` models: wide, so Parallel nesting is exercised."""
    steps = [{"script": "features.py", "outputs": ["fs:f"]}]
    steps += [{"script": f"model_with_a_long_name_{i:04d}.py", "inputs": ["fs:f"], "outputs": [f"model:m{i}"]}
              for i in range(width)]
    steps.append({"script": "promote.py", "inputs": [f"model:m{i}" for i in range(0, width, 2)]})
    write_pipelines(root, {"fan": steps})
    (flow,) = load_pipeline_set(root).workflows
    return flow


def _success_cause(flow: Workflow) -> str:
    """The cause a failed run would carry if every step had succeeded: the `$.st` tree."""
    st: dict = {}
    for step, scope in flow.layout.scopes.items():
        node = st
        for pkey, branch in scope:
            node = node.setdefault(pkey, {}).setdefault(f"_b{branch}", {})
        node[step] = {"status": "SUCCEEDED", "job": "0" * 36}
    return json.dumps(st, separators=(",", ":"))


@pytest.mark.parametrize("width", [3, 40])
def test_the_cause_estimate_is_an_upper_bound(tmp_path: Path, width: int) -> None:
    flow = _fan(tmp_path, width)
    actual = len(_success_cause(flow))
    assert actual <= flow.estimated_cause_chars() <= 1.2 * actual + 100


def test_large_groups_warn_at_synth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_batch as batch
    from aws_cdk.assertions import Annotations, Match

    from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine

    flow = _fan(tmp_path, 6)
    monkeypatch.setattr(limits, "FAIL_CAUSE_MAX", flow.estimated_cause_chars() - 1)
    monkeypatch.setattr(limits, "HISTORY_EVENTS_MAX", flow.estimated_history_events() - 1)
    app = cdk.App()
    stack = cdk.Stack(app, "Limits")
    WorkbenchPipelineStateMachine(
        stack, "M", workflow=flow,
        job_queue=batch.JobQueue.from_job_queue_arn(stack, "Q", "arn:aws:batch:us-east-1:123456789012:job-queue/q"),
        job_definitions={"small": batch.EcsJobDefinition.from_job_definition_arn(
            stack, "J", "arn:aws:batch:us-east-1:123456789012:job-definition/d:1")})
    warnings = Annotations.from_stack(stack)
    warnings.has_warning("/Limits/M", Match.string_like_regexp("cause .* over Step Functions' "))
    warnings.has_warning("/Limits/M", Match.string_like_regexp("history events; Step Functions fails a run at"))
