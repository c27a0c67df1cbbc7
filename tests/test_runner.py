"""The job side: ``python -m sfn_pipelines.runner`` finds, fetches and runs a step's script."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from sfn_pipelines import runner

# Writes what it saw (argv, cwd, a few env vars) to $OUT, then exits with $EXIT_WITH.
PROBE = """\
import json, os, sys
json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "step": os.environ.get("PIPELINE_STEP")},
          open(os.environ["OUT"], "w"))
print("probe ran", flush=True)
sys.exit(int(os.environ.get("EXIT_WITH", "0")))
"""


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    root = tmp_path / "pipelines"
    (root / "tox").mkdir(parents=True)
    (root / "tox" / "probe.py").write_text(PROBE)
    return root


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"OUT": str(tmp_path / "seen.json"), "PIPELINE_STEP": "probe", **extra}


def _seen(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "seen.json").read_text())


def _zip_of(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder).as_posix())
    return buf.getvalue()


def test_local_dir_runs_the_script_in_its_folder_with_args(tmp_path, scripts):
    env = _env(tmp_path, PIPELINE_SCRIPT="tox/probe.py", PIPELINE_SCRIPTS_DIR=str(scripts),
               PIPELINE_ARGS='["--mode", "dt"]', PIPELINE_RUN_ARGS='["--force"]')
    assert runner.main(["--extra"], environ=env) == 0
    seen = _seen(tmp_path)
    assert seen["argv"] == ["--mode", "dt", "--force", "--extra"]  # step args, run args, command args
    assert Path(seen["cwd"]) == scripts / "tox"
    assert seen["step"] == "probe"


@pytest.mark.parametrize("code", [1, 3, 42])
def test_exit_code_propagates(tmp_path, scripts, code):
    env = _env(tmp_path, PIPELINE_SCRIPT="tox/probe.py", PIPELINE_SCRIPTS_DIR=str(scripts), EXIT_WITH=str(code))
    assert runner.main([], environ=env) == code


def test_killed_script_exits_128_plus_signal(tmp_path):
    (tmp_path / "die.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    env = {"PIPELINE_SCRIPT": "die.py", "PIPELINE_SCRIPTS_DIR": str(tmp_path)}
    assert runner.main([], environ=env) == 128 + 9


def test_as_a_module_in_a_real_process(tmp_path, scripts):
    """What the job definition's command runs; output is streamed, the exit code kept."""
    env = {**_env(tmp_path, PIPELINE_SCRIPT="tox/probe.py", PIPELINE_SCRIPTS_DIR=str(scripts), EXIT_WITH="5"),
           "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "sfn_pipelines.runner"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 5
    assert "probe ran" in p.stdout
    assert "probe.py from" in p.stderr


@pytest.fixture(scope="module")
def s3():
    """One moto S3 for the module (starting moto per test costs ~0.5 s); keys differ per test."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="test",
                              aws_secret_access_key="test")  # moto: fake credentials
        client.create_bucket(Bucket="assets")
        yield client


def test_zip_archive_from_s3(tmp_path, scripts, s3):
    s3.put_object(Bucket="assets", Key="scripts/abc.zip", Body=_zip_of(scripts))
    env = _env(tmp_path, PIPELINE_SCRIPT="tox/probe.py", PIPELINE_SCRIPTS_ARCHIVE="s3://assets/scripts/abc.zip",
               PIPELINE_SCRIPTS_DIR="/nonexistent", PIPELINE_ARGS='["a"]')
    assert runner.main([], environ=env, s3=s3) == 0  # the archive wins over the folder
    seen = _seen(tmp_path)
    assert seen["argv"] == ["a"]
    assert Path(seen["cwd"]).parts[-2:] == ("scripts", "tox")  # extracted, not run from scripts/
    assert not Path(seen["cwd"]).exists()  # the temporary folder is gone afterwards


def test_zip_of_the_folder_itself_is_found_one_level_down(tmp_path, scripts, s3):
    s3.put_object(Bucket="assets", Key="wrapped.zip", Body=_zip_of(scripts.parent))  # holds pipelines/...
    env = _env(tmp_path, PIPELINE_SCRIPT="tox/probe.py", PIPELINE_SCRIPTS_ARCHIVE="s3://assets/wrapped.zip")
    assert runner.main([], environ=env, s3=s3) == 0


def test_ml_pipeline_s3_path_script(tmp_path, s3):
    s3.put_object(Bucket="assets", Key="adhoc/probe.py", Body=PROBE.encode())
    env = _env(tmp_path, PIPELINE_SCRIPT="s3://assets/adhoc/probe.py", ML_PIPELINE_S3_PATH="s3://assets/adhoc/probe.py",
               EXIT_WITH="7")
    assert runner.main([], environ=env, s3=s3) == 7
    cwd = Path(_seen(tmp_path)["cwd"])
    assert cwd.name.startswith("sfn-pipelines-") and not cwd.exists()  # downloaded to a temporary folder


def test_missing_s3_object_is_a_clear_runner_error(tmp_path, s3, capsys):
    env = _env(tmp_path, PIPELINE_SCRIPT="tox/probe.py", PIPELINE_SCRIPTS_ARCHIVE="s3://assets/nope.zip")
    assert runner.main([], environ=env, s3=s3) == 2
    err = capsys.readouterr().err
    assert "cannot fetch s3://assets/nope.zip" in err and "Traceback" not in err


def test_workbench_ref_through_ref_roots_folder(tmp_path):
    wb = tmp_path / "workbench" / "models"
    wb.mkdir(parents=True)
    (wb / "model_promotion.py").write_text(PROBE)
    env = _env(tmp_path, PIPELINE_SCRIPT="workbench:models/model_promotion.py",
               PIPELINE_REF_ROOTS=json.dumps({"workbench": str(tmp_path / "workbench")}))
    assert runner.main([], environ=env) == 0
    assert Path(_seen(tmp_path)["cwd"]) == wb


def test_plugin_ref_through_ref_roots_s3_prefix(tmp_path, s3):
    s3.put_object(Bucket="assets", Key="plugins/v2/score.py", Body=PROBE.encode())
    env = _env(tmp_path, PIPELINE_SCRIPT="plugin:score.py",
               PIPELINE_REF_ROOTS=json.dumps({"plugin:": "s3://assets/plugins/v2/"}))
    assert runner.main([], environ=env, s3=s3) == 0


@pytest.mark.parametrize(("env", "expected"), [
    ({"PIPELINE_SCRIPT": "workbench:models/x.py"}, "set PIPELINE_REF_ROOTS in the job definition"),
    ({"PIPELINE_SCRIPT": "plugin:x.py", "PIPELINE_REF_ROOTS": '{"workbench:": "/opt"}'}, "no root for 'plugin:'"),
    ({"PIPELINE_SCRIPT": "workbench:x.py", "PIPELINE_REF_ROOTS": "{nope"}, "PIPELINE_REF_ROOTS is not JSON"),
    ({"PIPELINE_SCRIPT": "workbench:x.py", "PIPELINE_REF_ROOTS": '["/opt"]'}, "must be a JSON object"),
    ({}, "PIPELINE_SCRIPT is not set"),
    ({"PIPELINE_SCRIPT": "a.py"}, "neither PIPELINE_SCRIPTS_ARCHIVE"),
    ({"PIPELINE_SCRIPT": "../a.py", "PIPELINE_SCRIPTS_DIR": "/tmp"}, "must stay inside its root"),
    ({"PIPELINE_SCRIPT": "missing.py", "PIPELINE_SCRIPTS_DIR": "{tmp}"}, "missing.py not found in"),
    ({"PIPELINE_SCRIPT": "a.py", "PIPELINE_SCRIPTS_DIR": "{tmp}/nope"}, "folder not found"),
    ({"PIPELINE_SCRIPT": "a.py", "PIPELINE_SCRIPTS_DIR": "{tmp}", "PIPELINE_ARGS": "--x"}, "JSON list of strings"),
    ({"PIPELINE_SCRIPT": "a.py", "PIPELINE_SCRIPTS_ARCHIVE": "{tmp}/not.zip"}, "not found"),
    ({"ML_PIPELINE_S3_PATH": "s3://bucket-only"}, "not an s3://bucket/key URL"),
])
def test_bad_refs_and_settings_exit_2_with_a_message(tmp_path, capsys, env, expected):
    (tmp_path / "a.py").write_text("raise SystemExit(0)\n")
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()}
    assert runner.main([], environ=env, s3=object()) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert err.startswith("sfn-pipelines runner: ") and "Traceback" not in err


def test_a_file_that_is_not_a_zip(tmp_path, capsys):
    (tmp_path / "bad.zip").write_text("not a zip")
    env = {"PIPELINE_SCRIPT": "a.py", "PIPELINE_SCRIPTS_ARCHIVE": str(tmp_path / "bad.zip")}
    assert runner.main([], environ=env) == 2
    assert "is not a zip archive" in capsys.readouterr().err


def test_ref_prefix():
    assert runner.ref_prefix("workbench:models/x.py") == "workbench:"
    assert runner.ref_prefix("plugin:x.py") == "plugin:"
    for not_a_ref in ("tox/x.py", "s3://b/k.py", "C:/x.py", "dir/a:b.py"):
        assert runner.ref_prefix(not_a_ref) is None, not_a_ref


def test_runner_stays_standalone():
    """The job image may carry runner.py alone: stdlib imports only (boto3 lazily, inside a function)."""
    tree = ast.parse(Path(runner.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_run_args_env_matches_the_cloud_side():
    from sfn_pipelines import jobs

    assert runner.RUN_ARGS_ENV == jobs.RUN_ARGS_ENV
