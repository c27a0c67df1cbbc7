"""Notification Lambda: turn a pipeline event into a readable message on the SNS topic.

EventBridge hands it either a Step Functions execution status change (a run of one group's
machine ended) or a Batch job state change (a job in the project's queue FAILED, in
either execution mode). The handler gathers what a person needs to act (which pipeline
and step, why it failed, the last lines of its log, a console link), formats it with the
pure functions below and publishes it. Enrichment is best effort: whatever AWS refuses
is named in the message, which is still sent.

Self-contained on purpose (boto3 from the runtime, no sfn_pipelines import): the folder is
deployed as is. Environment: ``TOPIC_ARN``; optional ``BATCH_LOG_GROUP`` (default
``/aws/batch/job``), ``LOG_LINES`` (20), ``MACHINES`` (JSON group -> state machine name,
given in step_functions mode so a failed job links to its execution), ``PIPELINES``
(JSON group -> pipeline names).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

RUN_FAILED_ERROR = "PipelineStepsFailed"  # sfn_pipelines.state_machine.RUN_FAILED_ERROR
TAG_PREFIX = "sfn-pipelines:"  # sfn_pipelines.jobs.TAG_PREFIX
SUBJECT_MAX = 99  # SNS: under 100 characters, no line breaks
MESSAGE_MAX = 200_000  # SNS allows 256 KiB; keep a margin for the JSON envelope
LINE_MAX = 400  # characters kept of one log line
LOG_STEPS_MAX = 3  # failed steps whose logs are fetched for one run
HISTORY_PAGES_MAX = 5  # GetExecutionHistory pages (1,000 events each) read from the end
CONSOLE_DOMAINS = {"aws": "console.aws.amazon.com", "aws-cn": "console.amazonaws.cn",
                   "aws-us-gov": "console.amazonaws-us-gov.com"}


# --- reading events and job descriptions (pure) ---------------------------------------
def flatten_statuses(st: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{step id: status} from the nested ``st`` object (copy of sfn_pipelines.layout's)."""
    return dict(_walk_statuses(st))


def _walk_statuses(st: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, value in st.items():
        if key.startswith("_p") and isinstance(value, Mapping):
            for branch in value.values():
                yield from _walk_statuses(branch)
        elif isinstance(value, Mapping):
            yield key, dict(value)


@dataclass
class JobInfo:
    """One Batch job as a notification tells it."""

    job_id: str | None = None
    job_name: str | None = None
    step: str | None = None
    pipeline: str | None = None
    group: str | None = None
    run_id: str | None = None
    queue: str | None = None
    status_reason: str | None = None
    exit_code: int | None = None
    container_reason: str | None = None
    attempts: int = 0
    log_stream: str | None = None
    log_lines: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """Why it failed, in one line: exit code first, then what Batch and ECS said."""
        parts = []
        if self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        for text in (self.container_reason, self.status_reason):
            if text and text not in parts:
                parts.append(text)
        return "; ".join(parts) or "no reason given"


def job_info(job: Mapping[str, Any]) -> JobInfo:
    """Read a Batch job description, as in a Batch event (camelCase) or in the cause of a
    failed ``.sync`` task (PascalCase), without caring which."""
    get = _getter(job)
    container = _getter(get("container") or {})
    attempts = get("attempts") or []
    last = _getter(_getter(attempts[-1])("container") or {}) if attempts else container
    env = {_getter(e)("name"): _getter(e)("value") for e in container("environment") or []}
    tags = get("tags") or {}
    name = get("jobName")
    step_from_name, _, run_from_name = (name or "").partition("--")
    exit_code = last("exitCode") if last("exitCode") is not None else container("exitCode")
    return JobInfo(
        job_id=get("jobId"),
        job_name=name,
        step=env.get("PIPELINE_STEP") or tags.get(f"{TAG_PREFIX}step") or step_from_name or None,
        pipeline=env.get("PIPELINE_NAME") or tags.get(f"{TAG_PREFIX}pipeline"),
        group=env.get("PIPELINE_GROUP") or tags.get(f"{TAG_PREFIX}group"),
        run_id=env.get("PIPELINE_RUN_ID") or tags.get(f"{TAG_PREFIX}run-id") or run_from_name or None,
        queue=get("jobQueue"),
        status_reason=get("statusReason"),
        exit_code=exit_code if isinstance(exit_code, int) else None,
        container_reason=last("reason") or container("reason"),
        attempts=len(attempts),
        log_stream=last("logStreamName") or container("logStreamName"),
    )


def _getter(obj: Any) -> Callable[[str], Any]:
    """Key lookup that accepts camelCase or PascalCase spellings of ``key``."""
    def get(key: str) -> Any:
        if not isinstance(obj, Mapping):
            return None
        value = obj.get(key)
        return obj.get(key[:1].upper() + key[1:]) if value is None else value
    return get


def parse_cause(error: str | None, cause: str | None) -> tuple[dict[str, dict[str, Any]] | None, JobInfo | None]:
    """What a run's ``cause`` holds: the step statuses (isolate mode, error
    ``PipelineStepsFailed``) or the failed job's description (stop_all mode), else neither."""
    try:
        data = json.loads(cause) if cause else None
    except ValueError:
        return None, None
    if not isinstance(data, Mapping):
        return None, None
    if error == RUN_FAILED_ERROR:
        return flatten_statuses(data), None
    if _getter(data)("jobId") or _getter(data)("jobName"):
        return None, job_info(data)
    return None, None


def failed_tasks(events: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """{state name: details} of the tasks whose last attempt failed or timed out, from an
    execution history given newest first; a step's task state is named after the step id."""
    by_id = {e.get("id"): e for e in events}
    seen: set[str] = set()
    out: dict[str, Mapping[str, Any]] = {}
    for event in events:
        if event.get("type") not in ("TaskSucceeded", "TaskFailed", "TaskTimedOut"):
            continue
        name = _entered_state(event, by_id)
        if not name or name in seen:
            continue
        seen.add(name)  # the newest outcome wins: a retry that succeeded is no failure
        details = event.get("taskFailedEventDetails") or event.get("taskTimedOutEventDetails")
        if details:
            out[name] = details
    return out


def _entered_state(event: Mapping[str, Any], by_id: Mapping[Any, Mapping[str, Any]]) -> str | None:
    seen = 0
    while event is not None and seen < 50:
        if event.get("type") == "TaskStateEntered":
            return (event.get("stateEnteredEventDetails") or {}).get("name")
        event = by_id.get(event.get("previousEventId"))  # type: ignore[assignment]
        seen += 1
    return None


# --- formatting (pure) ------------------------------------------------------------------
@dataclass
class Message:
    subject: str
    body: str


@dataclass
class RunReport:
    """Everything the message about one ended run says."""

    status: str
    execution_arn: str
    group: str
    pipelines: list[str] = field(default_factory=list)
    error: str | None = None
    cause: str | None = None
    statuses: dict[str, dict[str, Any]] | None = None
    jobs: dict[str, JobInfo] = field(default_factory=dict)  # by step id
    started: datetime | None = None
    stopped: datetime | None = None
    notes: list[str] = field(default_factory=list)


def execution_message(report: RunReport) -> Message:
    """Subject and text for a run that ended (any status)."""
    run_id = report.execution_arn.rsplit(":", 1)[-1]
    statuses = report.statuses or {}
    failed = [s for s, v in statuses.items() if v.get("status") == "FAILED"]
    for step in report.jobs:  # stop_all mode and aborted runs: failures known from jobs only
        if step not in failed:
            failed.append(step)
    skipped = [s for s, v in statuses.items() if v.get("status") == "SKIPPED"]
    succeeded = [s for s, v in statuses.items() if v.get("status") == "SUCCEEDED"]

    subject = f"Pipeline run {report.status}: {report.group}"
    if failed:
        subject += f" (failed: {', '.join(failed)})"
    of = f" (pipeline{'s' if len(report.pipelines) > 1 else ''} {', '.join(report.pipelines)})" \
        if report.pipelines else ""
    lines = [f"Pipeline run {report.status}: group {report.group}{of}", f"Run id: {run_id}"]
    if report.started:
        lines.append(_timing(report.started, report.stopped))
    if report.status != "SUCCEEDED":
        lines.append("")
        if failed:
            lines.append(f"Failed steps ({len(failed)}):")
            for step in failed:
                lines += _step_lines(step, statuses.get(step, {}), report.jobs.get(step))
        elif report.error or report.cause:
            lines.append(f"Error: {report.error or '-'}")
            if report.cause:
                lines.append(f"Cause: {_clip(report.cause, 2000)}")
        else:
            lines.append(_no_cause_text(report.status))
        if skipped:
            lines.append(f"Skipped because an upstream step failed ({len(skipped)}): {', '.join(skipped)}")
    if succeeded:
        lines.append(f"Succeeded ({len(succeeded)}): {', '.join(succeeded)}")
    lines += ["", f"Execution: {execution_url(report.execution_arn)}"]
    if failed:
        lines.append(f"Rerun the failed and skipped steps only: sfn-pipelines resume {report.execution_arn}")
    lines += _notes(report.notes)
    return Message(subject=fit_subject(subject), body=_fit_body(lines))


def job_message(job: JobInfo, *, execution_arn: str | None = None, region: str | None = None,
                partition: str = "aws", notes: list[str] | None = None) -> Message:
    """Subject and text for one Batch job that FAILED."""
    where = "/".join(p for p in (job.pipeline, job.step) if p) or job.job_name or job.job_id or "unknown job"
    lines = [f"Batch job FAILED: step {job.step or '?'} of pipeline {job.pipeline or '?'}"
             + (f" (group {job.group})" if job.group else "")]
    if job.run_id:
        lines.append(f"Run id: {job.run_id}")
    lines.append(f"Reason: {job.reason}")
    if job.attempts > 1:
        lines.append(f"Attempts: {job.attempts} (the job definition's retry strategy gave up)")
    lines.append(f"Job: {job.job_name or '?'} ({job.job_id or '?'})"
                 + (f" in queue {job.queue.rsplit('/', 1)[-1]}" if job.queue else ""))
    lines += _log_lines(job)
    lines.append("")
    if job.job_id and region:
        lines.append(f"Job: {console_url(partition, region, f'batch/home?region={region}#jobs/detail/{job.job_id}')}")
    if execution_arn:
        lines.append(f"Execution: {execution_url(execution_arn)}")
    lines += _notes(notes or [])
    return Message(subject=fit_subject(f"Batch job FAILED: {where}"), body=_fit_body(lines))


def _step_lines(step: str, status: Mapping[str, Any], job: JobInfo | None) -> list[str]:
    if job is None:
        error = status.get("error")
        return [f"- {step}: {error or 'failed'}"]
    head = f"- {step}" + (f" (pipeline {job.pipeline})" if job.pipeline else "") + f": {job.reason}"
    lines = [head]
    if job.job_name or job.job_id:
        lines.append(f"  Batch job {job.job_name or '?'} ({job.job_id or '?'})")
    return lines + [f"  {line}" if line else line for line in _log_lines(job)]


def _log_lines(job: JobInfo) -> list[str]:
    if not job.log_lines:
        return []
    return [f"Last {len(job.log_lines)} log lines (stream {job.log_stream}):",
            *(f"  | {_clip(line, LINE_MAX)}" for line in job.log_lines)]


def _no_cause_text(status: str) -> str:
    return {"TIMED_OUT": "The run reached the state machine's timeout; no step had failed.",
            "ABORTED": "The run was stopped (StopExecution) before any step failed."}.get(
        status, "No error was reported.")


def _timing(started: datetime, stopped: datetime | None) -> str:
    text = f"Started {started:%Y-%m-%d %H:%M:%S} UTC"
    if stopped:
        hours, rest = divmod(int((stopped - started).total_seconds()), 3600)
        took = (f"{hours} h " if hours else "") + f"{rest // 60} min {rest % 60} s"
        text += f", ended {stopped:%Y-%m-%d %H:%M:%S} UTC ({took})"
    return text


def _notes(notes: list[str]) -> list[str]:
    return ["", "Not included:", *(f"- {n}" for n in notes)] if notes else []


def fit_subject(text: str) -> str:
    """SNS subjects: printable ASCII, no line breaks, under 100 characters."""
    text = re.sub(r"[^\x20-\x7e]", "?", " ".join(text.split()))
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3].rstrip() + "..."


def _fit_body(lines: list[str]) -> str:
    body = "\n".join(lines)
    return body if len(body) <= MESSAGE_MAX else body[: MESSAGE_MAX - 20] + "\n[message truncated]"


def _clip(text: str, n: int) -> str:
    text = text.rstrip("\n")
    return text if len(text) <= n else text[: n - 3] + "..."


def console_url(partition: str, region: str, path: str) -> str:
    return f"https://{region}.{CONSOLE_DOMAINS.get(partition, CONSOLE_DOMAINS['aws'])}/{path}"


def execution_url(execution_arn: str) -> str:
    parts = execution_arn.split(":")
    partition, region = (parts[1], parts[3]) if len(parts) > 4 else ("aws", "us-east-1")
    return console_url(partition, region, f"states/home?region={region}#/v2/executions/details/{execution_arn}")


def execution_arn_for(job_arn: str | None, machine_name: str | None, run_id: str | None) -> str | None:
    """The execution that ran a job: same partition, region and account as the job."""
    parts = (job_arn or "").split(":")
    if len(parts) < 6 or not machine_name or not run_id:
        return None
    return f"arn:{parts[1]}:states:{parts[3]}:{parts[4]}:execution:{machine_name}:{run_id}"


# --- gathering (AWS calls, best effort) -------------------------------------------------
@dataclass
class Settings:
    topic_arn: str
    log_group: str = "/aws/batch/job"
    log_lines: int = 20
    machines: dict[str, str] = field(default_factory=dict)  # group -> state machine name
    pipelines: dict[str, list[str]] = field(default_factory=dict)  # group -> its pipelines

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(topic_arn=env["TOPIC_ARN"], log_group=env.get("BATCH_LOG_GROUP") or "/aws/batch/job",
                   log_lines=int(env.get("LOG_LINES") or 20), machines=json.loads(env.get("MACHINES") or "{}"),
                   pipelines=json.loads(env.get("PIPELINES") or "{}"))


class Clients:
    """boto3 clients made on first use; tests pass moto-backed or stub clients."""

    def __init__(self, **made: Any) -> None:
        self.made = dict(made)

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        if service not in self.made:
            import boto3  # from the Lambda runtime

            self.made[service] = boto3.client({"sfn": "stepfunctions"}.get(service, service))
        return self.made[service]


_CLIENTS = Clients()


def handler(event: Any, context: Any = None, *, clients: Clients | None = None,
            settings: Settings | None = None) -> dict:
    """Lambda entry point: build the message and publish it (raises only if SNS does)."""
    settings = settings or Settings.from_env()
    clients = clients or _CLIENTS
    message = build_message(event, settings, clients)
    clients.sns.publish(TopicArn=settings.topic_arn, Subject=message.subject, Message=message.body)
    return {"subject": message.subject}


def build_message(event: Any, settings: Settings, clients: Clients) -> Message:
    source = event.get("source") if isinstance(event, Mapping) else None
    detail = event.get("detail") if isinstance(event, Mapping) else None
    if source == "aws.states" and isinstance(detail, Mapping) and detail.get("executionArn"):
        return execution_message(run_report(detail, settings, clients))
    if source == "aws.batch" and isinstance(detail, Mapping):
        return batch_message(detail, settings, clients)
    return Message(subject="sfn-pipelines: unrecognised event",
                   body="An event this function does not know how to read:\n" + _clip(json.dumps(event, default=str),
                                                                                        MESSAGE_MAX - 100))


def run_report(detail: Mapping[str, Any], settings: Settings, clients: Clients) -> RunReport:
    arn = detail["executionArn"]
    machine_arn = str(detail.get("stateMachineArn") or "")
    # arn:<partition>:states:<region>:<account>:execution:<machine name>:<run id>
    machine = machine_arn.rsplit(":", 1)[-1] if machine_arn else (arn.split(":") + [""] * 8)[6]
    group = {name: g for g, name in settings.machines.items()}.get(machine, machine)
    report = RunReport(status=str(detail.get("status", "?")), execution_arn=arn, group=group,
                       pipelines=list(settings.pipelines.get(group, [])),
                       error=detail.get("error"), cause=detail.get("cause"),
                       started=_when(detail.get("startDate")), stopped=_when(detail.get("stopDate")))
    if report.status == "SUCCEEDED":
        return report
    described = _attempt(report.notes, "the execution's error and cause (states:DescribeExecution)",
                         lambda: clients.sfn.describe_execution(executionArn=arn))
    if described:
        report.error = described.get("error") or report.error
        report.cause = described.get("cause") or report.cause
    report.statuses, stop_all_job = parse_cause(report.error, report.cause)
    if stop_all_job is not None and stop_all_job.step:
        report.jobs[stop_all_job.step] = stop_all_job
    failed = [s for s, v in (report.statuses or {}).items() if v.get("status") == "FAILED"]
    if failed or report.statuses is None:  # exit reasons live in the failed tasks' causes
        history = _attempt(report.notes, "the failed jobs' exit reasons (states:GetExecutionHistory)",
                           lambda: _history(clients, arn))
        for name, details in failed_tasks(history or []).items():
            _, job = parse_cause(None, details.get("cause"))
            if job is not None and name not in report.jobs and (not failed or name in failed):
                job.step = job.step or name
                report.jobs[name] = job
    for job in list(report.jobs.values())[:LOG_STEPS_MAX]:
        job.log_lines = _log_tail(job, settings, clients, report.notes)
    return report


def batch_message(detail: Mapping[str, Any], settings: Settings, clients: Clients) -> Message:
    job = job_info(detail)
    notes: list[str] = []
    job.log_lines = _log_tail(job, settings, clients, notes)
    parts = str(detail.get("jobArn") or "").split(":")
    execution = execution_arn_for(detail.get("jobArn"), settings.machines.get(job.group or ""), job.run_id)
    return job_message(job, execution_arn=execution, region=parts[3] if len(parts) > 4 else None,
                       partition=parts[1] if len(parts) > 4 else "aws", notes=notes)


def _history(clients: Clients, arn: str) -> list[dict]:
    events: list[dict] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "reverseOrder": True, "maxResults": 1000}
    for _ in range(HISTORY_PAGES_MAX):
        page = clients.sfn.get_execution_history(**kwargs)
        events += page.get("events", [])
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return events


def _log_tail(job: JobInfo, settings: Settings, clients: Clients, notes: list[str]) -> list[str]:
    if not job.log_stream or settings.log_lines <= 0:
        return []
    got = _attempt(notes, f"the log of {job.step or job.job_name} (logs:GetLogEvents)",
                   lambda: clients.logs.get_log_events(logGroupName=settings.log_group, logStreamName=job.log_stream,
                                                       limit=settings.log_lines, startFromHead=False))
    return [e.get("message", "").rstrip("\n") for e in (got or {}).get("events", [])]


def _attempt(notes: list[str], what: str, call: Callable[[], Any]) -> Any:
    """Run one enrichment call; on failure note what is missing and carry on."""
    try:
        return call()
    except Exception as e:  # AccessDenied, throttling, a deleted log stream...: the message still goes out
        code = getattr(e, "response", {}).get("Error", {}).get("Code") or type(e).__name__
        notes.append(f"{what}: {code}")
        return None


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    if isinstance(value, (int, float)) and value > 0:
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)  # events give epoch milliseconds
    return None
