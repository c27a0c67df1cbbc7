"""Cloud commands: ``start``, ``status`` and ``resume`` runs in AWS.

``start`` goes through the deployed launcher Lambda (``--via-launcher``, either backend)
or starts the state machines directly (``--state-machine-prefix``: the stack name the
default app prefixes machine names with). ``status`` and ``resume`` take an execution
ARN directly; a run id needs the launcher, the machines' prefix or the job queue.
boto3 is imported only when a command runs; ``client_factory`` is replaced by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from sfn_pipelines import cloud
from sfn_pipelines.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, _load, split_script_args
from sfn_pipelines.limits import PRICE_PER_TRANSITION_USD
from sfn_pipelines.selection import execution_input, select_steps

LAUNCHER_ENV = "SFN_PIPELINES_LAUNCHER"  # default for --via-launcher


def _boto3_client(service: str, region: str | None = None) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


client_factory: Callable[..., Any] = _boto3_client


# --- parsers -----------------------------------------------------------------------------
def add_start(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("start", help="start a run in AWS (through the launcher, or the state machines directly)",
                       description="Start a run. Script args go after `--`: start DIR --select x -- --epochs 3")
    p.add_argument("dir", metavar="DIR", nargs="?", default="pipelines",
                   help="the pipelines folder, for direct starts (default: pipelines)")
    p.add_argument("--select", metavar="PATTERN", action="extend", nargs="+", default=[],
                   help="pipelines, groups or steps to run: names or globs such as '*caco2*' (default: all)")
    p.add_argument("--run-id", metavar="ID", help="name of the run; the same id never starts twice (default: new)")
    _add_target(p, prefix_help="start the machines <STACK>-<group> directly, as deployed from DIR")
    p.add_argument("--dry-run", action="store_true", help="show what would start, start nothing")
    _common(p)
    split_script_args(p)
    p.set_defaults(func=cmd_start)


def add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="per-step state of a run (execution ARN, or run id with a target)")
    p.add_argument("target", metavar="RUN_ID_OR_EXECUTION_ARN")
    _add_target(p, prefix_help="look for the run in the machines named <STACK>-*")
    p.add_argument("--job-queue", metavar="ARN", action="append", default=[],
                   help="sqs mode without the launcher: the Batch queue(s) the run's jobs are in")
    _common(p)
    p.set_defaults(func=cmd_status)


def add_resume(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="start a new run of the failed, skipped and unfinished steps of a run")
    p.add_argument("target", metavar="EXECUTION_ARN", help="a finished execution (or, via an sqs launcher, a run id)")
    p.add_argument("--run-id", metavar="ID", help="name of the new run (default: <old run>-r<N>)")
    p.add_argument("--via-launcher", metavar="FUNCTION", default=os.environ.get(LAUNCHER_ENV),
                   help=f"resume through the launcher Lambda (default: ${LAUNCHER_ENV}, else directly)")
    p.add_argument("--dry-run", action="store_true", help="show what would start, start nothing")
    _common(p)
    p.set_defaults(func=cmd_resume)


def _add_target(p: argparse.ArgumentParser, prefix_help: str) -> None:
    how = p.add_mutually_exclusive_group()
    how.add_argument("--via-launcher", metavar="FUNCTION", default=os.environ.get(LAUNCHER_ENV),
                     help=f"the launcher Lambda's name or ARN (default: ${LAUNCHER_ENV})")
    how.add_argument("--state-machine-prefix", metavar="STACK", help=prefix_help)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("--region", help="AWS region (default: from the AWS environment)")


# --- commands ------------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    if args.via_launcher and not args.state_machine_prefix:
        request: dict[str, Any] = {"select": args.select}
        if args.run_id:
            request["run_id"] = args.run_id
        if args.script_args:
            request["args"] = args.script_args
        if args.dry_run:
            request["dry_run"] = True
        return _call(args, lambda: _invoke(args, request), _print_start)
    if not args.state_machine_prefix:
        raise UsageError(f"say how to start: --via-launcher FUNCTION (or ${LAUNCHER_ENV}) or "
                         "--state-machine-prefix STACK")
    pipeline_set = _load(args.dir)
    groups = [w.to_dict() for w in pipeline_set.workflows]
    try:
        selection = select_steps(groups, args.select)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return _call(args, lambda: _start_direct(args, groups, selection), _print_start)


def _start_direct(args: argparse.Namespace, groups: list[dict], selection: Mapping[str, list[str]]) -> dict:
    sfn = client_factory("stepfunctions", args.region)
    machines = _machines_by_prefix(sfn, args.state_machine_prefix)
    run = cloud.normalize_run_id(args.run_id) if args.run_id else cloud.new_run_id()
    out = []
    for g in groups:
        ids = selection.get(g["name"])
        if not ids:
            continue
        arn = machines.get(f"{args.state_machine_prefix}-{g['name']}")
        if arn is None:
            raise cloud.CloudError(f"no state machine named {args.state_machine_prefix}-{g['name']}: deploy "
                                   f"{args.dir} first, or check --state-machine-prefix")
        payload = dict(execution_input(ids, group_steps=[s["id"] for s in g["steps"]]))
        if args.script_args:
            payload["args"] = args.script_args  # every job gets them as PIPELINE_RUN_ARGS
        entry = {"group": g["name"], "state_machine_arn": arn, "steps": ids, "input": payload}
        if not args.dry_run:
            entry.update(cloud.start_execution(sfn, arn, run, payload))
        out.append(entry)
    return {"ok": True, "mode": "step_functions", "run_id": run, "dry_run": args.dry_run, "executions": out}


def cmd_status(args: argparse.Namespace) -> int:
    target = args.target
    if args.via_launcher and not (args.state_machine_prefix or args.job_queue):
        return _call(args, lambda: _invoke(args, {"status": target}), _print_status)
    if cloud.is_execution_arn(target):
        return _call(args, lambda: _with_durations(args, {"ok": True, "mode": "step_functions", "executions": [
            cloud.execution_report(client_factory("stepfunctions", args.region), target)]}), _print_status)
    if args.job_queue:
        return _call(args, lambda: _with_durations(args, {"ok": True, "mode": "sqs", **cloud.batch_report(
            cloud.run_jobs(client_factory("batch", args.region), args.job_queue, target), target)}),
            _print_status)
    if args.state_machine_prefix:
        return _call(args, lambda: _with_durations(args, _status_by_prefix(args, target)), _print_status)
    raise UsageError("a run id needs --via-launcher FUNCTION, --state-machine-prefix STACK or --job-queue ARN; "
                     "an execution ARN needs nothing")


def _with_durations(args: argparse.Namespace, answer: dict) -> dict:
    """Batch job durations for every step with a job (best effort: jobs age out of Batch)."""
    from botocore.exceptions import BotoCoreError, ClientError

    batch = client_factory("batch", args.region)
    for steps in [answer.get("steps") or {}] + [r["steps"] for r in answer.get("executions", [])]:
        try:
            cloud.add_job_durations(batch, steps)
        except (BotoCoreError, ClientError) as e:  # durations are extra: the status stands without them
            print(f"sfn-pipelines: job durations unavailable ({e.__class__.__name__})", file=sys.stderr)
    return answer


def _status_by_prefix(args: argparse.Namespace, target: str) -> dict:
    sfn = client_factory("stepfunctions", args.region)
    run = cloud.normalize_run_id(target)
    machines = _machines_by_prefix(sfn, args.state_machine_prefix)
    reports = cloud.run_reports(sfn, [machines[name] for name in sorted(machines)], run)
    if not reports:
        raise cloud.CloudError(f"no execution named {run} in the state machines {args.state_machine_prefix}-*")
    return {"ok": True, "mode": "step_functions", "run_id": run, "executions": reports}


def cmd_resume(args: argparse.Namespace) -> int:
    if args.via_launcher:
        request: dict[str, Any] = {"resume": args.target}
        if args.run_id:
            request["run_id"] = args.run_id
        if args.dry_run:
            request["dry_run"] = True
        return _call(args, lambda: _invoke(args, request), _print_start)
    if not cloud.is_execution_arn(args.target):
        raise UsageError(f"resume takes an execution ARN (arn:aws:states:...:execution:...), got {args.target!r}; "
                         "an sqs-mode run id needs --via-launcher")
    return _call(args, lambda: _resume_direct(args), _print_start)


def _resume_direct(args: argparse.Namespace) -> dict:
    sfn = client_factory("stepfunctions", args.region)
    rr = cloud.resume_request(sfn, args.target, args.run_id)
    answer = {"ok": True, "mode": "step_functions", "resumes": args.target, "steps": rr["steps"]}
    if not rr["steps"]:
        return {**answer, "run_id": None, "executions": [],
                "message": "nothing to resume: every selected step succeeded"}
    entry = {"state_machine_arn": rr["state_machine_arn"], "steps": rr["steps"], "input": rr["input"]}
    if not args.dry_run:
        entry.update(cloud.start_execution(sfn, rr["state_machine_arn"], rr["name"], rr["input"]))
    return {**answer, "run_id": rr["name"], "dry_run": args.dry_run, "executions": [entry]}


# --- AWS calls and output ---------------------------------------------------------------------
def _machines_by_prefix(sfn: Any, prefix: str) -> dict[str, str]:
    machines = {}
    for page in sfn.get_paginator("list_state_machines").paginate():
        for m in page["stateMachines"]:
            if m["name"].startswith(f"{prefix}-"):
                machines[m["name"]] = m["stateMachineArn"]
    return machines


def _invoke(args: argparse.Namespace, request: Mapping[str, Any]) -> dict:
    client = client_factory("lambda", args.region)
    response = client.invoke(FunctionName=args.via_launcher, Payload=json.dumps(request).encode())
    body = response["Payload"].read()
    try:
        answer = json.loads(body or b"null")
    except ValueError:
        answer = None
    if response.get("FunctionError") or not isinstance(answer, dict):
        message = answer.get("errorMessage") if isinstance(answer, dict) else body[:500]
        raise LauncherFailed(f"the launcher {args.via_launcher} failed: {message}")
    return answer


class LauncherFailed(Exception):
    """The launcher Lambda itself crashed (not a refused request)."""


def _call(args: argparse.Namespace, fn: Callable[[], dict], show: Callable[[dict], None]) -> int:
    """Run one AWS interaction; every failure becomes one line on stderr, never a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = fn()
    except cloud.CloudError as e:
        print(f"sfn-pipelines: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ClientError, BotoCoreError, LauncherFailed) as e:
        print(f"sfn-pipelines: {e}", file=sys.stderr)
        return EXIT_FAILED
    if not answer.get("ok", True):
        print(f"sfn-pipelines: {answer.get('error')}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        json.dump(answer, sys.stdout, indent=2, default=str)
        print()
    else:
        show(answer)
    return EXIT_OK


def _print_start(a: dict) -> None:
    what = "would start" if a.get("dry_run") else "started"
    if a.get("resumes"):
        print(f"resume of {a['resumes']}: {len(a.get('steps') or [])} step(s) to run again")
    if a.get("message"):
        print(a["message"])
    if a.get("mode") == "sqs":
        if a.get("jobs"):
            verb = "would queue" if a.get("dry_run") else "queued"
            print(f"run {a['run_id']}: {verb} {len(a['jobs'])} Batch job(s) ({a.get('barriers', 0)} barrier(s))")
            for group, ids in a.get("steps", {}).items():
                print(f"  {group}: {', '.join(ids)}")
        return
    for e in a.get("executions", []):
        state = what if e.get("started", True) else f"already exists ({e.get('status')}), nothing started"
        print(f"run {a['run_id']}: {e.get('group') or ''} {state}: {len(e['steps'])} step(s)")
        if e.get("execution_arn"):
            print(f"  {e['execution_arn']}")


def _print_status(a: dict) -> None:
    if a.get("mode") == "sqs":
        print(f"run {a['run_id']}: {a['status']} (Batch jobs)")
        _print_steps(a["steps"])
        return
    for r in a["executions"]:
        t = r.get("transitions")
        cost = f"  ({t} state transitions, ${t * PRICE_PER_TRANSITION_USD:.5f})" if t is not None else ""
        print(f"run {r['run_id']}: {r['status']}  {r['execution_arn']}{cost}")
        _print_steps(r["steps"])


def _print_steps(steps: Mapping[str, Mapping[str, Any]]) -> None:
    width = max((len(s) for s in steps), default=0)
    for step, st in steps.items():
        took = f"{st['seconds']:g}s" if st.get("seconds") is not None else ""
        extra = "  ".join(str(v) for v in (took, st.get("job"), st.get("error"), st.get("reason")) if v)
        print(f"  {step:<{width}}  {st['status']:<16} {extra}".rstrip())


COMMANDS = [add_start, add_status, add_resume]
