"""The construct as CloudFormation sees it: synthesized templates and the ASL inside them.

All machines live in one App synthesized once per module (jsii start-up and synth are
the slow parts): the shapes in ``fixtures/synth_shapes`` (fan-out/fan-in over two chains,
diamond, names past 80 characters, per-step Batch keys) and the three real Workbench
manifests. The ASL is read back with ``definition_text`` and walked as plain JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_batch as batch

from sfn_pipelines.definition import definition_text
from sfn_pipelines.model import PipelineConfigError
from sfn_pipelines.plan import to_dict
from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine
from sfn_pipelines.workflow import PipelineSet, Workflow, load_pipeline_set

SHAPES = Path(__file__).resolve().parent / "fixtures" / "synth_shapes"
ACCOUNT = "arn:aws:batch:us-east-1:123456789012"
QUEUE_ARN = f"{ACCOUNT}:job-queue/default"
GPU_QUEUE_ARN = f"{ACCOUNT}:job-queue/gpu"
JOB_DEFINITION_ARNS = {"small": f"{ACCOUNT}:job-definition/small:1", "large": f"{ACCOUNT}:job-definition/large:3"}
SYNC_RESOURCE = "arn:aws:states:::batch:submitJob.sync"
BATCH_API_ERRORS = {"Batch.AWSBatchException", "Batch.ServerException", "Batch.TooManyRequestsException"}
JOB_FAILURE_ERRORS = {"States.TaskFailed", "States.ALL", "States.Timeout"}
WORKBENCH_MANIFESTS = ("aqsol", "demo-modes", "logd")
# <step id, cut to 44 characters>--<execution name>: Batch allows 128 characters
JOB_NAME = re.compile(r"States\.Format\('\{\}--\{\}', '([A-Za-z0-9_]{1,44})', \$\$\.Execution\.Name\)")


def batch_refs(stack: cdk.Stack) -> dict[str, Any]:
    """Imported queues and definitions: literal ARNs keep the definitions free of tokens."""
    return {
        "job_queue": batch.JobQueue.from_job_queue_arn(stack, "Queue", QUEUE_ARN),
        "job_queues": {"gpu": batch.JobQueue.from_job_queue_arn(stack, "GpuQueue", GPU_QUEUE_ARN)},
        "job_definitions": {name: batch.EcsJobDefinition.from_job_definition_arn(stack, f"Def-{name}", arn)
                            for name, arn in JOB_DEFINITION_ARNS.items()},
    }


def resolve_token(token: dict[str, Any]) -> str:
    """Only the partition is left as a token when every Batch ARN is imported."""
    assert token == {"Ref": "AWS::Partition"}, f"unexpected token in a definition: {token}"
    return "aws"


def copy_workbench_examples(examples: Path, dest: Path) -> Path:
    """The three real manifests, unchanged, in one tree with stand-ins for their local scripts."""
    for name in WORKBENCH_MANIFESTS:
        folder = dest / name
        folder.mkdir(parents=True)
        manifest = folder / "pipelines.json"
        shutil.copyfile(examples / f"{name}.pipelines.json", manifest)
        for nodes in json.loads(manifest.read_text())["pipelines"].values():
            for node in nodes:
                if ":" not in node["script"]:  # workbench:/plugin: refs ship elsewhere
                    (folder / node["script"]).write_text('"""Stand-in."""\n')
    return dest


@dataclass
class Synth:
    """One synthesized App: the construct objects and their parsed definitions, by key."""

    templates: dict[str, dict[str, Any]]  # stack name -> template
    machines: dict[str, WorkbenchPipelineStateMachine]
    definitions: dict[str, dict[str, Any]]
    machine_stack: dict[str, str]  # machine key -> stack name
    shapes: PipelineSet

    def definition(self, key: str) -> dict[str, Any]:
        if key not in self.definitions:
            pytest.skip(f"no machine {key!r}: shared/workbench-examples not found")
        return self.definitions[key]

    def resources(self, key: str) -> dict[str, Any]:
        return self.templates[self.machine_stack[key]]["Resources"]

    def logical_id(self, key: str) -> str:
        machine = self.machines[key]
        return cdk.Stack.of(machine).get_logical_id(machine.state_machine.node.default_child)


@pytest.fixture(scope="module")
def synth(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Every machine of this module in one App; the Workbench ones only when shared/ is there."""
    shapes = load_pipeline_set(SHAPES)
    try:
        examples: Path | None = request.getfixturevalue("shared_examples")
    except pytest.skip.Exception:
        examples = None
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk.out")))
    machines: dict[str, WorkbenchPipelineStateMachine] = {}
    machine_stack: dict[str, str] = {}

    def add(stack: cdk.Stack, key: str, **kwargs: Any) -> None:
        machines[key] = WorkbenchPipelineStateMachine(stack, f"M-{key}", **batch_refs_of[stack.stack_name], **kwargs)
        machine_stack[key] = stack.stack_name

    stacks = [cdk.Stack(app, "Shapes")] + ([cdk.Stack(app, "Workbench")] if examples else [])
    batch_refs_of = {s.stack_name: batch_refs(s) for s in stacks}
    for wf in shapes.workflows:
        add(stacks[0], wf.name, workflow=wf)
    add(stacks[0], "fan-stop_all", workflow=shapes.workflow("fan"), on_failure="stop_all")
    add(stacks[0], "fan-by_dir", pipelines_dir=SHAPES, group_name="fan")  # loads the folder again
    if examples:
        for wf in load_pipeline_set(copy_workbench_examples(examples, tmp_path_factory.mktemp("wb"))).workflows:
            add(stacks[1], wf.name, workflow=wf)

    assembly = app.synth()
    templates = {s.stack_name: assembly.get_stack_by_name(s.stack_name).template for s in stacks}
    result = Synth(templates, machines, {}, machine_stack, shapes)
    for key in machines:
        props = result.resources(key)[result.logical_id(key)]["Properties"]
        result.definitions[key] = json.loads(definition_text(props["DefinitionString"], resolve=resolve_token))
    return result


# -- walking ASL --------------------------------------------------------------------------------


def walk_states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (name, state) of a machine, Parallel branches included."""
    for name, state in definition["States"].items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from walk_states(branch)


def states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = dict(walk_states(definition))
    assert len(found) == len(list(walk_states(definition))), "state names repeat"
    return found


def batch_tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in states(definition).items() if s["Type"] == "Task"}


def success_path(machine: dict[str, Any]) -> list[Any]:
    """Task names in the order a run where all succeeds visits them; a Parallel becomes
    ``{"parallel": [branch paths]}``. Follows Next and a Choice's Default, never a Catch."""
    path: list[Any] = []
    name: str | None = machine["StartAt"]
    while name is not None:
        state = machine["States"][name]
        if state["Type"] == "Task":
            path.append(name)
        elif state["Type"] == "Parallel":
            path.append({"parallel": [success_path(b) for b in state["Branches"]]})
        name = state.get("Default") if state["Type"] == "Choice" else state.get("Next")
    return path


def plan_path(node: dict[str, Any]) -> list[Any]:
    """The plan's structure (``plan.to_dict``) in ``success_path`` form."""
    if "step" in node:
        return [node["step"]]
    if "series" in node:
        return [item for child in node["series"] for item in plan_path(child)]
    return [{"parallel": [plan_path(child) for child in node["parallel"]]}]


def environment(task: dict[str, Any]) -> dict[str, str]:
    """Overrides as name -> value; a value taken at run time shows as ``<path>``."""
    env = task["Parameters"]["ContainerOverrides"]["Environment"]
    return {e["Name"]: e["Value"] if "Value" in e else f"<{e['Value.$']}>" for e in env}


def task(synth: Synth, key: str, step: str) -> dict[str, Any]:
    return batch_tasks(synth.definition(key))[step]


# -- the machine and its tasks ------------------------------------------------------------------


def test_every_machine_is_standard(synth: Synth) -> None:
    for name, count in (("Shapes", 5), ("Workbench", 4)):
        if name not in synth.templates:
            continue
        template = assertions.Template.from_json(synth.templates[name])
        template.resource_count_is("AWS::StepFunctions::StateMachine", count)
        template.all_resources_properties("AWS::StepFunctions::StateMachine", {"StateMachineType": "STANDARD"})


def test_one_sync_batch_task_per_step(synth: Synth) -> None:
    for key, machine in synth.machines.items():
        found = batch_tasks(synth.definitions[key])
        assert sorted(found) == sorted(machine.workflow.group.step_ids), key
        assert {t["Resource"] for t in found.values()} == {SYNC_RESOURCE}, key


def test_state_names_unique_and_at_most_80_characters(synth: Synth) -> None:
    longest = 0
    for key, definition in synth.definitions.items():
        names = [name for name, _ in walk_states(definition)]
        assert len(names) == len(set(names)), key
        longest = max(longest, *map(len, names))
        assert all(1 <= len(n) <= 80 for n in names), [n for n in names if len(n) > 80]
    assert longest >= 75  # the long-names group really pushed against the limit


def test_step_names_are_readable_script_stems(synth: Synth) -> None:
    names = {key: sorted(batch_tasks(synth.definition(key))) for key in ("fan", "diamond")}
    assert names == {
        "fan": ["chain_a1", "chain_a2", "chain_b1", "chain_b2", "fan_in", "fan_root"],
        "diamond": ["d_bottom", "d_side_left", "d_side_right", "d_top"],  # one script, two modes
    }
    long_ids = [n for n in batch_tasks(synth.definition("long")) if n != "long_root"]
    assert len(long_ids) == 2 and all(n.startswith("a_step_with_an_extraordinarily_long") for n in long_ids)


def test_workbench_step_names(synth: Synth) -> None:
    names = {key: sorted(batch_tasks(synth.definition(key))) for key in ("demo", "logd")}
    assert names == {
        "demo": ["demo_fs", "demo_reg_dt", "demo_reg_ts"],  # one script, two modes
        "logd": ["logd", "model_promotion_logd_reg_v1"],
    }
    aqsol = batch_tasks(synth.definition("aqsol"))
    assert {"aqsol_feature_set", "aqsol_chemprop_hpo"} <= set(aqsol)
    # the same promotion script twice (plugin: and workbench:), told apart by output
    assert {n for n in aqsol if n.startswith("model_promotion")} == {
        "model_promotion_aqsol_class", "model_promotion_aqsol_regression"}


def test_state_names_and_definitions_stable_across_loads(synth: Synth) -> None:
    """The folder loaded a second time (``pipelines_dir`` + ``group_name``) renders the same machine."""
    assert synth.definitions["fan-by_dir"] == synth.definitions["fan"]


def test_state_names_stable_across_processes(synth: Synth) -> None:
    """Another interpreter with another hash seed renders the same definitions."""
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import aws_cdk as cdk
from test_state_machine import SHAPES, batch_refs, resolve_token
from sfn_pipelines.definition import definition_text
from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine
from sfn_pipelines.workflow import load_pipeline_set
stack = cdk.Stack(cdk.App(), "Shapes")
refs, out = batch_refs(stack), {{}}
for wf in load_pipeline_set(SHAPES).workflows:
    m = WorkbenchPipelineStateMachine(stack, wf.name, workflow=wf, **refs)
    out[wf.name] = json.loads(definition_text(stack.resolve(m.state_machine.node.default_child.definition_string),
                                              resolve=resolve_token))
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONHASHSEED": "4321" if os.environ.get("PYTHONHASHSEED") != "4321" else "99"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    other = json.loads(done.stdout.strip().splitlines()[-1])
    assert other == {wf.name: synth.definitions[wf.name] for wf in synth.shapes.workflows}


def test_environment_overrides(synth: Synth) -> None:
    env = environment(task(synth, "fan", "chain_b1"))
    assert env["PIPELINE_RUN_ID"] == "<$$.Execution.Name>"
    assert env["PIPELINE_SCRIPT"] == "shapes/chain_b1.py"
    assert json.loads(env["PIPELINE_INPUTS"]) == ["fs:fan_root"]
    assert json.loads(env["PIPELINE_OUTPUTS"]) == ["fs:chain_b1"]
    assert (env["PIPELINE_STEP"], env["PIPELINE_GROUP"], env["PIPELINE_NAME"]) == ("chain_b1", "fan", "fan")
    assert env["SEED"] == "7" and json.loads(env["PIPELINE_ARGS"]) == ["--fast"]
    assert "PIPELINE_MODE" not in env
    left = environment(task(synth, "diamond", "d_side_left"))
    assert (left["PIPELINE_SCRIPT"], left["PIPELINE_MODE"]) == ("shapes/d_side.py", "left")


def test_workbench_environment_overrides(synth: Synth) -> None:
    promotion = environment(task(synth, "aqsol", "model_promotion_aqsol_class"))
    assert promotion["PIPELINE_SCRIPT"] == "plugin:models/model_promotion.py"  # the ref as written
    assert json.loads(promotion["PIPELINE_INPUTS"]) == ["model:aqsol-class-1", "model:aqsol-class-2"]
    demo = environment(task(synth, "demo", "demo_reg_ts"))
    assert (demo["PIPELINE_SCRIPT"], demo["PIPELINE_MODE"]) == ("demo-modes/demo_reg.py", "ts")


def test_every_task_gets_the_run_id_and_a_job_name_from_the_execution(synth: Synth) -> None:
    for key, definition in synth.definitions.items():
        for name, state in batch_tasks(definition).items():
            assert environment(state)["PIPELINE_RUN_ID"] == "<$$.Execution.Name>", (key, name)
            job_name = JOB_NAME.fullmatch(state["Parameters"]["JobName.$"])
            assert job_name, (key, name, state["Parameters"]["JobName.$"])
            step_part = job_name[1]
            assert step_part == name if len(name) <= 44 else step_part[:30] == name[:30], (key, name)


def test_per_step_resources_queue_and_definition(synth: Synth) -> None:
    a1 = task(synth, "fan", "chain_a1")["Parameters"]
    assert sorted(map(tuple, (r.values() for r in a1["ContainerOverrides"]["ResourceRequirements"]))) == [
        ("GPU", "1"), ("MEMORY", "8192"), ("VCPU", "4")]
    assert (a1["JobDefinition"], a1["JobQueue"]) == (JOB_DEFINITION_ARNS["large"], QUEUE_ARN)
    b1 = task(synth, "fan", "chain_b1")["Parameters"]
    assert "ResourceRequirements" not in b1["ContainerOverrides"]
    assert (b1["JobDefinition"], b1["JobQueue"]) == (JOB_DEFINITION_ARNS["small"], GPU_QUEUE_ARN)


def test_timeout_is_the_batch_attempt_timeout(synth: Synth) -> None:
    a1 = task(synth, "fan", "chain_a1")
    assert a1["Parameters"]["Timeout"] == {"AttemptDurationSeconds": 90 * 60}
    assert "Timeout" not in task(synth, "fan", "chain_a2")["Parameters"]


def test_retries_only_where_a_step_asks_for_them(synth: Synth) -> None:
    job_retries = {
        (key, name): [r for r in state.get("Retry", []) if JOB_FAILURE_ERRORS & set(r["ErrorEquals"])]
        for key, definition in synth.definitions.items() for name, state in batch_tasks(definition).items()
    }
    asked = {k: v for k, v in job_retries.items() if v}
    assert set(asked) == {(key, "chain_a1") for key in ("fan", "fan-stop_all", "fan-by_dir")}
    for (rule,) in asked.values():
        assert rule["ErrorEquals"] == ["States.TaskFailed"] and rule["MaxAttempts"] == 2


def test_batch_api_errors_retried_with_backoff_and_full_jitter(synth: Synth) -> None:
    for key, definition in synth.definitions.items():
        for name, state in batch_tasks(definition).items():
            rules = [r for r in state.get("Retry", []) if BATCH_API_ERRORS & set(r["ErrorEquals"])]
            assert len(rules) == 1, (key, name)
            rule = rules[0]
            assert set(rule["ErrorEquals"]) == BATCH_API_ERRORS, (key, name)
            assert rule["BackoffRate"] > 1 and rule["JitterStrategy"] == "FULL", (key, name)
            assert rule["MaxAttempts"] == 6 and rule["IntervalSeconds"] == 2, (key, name)


def test_sync_result_cut_down_to_status_and_job_id(synth: Synth) -> None:
    for key, definition in synth.definitions.items():
        for name, state in batch_tasks(definition).items():
            assert state["ResultSelector"] == {"status": "SUCCEEDED", "job.$": "$.JobId"}, (key, name)
            assert state["ResultPath"] == f"$.st.{name}", (key, name)
            assert "OutputPath" not in state


def test_role_can_submit_describe_and_terminate_jobs(synth: Synth) -> None:
    for key in synth.machines:
        resources = synth.resources(key)
        role = resources[synth.logical_id(key)]["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        actions: set[str] = set()
        for res in resources.values():
            if res["Type"] == "AWS::IAM::Policy" and {"Ref": role} in res["Properties"]["Roles"]:
                for statement in res["Properties"]["PolicyDocument"]["Statement"]:
                    found = statement["Action"]
                    actions |= {found} if isinstance(found, str) else set(found)
        assert {"batch:SubmitJob", "batch:DescribeJobs", "batch:TerminateJob"} <= actions, key


# -- structure --------------------------------------------------------------------------------


def test_two_chains_become_one_parallel_with_two_branches_without_barrier(synth: Synth) -> None:
    assert success_path(synth.definitions["fan"]) == [
        "fan_root", {"parallel": [["chain_a1", "chain_a2"], ["chain_b1", "chain_b2"]]}, "fan_in"]
    parallels = [s for _, s in walk_states(synth.definitions["fan"]) if s["Type"] == "Parallel"]
    assert len(parallels) == 1 and len(parallels[0]["Branches"]) == 2
    # chain_a2 follows chain_a1 inside its branch: it never waits for chain_b1
    assert task(synth, "fan", "chain_a1")["Next"] == "Check chain_a2"


def test_diamond(synth: Synth) -> None:
    assert success_path(synth.definition("diamond")) == [
        "d_top", {"parallel": [["d_side_left"], ["d_side_right"]]}, "d_bottom"]


def test_fan_out_without_fan_in(synth: Synth) -> None:
    assert success_path(synth.definition("demo")) == ["demo_fs", {"parallel": [["demo_reg_dt"], ["demo_reg_ts"]]}]
    assert success_path(synth.definition("logd_hpo")) == ["logd_chemprop_hpo"]


@pytest.mark.parametrize("key", ["fan", "diamond", "long", "fan-stop_all", "aqsol", "demo", "logd", "logd_hpo"])
def test_structure_matches_the_plan(synth: Synth, key: str) -> None:
    asl = synth.definition(key)
    workflow: Workflow = synth.machines[key].workflow
    assert success_path(asl) == plan_path(to_dict(workflow.plan.root))


def test_isolate_catches_every_task_and_ends_in_a_fail_state(synth: Synth) -> None:
    all_states = states(synth.definitions["fan"])
    for name, state in batch_tasks(synth.definitions["fan"]).items():
        assert [c["Next"] for c in state["Catch"]] == [f"Failed {name}"]
    assert all_states["Run failed"]["Type"] == "Fail"
    assert all_states["Run failed"]["Error"] == "PipelineStepsFailed"


def test_stop_all_has_no_catch(synth: Synth) -> None:
    found = states(synth.definitions["fan-stop_all"])
    assert [n for n, s in found.items() if "Catch" in s] == []
    assert not [n for n in found if n.startswith(("Failed ", "Skip "))]
    assert "Run failed" not in found


# -- constructor validation ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> cdk.App:
    """A separate App for constructors that raise: a half-built construct must not reach a synth."""
    return cdk.App()


def build(scratch: cdk.App, synth: Synth, **kwargs: Any) -> WorkbenchPipelineStateMachine:
    stack = cdk.Stack(scratch, f"S{len(scratch.node.children)}")
    args = {"workflow": synth.shapes.workflow("fan"), **batch_refs(stack), **kwargs}
    return WorkbenchPipelineStateMachine(stack, "Machine", **args)


def test_bad_on_failure(scratch: cdk.App, synth: Synth) -> None:
    with pytest.raises(ValueError, match=r"^on_failure must be one of isolate, stop_all\. Received 'ignore'\.$"):
        build(scratch, synth, on_failure="ignore")


def test_unknown_job_definition_and_queue_name_the_file(scratch: cdk.App, synth: Synth) -> None:
    stack = cdk.Stack(scratch, "Unknown")
    refs = batch_refs(stack)
    with pytest.raises(PipelineConfigError) as info:
        WorkbenchPipelineStateMachine(stack, "Machine", workflow=synth.shapes.workflow("fan"),
                                      job_queue=refs["job_queue"],
                                      job_definitions={"small": refs["job_definitions"]["small"]})
    assert [str(p) for p in info.value.problems] == [
        "shapes/pipelines.json:5: step chain_a1: job_definition 'large' is not configured in the app (known: small)",
        "shapes/pipelines.json:8: step chain_b1: job_queue 'gpu' is not configured in the app (known: none)",
    ]


def test_missing_job_definitions(scratch: cdk.App, synth: Synth) -> None:
    with pytest.raises(ValueError, match=r"^job_definitions must name at least one job definition"):
        build(scratch, synth, job_definitions={})


def test_workflow_and_pipelines_dir_together(scratch: cdk.App, synth: Synth) -> None:
    with pytest.raises(ValueError, match=r"^give either workflow or pipelines_dir and group_name, not both$"):
        build(scratch, synth, pipelines_dir=SHAPES, group_name="fan")


def test_neither_workflow_nor_pipelines_dir(scratch: cdk.App, synth: Synth) -> None:
    with pytest.raises(ValueError, match=r"^give workflow, or pipelines_dir and group_name$"):
        build(scratch, synth, workflow=None)


@pytest.mark.parametrize("attempts", [-1, 11])
def test_api_retry_attempts_out_of_range(scratch: cdk.App, synth: Synth, attempts: int) -> None:
    with pytest.raises(ValueError, match=rf"^api_retry_attempts must be between 0 and 10\. Received {attempts}\.$"):
        build(scratch, synth, api_retry_attempts=attempts)


def test_unknown_group_name(scratch: cdk.App, synth: Synth) -> None:
    with pytest.raises(ValueError) as info:
        build(scratch, synth, workflow=None, pipelines_dir=SHAPES, group_name="fann")
    assert str(info.value) == "no dependency group named 'fann' (groups: long, fan, diamond)"
