"""cdk-nag (AwsSolutions) for the default app: turning the checks on, and the findings we
accept, each with the reason it is acceptable.

``cdk synth -c nag=true`` runs the checks; an unacknowledged finding fails the synth.
Findings on resources this repo creates through CDK defaults are acknowledged here, on
the construct that owns the resource, so the reason sits next to the grant it explains.
The notifications construct acknowledges its own two findings where it makes the grant.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from constructs import IConstruct

from infra.batch_environment import BatchEnvironment
from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine


def enable_checks(app: cdk.App) -> bool:
    """Add the AwsSolutions pack when context ``nag`` is true; returns whether it did."""
    value = app.node.try_get_context("nag")
    if str(value).strip().lower() not in ("true", "1", "yes", "on"):
        return False
    from cdk_nag import AwsSolutionsChecks  # dev dependency: only needed with -c nag=true

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return True


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"AwsSolutions-{rule}", reason=reason))


def acknowledge_findings(stack: cdk.Stack, *, env: BatchEnvironment,
                         machines: dict[str, WorkbenchPipelineStateMachine], launcher: Any = None) -> None:
    """The accepted findings of the default app's stack (see the README of each reason)."""
    for machine in machines.values():
        _state_machine(machine)
    _batch(stack, env)
    if launcher is not None:
        _launcher(stack, launcher, env)


def _state_machine(machine: WorkbenchPipelineStateMachine) -> None:
    role = machine.state_machine.role
    stack = cdk.Stack.of(machine)
    acknowledge(role, "IAM5[Resource::*]",
                "AWS requires Resource '*' for these actions, which support no resource-level permissions: "
                "batch:DescribeJobs (to follow and stop the run's jobs), the logs:*LogDelivery / "
                "logs:PutResourcePolicy / logs:Describe* calls that set up execution logging, and "
                "xray:PutTraceSegments / PutTelemetryRecords / GetSampling* for X-Ray tracing")
    acknowledge(role, f"IAM5[Resource::{nag_text(stack, _arn(stack, 'batch', 'job', '*'))}]",
                "batch:TerminateJob and batch:TagResource act on the run's own jobs, whose ids Batch assigns at "
                "SubmitJob time; limited to jobs of this account and region")
    acknowledge(role, f"IAM5[Resource::{nag_text(stack, _arn(stack, 'batch', 'job-definition', '*'))}]",
                "Added by CDK's BatchSubmitJob task, which always allows SubmitJob on job-definition/*; the role "
                "also has an explicit Deny of batch:SubmitJob on everything but this machine's queues and job "
                "definitions (WorkbenchPipelineStateMachine._grant_job_control), so only those can be used")
    acknowledge(machine.state_machine.node.default_child, "SF1",
                "Execution logging is at level ERROR: failed states with their error and cause are logged; the "
                "full per-state record stays in the execution history (90 days) and X-Ray. ALL would add log "
                "ingestion for every state transition of every run")


def _batch(stack: cdk.Stack, env: BatchEnvironment) -> None:
    for vpc in (c for c in stack.node.find_all() if isinstance(c, ec2.Vpc)):
        acknowledge(vpc, "VPC7",
                    "The VPC only carries the pipeline jobs' outbound traffic (image pulls, S3, CloudWatch) from "
                    "Fargate tasks in public subnets; no inbound traffic is allowed. Flow logs are not enabled yet "
                    "(vpc.add_flow_log() in infra/batch_environment.py when traffic auditing is required)")
    for definition in env.job_definitions.values():
        container = getattr(definition, "container", None)
        role = getattr(container, "execution_role", None)
        if role is not None:
            acknowledge(role, f"IAM5[Resource::{nag_text(stack, _log_group_streams(stack))}]",
                        "CDK's Batch container definition lets ECS write the container log to the shared Batch log "
                        "group /aws/batch/job; each job's stream is named when the job starts")
            acknowledge(role, "IAM5[Resource::*]",
                        "ecr:GetAuthorizationToken (to pull the job image built from infra/job_image) supports no "
                        "resource-level permissions; the pull itself is limited to the CDK container-assets "
                        "repository")
    if env.job_role is not None:
        for action in ("s3:GetObject*", "s3:GetBucket*", "s3:List*"):
            acknowledge(env.job_role, f"IAM5[Action::{action}]",
                        "Asset.grant_read: read-only access to the CDK assets bucket so a job can download the "
                        "zipped pipelines folder (the scripts archive) it runs from")
        acknowledge(env.job_role, "IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-"
                                  "<AWS::Region>/*]",
                    "Asset.grant_read: the scripts archive's key is content-addressed in the CDK assets bucket; "
                    "read-only")


def _launcher(stack: cdk.Stack, launcher: Any, env: BatchEnvironment) -> None:
    """Findings of ``infra/launcher_construct.py``."""
    for fn in (launcher.function, getattr(launcher, "consumer", None)):
        if fn is None:
            continue
        acknowledge(fn.role, "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                             "AWSLambdaBasicExecutionRole]",
                    "AWSLambdaBasicExecutionRole only lets the function create its log group and write its own "
                    "logs (logs:CreateLogGroup, CreateLogStream, PutLogEvents)")
        acknowledge(fn.role, "IAM5[Resource::*]",
                    "AWS requires Resource '*' for actions without resource-level permissions: batch:ListJobs "
                    "(sqs mode: find a run's jobs) and states:ListActivities / DescribeActivity / "
                    "DescribeStateMachine added by StateMachine.grant_read")
        acknowledge(fn.node.default_child, "L1",
                    "The launcher runs on python3.12, the runtime its tests cover; moving to the latest runtime is "
                    "a change of infra/launcher_construct.py")
    consumer = getattr(launcher, "consumer", None)
    if consumer is not None:  # execution_mode sqs: the consumer submits the jobs itself
        for definition in env.job_definitions.values():
            acknowledge(consumer.role, f"IAM5[Resource::{nag_text(stack, f'{definition.job_definition_arn}:*')}]",
                        "SubmitJob on any revision of one of the project's job definitions: a definition named "
                        "without its revision matches '<definition ARN>:*'")
        acknowledge(consumer.role, f"IAM5[Resource::{nag_text(stack, _arn(stack, 'batch', 'job', '*'))}]",
                    "batch:TagResource on the jobs the consumer submits with tags, whose ids Batch assigns at "
                    "SubmitJob time; limited to jobs of this account and region")
    for machine in launcher.machines.values():
        arn = machine.state_machine.state_machine_arn
        name = cdk.Fn.select(6, cdk.Fn.split(":", arn))
        executions = _arn(stack, "states", "execution", f"{name}:*")
        acknowledge(launcher.function.role, f"IAM5[Resource::{nag_text(stack, executions)}]",
                    "StateMachine.grant_read: read-only access to the executions of this app's machines, whose "
                    "names are the run ids chosen at start")


def _arn(stack: cdk.Stack, service: str, resource: str, name: str) -> str:
    sep = cdk.ArnFormat.COLON_RESOURCE_NAME if service in ("states", "logs") else cdk.ArnFormat.SLASH_RESOURCE_NAME
    return stack.format_arn(service=service, resource=resource, resource_name=name, arn_format=sep)


def _log_group_streams(stack: cdk.Stack) -> str:
    return stack.format_arn(service="logs", resource="log-group", resource_name="/aws/batch/job:*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)


def nag_text(stack: cdk.Stack, value: Any) -> str:
    """How cdk-nag spells a policy resource in a finding id (a port of its
    ``flattenCfnReference``): Fn::Join flattened, Ref and GetAtt as <X> / <X.Attr>,
    ``${...}`` as <...>, any other intrinsic as compact JSON."""
    return _flatten(stack.resolve(value))


def _flatten(node: Any) -> str:
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if node.get("Fn::Join"):
            sep, items = node["Fn::Join"]
            return sep.join(_flatten(i) for i in items)
        if node.get("Fn::Sub"):
            return _flatten(node["Fn::Sub"])
        if node.get("Fn::GetAtt"):
            resource, attribute = node["Fn::GetAtt"]
            return f"<{_flatten(resource)}.{_flatten(attribute)}>"
        if node.get("Fn::ImportValue"):
            return _flatten(node["Fn::ImportValue"])
        if node.get("Ref"):
            return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))

