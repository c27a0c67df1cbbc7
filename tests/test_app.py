"""The default app (``app.py``): what ``cdk synth`` deploys for a pipelines folder.

Two in-process synths: the repo's ``pipelines/`` with the Batch environment created, and
the Workbench examples plus a script with import-time side effects against imported
Batch resources. Subprocesses only where the process boundary is the point: the exit
status and messages of ``python app.py`` on a bad folder, and the real ``cdk`` CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from conftest import synth_default_app

from sfn_pipelines.definition import definition_text
from sfn_pipelines.workflow import load_pipeline_set

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # app.py and infra/ live at the repo root, beside tests/

import app as default_app  # noqa: E402

EXAMPLES = REPO / "pipelines"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ACCOUNT = "arn:aws:batch:eu-west-1:123456789012"
IMPORTED_QUEUE = f"{ACCOUNT}:job-queue/workbench"
IMPORTED_DEFINITIONS = {"small": f"{ACCOUNT}:job-definition/workbench-small:4",
                        "large": f"{ACCOUNT}:job-definition/workbench-large:2"}
WORKBENCH_MANIFESTS = ("aqsol", "demo-modes", "logd")
JOB_SIZES = {"small": ("2", "4096"), "medium": ("4", "8192"), "large": ("8", "16384")}
PROBLEM_LINE = re.compile(r"^(?P<path>[^\s:]+):(?P<line>\d+): (?P<message>\S.*)$")




def machines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """State machine resources by StateMachineName."""
    return {res["Properties"]["StateMachineName"]: {"id": lid, **res}
            for lid, res in template["Resources"].items() if res["Type"] == "AWS::StepFunctions::StateMachine"}


def definition(machine: dict[str, Any]) -> dict[str, Any]:
    return json.loads(definition_text(machine["Properties"]["DefinitionString"],
                                      resolve=lambda token: f"<{json.dumps(token, sort_keys=True)}>".replace('"', "'")))


def batch_tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for name, state in states.items():
        if state["Type"] == "Task" and "batch:submitJob" in state["Resource"]:
            found[name] = state
        for branch in state.get("Branches", []):
            found |= batch_tasks(branch["States"])
    return found


def env_value(task: dict[str, Any], name: str) -> Any:
    return next(e.get("Value", e.get("Value.$")) for e in task["Parameters"]["ContainerOverrides"]["Environment"]
                if e["Name"] == name)


# -- the repo's pipelines/ with a Batch environment created -------------------------------------


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = synth_default_app(tmp_path_factory)
    return out, json.loads((out / "SfnPipelines.template.json").read_text())


def test_one_state_machine_per_group(created: tuple[Path, dict[str, Any]]) -> None:
    _, template = created
    groups = [w.name for w in load_pipeline_set(EXAMPLES).workflows]
    assert len(groups) >= 4
    found = machines(template)
    assert sorted(found) == sorted(f"SfnPipelines-{g}" for g in groups)
    for name, machine in found.items():
        steps = {s.id for s in load_pipeline_set(EXAMPLES).workflow(name.removeprefix("SfnPipelines-")).group.steps}
        assert set(batch_tasks(definition(machine)["States"])) == steps, name


def test_scripts_asset_is_the_pipelines_folder_and_every_job_gets_it(created: tuple[Path, dict[str, Any]]) -> None:
    out, template = created
    files = json.loads((out / "SfnPipelines.assets.json").read_text())["files"]
    scripts = [h for h, a in files.items() if (out / a["source"]["path"] / "solubility" / "pipelines.json").is_file()]
    assert len(scripts) == 1, files
    staged = out / files[scripts[0]]["source"]["path"]
    assert files[scripts[0]]["source"]["packaging"] == "zip"
    assert (staged / "churn" / "pipelines.yaml").is_file() and (staged / "toxicity" / "tox_model.py").is_file()
    assert (staged / "_common" / "artifacts.py").is_file()
    assert not list(staged.rglob("__pycache__")) and not list(staged.rglob(".local-runs"))
    for name, machine in machines(template).items():
        for step, task in batch_tasks(definition(machine)["States"]).items():
            env = {e["Name"]: e.get("Value") for e in task["Parameters"]["ContainerOverrides"]["Environment"]}
            if env["PIPELINE_SCRIPT"].startswith("workbench:"):
                assert "PIPELINE_SCRIPTS_ARCHIVE" not in env  # ships with Workbench's image
            else:
                assert env["PIPELINE_SCRIPTS_ARCHIVE"].endswith(f"/{scripts[0]}.zip'}}>"), (name, step)


def test_batch_environment_created(created: tuple[Path, dict[str, Any]]) -> None:
    template = assertions.Template.from_json(created[1])
    template.resource_count_is("AWS::Batch::ComputeEnvironment", 1)
    template.resource_count_is("AWS::Batch::JobQueue", 1)
    template.resource_count_is("AWS::Batch::JobDefinition", 3)
    retry = {
        "Attempts": 3,
        "EvaluateOnExit": [
            {"Action": "RETRY", "OnStatusReason": "Timeout waiting for network interface*"},
            {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
            {"Action": "EXIT", "OnReason": "*"},
        ],
    }
    for name, (vcpus, memory) in JOB_SIZES.items():
        found = template.find_resources("AWS::Batch::JobDefinition", {"Properties": {
            "ContainerProperties": assertions.Match.object_like({"ResourceRequirements": assertions.Match.array_equals(
                [{"Type": "MEMORY", "Value": memory}, {"Type": "VCPU", "Value": vcpus}])}),
            "RetryStrategy": retry,
            "Timeout": {"AttemptDurationSeconds": 24 * 3600},
        }})
        assert [lid.startswith(f"JobDefinition{name}") for lid in found] == [True], (name, list(found))


def test_every_job_uses_the_created_queue_and_small_definition(created: tuple[Path, dict[str, Any]]) -> None:
    template = created[1]
    (queue,) = [lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Batch::JobQueue"]
    for machine in machines(template).values():
        for task in batch_tasks(definition(machine)["States"]).values():
            assert queue in task["Parameters"]["JobQueue"]
            assert task["Parameters"]["JobDefinition"].startswith("<{'Ref': 'JobDefinitionsmall")


def test_outputs_name_every_state_machine(created: tuple[Path, dict[str, Any]]) -> None:
    template = created[1]
    outputs = {json.dumps(o["Value"], sort_keys=True) for o in template.get("Outputs", {}).values()}
    for machine in machines(template).values():
        assert json.dumps({"Ref": machine["id"]}) in outputs, machine["id"]


# -- Workbench manifests + a script with side effects, imported Batch ---------------------------


@pytest.fixture(scope="module")
def imported_tree(shared_examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imported-tree")
    for name in WORKBENCH_MANIFESTS:
        (root / name).mkdir()
        manifest = root / name / "pipelines.json"
        shutil.copyfile(shared_examples / f"{name}.pipelines.json", manifest)
        for nodes in json.loads(manifest.read_text())["pipelines"].values():
            for node in nodes:
                if ":" not in node["script"]:
                    (root / name / node["script"]).write_text('"""Stand-in."""\n')
    shutil.copytree(FIXTURES / "synth_side_effects", root, dirs_exist_ok=True)
    return root


@pytest.fixture(scope="module")
def imported(imported_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("imported.out")
    context = {"pipelines_dir": str(imported_tree), "stack_name": "Imported", "job_queue_arn": IMPORTED_QUEUE,
               "job_definition_arns": json.dumps(IMPORTED_DEFINITIONS)}  # as `-c key=value` passes it: a string
    default_app.build_app(cdk.App(context=context, outdir=str(out))).synth()
    return out, json.loads((out / "Imported.template.json").read_text())


def test_imported_batch_resources_are_used_not_created(imported: tuple[Path, dict[str, Any]]) -> None:
    template = imported[1]
    checks = assertions.Template.from_json(template)
    for kind in ("JobQueue", "JobDefinition", "ComputeEnvironment"):
        checks.resource_count_is(f"AWS::Batch::{kind}", 0)
    tasks = [t for m in machines(template).values() for t in batch_tasks(definition(m)["States"]).values()]
    assert len(tasks) == 10 + 3 + 3 + 2  # aqsol, demo, logd + logd_hpo, sneaky
    assert {t["Parameters"]["JobQueue"] for t in tasks} == {IMPORTED_QUEUE}
    assert {t["Parameters"]["JobDefinition"] for t in tasks} == {IMPORTED_DEFINITIONS["small"]}


def test_workbench_examples_synthesize_one_machine_per_group(imported: tuple[Path, dict[str, Any]]) -> None:
    found = machines(imported[1])
    assert sorted(found) == [f"Imported-{g}" for g in ("aqsol", "demo", "logd", "logd_hpo", "sneaky")]
    aqsol = batch_tasks(definition(found["Imported-aqsol"])["States"])
    assert env_value(aqsol["model_promotion_aqsol_regression"], "PIPELINE_SCRIPT") == \
        "workbench:models/model_promotion.py"


def test_synth_never_executes_a_script(imported_tree: Path, imported: tuple[Path, dict[str, Any]]) -> None:
    out, template = imported
    assert (imported_tree / "sneaky" / "sneaky_step.py").is_file()
    assert not (imported_tree / "sneaky" / "EXECUTED").exists()
    assert not list(out.rglob("EXECUTED"))
    steps = batch_tasks(definition(machines(template)["Imported-sneaky"])["States"])
    assert sorted(steps) == ["sneaky_report", "sneaky_step"]  # its dict was read all the same


# -- processes --------------------------------------------------------------------------------


def quiet_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "CDK_DISABLE_VERSION_CHECK": "true",
            "CDK_DISABLE_CLI_TELEMETRY": "true", "AWS_EC2_METADATA_DISABLED": "true", **extra}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``python app.py`` as ``cdk synth`` runs it, on a folder with four mistakes."""
    cwd = tmp_path_factory.mktemp("bad-run")
    context = json.dumps({"pipelines_dir": str(FIXTURES / "synth_bad")})
    done = subprocess.run([sys.executable, str(REPO / "app.py")], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=quiet_env(CDK_CONTEXT_JSON=context, CDK_OUTDIR=str(cwd / "out")))
    return cwd, done


def test_bad_folder_exits_2_with_one_line_per_problem(bad_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    cwd, done = bad_run
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    problems = [PROBLEM_LINE.match(line) for line in done.stderr.splitlines()]
    found = [(m["path"], m["line"], m["message"]) for m in problems if m]
    assert [(Path(path).parts[-2:], line, message) for path, line, message in found] == [
        (("models", "legacy_step.py"), "3", "'group' is no longer supported (old WORKBENCH_BATCH format): declare "
         "the data flow instead, 'outputs' in the producer and 'inputs' in the consumer"),
        (("models", "legacy_step.py"), "3", "'priority' is no longer supported (old WORKBENCH_BATCH format): run "
         "order now follows 'inputs'/'outputs' (a consumer runs after the producer of each input)"),
        (("models", "pipelines.json"), "4", "unknown key 'ouputs' (did you mean 'outputs'?)"),
        (("models", "pipelines.json"), "5", "'memory' must be a whole number of MiB > 0 (e.g. 4096), got \"8 GB\""),
    ]
    assert not list(cwd.rglob("*.template.json"))  # stopped before synth


def test_bad_folder_problems_name_files_that_exist(bad_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    cwd, done = bad_run
    paths = [m["path"] for m in map(PROBLEM_LINE.match, done.stderr.splitlines()) if m]
    assert len(paths) == 4
    assert all((cwd / path).is_file() for path in paths), paths


@pytest.mark.skipif(not (REPO / "node_modules" / ".bin" / "cdk").exists(), reason="aws-cdk CLI not installed")
def test_cdk_cli_synth(tmp_path: Path) -> None:
    tree = shutil.copytree(FIXTURES / "synth_side_effects", tmp_path / "tree")
    out = tmp_path / "cdk.out"
    done = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--no-notices", "-c", f"pipelines_dir={tree}", "-o", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=quiet_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    template = json.loads((out / "SfnPipelines.template.json").read_text())
    assert sorted(machines(template)) == ["SfnPipelines-sneaky"]
    assert not (tree / "sneaky" / "EXECUTED").exists()
