"""Start, inspect and resume runs in AWS: shared by the CLI and the launcher Lambda.

Standard library only, and boto3 clients are passed in, so the Lambda ships this file
as is (its cold start stays small) and tests hand in moto clients. Nothing here loads a
pipelines folder: what a run needs of the graph comes as a *launch plan*, the
``plan --json`` groups plus each step's Batch job, written at synth time (``launch_plan``).

Run ids double as Step Functions execution names and as the suffix of every Batch job
name (``naming.job_name``), so a run id is normalized once, here, for both backends.
"""

from __future__ import annotations

import heapq
import json
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sfn_pipelines import limits, naming

PLAN_VERSION = 1
RUN_FAILED_ERROR = "PipelineStepsFailed"  # = state_machine.RUN_FAILED_ERROR
ENV_REF = "$env"  # plan.json value {"$env": NAME}: a deploy-time value kept in the Lambda environment
BATCH_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
FINISHED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")

_NOT_RUN_ID = re.compile(r"[^A-Za-z0-9_-]+")  # execution names valid with CloudWatch logging on
_RESUMED = re.compile(r"^(?P<base>.+)-r(?P<n>\d+)$")


class CloudError(Exception):
    """A request that cannot be carried out: bad input or an unexpected AWS state."""


# --- run ids ---------------------------------------------------------------------
def normalize_run_id(run_id: str) -> str:
    """A valid execution name (≤ 80 of ``[A-Za-z0-9_-]``): invalid characters become ``-``,
    long ids are truncated with a hash so two long ids stay distinct."""
    text = _NOT_RUN_ID.sub("-", str(run_id).strip()).strip("-")
    if not text:
        raise CloudError(f"run id {run_id!r} has no letters or digits")
    return naming.fit(text, limits.EXECUTION_NAME_MAX, str(run_id))


def new_run_id() -> str:
    """A fresh, sortable run id: ``run-20260131T120000Z-3fa9c1``."""
    return time.strftime("run-%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def resume_run_id(previous: str) -> str:
    """``<run>-r1`` for the first resume of ``<run>``, then ``-r2``...: repeatable, so a
    repeated resume request finds the run it started instead of starting another."""
    m = _RESUMED.match(previous)
    base, n = (m["base"], int(m["n"]) + 1) if m else (previous, 1)
    suffix = f"-r{n}"
    return naming.fit(base, limits.EXECUTION_NAME_MAX - len(suffix), previous) + suffix


# --- the launch plan -----------------------------------------------------------------
def launch_plan(workflows: Iterable[Any], specs: Mapping[str, Mapping[str, Any]], *,
                default_job_definition: str, state_machine_names: Mapping[str, str] | None = None) -> dict:
    """What the launcher knows of the graph: ``plan --json`` groups (without the structure)
    plus each step's Batch job (``jobs.JobSpec`` fields; definition and queue by *name*,
    their ARNs are deploy-time values). ``specs``: group -> step id -> JobSpec."""
    groups = []
    for w in workflows:
        g = w.to_dict()
        for key in [k for k in g if k == "structure" or k.startswith("estimated_")]:
            g.pop(key)  # the Lambda has no use for them; the structure can be large
        if state_machine_names and w.name in state_machine_names:
            g["state_machine"] = state_machine_names[w.name]
        for step in g["steps"]:
            s = specs[w.name][step["id"]]
            step["job"] = {
                "definition": s.job_definition or default_job_definition,
                "queue": s.job_queue or "",
                "environment": dict(s.environment),
                "tags": dict(s.tags),
                "vcpus": s.vcpus, "memory": s.memory, "gpus": s.gpus,
                "timeout_minutes": s.timeout_minutes, "retries": s.retries,
            }
        groups.append(g)
    return {"version": PLAN_VERSION, "default_job_definition": default_job_definition, "groups": groups}


def resolve_env_refs(value: Any, env: Mapping[str, str]) -> Any:
    """Replace ``{"$env": NAME}`` placeholders with ``env[NAME]`` (deploy-time values)."""
    if isinstance(value, dict):
        if set(value) == {ENV_REF}:
            return env[value[ENV_REF]]
        return {k: resolve_env_refs(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_refs(v, env) for v in value]
    return value


def plan_group(plan: Mapping[str, Any], name: str) -> dict:
    for g in plan["groups"]:
        if g["name"] == name:
            return g
    raise CloudError(f"no dependency group named {name!r} in the launch plan")


def topological_order(group: Mapping[str, Any]) -> list[str]:
    """Step ids parents-first; ties by id, so the order is the same on every call."""
    parents = {s["id"]: set(s.get("depends_on", [])) for s in group["steps"]}
    children: dict[str, list[str]] = {sid: [] for sid in parents}
    for sid, ps in parents.items():
        for p in ps:
            children[p].append(sid)
    waiting = {sid: len(ps) for sid, ps in parents.items()}
    ready = [sid for sid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        sid = heapq.heappop(ready)
        order.append(sid)
        for c in children[sid]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, c)
    if len(order) != len(parents):
        raise CloudError(f"group {group['name']}: the launch plan has a dependency cycle")
    return order


# --- Step Functions ------------------------------------------------------------------
def execution_arn(state_machine_arn: str, name: str) -> str:
    """arn:...:stateMachine:M -> arn:...:execution:M:<name> (where StartExecution puts it)."""
    head, sep, machine = state_machine_arn.rpartition(":stateMachine:")
    if not sep:
        raise CloudError(f"not a state machine ARN: {state_machine_arn}")
    return f"{head}:execution:{machine}:{name}"


def machine_arn_of(execution: str) -> str:
    head, sep, rest = execution.rpartition(":execution:")
    if not sep or ":" not in rest:
        raise CloudError(f"not an execution ARN: {execution}")
    return f"{head}:stateMachine:{rest.split(':', 1)[0]}"


def is_execution_arn(text: str) -> bool:
    return text.startswith("arn:") and ":execution:" in text


def start_execution(sfn: Any, state_machine_arn: str, name: str, payload: Mapping[str, Any]) -> dict:
    """Start ``name`` unless it exists: a repeated request reports the existing run.

    Looking first makes the answer truthful (StartExecution itself returns the running
    execution for a repeat with identical input, and ExecutionAlreadyExists otherwise).
    """
    arn = execution_arn(state_machine_arn, name)
    existing = _describe_or_none(sfn, arn)
    if existing is None:
        try:
            arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name,
                                      input=json.dumps(payload, sort_keys=True, separators=(",", ":")))["executionArn"]
            return {"execution_arn": arn, "status": "RUNNING", "started": True}
        except sfn.exceptions.ExecutionAlreadyExists:
            existing = _describe_or_none(sfn, arn)  # lost a race with an identical request
            if existing is None:
                raise
    return {"execution_arn": arn, "status": existing["status"], "started": False}


def _describe_or_none(sfn: Any, arn: str) -> dict | None:
    try:
        return sfn.describe_execution(executionArn=arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        return None


def execution_input(description: Mapping[str, Any]) -> dict:
    try:
        data = json.loads(description.get("input") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def definition_steps(definition: str | Mapping[str, Any]) -> list[str]:
    """Step ids of a generated machine: its Batch task states are named after the steps."""
    data = json.loads(definition) if isinstance(definition, str) else definition
    found: list[str] = []

    def walk(states: Mapping[str, Any]) -> None:
        for name, state in states.items():
            if state.get("Type") == "Task" and ":batch:submitJob" in str(state.get("Resource", "")):
                found.append(name)
            for branch in state.get("Branches", []):
                walk(branch.get("States", {}))

    walk(data.get("States", {}))
    return sorted(found)


def history_events(sfn: Any, execution: str) -> Iterator[dict]:
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=execution):
        yield from page["events"]


def history_statuses(events: Iterable[Mapping[str, Any]], steps: Iterable[str]) -> dict[str, dict]:
    """Per-step status from an execution history, whatever the failure mode.

    Each event is traced back (``previousEventId``) to the state it belongs to; the last
    thing that happened to a step's states wins: ``Approve <id>`` entered -> WAITING_APPROVAL,
    its task scheduled -> RUNNING, succeeded/failed -> SUCCEEDED/FAILED (a retry schedules
    again), ``Skip``/``Failed <id>`` entered -> SKIPPED/FAILED.
    """
    steps = set(steps)
    state_of: dict[int, str] = {}
    out: dict[str, dict] = {}
    for e in events:
        entered = e.get("stateEnteredEventDetails")
        state = entered["name"] if entered else state_of.get(e.get("previousEventId", 0), "")
        state_of[e["id"]] = state
        kind = e["type"]
        prefix, _, rest = state.partition(" ")
        step = state if state in steps else (rest if rest in steps else None)
        if step is None:
            continue
        status = out.setdefault(step, {"status": "PENDING"})
        if prefix == "Skip" and entered:
            status.update(status="SKIPPED")
        elif prefix == "Failed" and entered:
            status["status"] = "FAILED"
        elif prefix == "Approve" and kind == "TaskScheduled":
            status["status"] = "WAITING_APPROVAL"
        elif prefix == "Approve" and kind == "TaskFailed":
            status.update(status="FAILED", error=e.get("taskFailedEventDetails", {}).get("error"))
        elif state == step and kind == "TaskScheduled":
            status["status"] = "RUNNING"
        elif state == step and kind in ("TaskSubmitted", "TaskSucceeded"):
            details = e.get("taskSubmittedEventDetails") or e.get("taskSucceededEventDetails") or {}
            job = _job_id(details.get("output"))
            if job:
                status["job"] = job
            if kind == "TaskSucceeded":
                status["status"] = "SUCCEEDED"
        elif state == step and kind in ("TaskFailed", "TaskTimedOut"):
            details = e.get("taskFailedEventDetails") or e.get("taskTimedOutEventDetails") or {}
            status.update(status="FAILED", error=details.get("error"))
    return out


def _job_id(output: str | None) -> str | None:
    try:
        data = json.loads(output or "null")
    except ValueError:
        return None
    return data.get("JobId") if isinstance(data, dict) else None


def cause_statuses(description: Mapping[str, Any]) -> dict[str, dict] | None:
    """Statuses from an isolate-mode run's failure cause (the JSON of ``$.st``), if any."""
    if description.get("error") != RUN_FAILED_ERROR:
        return None
    try:
        st = json.loads(description.get("cause") or "")
    except ValueError:  # e.g. cut at the Fail state's 32,768 characters
        return None
    from sfn_pipelines.layout import flatten_statuses  # only here: it pulls in the planner module

    return flatten_statuses(st) if isinstance(st, dict) else None


def execution_report(sfn: Any, execution: str) -> dict:
    """Run status and every step's state: history for running or stopped runs, the
    failure cause (exact, cheap) for runs that ended in "Run failed"."""
    d = sfn.describe_execution(executionArn=execution)
    machine = sfn.describe_state_machine_for_execution(executionArn=execution)
    steps = definition_steps(machine["definition"])
    data = execution_input(d)
    selected = set(data["select"]) if isinstance(data.get("select"), dict) else set(steps)
    events = list(history_events(sfn, execution))
    statuses = cause_statuses(d)
    if statuses is None:
        statuses = history_statuses(events, steps)
    report = {}
    for s in steps:
        st = dict(statuses.get(s) or {})
        if s not in selected:
            st = {"status": "NOT_SELECTED"}
        elif not st:
            st = {"status": "NOT_STARTED" if d["status"] in FINISHED else "PENDING"}
        elif st.get("status") in ("RUNNING", "PENDING", "WAITING_APPROVAL") and d["status"] in FINISHED:
            st["status"] = "ABORTED"
        st.pop("halt", None)
        report[s] = st
    return {"execution_arn": execution, "state_machine_arn": machine.get("stateMachineArn"),
            "run_id": d.get("name"), "status": d["status"], "input": data, "steps": report,
            "transitions": measured_transitions(events)}


def measured_transitions(events: Iterable[Mapping[str, Any]]) -> int:
    """Billed state transitions so far: one per state entered (retries re-enter nothing but
    are billed too: each retry of a Task is counted from its extra TaskScheduled)."""
    entered = scheduled = tasks = 0
    for e in events:
        kind = e.get("type", "")
        if kind.endswith("StateEntered"):
            entered += 1
            tasks += kind == "TaskStateEntered"
        elif kind == "TaskScheduled":
            scheduled += 1
    return entered + max(0, scheduled - tasks)


def add_job_durations(batch: Any, steps: Mapping[str, dict]) -> None:
    """Add each step's Batch job duration (seconds, start to stop) where Batch still knows it."""
    by_job = {st["job"]: st for st in steps.values() if st.get("job")}
    ids = sorted(by_job)
    for i in range(0, len(ids), 100):  # DescribeJobs takes at most 100 ids
        for job in batch.describe_jobs(jobs=ids[i:i + 100]).get("jobs", []):
            started, stopped = job.get("startedAt"), job.get("stoppedAt")
            if started and stopped:
                by_job[job["jobId"]]["seconds"] = round((stopped - started) / 1000, 1)


def run_reports(sfn: Any, machine_arns: Iterable[str], run: str) -> list[dict]:
    """``execution_report`` of the execution named ``run`` in each machine that has one."""
    reports = []
    for arn in machine_arns:
        try:
            reports.append(execution_report(sfn, execution_arn(arn, run)))
        except sfn.exceptions.ExecutionDoesNotExist:
            continue
    return reports


def resume_request(sfn: Any, execution: str, run_id: str | None = None) -> dict:
    """What a resume of ``execution`` starts: the same machine, a new run of the steps the
    old run selected and did not finish (FAILED, SKIPPED, ABORTED, never started).

    Unlike RedriveExecution this starts a new execution (new run id, new Batch jobs), so
    it also works after ``stop_all`` runs, after 14 days and after a redeploy.
    """
    report = execution_report(sfn, execution)
    if report["status"] not in FINISHED:
        raise CloudError(f"{execution} is still {report['status']}: wait for it to end (or stop it) before resuming")
    todo = sorted(s for s, st in report["steps"].items() if st["status"] not in ("SUCCEEDED", "NOT_SELECTED"))
    name = normalize_run_id(run_id) if run_id else resume_run_id(report["run_id"])
    payload: dict[str, Any] = {"select": {s: True for s in todo}}
    if report["input"].get("args"):
        payload["args"] = report["input"]["args"]
    return {"state_machine_arn": report["state_machine_arn"] or machine_arn_of(execution), "name": name,
            "input": payload, "steps": todo, "previous": {"execution_arn": execution, "status": report["status"]}}


# --- Batch (the SQS backend) -----------------------------------------------------------
def paginate(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[dict]:
    """Every item of a paged call; every list call here goes through this."""
    token = None
    while True:
        page = getattr(client, operation)(**kwargs, **({"nextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("nextToken")
        if not token:
            return


def find_jobs(batch: Any, queue: str, job_name: str) -> list[dict]:
    """Jobs named exactly ``job_name`` in ``queue``, any status, newest first."""
    jobs = paginate(batch, "list_jobs", "jobSummaryList", jobQueue=queue,
                    filters=[{"name": "JOB_NAME", "values": [job_name]}])
    same = [j for j in jobs if j["jobName"].lower() == job_name.lower()]
    return sorted(same, key=lambda j: j.get("createdAt", 0), reverse=True)


def run_jobs(batch: Any, queues: Iterable[str], run_id: str) -> dict[str, dict]:
    """The run's jobs by name (newest wins). Batch cannot filter on a name suffix and lists
    one status at a time without a filter, so: one paginated listing per status."""
    suffix = "--" + normalize_run_id(run_id)
    found: dict[str, dict] = {}
    for queue in sorted(set(queues)):
        for status in BATCH_STATUSES:
            for j in paginate(batch, "list_jobs", "jobSummaryList", jobQueue=queue, jobStatus=status):
                if j["jobName"].endswith(suffix):
                    old = found.get(j["jobName"])
                    if old is None or j.get("createdAt", 0) >= old.get("createdAt", 0):
                        found[j["jobName"]] = j
    return found


def batch_report(jobs: Mapping[str, Mapping[str, Any]], run_id: str,
                 names: Mapping[str, str] | None = None) -> dict:
    """Per-step states of an SQS-mode run from its Batch jobs (``run_jobs``).

    A job whose dependency failed is FAILED in Batch although it never ran; it is shown
    as SKIPPED (``batch_status`` FAILED, with the reason Batch gave), like the state
    machine's "Skip" states. Barrier jobs are left out. ``names``: job name -> step id,
    for ids cut short in job names.
    """
    suffix = "--" + normalize_run_id(run_id)
    steps: dict[str, dict] = {}
    for name, j in jobs.items():
        step_part = name[: -len(suffix)]
        if "-" in step_part:  # a barrier: step ids never contain "-"
            continue
        status = j["status"]
        reason = j.get("statusReason") or ""
        entry = {"status": status, "job": j["jobId"]}
        if status == "FAILED" and "depend" in reason.lower():
            entry.update(status="SKIPPED", batch_status="FAILED", reason=reason)
        elif status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING"):
            entry.update(status="PENDING", batch_status=status)
        elif reason:
            entry["reason"] = reason
        steps[(names or {}).get(name, step_part)] = entry
    states = {s["status"] for s in steps.values()}
    overall = ("NOT_FOUND" if not steps else "RUNNING" if states & {"PENDING", "RUNNING"}
               else "FAILED" if states & {"FAILED", "SKIPPED"} else "SUCCEEDED")
    return {"run_id": normalize_run_id(run_id), "status": overall, "steps": dict(sorted(steps.items()))}
