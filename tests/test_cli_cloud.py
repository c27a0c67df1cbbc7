"""``sfn-pipelines start | status | resume`` against moto, with injected clients.

``--via-launcher`` goes through a Lambda client whose ``invoke`` runs the launcher's
handler in-process (moto's Lambda would need Docker), configured as deployed.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aslrun import QUEUE_ARN, FakeBatch
from conftest import REPO
from test_launcher import Cloud, Stage, deployment, moto_cloud
from test_sqs_backend import DependencyBatch, sqs_cloud

from sfn_pipelines import cli, cli_cloud, cloud

sys.path.insert(0, str(REPO / "infra" / "launcher"))
import handler


class LauncherLambda:
    """``lambda.invoke`` that runs the launcher handler here; ``crash`` mimics a FunctionError."""

    def __init__(self, config: Any, clients: Any, crash: bool = False) -> None:
        self.config, self.clients, self.crash = config, clients, crash
        self.requests: list[dict] = []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict:
        request = json.loads(Payload)
        self.requests.append(request)
        if self.crash:
            body = {"errorMessage": "Task timed out after 60.00 seconds", "errorType": "Sandbox.Timedout"}
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(body).encode())}
        answer = handler.handler(request, None, config=self.config, clients=self.clients)
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


@pytest.fixture(autouse=True)
def _no_default_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli_cloud.LAUNCHER_ENV, raising=False)


@pytest.fixture(scope="module")
def stage() -> Stage:
    return deployment()["step_functions"]


def use(monkeypatch: pytest.MonkeyPatch, c: Cloud, launcher: LauncherLambda | None = None) -> None:
    def factory(service: str, region: str | None = None) -> Any:
        return launcher if service == "lambda" and launcher else c.client(service)

    monkeypatch.setattr(cli_cloud, "client_factory", factory)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sfn_cloud(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    with moto_cloud(stage, execute=False) as c:
        use(monkeypatch, c)
        yield c


# --- start ------------------------------------------------------------------------------------
def test_start_directly_is_idempotent_and_has_a_dry_run(stage: Stage, sfn_cloud: Cloud,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = str(stage.pipelines_dir)
    code, out, _ = run(capsys, "start", d, "--select", "model_a", "--run-id", "cli-1", "--state-machine-prefix",
                       "Launch", "--dry-run")
    assert code == 0 and "run cli-1: train would start: 1 step(s)" in out
    assert not sfn_cloud.client("stepfunctions").list_executions(
        stateMachineArn=sfn_cloud.machine_arns["train"])["executions"]

    code, out, _ = run(capsys, "start", d, "--select", "model_a", "--run-id", "cli-1", "--state-machine-prefix",
                       "Launch")
    arn = cloud.execution_arn(sfn_cloud.machine_arns["train"], "cli-1")
    assert code == 0 and "train started: 1 step(s)" in out and arn in out
    desc = sfn_cloud.client("stepfunctions").describe_execution(executionArn=arn)
    assert json.loads(desc["input"]) == {"select": {"model_a": True}}

    code, out, _ = run(capsys, "start", d, "--select", "model_a", "--run-id", "cli-1", "--state-machine-prefix",
                       "Launch")
    assert code == 0 and "already exists (RUNNING), nothing started" in out

    code, out, _ = run(capsys, "start", d, "--select", "clean", "--run-id", "cli-2", "--state-machine-prefix",
                       "Launch", "--", "--epochs", "3")
    desc = sfn_cloud.client("stepfunctions").describe_execution(
        executionArn=cloud.execution_arn(sfn_cloud.machine_arns["other"], "cli-2"))
    assert code == 0 and json.loads(desc["input"]) == {"select": {"clean": True}, "args": ["--epochs", "3"]}


def test_start_mistakes_are_one_line_each(stage: Stage, sfn_cloud: Cloud, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(stage.pipelines_dir)
    cases = [
        (["start", d, "--select", "modle_a", "--state-machine-prefix", "Launch"], "'modle_a' (close: "),
        (["start", d, "--state-machine-prefix", "Nope"], "no state machine named Nope-"),
        (["start", d], "say how to start: --via-launcher FUNCTION"),
        (["status", "run-7"], "a run id needs --via-launcher"),
        (["resume", "run-7"], "resume takes an execution ARN"),
    ]
    for argv, words in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and words in err and "Traceback" not in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err


def test_aws_errors_exit_1_without_a_traceback(sfn_cloud: Cloud, capsys: pytest.CaptureFixture[str]) -> None:
    missing = cloud.execution_arn(sfn_cloud.machine_arns["train"], "never")
    code, _, err = run(capsys, "status", missing)
    assert code == 1 and "ExecutionDoesNotExist" in err and "Traceback" not in err


def test_script_args_after_the_double_dash_reach_the_launcher(stage: Stage, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    with sqs_cloud(DependencyBatch()) as s:
        launcher = LauncherLambda(s.config, s.cloud.clients)
        use(monkeypatch, s.cloud, launcher)
        code, out, err = run(capsys, "start", "--select", "clean", "--run-id", "args-1", "--via-launcher", "fn",
                             "--", "--epochs", "3", "--", "x")
        assert code == 0, err
        assert launcher.requests == [{"select": ["clean"], "run_id": "args-1", "args": ["--epochs", "3", "--", "x"]}]
        assert "run args-1: queued 1 Batch job(s) (0 barrier(s))" in out
        s.drain()
        code, out, err = run(capsys, "status", "args-1", "--job-queue", QUEUE_ARN)
        assert code == 0 and "run args-1: SUCCEEDED (Batch jobs)" in out and "clean" in out


def test_start_through_the_launcher_prints_json(stage: Stage, sfn_cloud: Cloud, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    launcher = LauncherLambda(stage.config(), sfn_cloud.clients)
    use(monkeypatch, sfn_cloud, launcher)
    monkeypatch.setenv(cli_cloud.LAUNCHER_ENV, "fn")  # picked up as the --via-launcher default
    code, out, err = run(capsys, "start", "--select", "other", "--run-id", "j-1", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["ok"] and [e["group"] for e in answer["executions"]] == ["other"]
    code, _, err = run(capsys, "start", "--select", "nothing-like-this", "--via-launcher", "fn")
    assert code == 2 and "matches no pipeline, group or step" in err

    crashing = LauncherLambda(stage.config(), sfn_cloud.clients, crash=True)
    use(monkeypatch, sfn_cloud, crashing)
    code, _, err = run(capsys, "start", "--via-launcher", "fn")
    assert code == 1 and "the launcher fn failed: Task timed out" in err


# --- status and resume -----------------------------------------------------------------------------
def test_status_and_resume_of_a_failed_run(stage: Stage, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with moto_cloud(stage, FakeBatch(fail_attempts={"model_a": 1})) as c:
        use(monkeypatch, c)
        code, _, err = run(capsys, "start", str(stage.pipelines_dir), "--select", "train", "--run-id", "st-1",
                           "--state-machine-prefix", "Launch")
        assert code == 0, err
        arn = cloud.execution_arn(c.machine_arns["train"], "st-1")
        assert c.wait([arn])[arn]["status"] == "FAILED"

        code, out, _ = run(capsys, "status", arn)
        lines = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
        assert out.startswith(f"run st-1: FAILED  {arn}  (")
        transitions = int(out.splitlines()[0].split("(")[1].split()[0])
        assert transitions >= 3 + 2 * len(lines) + 2  # start states, check + task per step, end states
        assert all(re.fullmatch(r"[0-9.]+s", line.split()[2]) for line in out.splitlines()[1:]
                   if line.split()[1] == "SUCCEEDED")  # each job's duration, from Batch
        assert lines == {"feat": "SUCCEEDED", "model_a": "FAILED", "model_b": "SUCCEEDED", "prep": "SUCCEEDED",
                         "promote": "SKIPPED", "report": "SUCCEEDED"}

        code, out, _ = run(capsys, "resume", arn, "--dry-run")
        assert code == 0 and "2 step(s) to run again" in out and "would start" in out
        code, out, _ = run(capsys, "resume", arn)
        new = cloud.execution_arn(c.machine_arns["train"], "st-1-r1")
        assert code == 0 and new in out
        assert c.wait([new])[new]["status"] == "SUCCEEDED"

        code, out, _ = run(capsys, "status", "st-1-r1", "--state-machine-prefix", "Launch", "--json")
        [report] = json.loads(out)["executions"]
        assert {s: st["status"] for s, st in report["steps"].items()} == {
            "feat": "NOT_SELECTED", "model_a": "SUCCEEDED", "model_b": "NOT_SELECTED", "prep": "NOT_SELECTED",
            "promote": "SUCCEEDED", "report": "NOT_SELECTED"}

        code, out, _ = run(capsys, "resume", new)
        assert code == 0 and "nothing to resume" in out


def test_status_and_resume_through_an_sqs_launcher(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with sqs_cloud(DependencyBatch(fail={("q-1", "feat")})) as s:
        use(monkeypatch, s.cloud, LauncherLambda(s.config, s.cloud.clients))
        assert run(capsys, "start", "--select", "train", "--run-id", "q-1", "--via-launcher", "fn")[0] == 0
        s.drain()
        code, out, _ = run(capsys, "status", "q-1", "--via-launcher", "fn")
        assert code == 0 and "run q-1: FAILED (Batch jobs)" in out
        assert "Dependent Job failed" in next(line for line in out.splitlines() if line.split()[0] == "promote")
        code, out, _ = run(capsys, "resume", "q-1", "--via-launcher", "fn")
        assert code == 0 and "queued 4 Batch job(s)" in out  # feat and everything after it
        s.drain()
        code, out, _ = run(capsys, "status", "q-1-r1", "--via-launcher", "fn")
        assert "run q-1-r1: SUCCEEDED" in out


def test_double_dash_splitting_keeps_everything_after_it() -> None:
    args = cli._parser().parse_args(["start", "dir", "--select", "a", "b", "--", "--select", "x", "--"])
    assert args.dir == "dir" and args.select == ["a", "b"] and args.script_args == ["--select", "x", "--"]
    args = cli._parser().parse_args(["start"])
    assert args.dir == "pipelines" and args.script_args == []
