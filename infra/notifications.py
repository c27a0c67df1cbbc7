"""``PipelineNotifications``: tell people when a run fails, with enough to act on it.

EventBridge rules catch the end of runs of the generated machines (FAILED, TIMED_OUT,
ABORTED, and SUCCEEDED if asked) and Batch jobs that FAILED in the project's queues
(which covers the ``sqs`` execution mode too). They invoke a small Lambda
(``infra/notify_lambda``) that adds the failed step, its exit reason and the last log
lines, then publishes to an SNS topic with e-mail subscriptions.

Context keys: ``notify_emails`` (a list, or a comma-separated string) and
``notify_on_success`` (true/false, default false).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.nag import nag_text
from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine

HANDLER_DIR = Path(__file__).resolve().parent / "notify_lambda"
BATCH_LOG_GROUP = "/aws/batch/job"  # where Batch jobs log unless their definition says otherwise
FAILURE_STATUSES = ["FAILED", "TIMED_OUT", "ABORTED"]
# EventBridge: an event pattern takes at most 2,048 characters by default; an ARN of a
# machine is at most ~150 of them, so a rule names at most this many machines.
MACHINES_PER_RULE = 10
# Lambda: 4 KB for all environment variables together.
ENV_MACHINES_MAX = 2000  # bytes of MACHINES (group -> machine name, a name counted as 90)
ENV_PIPELINES_MAX = 1500  # bytes of PIPELINES (group -> pipeline names)
_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")


class PipelineNotifications(Construct):
    """SNS topic + EventBridge rules + the notification Lambda.

    :param machines: the state machine of each group, by group name.
    :param job_queues: further Batch queues whose failed jobs are reported; the machines'
        own queues are always included.
    :param execution_mode: ``"step_functions"`` links a failed job to its execution;
        ``"sqs"`` does not (jobs there run without an execution).
    :param emails: addresses to subscribe. Default: context ``notify_emails``.
    :param notify_on_success: also report runs that SUCCEEDED. Default: context
        ``notify_on_success``, else false.
    :param log_lines: how many last lines of a failed job's log a message carries.
    """

    def __init__(self, scope: Construct, construct_id: str, *,
                 machines: Mapping[str, WorkbenchPipelineStateMachine],
                 job_queues: Sequence[batch.IJobQueue] = (), execution_mode: str = "step_functions",
                 emails: Sequence[str] | str | None = None, notify_on_success: bool | str | None = None,
                 log_lines: int = 20) -> None:
        super().__init__(scope, construct_id)
        if not machines:
            raise ValueError("machines must hold at least one group's state machine")
        self.emails = parse_emails(self.node.try_get_context("notify_emails") if emails is None else emails)
        self.notify_on_success = parse_flag(
            self.node.try_get_context("notify_on_success") if notify_on_success is None else notify_on_success,
            "notify_on_success")
        stack = cdk.Stack.of(self)

        self.topic = sns.Topic(self, "Topic", display_name="sfn-pipelines runs", enforce_ssl=True)
        for email in self.emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

        self.log_group = logs.LogGroup(self, "FunctionLogs", retention=logs.RetentionDays.ONE_MONTH)
        role = iam.Role(self, "FunctionRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="sfn-pipelines notifications: read failure details, publish to the topic")
        self.log_group.grant_write(role)
        env = {"TOPIC_ARN": self.topic.topic_arn, "BATCH_LOG_GROUP": BATCH_LOG_GROUP, "LOG_LINES": str(log_lines)}
        pipelines = json.dumps({g: list(m.workflow.group.pipelines) for g, m in sorted(machines.items())},
                               separators=(",", ":"))
        if len(pipelines) <= ENV_PIPELINES_MAX:  # else: messages name the group only
            env["PIPELINES"] = pipelines
        if execution_mode == "step_functions":
            names = {g: m.state_machine.state_machine_name for g, m in sorted(machines.items())}
            if sum(len(g) + 90 for g in names) <= ENV_MACHINES_MAX:  # else: messages just lack the link
                env["MACHINES"] = stack.to_json_string(names)
        self.function = lambda_.Function(
            self, "Function", runtime=lambda_.Runtime.PYTHON_3_14, handler="handler.handler",
            code=lambda_.Code.from_asset(str(HANDLER_DIR), exclude=["__pycache__", "*.pyc"]),
            role=role, log_group=self.log_group, timeout=cdk.Duration.seconds(60), memory_size=256,
            environment=env, description="sfn-pipelines: formats run and job failures for the notifications topic")
        self.topic.grant_publish(self.function)
        self._grant_reads(role, machines)

        statuses = FAILURE_STATUSES + (["SUCCEEDED"] if self.notify_on_success else [])
        target = targets.LambdaFunction(self.function, retry_attempts=4, max_event_age=cdk.Duration.hours(6))
        arns = [m.state_machine.state_machine_arn for _, m in sorted(machines.items())]
        self.rules: list[events.Rule] = []
        for i in range(0, len(arns), MACHINES_PER_RULE):
            rule = events.Rule(
                self, "RunEnded" + (f"{i // MACHINES_PER_RULE + 1}" if i else ""),
                description="sfn-pipelines: a run of a generated state machine ended",
                event_pattern=events.EventPattern(
                    source=["aws.states"], detail_type=["Step Functions Execution Status Change"],
                    detail={"status": statuses, "stateMachineArn": arns[i:i + MACHINES_PER_RULE]}))
            rule.add_target(target)
            self.rules.append(rule)
        queues = _unique_queue_arns([*job_queues, *(q for m in machines.values()
                                                     for q in (m.job_queue, *m.job_queues.values()))])
        self.job_rule = events.Rule(
            self, "JobFailed", description="sfn-pipelines: a Batch job of a pipeline step failed",
            event_pattern=events.EventPattern(source=["aws.batch"], detail_type=["Batch Job State Change"],
                                              detail={"status": ["FAILED"], "jobQueue": queues}))
        self.job_rule.add_target(target)
        self.rules.append(self.job_rule)

    def _grant_reads(self, role: iam.Role, machines: Mapping[str, WorkbenchPipelineStateMachine]) -> None:
        """Read the failed run's cause and its jobs' logs, and nothing else."""
        stack = cdk.Stack.of(self)
        log_streams = stack.format_arn(service="logs", resource="log-group",
                                       resource_name=f"{BATCH_LOG_GROUP}:log-stream:*",
                                       arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        executions = [stack.format_arn(service="states", resource="execution",
                                       resource_name=f"{m.state_machine.state_machine_name}:*",
                                       arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
                      for _, m in sorted(machines.items())]
        policy = iam.Policy(self, "ReadFailures", roles=[role], statements=[
            iam.PolicyStatement(actions=["logs:GetLogEvents"], resources=[log_streams]),
            iam.PolicyStatement(actions=["states:DescribeExecution", "states:GetExecutionHistory"],
                                resources=executions),
        ])
        cdk.Validations.of(policy).acknowledge(cdk.Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::{nag_text(stack, log_streams)}]",
            reason="Batch names each job's log stream when the job starts; the grant is read-only "
                   f"(logs:GetLogEvents) on the streams of the Batch job log group {BATCH_LOG_GROUP} only"))
        for arn in executions:
            cdk.Validations.of(policy).acknowledge(cdk.Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{nag_text(stack, arn)}]",
                reason="Execution names are run ids chosen when a run starts; the grant is read-only "
                       "(DescribeExecution, GetExecutionHistory) on executions of this app's machines only"))


def parse_emails(value: Any) -> list[str]:
    """``notify_emails`` as given in cdk.json (a list) or with -c (a comma-separated string
    or a JSON list); a clear error names what is not an address."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError(f"context notify_emails: {text!r} is not a JSON list of addresses") from None
        else:
            value = [p for p in re.split(r"[,\s;]+", text) if p]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"context notify_emails must be a list of e-mail addresses or a comma-separated string. "
                         f"Received {value!r}.")
    emails = [v.strip() for v in value if v.strip()]
    bad = [e for e in emails if not _EMAIL.match(e)]
    if bad:
        raise ValueError(f"context notify_emails: not an e-mail address: {', '.join(map(repr, bad))}")
    return list(dict.fromkeys(emails))


def parse_flag(value: Any, key: str) -> bool:
    """A boolean context value: true/false as JSON, or as text given with -c."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"context {key} must be true or false. Received {value!r}.")


def _unique_queue_arns(queues: Sequence[batch.IJobQueue]) -> list[str]:
    return list(dict.fromkeys(q.job_queue_arn for q in queues))
