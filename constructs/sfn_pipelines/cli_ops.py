"""Operating commands: ``approve`` / ``reject`` an approval gate of a running execution."""

from __future__ import annotations

import argparse
import getpass
import sys

from sfn_pipelines.approvals import ApprovalError, decide, execution_arn


def add_approval_parsers(sub: argparse._SubParsersAction) -> None:
    for verb in ("approve", "reject"):
        p = sub.add_parser(verb, help=f"{verb} the approval gate of STEP in a running execution")
        p.add_argument("run", metavar="RUN", help="execution ARN, or run id with --state-machine")
        p.add_argument("step", metavar="STEP", help="step id (as in `plan`)")
        p.add_argument("--state-machine", metavar="ARN", help="state machine ARN when RUN is a run id")
        p.add_argument("--reason", default="", help="recorded with the decision")
        p.add_argument("--region", help="AWS region (default: from the AWS environment)")
        p.set_defaults(func=cmd_decide, approve=verb == "approve")


def cmd_decide(args: argparse.Namespace, client=None) -> int:
    import boto3  # lazily: planning commands never need it

    client = client or boto3.client("stepfunctions", region_name=args.region)
    try:
        arn = execution_arn(args.run, args.state_machine)
        decide(client, arn, args.step, approve=args.approve, reason=args.reason, who=_who())
    except ApprovalError as e:
        print(f"sfn-pipelines: {e}", file=sys.stderr)
        return 2
    print(f"{'approved' if args.approve else 'rejected'}: {args.step} in {arn}")
    return 0


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


COMMANDS = [add_approval_parsers]
