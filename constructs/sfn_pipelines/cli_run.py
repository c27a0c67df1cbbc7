"""``sfn-pipelines run``: run a pipelines folder locally, as the cloud would (see ``local_run``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sfn_pipelines import local_run, runner
from sfn_pipelines.cli import UsageError, _load, split_script_args

RUN_HELP = """\
Runs the selected steps as local processes (this Python, cwd = the script's folder), in
dependency order, up to --max-parallel at once, with the environment their Batch job gets
plus PIPELINE_RUN_ID, PIPELINE_ARTIFACTS_DIR and PIPELINE_RUN_ARGS (the args after --,
also passed as argv after the step's own args).

Failures are isolated as in the cloud: a failed step's dependants are skipped (never
started), independent steps finish, and the run exits 1 naming failed and skipped steps.
Steps left out by --select count as up to date: not run, their dependants still run
(unless a failure upstream of them stops them too). Approval gates are not asked locally.
Ctrl-C stops running steps (their whole process group) and exits 130.

Scripts kept outside the repo (workbench:, plugin:) run when PIPELINE_REF_ROOTS maps their
prefix to a local folder, e.g. PIPELINE_REF_ROOTS='{"workbench:": "../workbench/scripts"}'.
Otherwise, and for s3:// scripts, the step is "not runnable locally": it fails the run
(its dependants are skipped) unless --allow-missing treats it as up to date.

Output: one line per state change; logs in LOGS_DIR/<run id>/<step>.log and a run.json
record beside them. Exit codes: 0 all ran, 1 a step failed or was skipped, 2 bad input,
130 interrupted (143 on SIGTERM).
"""


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run pipeline steps locally, in dependency order, as the cloud would",
        description=RUN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s DIR [options] [-- SCRIPT_ARGS...]")
    p.add_argument("dir", metavar="DIR", help="the pipelines folder")
    p.add_argument("--select", action="append", default=[], metavar="PATTERN",
                   help="run only steps whose pipeline, group or step id matches (exact name or glob such as "
                        "'*caco2*', case-insensitive); repeat for more. Default: every step")
    p.add_argument("--max-parallel", type=int, default=None, metavar="N",
                   help="steps running at once (default: the CPU count)")
    p.add_argument("--dry-run", action="store_true", help="print the waves the run would take; run nothing")
    p.add_argument("--artifacts-dir", metavar="PATH",
                   help="PIPELINE_ARTIFACTS_DIR for every step, shared across runs "
                        "(default: .local-runs/artifacts under the current directory)")
    p.add_argument("--logs-dir", metavar="PATH",
                   help="logs go to PATH/<run id>/ (default: .local-runs/logs under the current directory)")
    p.add_argument("--run-id", metavar="ID", help="PIPELINE_RUN_ID (default: local-<UTC time>-<random>)")
    p.add_argument("--allow-missing", action="store_true",
                   help="treat steps whose script is not available here (workbench:/plugin: refs without "
                        f"{runner.REF_ROOTS_ENV}, s3:// scripts) as up to date instead of failing the run")
    p.set_defaults(func=cmd_run, script_args=[])
    split_script_args(p)


def cmd_run(args: argparse.Namespace) -> int:
    ps = _load(args.dir)
    try:
        plan = local_run.prepare(ps, args.select, run_id=args.run_id, artifacts_dir=args.artifacts_dir,
                                 logs_dir=args.logs_dir, max_parallel=args.max_parallel, args=args.script_args,
                                 allow_missing=args.allow_missing)
    except local_run.LocalRunError as e:
        raise UsageError(str(e)) from None
    if args.dry_run:
        print(local_run.describe_dry_run(plan))
        return local_run.EXIT_OK
    n = len(plan.steps)
    print(f"run {plan.run_id}: {n} step(s), up to {plan.max_parallel} at once; "
          f"logs in {local_run._rel(str(plan.logs_dir))}", flush=True)
    result = local_run.LocalRun(plan).execute()
    print(local_run.summary(result), flush=True)
    return result.exit_code


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_run_parser]
