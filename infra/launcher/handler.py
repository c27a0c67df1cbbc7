"""Launcher Lambda: start, resume or show a run of the deployed pipelines.

Requests (one JSON object; the answer always says ``"ok"``, a bad request never raises):

- start: ``{"select": [patterns], "run_id"?: str, "args"?: [str], "dry_run"?: bool}``;
  patterns name pipelines, groups or steps, globs allowed; none = everything.
- resume: ``{"resume": execution ARN (or run id in sqs mode), "run_id"?: str, "dry_run"?: bool}``
- status: ``{"status": execution ARN or run id}``

``EXECUTION_MODE`` picks the backend: ``step_functions`` starts one execution per selected
group, named after the run id, so a repeated request starts nothing new; ``sqs`` enqueues
the selected steps' Batch jobs, parents first, on a FIFO queue for ``consumer.py``.

Slim on purpose: boto3 from the runtime plus a few stdlib-only modules of sfn_pipelines;
the graph comes from ``plan.json``, written next to this file at synth time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jobgraph
from settings import Clients, Config

from sfn_pipelines import cloud, naming
from sfn_pipelines.selection import execution_input, select_steps

SQS_BATCH_MAX = 10  # SendMessageBatch entries

_CONFIG: Config | None = None
_CLIENTS = Clients()


def handler(event: Any, context: Any = None, *, config: Config | None = None, clients: Clients | None = None) -> dict:
    """Lambda entry point. ``config``/``clients`` are for tests."""
    global _CONFIG
    try:
        if config is None:
            _CONFIG = _CONFIG or Config.from_env()
            config = _CONFIG
        return Launcher(config, clients or _CLIENTS).handle(event)
    except (cloud.CloudError, ValueError) as e:
        return {"ok": False, "error": str(e)}
    except Exception as e:  # AWS said no (permissions, throttling...): answer, do not crash
        code = getattr(e, "response", {}).get("Error", {}).get("Code")
        if code is None:
            raise
        return {"ok": False, "error": f"{code}: {e}"}


class Launcher:
    def __init__(self, config: Config, clients: Clients) -> None:
        self.config = config
        self.clients = clients

    def handle(self, event: Any) -> dict:
        if isinstance(event, str):
            try:
                event = json.loads(event)
            except ValueError as e:
                raise cloud.CloudError(f"the request is not JSON: {e}") from None
        if not isinstance(event, dict):
            raise cloud.CloudError("the request must be a JSON object")
        known = {"select", "run_id", "args", "dry_run", "resume", "status"}
        unknown = sorted(set(event) - known)
        if unknown:
            raise cloud.CloudError(f"unknown request key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "status" in event:
            return self.status(_text(event, "status"))
        if "resume" in event:
            return self.resume(_text(event, "resume"), event.get("run_id"), bool(event.get("dry_run")))
        return self.start(_strings(event, "select"), event.get("run_id"), _strings(event, "args", one_ok=False),
                          bool(event.get("dry_run")))

    # --- start ----------------------------------------------------------------------------
    def start(self, patterns: list[str], run_id: str | None, args: list[str], dry_run: bool) -> dict:
        run = cloud.normalize_run_id(run_id) if run_id else cloud.new_run_id()
        selection = {g: ids for g, ids in select_steps(self.config.plan["groups"], patterns).items() if ids}
        if not selection:
            raise cloud.CloudError(f"nothing matches {' '.join(patterns)}")
        if self.config.mode == "sqs":
            return self._enqueue(selection, run, args, dry_run)
        groups = []
        for name, ids in sorted(selection.items()):
            group_steps = [s["id"] for s in cloud.plan_group(self.config.plan, name)["steps"]]
            payload = dict(execution_input(ids, group_steps=group_steps))
            if args:
                payload["args"] = args
            groups.append((name, ids, payload))
        return self._start_executions(run, groups, dry_run)

    def _start_executions(self, run: str, groups: list[tuple[str, list[str], dict]], dry_run: bool) -> dict:
        sfn = None if dry_run else self.clients("stepfunctions")
        out = []
        for name, ids, payload in groups:
            arn = self._machine(name)
            entry = {"group": name, "state_machine_arn": arn, "steps": ids, "input": payload}
            if not dry_run:
                entry.update(cloud.start_execution(sfn, arn, run, payload))
            out.append(entry)
        return {"ok": True, "mode": "step_functions", "run_id": run, "dry_run": dry_run, "executions": out}

    def _enqueue(self, selection: Mapping[str, list[str]], run: str, args: list[str], dry_run: bool) -> dict:
        messages = []
        for name, ids in sorted(selection.items()):
            messages += jobgraph.job_messages(cloud.plan_group(self.config.plan, name), ids, run, args)
        if not dry_run:
            if not self.config.queue_url:
                raise cloud.CloudError("QUEUE_URL is not set: this launcher was not deployed in sqs mode")
            sqs = self.clients("sqs")
            for i in range(0, len(messages), SQS_BATCH_MAX):
                chunk = messages[i:i + SQS_BATCH_MAX]
                r = sqs.send_message_batch(QueueUrl=self.config.queue_url, Entries=[
                    {"Id": str(n), "MessageBody": json.dumps(m, sort_keys=True), "MessageGroupId": run,
                     "MessageDeduplicationId": m["job"]} for n, m in enumerate(chunk)])
                if r.get("Failed"):  # stop here: later jobs would wait on ones never queued
                    f = r["Failed"][0]
                    raise cloud.CloudError(f"queueing {chunk[int(f['Id'])]['job']} failed: {f.get('Message')}; "
                                           f"{i + int(f['Id'])} of {len(messages)} jobs queued, repeat the request")
        return {"ok": True, "mode": "sqs", "run_id": run, "dry_run": dry_run,
                "steps": {g: ids for g, ids in sorted(selection.items())},
                "jobs": [m["job"] for m in messages],
                "barriers": sum(1 for m in messages if m["step"] is None)}

    # --- resume -------------------------------------------------------------------------------
    def resume(self, target: str, run_id: str | None, dry_run: bool) -> dict:
        if cloud.is_execution_arn(target):
            rr = cloud.resume_request(self.clients("stepfunctions"), target, run_id)
            group = next((g for g, arn in self.config.state_machines.items() if arn == rr["state_machine_arn"]), None)
            if group is None:
                raise cloud.CloudError(f"{target} is not a run of this launcher's state machines")
            answer = {"ok": True, "mode": "step_functions", "resumes": target, "steps": rr["steps"]}
            if not rr["steps"]:
                return {**answer, "run_id": None, "message": "nothing to resume: every selected step succeeded"}
            started = self._start_executions(rr["name"], [(group, rr["steps"], rr["input"])], dry_run)
            return {**started, **answer, "run_id": rr["name"]}
        if self.config.mode != "sqs":
            raise cloud.CloudError(f"resume takes an execution ARN (arn:aws:states:...:execution:...); got {target!r}")
        old = cloud.normalize_run_id(target)
        report = self._batch_status(old)
        if report["status"] == "NOT_FOUND":
            raise cloud.CloudError(f"no Batch jobs found for run {old}")
        if report["status"] == "RUNNING":
            raise cloud.CloudError(f"run {old} is still running: wait for it to end before resuming")
        todo = [s for s, st in report["steps"].items() if st["status"] != "SUCCEEDED"]
        run = cloud.normalize_run_id(run_id) if run_id else cloud.resume_run_id(old)
        if not todo:
            return {"ok": True, "mode": "sqs", "resumes": old, "run_id": None, "steps": {},
                    "message": "nothing to resume: every step succeeded"}
        group_of = {s["id"]: g["name"] for g in self.config.plan["groups"] for s in g["steps"]}
        selection: dict[str, list[str]] = {}
        for s in todo:
            selection.setdefault(group_of[s], []).append(s)
        return {**self._enqueue(selection, run, [], dry_run), "resumes": old}

    # --- status ---------------------------------------------------------------------------------
    def status(self, target: str) -> dict:
        if cloud.is_execution_arn(target):
            return {"ok": True, "mode": "step_functions",
                    "executions": [cloud.execution_report(self.clients("stepfunctions"), target)]}
        run = cloud.normalize_run_id(target)
        if self.config.mode == "sqs":
            return {"ok": True, "mode": "sqs", **self._batch_status(run)}
        sfn = self.clients("stepfunctions")
        machines = self.config.state_machines
        reports = cloud.run_reports(sfn, [machines[group] for group in sorted(machines)], run)
        if not reports:
            raise cloud.CloudError(f"no execution named {run} in this launcher's state machines")
        return {"ok": True, "mode": "step_functions", "run_id": run, "executions": reports}

    def _batch_status(self, run: str) -> dict:
        jobs = cloud.run_jobs(self.clients("batch"), self.config.arns["queues"].values(), run)
        names = {naming.job_name(s["id"], run): s["id"] for g in self.config.plan["groups"] for s in g["steps"]}
        return cloud.batch_report(jobs, run, names)

    def _machine(self, group: str) -> str:
        try:
            return self.config.state_machines[group]
        except KeyError:
            raise cloud.CloudError(f"no state machine for group {group} in this launcher's configuration") from None


def _text(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value.strip():
        raise cloud.CloudError(f"{key} must be a non-empty string")
    return value.strip()


def _strings(event: Mapping[str, Any], key: str, *, one_ok: bool = True) -> list[str]:
    """A list of strings; one string is a list of one where that cannot be ambiguous."""
    value = event.get(key) or []
    if isinstance(value, str) and one_ok:
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise cloud.CloudError(f"{key} must be a list of strings")
    return [str(v) for v in value]
