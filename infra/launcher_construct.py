"""``PipelineLauncher``: the Lambda that starts, resumes and reports runs, in either backend.

The function's code is a plain folder (no Docker here): ``infra/launcher/`` plus the few
stdlib-only modules of ``sfn_pipelines`` it uses, staged at synth time with ``plan.json``
(the launch plan: groups, steps, each step's Batch job as the state machine builds it).
Deploy-time values (ARNs, the scripts archive URL) cannot be in a file: they go in the
function's environment, kept under Lambda's 4 KB.

``execution_mode="sqs"`` adds a FIFO queue (+ dead-letter queue) and a consumer Lambda
that submits the queued jobs to Batch with ``dependsOn`` instead of running the state
machines; both backends submit the same jobs (see ``infra/launcher/jobgraph.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.staging import stage_folder
from sfn_pipelines import cloud
from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine
from sfn_pipelines.workflow import PipelineSet

EXECUTION_MODES = ("step_functions", "sqs")
LAUNCHER_DIR = Path(__file__).resolve().parent / "launcher"
PACKAGE_DIR = Path(cloud.__file__).resolve().parent
# What the Lambda imports of sfn_pipelines: stdlib-only modules (tests check the closure).
SHIPPED_MODULES = ("__init__", "model", "limits", "naming", "jobs", "plan", "layout", "cloud", "selection")
ENV_MAX_BYTES = 4096  # Lambda: all environment variables together
ARN_ESTIMATE = 128  # characters a deploy-time ARN or URL is assumed to take
CONSUMER_TIMEOUT = cdk.Duration.seconds(120)


class PipelineLauncher(Construct):
    """Start runs by name patterns, resume failed runs, report run status.

    :param pipeline_set: the loaded pipelines folder (its workflows are the groups).
    :param machines: the state machine of each group the launcher may start (only those
        get ``grant_start_execution``); their job specs are what the SQS backend submits.
    :param execution_mode: ``"step_functions"`` (default) or ``"sqs"``.
    :param job_queue: the default queue; a machine's named ``job_queues`` are added.
    :param job_definitions: job definitions by name, as given to the machines.
    """

    def __init__(self, scope: Construct, construct_id: str, *, pipeline_set: PipelineSet,
                 machines: Mapping[str, WorkbenchPipelineStateMachine], execution_mode: str = "step_functions",
                 job_queue: batch.IJobQueue, job_definitions: Mapping[str, batch.IJobDefinition]) -> None:
        super().__init__(scope, construct_id)
        if execution_mode not in EXECUTION_MODES:
            raise ValueError(f"execution_mode must be one of {', '.join(EXECUTION_MODES)}. "
                             f"Received {execution_mode!r}.")
        known = {w.name for w in pipeline_set.workflows}
        unknown = sorted(set(machines) - known)
        if unknown:
            raise ValueError(f"machines for unknown group(s) {', '.join(unknown)} (groups: {', '.join(sorted(known))})")
        if not machines:
            raise ValueError("machines must hold at least one group's state machine")
        self.execution_mode = execution_mode
        self.machines = dict(machines)
        workflows = [w for w in pipeline_set.workflows if w.name in machines]
        if execution_mode == "sqs":
            _reject_gates(workflows)
        stack = cdk.Stack.of(self)

        queues: dict[str, batch.IJobQueue] = {"": job_queue}
        for m in machines.values():
            queues.update(m.job_queues)
        defaults = {m.default_job_definition for m in machines.values()}
        if len(defaults) > 1:
            raise ValueError(f"the machines use different default job definitions ({', '.join(sorted(defaults))})")

        names = {g: _literal_name(m) for g, m in machines.items()}
        named = all(names.values())
        plan = cloud.launch_plan(workflows, {g: m.specs for g, m in machines.items()},
                                 default_job_definition=defaults.pop(),
                                 state_machine_names=names if named else None)  # type: ignore[arg-type]
        plan, token_env = _extract_tokens(plan)

        env: dict[str, str] = {
            "EXECUTION_MODE": execution_mode,
            "JOB_DEFINITIONS": stack.to_json_string({k: d.job_definition_arn
                                                     for k, d in sorted(job_definitions.items())}),
            "JOB_QUEUES": stack.to_json_string({k: q.job_queue_arn for k, q in sorted(queues.items())}),
            **token_env,
        }
        if named:
            env["STATE_MACHINE_ARN_PREFIX"] = cdk.Fn.sub(
                "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:")
        else:
            env["STATE_MACHINES"] = stack.to_json_string(
                {g: m.state_machine.state_machine_arn for g, m in sorted(machines.items())})
        size = _env_estimate(env, job_definitions, queues, machines, named)
        if size > ENV_MAX_BYTES:
            raise ValueError(f"the launcher's environment would take about {size:,} bytes, over Lambda's "
                             f"{ENV_MAX_BYTES:,}: give the state machines explicit names (state_machine_name)")

        self.code_dir = stage_code(plan)
        code = lambda_.Code.from_asset(str(self.code_dir))
        self.function = lambda_.Function(
            self, "Function", runtime=lambda_.Runtime.PYTHON_3_12, handler="handler.handler", code=code,
            timeout=cdk.Duration.seconds(60), memory_size=256, environment=env,
            description="sfn-pipelines launcher: start, resume and report pipeline runs")
        self.queue: sqs.Queue | None = None
        self.dead_letter_queue: sqs.Queue | None = None
        self.consumer: lambda_.Function | None = None
        if execution_mode == "step_functions":
            for m in machines.values():
                m.grant_start_execution(self.function)
                m.grant_read(self.function)  # resume and status read executions and their history
        else:
            self._sqs_backend(code, env, job_definitions, queues)

    def _sqs_backend(self, code: lambda_.Code, env: dict[str, str],
                     job_definitions: Mapping[str, batch.IJobDefinition],
                     queues: Mapping[str, batch.IJobQueue]) -> None:
        self.dead_letter_queue = sqs.Queue(self, "DeadLetters", fifo=True, enforce_ssl=True,
                                           retention_period=cdk.Duration.days(14))
        self.queue = sqs.Queue(
            self, "Jobs", fifo=True, enforce_ssl=True,
            visibility_timeout=cdk.Duration.seconds(6 * CONSUMER_TIMEOUT.to_seconds()),  # AWS: 6x the timeout
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue, max_receive_count=5))
        self.function.add_environment("QUEUE_URL", self.queue.queue_url)
        self.queue.grant_send_messages(self.function)
        self.consumer = lambda_.Function(
            self, "Consumer", runtime=lambda_.Runtime.PYTHON_3_12, handler="consumer.handler", code=code,
            timeout=CONSUMER_TIMEOUT, memory_size=256, environment=env,
            description="sfn-pipelines consumer: submits queued pipeline steps to AWS Batch")
        self.consumer.add_event_source(sources.SqsEventSource(self.queue, batch_size=10,
                                                              report_batch_item_failures=True))
        stack = cdk.Stack.of(self)
        definitions = [d.job_definition_arn for d in job_definitions.values()]
        self.consumer.add_to_role_policy(iam.PolicyStatement(
            actions=["batch:SubmitJob"],
            # A definition ARN given without its revision is matched by "<arn>:*".
            resources=[q.job_queue_arn for q in queues.values()] + definitions + [f"{d}:*" for d in definitions]))
        self.consumer.add_to_role_policy(iam.PolicyStatement(
            actions=["batch:TagResource"],  # jobs are submitted with tags, as the state machine does
            resources=[stack.format_arn(service="batch", resource="job", resource_name="*")]))
        for fn in (self.consumer, self.function):
            fn.add_to_role_policy(iam.PolicyStatement(
                actions=["batch:ListJobs"], resources=["*"]))  # ListJobs has no resource-level permissions


def stage_code(plan: Mapping[str, Any]) -> Path:
    """A folder with the launcher's code and ``plan.json``, named by its content hash so
    repeated synths reuse it (and the asset hash only changes with the content)."""
    files: dict[str, bytes] = {}
    for path in sorted(LAUNCHER_DIR.glob("*.py")):
        files[path.name] = path.read_bytes()
    for module in SHIPPED_MODULES:
        files[f"sfn_pipelines/{module}.py"] = (PACKAGE_DIR / f"{module}.py").read_bytes()
    files["plan.json"] = json.dumps(plan, sort_keys=True, separators=(",", ":")).encode()
    return stage_folder("sfn-pipelines-launcher", files)


def _extract_tokens(plan: dict) -> tuple[dict, dict[str, str]]:
    """Move deploy-time values (unresolved tokens) out of the plan into env vars."""
    env: dict[str, str] = {}
    by_value: dict[str, str] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str) and cdk.Token.is_unresolved(value):
            if value not in by_value:
                by_value[value] = f"PLAN_VALUE_{len(by_value)}"
                env[by_value[value]] = value
            return {cloud.ENV_REF: by_value[value]}
        return value

    return walk(plan), env


def _cfn(machine: WorkbenchPipelineStateMachine) -> Any:
    return machine.state_machine.node.default_child


def _literal_name(machine: WorkbenchPipelineStateMachine) -> str | None:
    name = getattr(_cfn(machine), "state_machine_name", None)
    return name if isinstance(name, str) and not cdk.Token.is_unresolved(name) else None


def _env_estimate(env: Mapping[str, str], job_definitions: Mapping, queues: Mapping, machines: Mapping,
                  named: bool) -> int:
    """Bytes the environment takes once deployed, counting each ARN as ``ARN_ESTIMATE``."""
    size = sum(len(k) for k in env)
    size += sum(len(v) for v in env.values() if not cdk.Token.is_unresolved(v))
    size += sum(ARN_ESTIMATE for v in env.values() if cdk.Token.is_unresolved(v))  # scripts URL, prefix
    for mapping in (job_definitions, queues) + (() if named else (machines,)):
        size += sum(len(k) + 6 + ARN_ESTIMATE for k in mapping)
    return size


def _reject_gates(workflows: list) -> None:
    gated = [s.id for w in workflows for s in w.group.steps if getattr(s.options, "approval", None) is not None]
    if gated:
        raise ValueError(f"approval gates need the step_functions backend (steps {', '.join(gated)}); "
                         "execution_mode 'sqs' cannot pause a Batch job for a human")
