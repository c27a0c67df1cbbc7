"""Operating the pipelines: notifications, least privilege, schedules.

Three kinds of test, cheapest first:

- the notification Lambda's pure parts (reading events and job descriptions, the
  message format) and the schedule/context parsers: no CDK, no AWS;
- the Lambda end to end under moto (Step Functions describe + Logs + SNS -> SQS);
- the synthesized default app over ``pipelines/`` (one cloud assembly shared with
  test_app.py / test_snapshots.py / test_lint.py), and one small app of this module for
  context-driven variants (emails, success notices, schedules with and without launcher).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import boto3
import pytest
from aws_cdk import aws_batch as batch
from conftest import synth_default_app
from moto import mock_aws

from sfn_pipelines.layout import flatten_statuses as layout_flatten_statuses
from sfn_pipelines.workflow import load_pipeline_set

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # app.py and infra/ live at the repo root, beside tests/

import app as default_app  # noqa: E402
from infra.notifications import PipelineNotifications, parse_emails, parse_flag  # noqa: E402
from infra.schedules import PipelineSchedules, expression_problem, parse_schedules  # noqa: E402
from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine  # noqa: E402

EXAMPLES = REPO / "pipelines"
HANDLER_PATH = REPO / "infra" / "notify_lambda" / "handler.py"
REGION = "us-east-1"
ACCOUNT = "123456789012"
QUEUE_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/pipelines"
JOB_ARN = f"arn:aws:batch:{REGION}:{ACCOUNT}:job/0b5e-77aa"
FAILURE_STATUSES = ["FAILED", "TIMED_OUT", "ABORTED"]


def load_handler() -> Any:
    """The Lambda module under its own name (infra/launcher has a ``handler`` module too)."""
    spec = importlib.util.spec_from_file_location("sfn_pipelines_notify_handler", HANDLER_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


notify = load_handler()


# --- sample events (shapes as AWS sends them) -------------------------------------------------
def batch_job(step: str = "churn_model", *, pascal: bool = False, exit_code: int = 1) -> dict[str, Any]:
    """A Batch job description: camelCase in a Batch event, PascalCase in a `.sync` task's cause."""
    job = {
        "jobArn": JOB_ARN, "jobName": f"{step}--run-42", "jobId": "0b5e-77aa", "jobQueue": QUEUE_ARN,
        "status": "FAILED", "statusReason": "Essential container in task exited",
        "attempts": [{"container": {"exitCode": 137, "logStreamName": "default/old", "reason": "OutOfMemoryError"}},
                     {"container": {"exitCode": exit_code, "logStreamName": f"default/{step}/abc",
                                    "reason": "Essential container in task exited"}}],
        "container": {"environment": [{"name": "PIPELINE_STEP", "value": step},
                                      {"name": "PIPELINE_NAME", "value": "churn"},
                                      {"name": "PIPELINE_GROUP", "value": "churn"},
                                      {"name": "PIPELINE_RUN_ID", "value": "run-42"}],
                      "logStreamName": f"default/{step}/abc"},
        "tags": {"sfn-pipelines:step": step, "sfn-pipelines:pipeline": "churn"},
    }
    return _pascal(job) if pascal else job


def _pascal(value: Any) -> Any:
    """Step Functions capitalises the keys of the Batch job in a task failure's cause, but
    not tag keys (they are data)."""
    if isinstance(value, list):
        return [_pascal(v) for v in value]
    if isinstance(value, dict):
        return {(k if k.startswith("sfn-pipelines:") else k[:1].upper() + k[1:]): _pascal(v) for k, v in value.items()}
    return value


ISOLATE_CAUSE = {  # $.st of a run of churn where churn_model failed: nested Parallel branches
    "churn_users": {"status": "SUCCEEDED", "job": "j1"},
    "_p1": {"_b0": {"churn_events": {"status": "SUCCEEDED", "job": "j2"}},
            "_b1": {"churn_event_stats": {"status": "SUCCEEDED", "job": "j3"}}},
    "churn_join": {"status": "SUCCEEDED", "job": "j4"},
    "churn_model": {"status": "FAILED", "halt": True, "error": "States.TaskFailed"},
    "churn_report": {"status": "SKIPPED", "halt": True},
}


def execution_event(status: str = "FAILED", machine: str = "SfnPipelines-churn", run: str = "run-42",
                    **extra: Any) -> dict[str, Any]:
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}"
    return {"source": "aws.states", "detail-type": "Step Functions Execution Status Change", "detail": {
        "executionArn": f"{arn}:execution:{machine}:{run}", "stateMachineArn": f"{arn}:stateMachine:{machine}",
        "name": run, "status": status, "startDate": 1767225600000, "stopDate": 1767226354000, **extra}}


# --- pure parts of the Lambda -----------------------------------------------------------------
def test_flatten_statuses_copy_matches_the_library() -> None:
    deep = {"a": {"status": "SUCCEEDED"}, "_p1": {"_b0": {"b": {"status": "FAILED", "halt": True},
                                                          "_p2": {"_b0": {"c": {"status": "SKIPPED"}}, "_b1": {}}},
                                                  "_b1": {"d": {"status": "SUCCEEDED"}}}}
    for st in (deep, ISOLATE_CAUSE, {}):
        assert notify.flatten_statuses(st) == layout_flatten_statuses(st)
    assert set(notify.flatten_statuses(deep)) == {"a", "b", "c", "d"}


@pytest.mark.parametrize("pascal", [False, True], ids=["batch-event", "sfn-cause"])
def test_job_info_reads_either_spelling(pascal: bool) -> None:
    job = notify.job_info(batch_job(pascal=pascal))
    assert (job.step, job.pipeline, job.group, job.run_id) == ("churn_model", "churn", "churn", "run-42")
    assert job.exit_code == 1 and job.attempts == 2
    assert job.log_stream == "default/churn_model/abc"  # the last attempt's stream
    assert job.reason == "exit code 1; Essential container in task exited"


def test_job_info_falls_back_to_tags_then_job_name() -> None:
    job = batch_job()
    del job["container"]["environment"]
    assert notify.job_info(job).step == "churn_model"  # from the sfn-pipelines:step tag
    del job["tags"]
    info = notify.job_info(job)
    assert (info.step, info.run_id) == ("churn_model", "run-42")  # from "<step>--<run id>"


def test_parse_cause_tells_the_two_failure_modes_apart() -> None:
    statuses, job = notify.parse_cause("PipelineStepsFailed", json.dumps(ISOLATE_CAUSE))
    assert job is None and statuses["churn_model"]["status"] == "FAILED" and "churn_events" in statuses
    statuses, job = notify.parse_cause("States.TaskFailed", json.dumps(batch_job(pascal=True)))
    assert statuses is None and job.step == "churn_model"
    assert notify.parse_cause("States.Runtime", "not json") == (None, None)


def test_failed_tasks_keeps_the_last_outcome_of_each_step() -> None:
    """Newest first, as GetExecutionHistory(reverseOrder=True) returns them."""
    def entered(i: int, name: str) -> dict:
        return {"id": i, "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": name}}

    cause = json.dumps(batch_job(pascal=True))
    events = [
        {"id": 9, "previousEventId": 8, "type": "TaskSucceeded"},  # churn_join retried and succeeded
        {"id": 8, "previousEventId": 7, "type": "TaskSubmitted"},
        {"id": 7, "previousEventId": 6, "type": "TaskScheduled"},
        entered(6, "churn_join") | {"previousEventId": 5},
        {"id": 5, "previousEventId": 4, "type": "TaskFailed", "taskFailedEventDetails": {"cause": "x"}},
        entered(4, "churn_join"),
        {"id": 3, "previousEventId": 2, "type": "TaskFailed",
         "taskFailedEventDetails": {"error": "States.TaskFailed", "cause": cause}},
        {"id": 2, "previousEventId": 1, "type": "TaskScheduled"},
        entered(1, "churn_model"),
    ]
    failed = notify.failed_tasks(events)
    assert list(failed) == ["churn_model"]
    assert failed["churn_model"]["cause"] == cause


def test_message_for_a_failed_run_names_pipeline_step_reason_logs_and_link() -> None:
    job = notify.job_info(batch_job(pascal=True))
    job.log_lines = ["loading features", "Traceback (most recent call last):", "ValueError: no rows"]
    report = notify.RunReport(
        status="FAILED", execution_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:SfnPipelines-churn:run-42",
        group="churn", pipelines=["churn"], error="PipelineStepsFailed",
        statuses=notify.flatten_statuses(ISOLATE_CAUSE),
        jobs={"churn_model": job}, started=datetime(2026, 1, 1, tzinfo=timezone.utc),
        stopped=datetime(2026, 1, 1, 0, 12, 34, tzinfo=timezone.utc))
    message = notify.execution_message(report)
    assert message.subject == "Pipeline run FAILED: churn (failed: churn_model)"
    body = message.body
    assert body.startswith("Pipeline run FAILED: group churn (pipeline churn)\nRun id: run-42\n")
    assert "(12 min 34 s)" in body
    assert "- churn_model (pipeline churn): exit code 1; Essential container in task exited" in body
    assert "Batch job churn_model--run-42 (0b5e-77aa)" in body
    assert "  | ValueError: no rows" in body
    assert "Skipped because an upstream step failed (1): churn_report" in body
    assert "Succeeded (4): churn_users, churn_events, churn_event_stats, churn_join" in body
    assert (f"Execution: https://{REGION}.console.aws.amazon.com/states/home?region={REGION}"
            f"#/v2/executions/details/{report.execution_arn}") in body
    assert f"sfn-pipelines resume {report.execution_arn}" in body
    assert "Not included" not in body


def test_message_for_a_timed_out_or_succeeded_run() -> None:
    arn = f"arn:aws-cn:states:cn-north-1:{ACCOUNT}:execution:SfnPipelines-churn:nightly"
    timed_out = notify.execution_message(notify.RunReport(status="TIMED_OUT", execution_arn=arn, group="churn",
                                                          notes=["the log of x (logs:GetLogEvents): AccessDenied"]))
    assert timed_out.subject == "Pipeline run TIMED_OUT: churn"
    assert "timeout" in timed_out.body and "console.amazonaws.cn" in timed_out.body
    assert "- the log of x (logs:GetLogEvents): AccessDenied" in timed_out.body
    ok = notify.execution_message(notify.RunReport(status="SUCCEEDED", execution_arn=arn, group="churn",
                                                   statuses={"a": {"status": "SUCCEEDED"}}))
    assert ok.subject == "Pipeline run SUCCEEDED: churn" and "Failed" not in ok.body


def test_message_for_a_failed_batch_job() -> None:
    job = notify.job_info(batch_job())
    job.log_lines = ["epoch 3", "CUDA out of memory"]
    execution = notify.execution_arn_for(JOB_ARN, "SfnPipelines-churn", job.run_id)
    message = notify.job_message(job, execution_arn=execution, region=REGION)
    assert message.subject == "Batch job FAILED: churn/churn_model"
    body = message.body
    assert body.startswith("Batch job FAILED: step churn_model of pipeline churn (group churn)\nRun id: run-42\n")
    assert "Reason: exit code 1; Essential container in task exited" in body
    assert "Attempts: 2" in body
    assert "Job: churn_model--run-42 (0b5e-77aa) in queue pipelines" in body
    assert "Last 2 log lines (stream default/churn_model/abc):\n  | epoch 3\n  | CUDA out of memory" in body
    assert "#jobs/detail/0b5e-77aa" in body
    assert f"executions/details/arn:aws:states:{REGION}:{ACCOUNT}:execution:SfnPipelines-churn:run-42" in body


def test_subjects_fit_sns_limits() -> None:
    subject = notify.fit_subject("Pipeline run FAILED: " + "é" * 50 + "\n" + "x" * 200)
    assert len(subject) < 100 and subject.isascii() and "\n" not in subject and subject.endswith("...")


def test_lambda_folder_imports_without_site_packages() -> None:
    """Deployed as a plain folder: nothing beyond the stdlib at import (boto3 comes from the
    runtime on first client use), and nothing from sfn_pipelines."""
    code = "import handler, sys; print(sorted(m for m in ('boto3', 'sfn_pipelines') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=HANDLER_PATH.parent, capture_output=True,
                       text=True, timeout=60, env={"PYTHONPATH": str(HANDLER_PATH.parent), "PATH": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"
    assert sorted(p.name for p in HANDLER_PATH.parent.glob("*.py")) == ["handler.py"]


# --- the Lambda end to end under moto ----------------------------------------------------------
MOTO_EXECUTE = {"stepfunctions": {"execute_state_machine": True}}


class Aws:
    """moto-backed clients, a topic with an SQS subscriber, the Batch log group."""

    def __init__(self) -> None:
        self.clients = notify.Clients(**{name: boto3.client(service, region_name=REGION) for name, service in
                                         (("sns", "sns"), ("sfn", "stepfunctions"), ("logs", "logs"))})
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.topic = self.clients.sns.create_topic(Name="notifications")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        self.clients.sns.subscribe(TopicArn=self.topic, Protocol="sqs",
                                   Endpoint=queue_arn["Attributes"]["QueueArn"])
        self.clients.logs.create_log_group(logGroupName="/aws/batch/job")
        self.settings = notify.Settings(topic_arn=self.topic, machines={"churn": "SfnPipelines-churn"},
                                        pipelines={"churn": ["churn"]})

    def job_log(self, stream: str, lines: list[str]) -> None:
        now = int(time.time() * 1000)  # CloudWatch rejects events older than 14 days
        self.clients.logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName=stream)
        self.clients.logs.put_log_events(logGroupName="/aws/batch/job", logStreamName=stream, logEvents=[
            {"timestamp": now + i, "message": line} for i, line in enumerate(lines)])

    def failed_run(self, error: str, cause: Any) -> dict[str, Any]:
        """A real (moto-executed) FAILED execution whose Fail state sets error and cause."""
        definition = {"StartAt": "Collect", "States": {
            "Collect": {"Type": "Pass", "Result": cause, "ResultPath": "$.st", "Next": "Run failed"},
            "Run failed": {"Type": "Fail", "Error": error, "CausePath": "States.JsonToString($.st)"}}}
        sfn = self.clients.sfn
        machine = sfn.create_state_machine(name="SfnPipelines-churn", definition=json.dumps(definition),
                                           roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn")["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=machine, name="run-42", input="{}")["executionArn"]
        for _ in range(200):
            if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
                break
            time.sleep(0.02)
        return {"source": "aws.states", "detail-type": "Step Functions Execution Status Change", "detail": {
            "executionArn": arn, "stateMachineArn": machine, "name": "run-42", "status": "FAILED",
            "startDate": 1767225600000, "stopDate": 1767225660000}}

    def published(self) -> list[dict[str, str]]:
        got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws(config=MOTO_EXECUTE):
        yield Aws()


def test_handler_reports_an_isolate_mode_failure(aws: Aws) -> None:
    event = aws.failed_run("PipelineStepsFailed", ISOLATE_CAUSE)
    out = notify.handler(event, None, clients=aws.clients, settings=aws.settings)
    (sent,) = aws.published()
    assert sent["Subject"] == out["subject"] == "Pipeline run FAILED: churn (failed: churn_model)"
    assert "- churn_model: States.TaskFailed" in sent["Message"]  # no job details in moto's history
    assert "Skipped because an upstream step failed (1): churn_report" in sent["Message"]
    assert "execution:SfnPipelines-churn:run-42" in sent["Message"]
    assert sent["Message"].startswith("Pipeline run FAILED: group churn (pipeline churn)\n")


def test_handler_reports_a_stop_all_failure_with_the_job_log(aws: Aws) -> None:
    """stop_all: the run's cause is the failed job's description, which names its log stream."""
    aws.job_log("default/churn_model/abc", [f"line {i}" for i in range(30)])
    # AWS says States.TaskFailed; moto's Fail state refuses "States." names (aws-notes.md), and
    # the handler recognises the job description by its shape, not by the error name.
    event = aws.failed_run("TaskFailed", batch_job(pascal=True))
    notify.handler(event, None, clients=aws.clients, settings=aws.settings)
    (sent,) = aws.published()
    body = sent["Message"]
    assert sent["Subject"] == "Pipeline run FAILED: churn (failed: churn_model)"
    assert "- churn_model (pipeline churn): exit code 1; Essential container in task exited" in body
    assert "Last 20 log lines (stream default/churn_model/abc):" in body
    assert "  | line 29" in body and "  | line 10" in body and "line 9\n" not in body


def test_handler_reports_a_failed_batch_job(aws: Aws) -> None:
    aws.job_log("default/churn_model/abc", ["reading input", "KeyError: 'smiles'"])
    event = {"source": "aws.batch", "detail-type": "Batch Job State Change", "detail": batch_job()}
    notify.handler(event, None, clients=aws.clients, settings=aws.settings)
    (sent,) = aws.published()
    assert sent["Subject"] == "Batch job FAILED: churn/churn_model"
    assert "  | KeyError: 'smiles'" in sent["Message"]
    assert "execution:SfnPipelines-churn:run-42" in sent["Message"]  # step_functions mode: linked


def test_handler_still_publishes_when_enrichment_fails(aws: Aws) -> None:
    """No log stream, and an execution the function cannot describe: the message goes out
    and says what it could not include."""
    event = {"source": "aws.batch", "detail-type": "Batch Job State Change", "detail": batch_job()}
    notify.handler(event, None, clients=aws.clients, settings=notify.Settings(topic_arn=aws.topic))
    missing = execution_event(error="States.Runtime", cause="boom")
    notify.handler(missing, None, clients=aws.clients, settings=aws.settings)
    job_message, run_message = aws.published()
    assert "Not included:\n- the log of churn_model (logs:GetLogEvents): ResourceNotFoundException" in \
        job_message["Message"]
    assert "Execution:" not in job_message["Message"]  # no MACHINES: sqs mode, nothing to link
    assert "states:DescribeExecution" in run_message["Message"] and "Cause: boom" in run_message["Message"]


def test_handler_answers_unknown_events_without_crashing(aws: Aws) -> None:
    notify.handler({"source": "aws.s3", "detail": {}}, None, clients=aws.clients, settings=aws.settings)
    (sent,) = aws.published()
    assert sent["Subject"] == "sfn-pipelines: unrecognised event" and "aws.s3" in sent["Message"]


# --- context parsing --------------------------------------------------------------------------
def test_parse_emails() -> None:
    assert parse_emails("a@x.org, b@y.com;a@x.org") == ["a@x.org", "b@y.com"]
    assert parse_emails(["ops@x.org"]) == parse_emails('["ops@x.org"]') == ["ops@x.org"]
    assert parse_emails(None) == parse_emails("") == []
    with pytest.raises(ValueError, match="not an e-mail address: 'ops'"):
        parse_emails("ops, a@x.org")
    with pytest.raises(ValueError, match="list of e-mail addresses"):
        parse_emails({"a": 1})


def test_parse_flag() -> None:
    assert parse_flag("true", "k") and parse_flag(True, "k") and not parse_flag(None, "k")
    assert not parse_flag("false", "k")
    with pytest.raises(ValueError, match="context notify_on_success must be true or false"):
        parse_flag("sometimes", "notify_on_success")


@pytest.mark.parametrize("expression", ["rate(1 day)", "rate(5 minutes)", "cron(0 3 * * ? *)",
                                        "cron(15 10 ? * MON-FRI *)", "cron(0 8 1 * ? 2027)"])
def test_valid_schedule_expressions(expression: str) -> None:
    assert expression_problem(expression) is None


@pytest.mark.parametrize(("expression", "says"), [
    ("rate(1 days)", "rate(1 day)"), ("rate(2 hour)", "plural"), ("rate(0 minutes)", "at least 1"),
    ("cron(0 3 * * *)", "6 fields"), ("cron(0 3 * * * *)", "must be '?'"), ("daily", "neither rate"),
    (3, "must be a string"),
])
def test_invalid_schedule_expressions(expression: Any, says: str) -> None:
    assert says in expression_problem(expression)


def test_schedule_keys_are_groups_or_patterns() -> None:
    groups = ["churn", "toxicity-a", "toxicity-b"]
    found = parse_schedules('{"churn": "rate(1 day)", "toxicity-*": "cron(0 3 * * ? *)"}', groups)
    assert [(s.group, s.expression) for s in found] == [
        ("churn", "rate(1 day)"), ("toxicity-a", "cron(0 3 * * ? *)"), ("toxicity-b", "cron(0 3 * * ? *)")]
    assert parse_schedules(None, groups) == parse_schedules("", groups) == []
    with pytest.raises(ValueError) as e:
        parse_schedules({"chrn": "rate(1 day)", "churn": "daily"}, groups)
    assert "chrn: no group has this name or matches it (groups: churn, toxicity-a, toxicity-b)" in str(e.value)
    assert "churn: 'daily' is neither" in str(e.value)  # every problem at once
    with pytest.raises(ValueError, match="JSON object"):
        parse_schedules("[1]", groups)


def test_bad_context_is_a_clear_error_at_synth(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``cdk synth -c schedules=...`` naming no group: ``app.py`` exits 2 with one line, no
    traceback. (In process: the App gets the context the CLI would pass in CDK_CONTEXT_JSON,
    which the already running jsii process cannot see.)"""
    context = {"pipelines_dir": str(EXAMPLES / "churn"), "schedules": '{"nightly": "rate(1 day)"}'}
    app_class = cdk.App
    monkeypatch.setattr(default_app.cdk, "App", lambda **kw: app_class(**kw, context=context))
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    assert default_app.main() == 2
    err = capsys.readouterr().err
    assert "sfn-pipelines: context schedules: nightly: no group has this name or matches it (groups: churn)" in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.template.json"))  # stopped before synth


# --- the default app (shared cloud assembly) -------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return json.loads((synth_default_app(tmp_path_factory) / "SfnPipelines.template.json").read_text())


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == kind}


def statements(template: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(policy logical id, attached role logical id, statement) for every Allow statement,
    inline role policies included."""
    found = []
    for lid, res in template["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Policy":
            for role in props.get("Roles", []):
                found += [(lid, role["Ref"], s) for s in props["PolicyDocument"]["Statement"]]
        elif res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                found += [(lid, lid, s) for s in policy["PolicyDocument"]["Statement"]]
        elif res["Type"] == "AWS::IAM::ManagedPolicy":
            for role in props.get("Roles", []):
                found += [(lid, role["Ref"], s) for s in props["PolicyDocument"]["Statement"]]
    return [f for f in found if f[2].get("Effect") == "Allow"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_of(template: dict[str, Any], logical_id: str, attribute: str = "Role") -> str:
    """The role logical id of a function (``Role``) or state machine (``RoleArn``)."""
    return template["Resources"][logical_id]["Properties"][attribute]["Fn::GetAtt"][0]


def flat(value: Any) -> str:
    """A resource as text, tokens included, to match ARN shapes."""
    return json.dumps(value, sort_keys=True)


def test_no_wildcard_actions_anywhere(template: dict[str, Any]) -> None:
    found = statements(template)
    assert len(found) > 20
    bad = [(lid, a) for lid, _, s in found for a in as_list(s["Action"]) if a == "*" or a.endswith(":*")]
    assert not bad, bad


def test_state_machines_log_and_trace(template: dict[str, Any]) -> None:
    found = resources(template, "AWS::StepFunctions::StateMachine")
    assert len(found) == len(load_pipeline_set(EXAMPLES).workflows)
    for lid, machine in found.items():
        props = machine["Properties"]
        assert props["LoggingConfiguration"]["Level"] in ("ALL", "ERROR"), lid
        assert props["LoggingConfiguration"]["Destinations"], lid
        assert props["TracingConfiguration"] == {"Enabled": True}, lid


def machine_statements(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {lid: [s for _, role, s in statements(template) if role == role_of(template, lid, "RoleArn")]
            for lid in resources(template, "AWS::StepFunctions::StateMachine")}


def test_state_machines_submit_only_to_the_project_queue(template: dict[str, Any]) -> None:
    queues = set(resources(template, "AWS::Batch::JobQueue"))
    for lid, stmts in machine_statements(template).items():
        submit = [r for s in stmts if "batch:SubmitJob" in as_list(s["Action"]) for r in as_list(s["Resource"])]
        assert submit, lid
        assert "*" not in submit, lid
        queue_refs = [r for r in submit if "job-queue" in flat(r) or "JobQueueArn" in flat(r)]
        assert queue_refs and all(r.get("Fn::GetAtt", [None])[0] in queues for r in queue_refs), (lid, queue_refs)


def machine_denials(template: dict[str, Any], machine: str) -> list[dict[str, Any]]:
    role = role_of(template, machine, "RoleArn")
    return [s for res in resources(template, "AWS::IAM::Policy").values()
            if {"Ref": role} in res["Properties"].get("Roles", [])
            for s in res["Properties"]["PolicyDocument"]["Statement"] if s.get("Effect") == "Deny"]


def test_state_machines_submit_only_the_project_job_definitions(template: dict[str, Any]) -> None:
    """CDK's BatchSubmitJob allows job-definition/*: a Deny of SubmitJob on everything but
    the project's queues and definitions (NotResource) must take that back."""
    queues = set(resources(template, "AWS::Batch::JobQueue"))
    definitions = set(resources(template, "AWS::Batch::JobDefinition"))

    def project_arn(r: Any) -> bool:
        if isinstance(r, dict) and "Fn::Join" in r:  # "<definition ARN>:*": any revision of ours
            parts = r["Fn::Join"][1]
            return len(parts) == 2 and parts[1] == ":*" and project_arn(parts[0])
        return (isinstance(r, dict) and (r.get("Ref") in definitions or
                                         r.get("Fn::GetAtt", [None, None]) in ([q, "JobQueueArn"] for q in queues)))

    for lid, stmts in machine_statements(template).items():
        allowed = [r for s in stmts if "batch:SubmitJob" in as_list(s["Action"]) for r in as_list(s["Resource"])]
        wildcards = [r for r in allowed if "*" in flat(r)]
        assert all(project_arn(r) for r in allowed if r not in wildcards), (lid, allowed)
        if not wildcards:
            continue
        denials = [s for s in machine_denials(template, lid) if "batch:SubmitJob" in as_list(s["Action"])]
        assert denials, f"{lid}: SubmitJob allowed on {wildcards} and nothing denies the rest"
        for deny in denials:
            assert "Resource" not in deny and all(project_arn(r) for r in as_list(deny["NotResource"])), deny


def test_state_machines_can_follow_and_stop_their_jobs(template: dict[str, Any]) -> None:
    for lid, stmts in machine_statements(template).items():
        actions = {a: s["Resource"] for s in stmts for a in as_list(s["Action"])}
        assert actions["batch:DescribeJobs"] == "*", lid  # DescribeJobs has no resource-level permissions
        assert flat(actions["batch:TerminateJob"]).endswith(':job/*"]]}'), (lid, actions["batch:TerminateJob"])


def launcher_function(template: dict[str, Any]) -> str:
    found = [lid for lid in resources(template, "AWS::Lambda::Function") if lid.startswith("LauncherFunction")]
    if not found:
        pytest.skip("no launcher in the default app yet (infra/launcher_construct.py is wired in by another change)")
    return found[0]


def test_launcher_starts_only_the_generated_machines(template: dict[str, Any]) -> None:
    role = role_of(template, launcher_function(template))
    machines = {lid for lid in resources(template, "AWS::StepFunctions::StateMachine")}
    granted = [r for _, rl, s in statements(template) if rl == role
               for a in as_list(s["Action"]) if a == "states:StartExecution" for r in as_list(s["Resource"])]
    assert granted, "the launcher cannot start anything"
    assert {r.get("Ref") for r in granted} == machines, granted
    sends = [s for _, rl, s in statements(template) if rl == role and "sqs:SendMessage" in as_list(s["Action"])]
    assert not sends  # step_functions mode: no queue


def test_default_app_has_the_notifications(template: dict[str, Any]) -> None:
    topics = resources(template, "AWS::SNS::Topic")
    topic = next(lid for lid in topics if lid.startswith("Notifications"))
    policy = next(r for r in resources(template, "AWS::SNS::TopicPolicy").values()
                  if r["Properties"]["Topics"] == [{"Ref": topic}])
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy["Properties"]["PolicyDocument"]["Statement"])
    rules = [r["Properties"] for r in resources(template, "AWS::Events::Rule").values()]
    runs = [r for r in rules if r.get("EventPattern", {}).get("source") == ["aws.states"]]
    jobs = [r for r in rules if r.get("EventPattern", {}).get("source") == ["aws.batch"]]
    assert len(runs) == 1 and len(jobs) == 1
    pattern = runs[0]["EventPattern"]
    machines = pattern["detail"]["stateMachineArn"]
    assert sorted(m["Ref"] for m in machines) == sorted(resources(template, "AWS::StepFunctions::StateMachine"))
    assert {**pattern, "detail": {**pattern["detail"], "stateMachineArn": "..."}} == {
        "source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": FAILURE_STATUSES, "stateMachineArn": "..."}}
    assert jobs[0]["EventPattern"] == {
        "source": ["aws.batch"], "detail-type": ["Batch Job State Change"],
        "detail": {"status": ["FAILED"], "jobQueue": [{"Fn::GetAtt": [q, "JobQueueArn"]}
                                                      for q in resources(template, "AWS::Batch::JobQueue")]}}
    function = next(lid for lid in resources(template, "AWS::Lambda::Function") if lid.startswith("Notifications"))
    for rule in runs + jobs:
        assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": [function, "Arn"]}]
    assert not resources(template, "AWS::SNS::Subscription")  # no notify_emails in this app's context


def test_notification_function_reads_only_what_a_message_needs(template: dict[str, Any]) -> None:
    function = next(lid for lid in resources(template, "AWS::Lambda::Function") if lid.startswith("Notifications"))
    props = template["Resources"][function]["Properties"]
    assert props["Handler"] == "handler.handler" and props["Runtime"].startswith("python3")
    env = props["Environment"]["Variables"]
    assert json.loads(env["PIPELINES"]) == {w.name: list(w.group.pipelines)
                                            for w in load_pipeline_set(EXAMPLES).workflows}
    assert env["BATCH_LOG_GROUP"] == "/aws/batch/job" and "MACHINES" in env
    role = role_of(template, function)
    assert not template["Resources"][role]["Properties"].get("ManagedPolicyArns")
    granted: dict[str, list[Any]] = {}
    for _, r, s in statements(template):
        if r == role:
            for action in as_list(s["Action"]):
                granted.setdefault(action, []).extend(as_list(s["Resource"]))
    assert set(granted) == {"logs:CreateLogStream", "logs:PutLogEvents", "sns:Publish", "logs:GetLogEvents",
                            "states:DescribeExecution", "states:GetExecutionHistory"}
    (logs,) = granted["logs:GetLogEvents"]
    assert flat(logs).endswith(':log-group:/aws/batch/job:log-stream:*"]]}')
    machines = resources(template, "AWS::StepFunctions::StateMachine")
    executions = granted["states:DescribeExecution"]
    assert granted["states:GetExecutionHistory"] == executions
    named = set()
    for arn in executions:
        parts = arn["Fn::Join"][1]
        assert parts[-3] == ":execution:" and parts[-1] == ":*", parts
        assert list(parts[-2]) == ["Fn::GetAtt"] and parts[-2]["Fn::GetAtt"][1] == "Name", parts
        named.add(parts[-2]["Fn::GetAtt"][0])
    assert named == set(machines) and len(executions) == len(machines)
    assert granted["sns:Publish"] == [{"Ref": next(t for t in resources(template, "AWS::SNS::Topic")
                                                   if t.startswith("Notifications"))}]


# --- a small app: context-driven variants ---------------------------------------------------
def ops_stack(app: cdk.App, name: str, *, launcher: bool | str, **explicit: Any) -> None:
    """Two groups on an imported queue, with notifications and schedules; settings come
    from the app's context unless given in ``explicit``. ``launcher="sqs"``: the real
    launcher in sqs mode instead of a stand-in function."""
    stack = cdk.Stack(app, name)
    queue = batch.JobQueue.from_job_queue_arn(stack, "Queue", QUEUE_ARN)
    definitions = {"small": batch.EcsJobDefinition.from_job_definition_arn(
        stack, "Small", f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/small:1")}
    pipeline_set = load_pipeline_set(EXAMPLES)
    machines = {w.name: WorkbenchPipelineStateMachine(stack, f"M-{w.name}", workflow=w, job_queue=queue,
                                                      job_definitions=definitions,
                                                      state_machine_name=f"{name}-{w.name}")
                for w in pipeline_set.workflows if w.name in ("churn", "solubility")}
    if launcher == "sqs":
        from infra.launcher_construct import PipelineLauncher

        PipelineLauncher(stack, "Launcher", pipeline_set=pipeline_set, machines=machines, execution_mode="sqs",
                         job_queue=queue, job_definitions=definitions)
        return
    PipelineNotifications(stack, "Notifications", machines=machines, execution_mode="sqs",
                          emails=explicit.get("emails"), notify_on_success=explicit.get("notify_on_success"))
    fn = None
    if launcher:
        from aws_cdk import aws_lambda as lambda_

        fn = lambda_.Function(stack, "Launcher", runtime=lambda_.Runtime.PYTHON_3_14, handler="h.h",
                              code=lambda_.Code.from_inline("def h(e, c): return e"))
    PipelineSchedules(stack, "Schedules", machines=machines, launcher=fn, schedules=explicit.get("schedules"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One small app, synthesized once: stack "launcher" reads everything from context,
    stack "direct" has no launcher and explicit settings."""
    context = {"notify_emails": "ops@example.org, ml@example.org", "notify_on_success": "true",
               "schedules": json.dumps({"churn": "cron(0 3 * * ? *)", "solu*": "rate(1 day)"})}
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("ops")), context=context)
    ops_stack(app, "launcher", launcher=True)
    ops_stack(app, "direct", launcher=False, emails=[], notify_on_success=False,
              schedules={"churn": "rate(2 hours)"})
    stacks = ["launcher", "direct"]
    if importlib.util.find_spec("infra.launcher_construct") is not None:
        ops_stack(app, "sqs", launcher="sqs")
        stacks.append("sqs")
    assembly = app.synth()
    return {name: assembly.get_stack_by_name(name).template for name in stacks}


def test_subscriptions_and_success_notices_from_context(small: dict[str, dict[str, Any]]) -> None:
    template = small["launcher"]
    subs = sorted((r["Properties"]["Protocol"], r["Properties"]["Endpoint"])
                  for r in resources(template, "AWS::SNS::Subscription").values())
    assert subs == [("email", "ml@example.org"), ("email", "ops@example.org")]
    runs = next(r["Properties"] for r in resources(template, "AWS::Events::Rule").values()
                if r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"])
    assert runs["EventPattern"]["detail"]["status"] == [*FAILURE_STATUSES, "SUCCEEDED"]
    other = small["direct"]
    assert not resources(other, "AWS::SNS::Subscription")
    runs = next(r["Properties"] for r in resources(other, "AWS::Events::Rule").values()
                if r["Properties"].get("EventPattern", {}).get("source") == ["aws.states"])
    assert runs["EventPattern"]["detail"]["status"] == FAILURE_STATUSES


def test_sqs_mode_links_no_executions(small: dict[str, dict[str, Any]]) -> None:
    function = next(r for lid, r in resources(small["launcher"], "AWS::Lambda::Function").items()
                    if lid.startswith("Notifications"))
    assert "MACHINES" not in function["Properties"]["Environment"]["Variables"]


def schedule_rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["Description"]: r["Properties"] for r in resources(template, "AWS::Events::Rule").values()
            if "ScheduleExpression" in r["Properties"]}


def test_schedules_invoke_the_launcher_with_an_idempotent_run_id(small: dict[str, dict[str, Any]]) -> None:
    template = small["launcher"]
    rules = schedule_rules(template)
    assert sorted(rules) == ["sfn-pipelines: run group churn on cron(0 3 * * ? *)",
                             "sfn-pipelines: run group solubility on rate(1 day)"]
    launcher = next(lid for lid in resources(template, "AWS::Lambda::Function") if lid.startswith("Launcher"))
    for description, rule in rules.items():
        group = re.search(r"run group (\S+) on", description)[1]
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [launcher, "Arn"]}
        assert target["InputTransformer"]["InputPathsMap"] == {"time": "$.time"}
        request = json.loads(target["InputTransformer"]["InputTemplate"].replace("<time>", "2026-01-01T03:00:00Z"))
        assert request == {"select": [group], "run_id": f"{group}-2026-01-01T03:00:00Z"}
    permissions = [r["Properties"] for r in resources(template, "AWS::Lambda::Permission").values()
                   if r["Properties"]["FunctionName"] == {"Fn::GetAtt": [launcher, "Arn"]}]
    assert len(permissions) == 2 and all(p["Principal"] == "events.amazonaws.com" for p in permissions)


def test_schedules_start_the_machine_without_a_launcher(small: dict[str, dict[str, Any]]) -> None:
    template = small["direct"]
    (rule,) = schedule_rules(template).values()
    assert rule["ScheduleExpression"] == "rate(2 hours)"
    (target,) = rule["Targets"]
    machine = next(lid for lid, r in resources(template, "AWS::StepFunctions::StateMachine").items()
                   if r["Properties"]["StateMachineName"] == "direct-churn")
    assert target["Arn"] == {"Ref": machine} and target["Input"] == "{}"
    role = target["RoleArn"]["Fn::GetAtt"][0]
    started = [s for _, r, s in statements(template) if r == role]
    assert started == [{"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": machine}}]


def test_sqs_launcher_sends_only_to_its_queue(small: dict[str, dict[str, Any]]) -> None:
    if "sqs" not in small:
        pytest.skip("infra/launcher_construct.py not present yet")
    template = small["sqs"]
    functions = resources(template, "AWS::Lambda::Function")
    launcher = next(lid for lid in functions if lid.startswith("LauncherFunction"))
    consumer = next(lid for lid in functions if lid.startswith("LauncherConsumer"))
    queues = resources(template, "AWS::SQS::Queue")
    jobs = next(lid for lid, q in queues.items() if "RedrivePolicy" in q["Properties"])  # not the DLQ
    by_role: dict[str, dict[str, list[Any]]] = {}
    for _, role, s in statements(template):
        for action in as_list(s["Action"]):
            by_role.setdefault(role, {}).setdefault(action, []).extend(as_list(s["Resource"]))
    granted = by_role[role_of(template, launcher)]
    assert granted["sqs:SendMessage"] == [{"Fn::GetAtt": [jobs, "Arn"]}]
    assert not [a for a in granted if a.startswith("states:Start")]  # runs go through the queue only
    submit = by_role[role_of(template, consumer)]["batch:SubmitJob"]
    assert QUEUE_ARN in submit and "*" not in submit
    assert all(r == QUEUE_ARN or "job-definition/small:1" in flat(r) for r in submit), submit
