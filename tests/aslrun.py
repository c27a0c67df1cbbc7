"""Run synthesized state machine definitions under moto's Step Functions executor.

Why: snapshots and plan checks cannot show that a definition *works*; a JSONPath that only
fails at run time, a Choice that skips too much or a Parallel that waits for unrelated
steps only shows up when the machine really runs. Three parts:

- ``synth_machines``: one CDK app and stack holding a ``WorkbenchPipelineStateMachine`` per
  case, synthesized once (jsii start-up dominates), definitions flattened to ASL text.
- ``FakeBatch``: moto's simple Batch backend, made controllable: per-step failures and
  durations, and a record of every SubmitJob with start/finish order.
- ``run_machines`` (``run_machine`` for one): creates Batch and IAM resources in a fresh moto
  account, starts every ``Run`` at once, waits (bounded) for all to end and returns one
  ``RunResult`` each (status, step statuses, jobs in submission order, history).

Importing this module loads moto but not CDK; ``synth_machines`` imports CDK on first use.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws
from moto.batch.models import Job
from moto_patches import patched_moto

from sfn_pipelines.definition import definition_text
from sfn_pipelines.jobs import RUN_ID_ENV
from sfn_pipelines.layout import flatten_statuses
from sfn_pipelines.workflow import Workflow, load_pipeline_set

ACCOUNT = "123456789012"
REGION = "us-east-1"
QUEUE_NAME = "pipelines-queue"
QUEUE_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{QUEUE_NAME}"
JOB_DEFINITIONS = ("small", "medium", "large")
RUN_FAILED_ERROR = "PipelineStepsFailed"  # state_machine.RUN_FAILED_ERROR; not imported: that loads CDK
# Environment moto's Batch integration adds to every `.sync` job, as Step Functions does.
MANAGED_ENV = "MANAGED_BY_AWS"
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "batch": {"use_docker": False}}


def job_definition_arn(name: str) -> str:
    """ARN moto gives the first revision of job definition ``pipelines-<name>``."""
    return f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/pipelines-{name}:1"


# --- pipelines folders ------------------------------------------------------------------


def write_pipelines(root: Path, pipelines: Mapping[str, list[dict[str, Any]]]) -> Path:
    """A ``pipelines.json`` under ``root`` plus a stand-in file for each local script."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pipelines.json").write_text(json.dumps({"pipelines": pipelines}, indent=1))
    _write_stand_ins(root, pipelines)
    return root


def chain_steps(*edges: tuple[str, str], roots: Iterable[str] = (), **options: dict[str, Any]) -> list[dict]:
    """Manifest steps for a DAG given by (parent, child) step names; script = ``<name>.py``.

    Each step outputs ``fs:<name>`` and reads its parents' outputs; a step without parents
    reads the external ``ds:<name>_raw``. ``options`` adds manifest keys per step name.
    """
    names = list(dict.fromkeys([*roots, *itertools.chain.from_iterable(edges)]))
    parents = {n: [p for p, c in edges if c == n] for n in names}
    return [
        {"script": f"{n}.py", "inputs": [f"fs:{p}" for p in parents[n]] or [f"ds:{n}_raw"],
         "outputs": [f"fs:{n}"], **options.get(n, {})}
        for n in names
    ]


def stage_manifest(manifest: Path, dest: Path) -> Path:
    """Copy a manifest unchanged into ``dest/pipelines.json`` with stand-ins for its local scripts."""
    dest.mkdir(parents=True, exist_ok=True)
    text = manifest.read_text()
    (dest / "pipelines.json").write_text(text)
    _write_stand_ins(dest, json.loads(text)["pipelines"])
    return dest


def _write_stand_ins(root: Path, pipelines: Mapping[str, list[dict[str, Any]]]) -> None:
    for steps in pipelines.values():
        for step in steps:
            if ":" not in step["script"]:  # workbench:, plugin: and s3:// scripts live elsewhere
                (root / step["script"]).parent.mkdir(parents=True, exist_ok=True)
                (root / step["script"]).write_text("print('stand-in')\n")


def descendants(workflow: Workflow, steps: Iterable[str]) -> set[str]:
    """Every step that depends, directly or not, on one of ``steps`` (excluding them)."""
    children: dict[str, list[str]] = {}
    for parent, child in workflow.group.edges:
        children.setdefault(parent, []).append(child)
    found: set[str] = set()
    todo = list(steps)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found - set(steps)


def workflows_in(root: Path) -> dict[str, Workflow]:
    """Every planned workflow (dependency group) of a pipelines folder, by group name."""
    return {w.name: w for w in load_pipeline_set(root).workflows}


def only_workflow(root: Path) -> Workflow:
    flows = list(workflows_in(root).values())
    assert len(flows) == 1, f"expected one dependency group in {root}, got {[w.name for w in flows]}"
    return flows[0]


# --- synthesis --------------------------------------------------------------------------


@dataclass(frozen=True)
class MachineCase:
    workflow: Workflow
    on_failure: str = "isolate"


@dataclass(frozen=True)
class Machine:
    """One synthesized machine: the workflow it runs and its definition as ASL text."""

    key: str
    workflow: Workflow
    on_failure: str
    definition: str

    @property
    def asl(self) -> dict[str, Any]:
        return json.loads(self.definition)

    def edges(self) -> list[tuple[str, str]]:
        return list(self.workflow.group.edges)


def _resolve_token(token: Any) -> str:
    known = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com",
    }
    if isinstance(token, Mapping) and token.get("Ref") in known:
        return known[token["Ref"]]
    raise ValueError(f"aslrun cannot resolve token {token!r} in a definition; add it to _resolve_token")


def synth_machines(cases: Mapping[str, MachineCase], *, api_retry_attempts: int = 6) -> dict[str, Machine]:
    """Synthesize every case in one app/stack (one jsii round trip) and return the definitions.

    Each machine uses the moto queue ``QUEUE_ARN`` and the job definitions ``JOB_DEFINITIONS``
    (created by ``run_machines``), with 1-second retry intervals, the smallest ASL allows.
    """
    import aws_cdk as cdk
    from aws_cdk import aws_batch as batch

    from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine

    app = cdk.App()
    stack = cdk.Stack(app, "AslRun")
    queue = batch.JobQueue.from_job_queue_arn(stack, "Queue", QUEUE_ARN)
    job_defs = {name: batch.EcsJobDefinition.from_job_definition_arn(stack, f"JobDef-{name}", job_definition_arn(name))
                for name in JOB_DEFINITIONS}
    logical_ids = {}
    for i, (key, case) in enumerate(cases.items()):
        machine = WorkbenchPipelineStateMachine(
            stack, f"M{i}", workflow=case.workflow, job_queue=queue, job_definitions=job_defs,
            default_job_definition="small", on_failure=case.on_failure,
            api_retry_interval=cdk.Duration.seconds(1), api_retry_attempts=api_retry_attempts,
            job_retry_interval=cdk.Duration.seconds(1),
        )
        logical_ids[key] = stack.resolve(stack.get_logical_id(machine.state_machine.node.default_child))
    template = app.synth().get_stack_artifact(stack.artifact_id).template
    resources = template["Resources"]
    return {
        key: Machine(key=key, workflow=case.workflow, on_failure=case.on_failure,
                     definition=definition_text(resources[logical_ids[key]]["Properties"]["DefinitionString"],
                                                resolve=_resolve_token))
        for key, case in cases.items()
    }


# --- fake Batch -------------------------------------------------------------------------


@dataclass
class JobRecord:
    """One SubmitJob as moto's Batch received it, with where it sits in the run's timeline.

    ``start`` and ``end`` come from one counter shared by all jobs of the run, so
    ``a.end < b.start`` means a had finished before b was submitted.
    """

    step: str
    attempt: int  # 1 for the first submission of this step's job, 2 for its first retry...
    request: dict[str, Any]
    start: int
    end: int | None = None
    status: str = "RUNNING"
    started_at: float = 0.0  # time.time() at submission
    ended_at: float | None = None  # time.time() when the job ended


class FakeBatch:
    """Decides how each submitted job ends and records it; plugs into ``patched_moto``.

    :param fail: steps whose every attempt fails.
    :param fail_attempts: step -> how many first attempts fail (later ones succeed).
    :param durations: step -> seconds its job runs; others run ``default_duration``.
    """

    def __init__(self, fail: Iterable[str] = (), fail_attempts: Mapping[str, int] | None = None,
                 durations: Mapping[str, float] | None = None, default_duration: float = 0.02) -> None:
        self.fail = set(fail)
        self.fail_attempts = dict(fail_attempts or {})
        self.durations = dict(durations or {})
        self.default_duration = default_duration
        self.jobs: list[JobRecord] = []
        self._lock = threading.Lock()
        self._clock = itertools.count()
        self._timers: list[threading.Timer] = []

    def __call__(self, job: Job) -> None:
        request = _request_of(job)
        step = request["environment"].get("PIPELINE_STEP", request["job_name"])
        with self._lock:
            attempt = 1 + sum(r.step == step for r in self.jobs)
            record = JobRecord(step=step, attempt=attempt, request=request, start=next(self._clock),
                               started_at=time.time())
            self.jobs.append(record)
        job.job_started_at = job.job_created_at
        job._start_attempt()
        job.status = "RUNNING"
        success = step not in self.fail and attempt > self.fail_attempts.get(step, 0)
        duration = self.durations.get(step, self.default_duration)
        if duration <= 0:
            self._finish(record, job, success)
            return
        timer = threading.Timer(duration, self._finish, (record, job, success))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _finish(self, record: JobRecord, job: Job, success: bool) -> None:
        with self._lock:  # recorded before moto reports the job done, so `end` precedes any next `start`
            record.end = next(self._clock)
            record.ended_at = time.time()
            record.status = "SUCCEEDED" if success else "FAILED"
        if not success:
            job.exit_code = 1
            job.job_stopped_reason = "Essential container in task exited"
        job._mark_stopped(success=success)

    def wait(self, timeout: float = 10.0) -> None:
        """Let every job still running finish."""
        deadline = time.monotonic() + timeout
        for timer in list(self._timers):
            timer.join(max(0.0, deadline - time.monotonic()))

    def release(self) -> None:
        """Abandon the jobs still running: they keep status ``RUNNING`` and no ``end``.

        For after the run ended: only a run that stopped early (``stop_all``, timeout) leaves
        jobs running, and nobody is waiting for them any more.
        """
        for timer in self._timers:
            timer.cancel()


def _request_of(job: Job) -> dict[str, Any]:
    """The SubmitJob request, read from moto's Job before anything mutates its overrides."""
    overrides = job.container_overrides or {}
    env = {e["name"]: e["value"] for e in overrides.get("environment", []) if e["name"] != MANAGED_ENV}
    return {
        "job_name": job.job_name,
        "job_queue": job.job_queue.arn,
        "job_definition": job.job_definition.arn,
        "environment": env,
        "resource_requirements": {r["type"]: r["value"] for r in overrides.get("resourceRequirements", [])},
        "tags": dict(job.backend.list_tags_for_resource(job.arn)),
    }


# --- running ----------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one execution did: its end, each step's status, the jobs and the history."""

    machine: Machine
    input: dict[str, Any]
    status: str
    error: str | None
    cause: str | None
    output: Any
    history: list[dict[str, Any]]
    jobs: list[JobRecord]
    seconds: float  # from the start of all runs until this run's end was observed
    ended_at: float | None = None  # the execution's stopDate as time.time(), comparable with JobRecord times
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def submitted_jobs(self) -> list[dict[str, Any]]:
        """Every SubmitJob request in submission order (job name, queue, definition, env, ...)."""
        return [dict(r.request) for r in self.jobs]

    @property
    def submitted_steps(self) -> list[str]:
        """Steps with at least one job, in first-submission order."""
        return list(dict.fromkeys(r.step for r in self.jobs))

    def attempts(self, step: str) -> list[JobRecord]:
        return [r for r in self.jobs if r.step == step]

    def last(self, step: str) -> JobRecord:
        runs = self.attempts(step)
        assert runs, f"step {step} was never submitted; submitted: {self.submitted_steps}"
        return runs[-1]

    def step_status(self, step: str) -> str | None:
        return self.statuses.get(step, {}).get("status")

    def entered_states(self) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history if "stateEnteredEventDetails" in e]

    def ordering_violations(self, edges: Iterable[tuple[str, str]]) -> list[str]:
        """Edges (parent, child) whose child job started before the parent's last job ended."""
        bad = []
        for parent, child in edges:
            if not self.attempts(child):
                continue
            first_child = self.attempts(child)[0]
            if not self.attempts(parent):
                continue  # parent left out by a selection: up to date
            end = self.last(parent).end
            if end is None or end > first_child.start:
                bad.append(f"{child} started before {parent} finished")
        return bad

    def describe(self) -> str:
        """A short account for assertion messages."""
        jobs = ", ".join(f"{r.step}#{r.attempt}:{r.status}[{r.start}-{r.end}]" for r in self.jobs)
        return (f"{self.machine.key}: {self.status} error={self.error} statuses={self.statuses} "
                f"jobs=[{jobs}] cause={(self.cause or '')[:500]}")


def _create_resources() -> str:
    """Batch queue and job definitions matching the synthesized ARNs; returns a role ARN."""
    iam = boto3.client("iam", region_name=REGION)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": ["states.amazonaws.com",
                                                                               "batch.amazonaws.com"]}}]}
    role = iam.create_role(RoleName="pipelines", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    batch = boto3.client("batch", region_name=REGION)
    env = batch.create_compute_environment(computeEnvironmentName="pipelines-ce", type="UNMANAGED",
                                           state="ENABLED", serviceRole=role)
    queue = batch.create_job_queue(jobQueueName=QUEUE_NAME, state="ENABLED", priority=1,
                                   computeEnvironmentOrder=[{"order": 1,
                                                             "computeEnvironment": env["computeEnvironmentArn"]}])
    assert queue["jobQueueArn"] == QUEUE_ARN, queue["jobQueueArn"]
    for name in JOB_DEFINITIONS:
        jd = batch.register_job_definition(
            jobDefinitionName=f"pipelines-{name}", type="container",
            containerProperties={"image": "public.ecr.aws/docker/library/python:3.11-slim",
                                 "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                          {"type": "MEMORY", "value": "2048"}]})
        assert jd["jobDefinitionArn"] == job_definition_arn(name), jd["jobDefinitionArn"]
    return role


@dataclass
class Run:
    """One execution to start: the machine, its input, how its jobs end, its name (run id)."""

    machine: Machine
    input: Mapping[str, Any] | None = None
    batch: FakeBatch = field(default_factory=FakeBatch)
    name: str | None = None  # execution name; default "run-<position>"


def run_machine(machine: Machine, execution_input: Mapping[str, Any] | None = None, *,
                batch: FakeBatch | None = None, name: str = "run-1", timeout: float = 30.0) -> RunResult:
    """Run ``machine`` once in a fresh moto account and wait (at most ``timeout`` s) for its end."""
    return run_machines([Run(machine, execution_input, batch or FakeBatch(), name)], timeout=timeout)[0]


def run_machines(runs: Sequence[Run], *, timeout: float = 60.0) -> list[RunResult]:
    """Start every run at once in one fresh moto account and wait for all (``timeout`` in all).

    Runs share nothing but moto: each job is routed to its run's ``FakeBatch`` by the run id
    in its environment, so execution names must be unique. A run still going at the
    timeout is stopped and reported with status ``RUNNING``.
    """
    names = [r.name or f"run-{i + 1}" for i, r in enumerate(runs)]
    if len(set(names)) != len(names):
        raise ValueError(f"execution names must be unique across runs: {names}")
    by_name = {n: r.batch for n, r in zip(names, runs, strict=True)}
    stray = FakeBatch()

    def route(job: Job) -> None:
        env = {e["name"]: e["value"] for e in (job.container_overrides or {}).get("environment", [])}
        by_name.get(env.get(RUN_ID_ENV, ""), stray)(job)

    with patched_moto(route), mock_aws(config=MOTO_CONFIG):
        role = _create_resources()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arns: dict[str, str] = {}
        for run in runs:
            if run.machine.key not in arns:
                arns[run.machine.key] = sfn.create_state_machine(
                    name=_machine_name(run.machine.key, len(arns)), definition=run.machine.definition,
                    roleArn=role, type="STANDARD")["stateMachineArn"]
        started = time.monotonic()
        executions = [sfn.start_execution(stateMachineArn=arns[r.machine.key], name=n,
                                          input=json.dumps(dict(r.input or {})))["executionArn"]
                      for n, r in zip(names, runs, strict=True)]
        ends: dict[str, tuple[dict[str, Any], float]] = {}
        while len(ends) < len(executions):
            for arn in executions:
                if arn in ends:
                    continue
                desc = sfn.describe_execution(executionArn=arn)
                if desc["status"] != "RUNNING" or time.monotonic() - started > timeout:
                    ends[arn] = (desc, time.monotonic() - started)
            time.sleep(0.05)
        histories = {arn: _history(sfn, arn) for arn in executions}
        for arn, (desc, _) in ends.items():
            if desc["status"] == "RUNNING":
                sfn.stop_execution(executionArn=arn, error="aslrun.Timeout")
        for run in runs:
            run.batch.release()
    results = []
    for run, arn in zip(runs, executions, strict=True):
        desc, seconds = ends[arn]
        output = json.loads(desc["output"]) if desc.get("output") else None
        result = RunResult(machine=run.machine, input=dict(run.input or {}), status=desc["status"],
                           error=desc.get("error"), cause=desc.get("cause"), output=output,
                           history=histories[arn], jobs=list(run.batch.jobs), seconds=seconds,
                           ended_at=desc["stopDate"].timestamp() if desc.get("stopDate") else None)
        result.statuses = _statuses(result)
        results.append(result)
    assert not stray.jobs, f"jobs of no known run: {[j.request['job_name'] for j in stray.jobs]}"
    return results


def _machine_name(key: str, index: int) -> str:
    """A valid state machine name (1-80 of [A-Za-z0-9_-]) for a case key."""
    return f"m{index}-{_NOT_NAME.sub('-', key)}"[:80]


def _history(sfn: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        events.extend(page["events"])
    return events


def _statuses(result: RunResult) -> dict[str, dict[str, Any]]:
    """Step statuses from the output (run succeeded) or from the cause of ``PipelineStepsFailed``."""
    data: Any = None
    if isinstance(result.output, Mapping):
        data = result.output.get("st")
    elif result.error == RUN_FAILED_ERROR and result.cause:
        try:
            data = json.loads(result.cause)
        except json.JSONDecodeError:
            data = None
    return flatten_statuses(data) if isinstance(data, Mapping) else {}
