"""``sfn-pipelines run``: local runs with the cloud's ordering, failure and selection rules."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sfn_pipelines import cli, local_run
from sfn_pipelines.jobs import job_spec
from sfn_pipelines.workflow import load_pipeline_set

EXAMPLES = Path(__file__).resolve().parents[1] / "pipelines"

# Stands in for workbench:models/model_promotion.py (kept outside the repo): writes its
# outputs and dumps the environment and argv it saw.
PROMOTION_STUB = """\
import json, os, sys
from pathlib import Path
art = Path(os.environ["PIPELINE_ARTIFACTS_DIR"])
for ref in json.loads(os.environ["PIPELINE_INPUTS"]):
    assert (art / ref.replace(":", "__")).is_file(), ref
for ref in json.loads(os.environ["PIPELINE_OUTPUTS"]):
    (art / ref.replace(":", "__")).write_text("promoted\\n")
Path(os.environ["SEEN"]).write_text(json.dumps({"env": dict(os.environ), "argv": sys.argv[1:]}))
print("promotion stub done")
"""


def run_cli(*argv: str) -> tuple[int, str]:
    """``sfn-pipelines ARGV`` in this process; (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def record(logs: Path, run_id: str) -> dict:
    return json.loads((logs / run_id / "run.json").read_text())


def assert_order_respected(rec: dict) -> None:
    for sid, st in rec["steps"].items():
        for a in st["after"]:
            assert st["started"] >= rec["steps"][a]["finished"], f"{sid} started before {a} ended"


def make_pipeline(root: Path, steps: dict[str, tuple[list[str], list[str], str]], extra: dict | None = None) -> Path:
    """A one-pipeline manifest: step name -> (inputs, outputs, script body)."""
    root.mkdir(parents=True, exist_ok=True)
    nodes = []
    for name, (inputs, outputs, body) in steps.items():
        (root / f"{name}.py").write_text(body)
        nodes.append({"script": f"{name}.py", "inputs": inputs, "outputs": outputs, **(extra or {}).get(name, {})})
    (root / "pipelines.json").write_text(json.dumps({"pipelines": {"t": nodes}}))
    return root


def intervals_overlap(rec: dict) -> bool:
    spans = sorted((s["started"], s["finished"]) for s in rec["steps"].values())
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


# --- the repo's examples, end to end -------------------------------------------------------
@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """One full run of pipelines/ (all 22 steps; the workbench: step through PIPELINE_REF_ROOTS)."""
    tmp = tmp_path_factory.mktemp("examples")
    (tmp / "wb" / "models").mkdir(parents=True)
    (tmp / "wb" / "models" / "model_promotion.py").write_text(PROMOTION_STUB)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINE_REF_ROOTS", json.dumps({"workbench:": str(tmp / "wb")}))
        mp.setenv("SEEN", str(tmp / "seen.json"))
        mp.setenv("PIPELINE_MODE", "stale")  # a leftover in the caller's shell must not reach the steps
        mp.delenv("PIPELINE_FAIL_STEP", raising=False)
        t0 = time.monotonic()
        code, out = run_cli("run", str(EXAMPLES), "--artifacts-dir", str(tmp / "art"), "--logs-dir", str(tmp / "logs"),
                            "--run-id", "e2e")
        seconds = time.monotonic() - t0
    return {"tmp": tmp, "code": code, "out": out, "rec": record(tmp / "logs", "e2e"), "seconds": seconds}


def test_examples_all_succeed(example_run):
    ps = load_pipeline_set(EXAMPLES)
    ids = {s.id for w in ps.workflows for s in w.group.steps}
    assert example_run["code"] == 0, example_run["out"]
    assert {sid: s["status"] for sid, s in example_run["rec"]["steps"].items()} == {sid: "succeeded" for sid in ids}
    assert "run e2e succeeded" in example_run["out"] and "22 succeeded" in example_run["out"]


def test_examples_write_every_declared_artifact(example_run):
    art = example_run["tmp"] / "art"
    ps = load_pipeline_set(EXAMPLES)
    outputs = {r.key for w in ps.workflows for s in w.group.steps for r in s.outputs}
    assert len(outputs) > 20
    for ref in outputs:
        assert (art / ref.replace(":", "__").replace("/", "__")).is_file(), ref


def test_one_log_per_step(example_run):
    logs = example_run["tmp"] / "logs" / "e2e"
    assert {p.stem for p in logs.glob("*.log")} == set(example_run["rec"]["steps"])
    assert "[tox_model] done" in (logs / "tox_model.log").read_text()
    assert "promotion stub done" in (logs / "model_promotion.log").read_text()
    assert "# succeeded: exit code 0" in (logs / "churn_join.log").read_text()


def test_dependency_order_is_respected(example_run):
    rec = example_run["rec"]
    ps = load_pipeline_set(EXAMPLES)
    for w in ps.workflows:  # everything selected: a step waits on exactly its parents
        for s in w.group.steps:
            assert sorted(rec["steps"][s.id]["after"]) == sorted(w.group.parents(s.id))
    assert_order_respected(rec)
    started = [e["step"] for e in rec["events"] if e["event"] == "started"]
    assert started.index("tox_features") < started.index("tox_descriptors") < started.index("tox_model")


def test_steps_see_their_batch_job_environment(example_run):
    seen = json.loads((example_run["tmp"] / "seen.json").read_text())
    ps = load_pipeline_set(EXAMPLES)
    w = ps.workflow("solubility")
    expected = job_spec(w.group.step("model_promotion"), group="solubility").environment
    env = seen["env"]
    assert {k: env.get(k) for k in expected} == expected
    assert env["PIPELINE_RUN_ID"] == "e2e"
    assert env["PIPELINE_ARTIFACTS_DIR"] == str(example_run["tmp"] / "art")
    assert "PIPELINE_MODE" not in env and env["PIPELINE_RUN_ARGS"] == "[]"  # as a cloud job without args
    assert seen["argv"] == []


# --- failure isolation -------------------------------------------------------------------------
def test_failed_step_skips_its_descendants_only(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_FAIL_STEP", "tox_descriptors")
    code, out = run_cli("run", str(EXAMPLES), "--select", "toxicity", "--artifacts-dir", str(tmp_path / "art"),
                        "--logs-dir", str(tmp_path / "logs"), "--run-id", "fail")
    assert code == 1
    steps = record(tmp_path / "logs", "fail")["steps"]
    status = {sid: s["status"] for sid, s in steps.items()}
    assert status == {
        "tox_features": "succeeded", "tox_descriptors": "failed", "tox_fingerprints": "succeeded",
        "tox_model": "skipped", "tox_deploy": "skipped",
        "tox_assay_clean": "succeeded", "tox_assay_model": "succeeded", "tox_assay_report": "succeeded",
    }
    for sid in ("tox_model", "tox_deploy"):  # never started
        assert steps[sid]["started"] is None
        assert not (tmp_path / "logs" / "fail" / f"{sid}.log").exists()
    assert not (tmp_path / "art" / "model__tox-classifier").exists()
    summary = out[out.index("run fail FAILED"):]
    assert "failed: tox_descriptors" in summary
    assert "skipped (an upstream step did not succeed): tox_model, tox_deploy" in summary
    assert "failing on purpose" in summary  # the failed step's last log lines


# --- selection ---------------------------------------------------------------------------
def test_select_runs_only_matching_steps_and_keeps_the_order_through_unselected_ones(tmp_path):
    code, out = run_cli("run", str(EXAMPLES), "--select", "churn_events", "--select", "churn_m*",
                        "--select", "churn_users", "--artifacts-dir", str(tmp_path / "art"),
                        "--logs-dir", str(tmp_path / "logs"), "--run-id", "sel", "--dry-run")
    assert code == 0
    assert "wave 1: churn_events, churn_users" in out and "wave 2: churn_model" in out
    # churn_join is not selected: up to date, so its artifact must already exist.
    code, out = run_cli("run", str(EXAMPLES), "--select", "churn", "--artifacts-dir", str(tmp_path / "art"),
                        "--logs-dir", str(tmp_path / "logs"), "--run-id", "first")
    assert code == 0, out
    code, out = run_cli("run", str(EXAMPLES), "--select", "churn_events", "--select", "churn_m*",
                        "--artifacts-dir", str(tmp_path / "art"), "--logs-dir", str(tmp_path / "logs"),
                        "--run-id", "sel")
    assert code == 0, out
    rec = record(tmp_path / "logs", "sel")
    assert set(rec["steps"]) == {"churn_events", "churn_model"}
    assert rec["steps"]["churn_model"]["after"] == ["churn_events"]  # through the unselected churn_join
    assert_order_respected(rec)
    assert "churn_join" in rec["not_selected"] and "tox_model" in rec["not_selected"]
    assert {p.stem for p in (tmp_path / "logs" / "sel").glob("*.log")} == {"churn_events", "churn_model"}


def test_unknown_selection_is_exit_2_with_close_names(tmp_path, capsys):
    code, _ = run_cli("run", str(EXAMPLES), "--select", "tox_modle", "--logs-dir", str(tmp_path))
    assert code == 2
    err = capsys.readouterr().err
    assert "tox_modle" in err and "tox_model" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


# --- parallelism, dry run --------------------------------------------------------------------
SLEEP = "import time; time.sleep(0.1)\n"


@pytest.fixture
def fan(tmp_path):
    """Three independent steps and a three-step chain z_head -> z_mid -> z_tail."""
    return make_pipeline(tmp_path / "fan", {
        "a1": ([], ["fs:a1"], SLEEP), "a2": ([], ["fs:a2"], SLEEP), "a3": ([], ["fs:a3"], SLEEP),
        "z_head": ([], ["fs:h"], SLEEP), "z_mid": (["fs:h"], ["fs:m"], SLEEP), "z_tail": (["fs:m"], ["fs:t"], SLEEP),
    })


def test_max_parallel_1_serialises_and_starts_the_critical_path_first(tmp_path, fan):
    code, out = run_cli("run", str(fan), "--max-parallel", "1", "--logs-dir", str(tmp_path / "logs"),
                        "--artifacts-dir", str(tmp_path / "art"), "--run-id", "serial")
    assert code == 0, out
    rec = record(tmp_path / "logs", "serial")
    assert not intervals_overlap(rec)
    first = min(rec["steps"], key=lambda s: rec["steps"][s]["started"])
    assert first == "z_head"  # the longest chain, though "a1" sorts first


def test_max_parallel_runs_steps_at_once(tmp_path, fan):
    code, out = run_cli("run", str(fan), "--max-parallel", "4", "--logs-dir", str(tmp_path / "logs"),
                        "--artifacts-dir", str(tmp_path / "art"), "--run-id", "par")
    assert code == 0, out
    rec = record(tmp_path / "logs", "par")
    assert intervals_overlap(rec)
    assert_order_respected(rec)
    assert rec["max_parallel"] == 4


def test_dry_run_runs_nothing(tmp_path, fan):
    code, out = run_cli("run", str(fan), "--dry-run", "--logs-dir", str(tmp_path / "logs"),
                        "--artifacts-dir", str(tmp_path / "art"))
    assert code == 0
    assert "wave 1: a1, a2, a3, z_head" in out and "wave 3: z_tail" in out
    assert not (tmp_path / "logs").exists() and not (tmp_path / "art").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--max-parallel", "0"], "--max-parallel must be at least 1"),
    (["--run-id", "bad id!"], "run id 'bad id!'"),
])
def test_bad_options_exit_2(tmp_path, fan, capsys, argv, message):
    code, _ = run_cli("run", str(fan), *argv, "--logs-dir", str(tmp_path / "logs"))
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_folder_exits_2(tmp_path, capsys):
    code, _ = run_cli("run", str(tmp_path / "nope"))
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


# --- scripts this machine cannot run ---------------------------------------------------------
def test_workbench_step_without_ref_roots_fails_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_REF_ROOTS", raising=False)
    common = ["--logs-dir", str(tmp_path / "logs"), "--artifacts-dir", str(tmp_path / "art")]
    code, out = run_cli("run", str(EXAMPLES), "--select", "model_promotion", *common, "--run-id", "no")
    assert code == 1
    assert "not runnable locally: workbench:models/model_promotion.py" in out and "PIPELINE_REF_ROOTS" in out
    code, out = run_cli("run", str(EXAMPLES), "--select", "model_promotion", "--allow-missing", *common,
                        "--run-id", "yes")
    assert code == 0, out
    assert record(tmp_path / "logs", "yes")["steps"]["model_promotion"]["status"] == "external"


def test_bad_ref_roots_json_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_REF_ROOTS", "{oops")
    code, _ = run_cli("run", str(EXAMPLES), "--dry-run", "--logs-dir", str(tmp_path))
    assert code == 2
    assert "PIPELINE_REF_ROOTS is not JSON" in capsys.readouterr().err


# --- script args and environment ---------------------------------------------------------------
DUMP = """\
import json, os, sys
from pathlib import Path
keys = ("PIPELINE_ARGS", "PIPELINE_RUN_ARGS", "PIPELINE_MODE", "PIPELINE_STEP", "PIPELINE_RUN_ID")
Path(os.environ["PIPELINE_ARTIFACTS_DIR"], os.environ["PIPELINE_STEP"] + ".json").write_text(
    json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": {k: os.environ.get(k) for k in keys}}))
"""


def test_args_after_double_dash_reach_every_script(tmp_path, monkeypatch):
    root = make_pipeline(tmp_path / "p", {"one": ([], ["fs:x"], DUMP), "two": (["fs:x"], [], DUMP)},
                         extra={"one": {"args": ["--own"], "mode": "dt"}})
    monkeypatch.setenv("PIPELINE_RUN_ARGS", '["stale"]')
    code, out = run_cli("run", str(root), "--artifacts-dir", str(tmp_path / "art"), "--logs-dir", str(tmp_path / "l"),
                        "--run-id", "args", "--", "--select", "x", "--", "y")
    assert code == 0, out
    one = json.loads((tmp_path / "art" / "one.json").read_text())
    two = json.loads((tmp_path / "art" / "two.json").read_text())
    assert one["argv"] == ["--own", "--select", "x", "--", "y"]
    assert two["argv"] == ["--select", "x", "--", "y"]
    assert one["env"] == {"PIPELINE_ARGS": '["--own"]', "PIPELINE_RUN_ARGS": '["--select","x","--","y"]',
                          "PIPELINE_MODE": "dt", "PIPELINE_STEP": "one", "PIPELINE_RUN_ID": "args"}
    assert two["env"]["PIPELINE_ARGS"] is None and two["env"]["PIPELINE_MODE"] is None
    assert Path(one["cwd"]) == root


def test_terminal_gets_a_redrawn_status_line(tmp_path, fan):
    plan = local_run.prepare(load_pipeline_set(fan), ["a1"], logs_dir=tmp_path / "l", artifacts_dir=tmp_path / "a")
    out = io.StringIO()
    result = local_run.LocalRun(plan, out, tty=True).execute()
    assert result.exit_code == 0
    text = out.getvalue()
    assert "\r\x1b[K" in text and "running: a1" in text and "ok         a1" in text


# --- Ctrl-C ----------------------------------------------------------------------------------
SLOW = """\
import os, subprocess, sys, time
from pathlib import Path
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
pids = Path(os.environ["PIPELINE_ARTIFACTS_DIR"], os.environ["PIPELINE_STEP"] + ".pids")
pids.write_text(f"{os.getpid()} {child.pid}")
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; init reaps it


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to inspect processes")
def test_ctrl_c_stops_children_cleanly(tmp_path):
    root = make_pipeline(tmp_path / "p", {"slow1": ([], ["fs:a"], SLOW), "slow2": ([], ["fs:b"], SLOW),
                                          "later": (["fs:a"], [], "print('never')\n")})
    art = tmp_path / "art"
    proc = subprocess.Popen([sys.executable, "-m", "sfn_pipelines", "run", str(root), "--max-parallel", "2",
                             "--artifacts-dir", str(art), "--logs-dir", str(tmp_path / "logs"), "--run-id", "int"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while len(list(art.glob("*.pids"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        pids = [int(p) for f in art.glob("*.pids") for p in f.read_text().split()]
        assert len(pids) == 4, "the slow steps did not start"
        proc.send_signal(signal.SIGINT)
        t_int = time.monotonic()
        out, _ = proc.communicate(timeout=20)
        stop_seconds = time.monotonic() - t_int
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert stop_seconds < local_run.STOP_GRACE_SECONDS - 0.5  # SIGTERM sufficed, no wait for SIGKILL
    rec = record(tmp_path / "logs", "int")
    assert {s: v["status"] for s, v in rec["steps"].items()} == {
        "slow1": "stopped", "slow2": "stopped", "later": "not started"}
    assert "stopped: slow1, slow2" in out and "not started: later" in out
    deadline = time.monotonic() + 5
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)], "orphaned step processes"


LEAVES_A_CHILD = """\
import os, subprocess, sys
from pathlib import Path
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=False)
Path(os.environ["PIPELINE_ARTIFACTS_DIR"], "child.pid").write_text(str(child.pid))
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to inspect processes")
def test_processes_a_step_leaves_behind_end_with_it(tmp_path):
    """As when a Batch container exits: nothing of a finished step keeps running."""
    root = make_pipeline(tmp_path / "p", {"leaky": ([], [], LEAVES_A_CHILD)})
    code, out = run_cli("run", str(root), "--artifacts-dir", str(tmp_path / "art"), "--logs-dir", str(tmp_path / "l"))
    assert code == 0, out
    pid = int((tmp_path / "art" / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
