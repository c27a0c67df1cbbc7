"""The SQS backend's Batch jobs for one run: which jobs, in which order, waiting on which.

Pure data in, data out (no boto3), so the launcher (which enqueues the jobs) and the
consumer (which submits them) agree, and tests can check the graph without AWS.

A step's job waits on the jobs of its nearest *selected* ancestors: a step left out of
the selection counts as up to date but still orders the steps around it, as in the
state machine. Ancestors implied through another selected ancestor are dropped (Batch
chains them anyway). Batch takes at most 20 ``dependsOn`` entries, so a longer list
goes through "barrier" jobs, each waiting on ≤ 20 jobs, in as many levels as needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sfn_pipelines import cloud, jobs, limits, naming

BARRIER_ENV = "PIPELINE_BARRIER"
BARRIER_COMMAND = ["python", "-c", "pass"]  # a barrier only waits: any image with Python runs it


def job_messages(group: Mapping[str, Any], selected: Sequence[str], run_id: str,
                 args: Sequence[str] = ()) -> list[dict]:
    """One message per Batch job of ``group``'s selected steps, parents (and barriers)
    before the jobs that wait on them."""
    sel = set(selected)
    unknown = sel - {s["id"] for s in group["steps"]}
    if unknown:
        raise cloud.CloudError(f"group {group['name']} has no step(s) {', '.join(sorted(unknown))}")
    steps = {s["id"]: s for s in group["steps"]}
    ancestors: dict[str, set[str]] = {}  # step -> its selected ancestors
    messages: list[dict] = []
    for sid in cloud.topological_order(group):
        anc: set[str] = set()
        for p in steps[sid].get("depends_on", []):
            anc |= ancestors[p]
            if p in sel:
                anc.add(p)
        ancestors[sid] = anc
        if sid not in sel:
            continue
        nearest = sorted(a for a in anc if not any(a in ancestors[b] for b in anc))
        queue = steps[sid]["job"]["queue"]
        after = [{"job": naming.job_name(p, run_id), "queue": steps[p]["job"]["queue"]} for p in nearest]
        after = _through_barriers(after, sid, queue, run_id, group["name"], messages)
        messages.append({"run": run_id, "group": group["name"], "step": sid, "job": naming.job_name(sid, run_id),
                         "queue": queue, "after": after, "args": list(args)})
    return messages


def _through_barriers(after: list[dict], child: str, queue: str, run_id: str, group: str,
                      messages: list[dict]) -> list[dict]:
    level = 0
    while len(after) > limits.BATCH_DEPENDS_ON_MAX:
        level += 1
        chunks = [after[i:i + limits.BATCH_DEPENDS_ON_MAX] for i in range(0, len(after), limits.BATCH_DEPENDS_ON_MAX)]
        after = []
        for i, chunk in enumerate(chunks, 1):
            # "-" never occurs in step ids, so barrier names cannot clash with steps.
            name = naming.job_name(f"{naming.fit(child, 32)}-b{level}-{i}", run_id)
            messages.append({"run": run_id, "group": group, "step": None, "barrier_for": child, "job": name,
                             "queue": queue, "after": chunk, "args": []})
            after.append({"job": name, "queue": queue})
    return after


def submit_kwargs(message: Mapping[str, Any], plan: Mapping[str, Any], arns: Mapping[str, Mapping[str, str]],
                  depends_on: Sequence[str]) -> dict:
    """``batch.submit_job`` arguments for one message: what the state machine's
    BatchSubmitJob task sends for the same step (name, definition, queue, overrides,
    tags, timeout), plus ``dependsOn``. ``arns``: {"definitions": {name: arn},
    "queues": {"" (default) or name: arn}}."""
    run_id = message["run"]
    deps = [{"jobId": j} for j in depends_on]
    if len(deps) > limits.BATCH_DEPENDS_ON_MAX:
        raise cloud.CloudError(f"{message['job']}: {len(deps)} dependencies, over Batch's "
                               f"{limits.BATCH_DEPENDS_ON_MAX} (the launcher should have added barriers)")
    queue = arn_for(arns["queues"], message["queue"], "job queue")
    tags_run = {jobs.RUN_ID_TAG: run_id}
    if message.get("step") is None:  # a barrier
        definition = arn_for(arns["definitions"], plan.get("default_job_definition", ""), "job definition")
        kwargs = {"jobName": message["job"], "jobQueue": queue, "jobDefinition": definition,
                  "containerOverrides": {"command": BARRIER_COMMAND,
                                         "environment": [{"name": BARRIER_ENV, "value": "1"},
                                                         {"name": jobs.RUN_ID_ENV, "value": run_id}]},
                  "tags": tags_run}
    else:
        job = _step(plan, message["group"], message["step"])["job"]
        env = jobs.run_environment(_spec(message["step"], job), run_id, message.get("args") or [])
        overrides: dict[str, Any] = {"environment": [{"name": k, "value": v} for k, v in env.items()]}
        resources = [{"type": t, "value": _num(v)} for t, v in
                     (("GPU", job.get("gpus")), ("MEMORY", job.get("memory")), ("VCPU", job.get("vcpus"))) if v]
        if resources:
            overrides["resourceRequirements"] = resources
        kwargs = {"jobName": message["job"], "jobQueue": queue,
                  "jobDefinition": arn_for(arns["definitions"], job["definition"], "job definition"),
                  "containerOverrides": overrides, "tags": {**job.get("tags", {}), **tags_run}}
        if job.get("timeout_minutes"):
            kwargs["timeout"] = {"attemptDurationSeconds": int(job["timeout_minutes"]) * 60}
        if job.get("retries"):
            # The state machine resubmits a failed job `retries` times; here Batch retries it in
            # place. This replaces the definition's retry strategy for this job.
            kwargs["retryStrategy"] = {"attempts": min(limits.BATCH_ATTEMPTS_MAX, 1 + int(job["retries"]))}
    if deps:
        kwargs["dependsOn"] = deps
    return kwargs


def _spec(step: str, job: Mapping[str, Any]) -> jobs.JobSpec:
    """The plan's job back as the JobSpec the state machine was built from."""
    return jobs.JobSpec(step=step, job_definition=job["definition"], job_queue=job["queue"] or None,
                        environment=dict(job["environment"]), vcpus=job.get("vcpus"), memory=job.get("memory"),
                        gpus=job.get("gpus"), timeout_minutes=job.get("timeout_minutes"),
                        retries=job.get("retries") or 0, tags=dict(job.get("tags") or {}))


def _step(plan: Mapping[str, Any], group: str, step: str) -> Mapping[str, Any]:
    for s in cloud.plan_group(plan, group)["steps"]:
        if s["id"] == step:
            return s
    raise cloud.CloudError(f"group {group} has no step {step} in the launch plan")


def arn_for(arns: Mapping[str, str], key: str, what: str) -> str:
    try:
        return arns[key]
    except KeyError:
        raise cloud.CloudError(f"no {what} {key or '(default)'!r} configured for the launcher "
                               f"(known: {', '.join(k or '(default)' for k in arns) or 'none'})") from None


def _num(value: float | int) -> str:
    """Numbers as the state machine renders them (JavaScript): 2.0 -> "2", 0.5 -> "0.5"."""
    return str(int(value)) if float(value).is_integer() else str(value)
