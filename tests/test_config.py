"""Config loading: real Workbench manifests, inline scripts, and one test per user mistake."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make

from sfn_pipelines.config import load_tree, parse_ref
from sfn_pipelines.model import ArtifactRef, PipelineConfigError, Source, StepOptions

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "workbench-examples"
needs_examples = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="shared/workbench-examples not beside the repo")




def problems(root: Path) -> list[str]:
    with pytest.raises(PipelineConfigError) as info:
        load_tree(root)
    return [str(p) for p in info.value.problems]


def one_problem(root: Path) -> str:
    found = problems(root)
    assert len(found) == 1, found
    return found[0]


def copy_example(name: str, dest: Path) -> Path:
    """Copy a real manifest unchanged into ``dest`` with stand-in files for its local scripts."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest = dest / "pipelines.json"
    shutil.copyfile(EXAMPLES / f"{name}.pipelines.json", manifest)
    for nodes in json.loads(manifest.read_text())["pipelines"].values():
        for node in nodes:
            if ":" not in node["script"]:
                (dest / node["script"]).write_text("print('stand-in')\n")
    return manifest


def strip_source(steps: list) -> list:
    return [dataclasses.replace(s, source=Source("")) for s in steps]


# -- real manifests ------------------------------------------------------------------------


@needs_examples
def test_aqsol_loads_unchanged(tmp_path: Path) -> None:
    manifest = copy_example("aqsol", tmp_path / "aqsol")
    result = load_tree(tmp_path)
    assert manifest.read_bytes() == (EXAMPLES / "aqsol.pipelines.json").read_bytes()
    assert len(result.steps) == 10 and result.warnings == []
    assert {s.pipeline for s in result.steps} == {"aqsol"}
    first = result.steps[0]
    assert first.script == "aqsol/aqsol_feature_set.py" and first.script_kind == "local"
    assert first.inputs == (ArtifactRef("ds", "aqsol_data"),) and first.id == ""
    assert first.source == Source("aqsol/pipelines.json", 4)
    kinds = {s.script: s.script_kind for s in result.steps}
    assert kinds["plugin:models/model_promotion.py"] == "plugin"
    assert kinds["workbench:models/model_promotion.py"] == "workbench"
    promotion = result.steps[-1]
    assert [str(r) for r in promotion.inputs][-1] == "model:aqsol-chemprop-hpo"
    assert promotion.source.line == 17


@needs_examples
def test_demo_modes_gives_two_steps_for_one_script(tmp_path: Path) -> None:
    copy_example("demo-modes", tmp_path)
    steps = load_tree(tmp_path).steps
    assert len(steps) == 3
    assert [(s.script, s.mode) for s in steps] == [("demo_fs.py", None), ("demo_reg.py", "dt"), ("demo_reg.py", "ts")]
    assert {s.pipeline for s in steps} == {"demo"}


@needs_examples
def test_logd_has_two_pipelines(tmp_path: Path) -> None:
    copy_example("logd", tmp_path / "logd")
    steps = load_tree(tmp_path).steps
    assert [(s.pipeline, s.source.line) for s in steps] == [("logd", 4), ("logd", 20), ("logd_hpo", 34)]
    assert len(steps[0].outputs) == 8


@needs_examples
def test_examples_together_are_deterministic(tmp_path: Path) -> None:
    for name in ("aqsol", "demo-modes", "logd"):
        copy_example(name, tmp_path / name)
    first, second = load_tree(tmp_path), load_tree(str(tmp_path))
    assert len(first.steps) == 16 and first.steps == second.steps
    assert first.root == tmp_path.resolve()


@needs_examples
@pytest.mark.parametrize("name", ["aqsol", "demo-modes", "logd"])
@pytest.mark.parametrize("suffix", ["yaml", "yml"])
def test_yaml_manifest_is_equivalent(tmp_path: Path, name: str, suffix: str) -> None:
    manifest = copy_example(name, tmp_path / "json")
    from_json = load_tree(tmp_path / "json").steps
    copy_example(name, tmp_path / "yaml").unlink()
    data = json.loads(manifest.read_text())
    (tmp_path / "yaml" / f"pipelines.{suffix}").write_text(yaml.safe_dump(data, sort_keys=False))
    assert strip_source(load_tree(tmp_path / "yaml").steps) == strip_source(from_json)


def test_yaml_lines_and_comments(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "a.py": "",
            "pipelines.yaml": """
            # features then a model
            pipelines:
              p:
                - script: a.py
                  outputs: [fs:x]
                  memory: 2048
                - script: a.py
                  mode: ts
                  ouputs: [fs:y]
        """,
        },
    )
    assert one_problem(tmp_path) == "pipelines.yaml:9: unknown key 'ouputs' (did you mean 'outputs'?)"
    (tmp_path / "pipelines.yaml").write_text("pipelines:\n  p:\n    - script: a.py\n      outputs: [fs:x\n")
    assert one_problem(tmp_path).startswith("pipelines.yaml:5: invalid YAML:")


def test_tab_indented_json_keeps_lines(tmp_path: Path) -> None:
    make(
        tmp_path,
        {"a.py": "", "pipelines.json": '{\n\t"pipelines": {\n\t\t"p": [\n\t\t\t{"script": "b.py"}\n\t\t]\n\t}\n}\n'},
    )
    assert one_problem(tmp_path) == "pipelines.json:4: script 'b.py' not found (looked for b.py)"


# -- inline scripts ------------------------------------------------------------------------


def test_inline_scripts(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "feat/make_fs.py": """
            import os

            WORKBENCH_BATCH = {"outputs": ["fs_caco2_er_reg_1"]}
        """,
            "feat/models/reg.py": """
            WORKBENCH_BATCH: dict = {
                "inputs": ("fs_caco2_er_reg_1", "model:base:no_promote"),
                "outputs": ["model:reg"],
                "environment": {"MODE": "fast"},
                "args": ["--epochs", "3"],
                "memory": 4096.0,
                "vcpus": 0.5,
                "retries": 0,
                "no_auto": True,
            }
        """,
            "top.py": "WORKBENCH_BATCH = {}\n",
            "helpers/util.py": "def helper():\n    return 1\n",
        },
    )
    steps = load_tree(tmp_path).steps
    assert [(s.pipeline, s.script, s.source.line) for s in steps] == [
        ("feat", "feat/make_fs.py", 3),
        ("feat/models", "feat/models/reg.py", 1),
        (tmp_path.name, "top.py", 1),
    ]
    make_fs, reg, _ = steps
    assert make_fs.outputs == (ArtifactRef(None, "fs_caco2_er_reg_1"),) and make_fs.inputs == ()
    assert reg.inputs == (ArtifactRef(None, "fs_caco2_er_reg_1"), ArtifactRef("model", "base", ("no_promote",)))
    assert reg.inputs[1].flags == ("no_promote",) and reg.no_auto and reg.script_kind == "local"
    assert reg.options == StepOptions(
        vcpus=0.5, memory=4096, retries=0, environment=(("MODE", "fast"),), args=("--epochs", "3")
    )
    assert isinstance(reg.options.memory, int)


def test_manifest_options(tmp_path: Path) -> None:
    node = {
        "script": "a.py",
        "expected_minutes": 12.5,
        "gpus": 1,
        "timeout": 90,
        "job_queue": "gpu",
        "job_definition": "arn:aws:batch:x",
        "environment": {"A": "1"},
    }
    make(tmp_path, {"a.py": "", "pipelines.json": json.dumps({"pipelines": {"p": [node]}})})
    (step,) = load_tree(tmp_path).steps
    assert step.options == StepOptions(
        expected_minutes=12.5,
        gpus=1,
        timeout=90,
        job_queue="gpu",
        job_definition="arn:aws:batch:x",
        environment=(("A", "1"),),
    )


def test_scripts_are_never_executed(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "evil.py": """
            import pathlib
            pathlib.Path(__file__).with_name("EXECUTED").write_text("ran")
            raise SystemExit("imported!")
            WORKBENCH_BATCH = {"outputs": ["fs:x"]}
        """,
        },
    )
    (step,) = load_tree(tmp_path).steps
    assert step.outputs == (ArtifactRef("fs", "x"),)
    assert not (tmp_path / "EXECUTED").exists()
    assert "evil" not in sys.modules


def test_manifest_wins_over_inline(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "m/train.py": 'WORKBENCH_BATCH = {"outputs": ["inline_name"]}\n',
            "m/pipelines.json": '{"pipelines": {"p": [\n  {"script": "train.py", "outputs": ["model:x"]}\n]}}\n',
        },
    )
    result = load_tree(tmp_path)
    (step,) = result.steps
    assert step.outputs == (ArtifactRef("model", "x"),) and step.source == Source("m/pipelines.json", 2)
    assert [str(w) for w in result.warnings] == [
        "m/train.py:1: warning: WORKBENCH_BATCH ignored: m/pipelines.json:2 configures this script and the "
        "manifest wins; remove one of them"
    ]


def test_skipped_folders_and_helpers(tmp_path: Path) -> None:
    bad = '{"pipelines": oops'
    make(
        tmp_path,
        {
            "ok.py": 'WORKBENCH_BATCH = {"outputs": ["x"]}\n',
            "helper_broken.py": "def (:\n",
            "node_modules/pipelines.json": bad,
            "cdk.out/pipelines.json": bad,
            ".git/pipelines.json": bad,
            "__pycache__/pipelines.json": bad,
            ".venv/x.py": "WORKBENCH_BATCH = oops(",
            "env/pyvenv.cfg": "",
            "env/lib/x.py": "WORKBENCH_BATCH = oops(",
        },
    )
    assert [s.script for s in load_tree(tmp_path).steps] == ["ok.py"]


def test_nested_assignment_is_a_warning(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "ok.py": 'WORKBENCH_BATCH = {"outputs": ["x"]}\n',
            "late.py": 'def main():\n    WORKBENCH_BATCH = {"inputs": ["x"]}\n',
        },
    )
    (warning,) = load_tree(tmp_path).warnings
    assert str(warning).startswith("late.py:2: warning: WORKBENCH_BATCH is only set inside a function or block")


def test_parse_ref() -> None:
    assert parse_ref("fs:a") == ArtifactRef("fs", "a")
    assert parse_ref("model:m:no_promote").flags == ("no_promote",)
    assert parse_ref("plain") == ArtifactRef(None, "plain")
    with pytest.raises(ValueError, match="flags such as no_promote only apply to inputs"):
        parse_ref("model:m:no_promote", "output")


# -- one test per mistake ------------------------------------------------------------------


def manifest(root: Path, body: str, scripts: tuple[str, ...] = ("a.py",)) -> Path:
    """A root with one pipelines.json (``body`` verbatim) and empty stand-in scripts."""
    make(root, {name: "" for name in scripts})
    (root / "pipelines.json").write_text(body)
    return root


def test_unknown_node_key_suggests(tmp_path: Path) -> None:
    manifest(tmp_path, '{"pipelines": {"p": [\n  {"script": "a.py",\n   "ouputs": ["fs:x"]}\n]}}')
    assert one_problem(tmp_path) == "pipelines.json:3: unknown key 'ouputs' (did you mean 'outputs'?)"


def test_unknown_key_without_close_match_lists_known(tmp_path: Path) -> None:
    manifest(tmp_path, '{"pipelines": {"p": [{"script": "a.py", "zzz": 1}]}}')
    found = one_problem(tmp_path)
    assert found.startswith("pipelines.json:1: unknown key 'zzz'; known keys: script, inputs, outputs, mode")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    manifest(tmp_path, '{"pipeline": {}}')
    assert problems(tmp_path) == [
        "pipelines.json:1: missing top-level key 'pipelines'; a manifest looks like "
        '{"pipelines": {"<pipeline name>": [{"script": ...}, ...]}}',
        "pipelines.json:1: unknown key 'pipeline' (did you mean 'pipelines'?)",
    ]


def test_manifest_shapes(tmp_path: Path) -> None:
    manifest(tmp_path, "[1]")
    assert one_problem(tmp_path).startswith("pipelines.json:1: a manifest must be a map like")
    manifest(tmp_path, '{"pipelines": {\n"p": {"script": "a.py"},\n"q": ["a.py"],\n"": []}}')
    assert problems(tmp_path) == [
        "pipelines.json:2: pipeline 'p' must be a list of nodes, got a map",
        'pipelines.json:3: pipeline node must be a map such as {"script": "x.py", "inputs": [...], '
        '"outputs": [...]}, got "a.py"',
        'pipelines.json:4: pipeline names must be non-empty strings, got ""',
    ]
    manifest(tmp_path, "")
    (tmp_path / "pipelines.json").unlink()
    (tmp_path / "pipelines.yaml").write_text("# nothing yet\n")
    assert one_problem(tmp_path).startswith("pipelines.yaml:1: manifest is empty")


def test_missing_script_key(tmp_path: Path) -> None:
    manifest(tmp_path, '{"pipelines": {"p": [\n  {"inputs": ["fs:x"]}\n]}}')
    assert one_problem(tmp_path).startswith("pipelines.json:2: pipeline node has no 'script' key")


def test_json_syntax_error(tmp_path: Path) -> None:
    manifest(tmp_path, '{"pipelines": {"p": [\n  {"script": "a.py",}\n]}}')
    assert one_problem(tmp_path).startswith("pipelines.json:2: invalid JSON: Expecting property name")


def test_duplicate_keys(tmp_path: Path) -> None:
    manifest(tmp_path, '{"pipelines": {\n"p": [{"script": "a.py"}],\n"p": [{"script": "a.py"}]}}')
    assert one_problem(tmp_path) == (
        "pipelines.json:3: duplicate key 'p' (first at line 2); only the last one would be used"
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("memory", '"4GB"', "'memory' must be a whole number of MiB > 0 (e.g. 4096), got \"4GB\""),
        ("memory", "0", "'memory' must be a whole number of MiB > 0 (e.g. 4096), got 0"),
        ("vcpus", "0", "'vcpus' must be a number > 0 (e.g. 0.5 or 2), got 0"),
        ("vcpus", "true", "'vcpus' must be a number > 0 (e.g. 0.5 or 2), got true"),
        ("gpus", "-1", "'gpus' must be a whole number >= 0, got -1"),
        ("timeout", "1.5", "'timeout' must be a whole number of minutes > 0, got 1.5"),
        ("retries", "12", "'retries' must be a whole number from 0 to 9, got 12"),
        ("expected_minutes", "0", "'expected_minutes' must be a number of minutes > 0, got 0"),
        ("no_auto", '"yes"', "'no_auto' must be true or false, got \"yes\""),
        ("mode", '""', '\'mode\' must be a non-empty string such as "dt" or "ts", got ""'),
        ("args", '["-x", 1]', "'args' must be a list of strings; item 2 is 1"),
        ("inputs", '"fs:x"', '\'inputs\' must be a list of artifact refs (strings such as "fs:name"), got "fs:x"'),
        ("job_queue", '""', "'job_queue' must be a non-empty job queue name or ARN, got \"\""),
        ("environment", '{"N": 4}', "'environment' must be a map of variable names to string values; 'N' is 4"),
        (
            "environment",
            '{"AWS_BATCH_JOB_ID": "x"}',
            "environment variable 'AWS_BATCH_JOB_ID' is reserved: AWS Batch rejects names starting with AWS_BATCH",
        ),
    ],
)
def test_option_types(tmp_path: Path, key: str, value: str, message: str) -> None:
    manifest(tmp_path, f'{{"pipelines": {{"p": [\n  {{"script": "a.py",\n   "{key}": {value}}}\n]}}}}')
    assert one_problem(tmp_path) == f"pipelines.json:3: {message}"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ('"feat:x"', "input 'feat:x' has unknown artifact type 'feat'; known types: ds, fs, model, endpoint, public"),
        ('"models:x"', "input 'models:x' has unknown artifact type 'models' (did you mean 'model'?); known types:"),
        ('"fs:"', "input 'fs:' has an empty name; write fs:<name>"),
        ('""', "input '' is empty; write a name such as fs:my_features"),
        ('" fs:x"', "input ' fs:x' has leading or trailing spaces"),
        ('"model:x::"', "input 'model:x::' has an empty flag (a stray ':')"),
    ],
)
def test_bad_input_refs(tmp_path: Path, ref: str, message: str) -> None:
    manifest(tmp_path, f'{{"pipelines": {{"p": [{{"script": "a.py", "inputs": [\n"fs:ok",\n{ref}]}}]}}}}')
    assert one_problem(tmp_path).startswith(f"pipelines.json:3: {message}")


def test_flags_on_outputs(tmp_path: Path) -> None:
    manifest(tmp_path, '{"pipelines": {"p": [\n{"script": "a.py", "outputs": ["model:x:no_promote"]}]}}')
    assert one_problem(tmp_path) == (
        "pipelines.json:2: output 'model:x:no_promote' has flags (no_promote); flags such as no_promote "
        "only apply to inputs"
    )


def test_missing_local_script(tmp_path: Path) -> None:
    manifest(tmp_path, '{"pipelines": {"p": [\n  {"script": "a.py"},\n  {"script": "gone.py"}\n]}}')
    assert one_problem(tmp_path) == "pipelines.json:3: script 'gone.py' not found (looked for gone.py)"


def test_script_folder_is_not_a_script(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    manifest(tmp_path, '{"pipelines": {"p": [{"script": "sub"}]}}')
    assert one_problem(tmp_path) == "pipelines.json:1: script 'sub' is a folder, not a file (looked for sub)"


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("../x.py", "script path '../x.py' leaves the pipeline folder; scripts must live under it"),
        ("/abs/x.py", "script path '/abs/x.py' is absolute; write it relative to the manifest's folder"),
        ("C:/x.py", "script path 'C:/x.py' is absolute; write it relative to the manifest's folder"),
        ("workbench:", "script ref 'workbench:' names no script; write workbench:<path>"),
        ("s3://bucket", "script ref 's3://bucket' names no script; write s3://<bucket>/<key>"),
        ("gs://b/x.py", "script 'gs://b/x.py' has an unknown prefix; use a path relative to the manifest"),
    ],
)
def test_bad_script_paths(tmp_path: Path, script: str, message: str) -> None:
    (tmp_path / "x.py").write_text("")
    manifest(tmp_path / "root", f'{{"pipelines": {{"p": [\n{{"script": "{script}"}}]}}}}')
    assert one_problem(tmp_path / "root").startswith(f"pipelines.json:2: {message}")


def test_script_in_sibling_folder_is_fine(tmp_path: Path) -> None:
    make(tmp_path, {"common/x.py": "", "m/pipelines.json": '{"pipelines": {"p": [{"script": "../common/x.py"}]}}'})
    (step,) = load_tree(tmp_path).steps
    assert step.script == "common/x.py" and step.pipeline == "p"
    make(tmp_path, {"m/pipelines.json": '{"pipelines": {"p": [{"script": "s3://b/k/x.py"}]}}'})
    assert [(s.script, s.script_kind) for s in load_tree(tmp_path).steps] == [("s3://b/k/x.py", "s3")]


def test_inline_non_literal(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "s.py": """
            import os
            WORKBENCH_BATCH = {
                "inputs": ["fs:x"],
                "outputs": [os.environ["OUT"]],
            }
        """,
        },
    )
    assert one_problem(tmp_path) == (
        "s.py:4: WORKBENCH_BATCH must be a plain literal (strings, numbers, lists, dicts); "
        "`os.environ['OUT']` is computed and scripts are never run"
    )


def test_inline_schema_errors(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "s.py": """
            WORKBENCH_BATCH = {
                "inputs": ["feat:x"],
                "ouputs": ["y"],
                "script": "s.py",
                "vcpus": "2",
            }
        """,
            "t.py": "WORKBENCH_BATCH = [1]\n",
        },
    )
    assert problems(tmp_path) == [
        "s.py:2: input 'feat:x' has unknown artifact type 'feat'; known types: ds, fs, model, endpoint, public",
        "s.py:3: unknown key 'ouputs' (did you mean 'outputs'?)",
        "s.py:4: 'script' is implied in WORKBENCH_BATCH (it is the file itself); remove it",
        "s.py:5: 'vcpus' must be a number > 0 (e.g. 0.5 or 2), got \"2\"",
        't.py:1: WORKBENCH_BATCH must be a map such as {"inputs": [...], "outputs": [...]}, got a list',
    ]


def test_inline_old_era_keys(tmp_path: Path) -> None:
    make(tmp_path, {"old.py": 'WORKBENCH_BATCH = {\n    "group": "caco2",\n    "priority": 2,\n}\n'})
    found = problems(tmp_path)
    assert found[0].startswith("old.py:2: 'group' is no longer supported (old WORKBENCH_BATCH format): declare")
    assert found[1].startswith("old.py:3: 'priority' is no longer supported")
    assert "'inputs'" in found[0] and "'outputs'" in found[0]


def test_inline_syntax_error(tmp_path: Path) -> None:
    make(tmp_path, {"s.py": 'import os\n\nWORKBENCH_BATCH = {"outputs": ["x"]}}\n'})
    assert one_problem(tmp_path) == (
        "s.py:3: Python syntax error: unmatched '}' (the file mentions WORKBENCH_BATCH, so it must parse)"
    )


def test_inline_assigned_twice_or_modified(tmp_path: Path) -> None:
    make(tmp_path, {"s.py": "WORKBENCH_BATCH = {}\nWORKBENCH_BATCH = {}\n"})
    assert one_problem(tmp_path) == "s.py:2: WORKBENCH_BATCH is assigned more than once (lines 1, 2); keep one"
    make(tmp_path, {"s.py": 'WORKBENCH_BATCH = {}\nWORKBENCH_BATCH["outputs"] = ["x"]\n'})
    assert one_problem(tmp_path).startswith("s.py:2: WORKBENCH_BATCH is modified after line 1")
    make(tmp_path, {"s.py": 'WORKBENCH_BATCH = {}\nWORKBENCH_BATCH.update(outputs=["x"])\n'})
    assert one_problem(tmp_path).startswith("s.py:2: WORKBENCH_BATCH is modified after line 1")


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "pipelines.json").write_bytes(b'{"pipelines":\n {"p\xff": []}}')
    assert one_problem(tmp_path) == "pipelines.json:2: not UTF-8 text (byte 0xff); save the file as UTF-8"
    (tmp_path / "pipelines.json").unlink()
    (tmp_path / "s.py").write_bytes(b'WORKBENCH_BATCH = {"outputs": ["\xff"]}\n')
    assert one_problem(tmp_path).startswith("s.py:1: Python syntax error:")


def test_garbage_never_tracebacks(tmp_path: Path) -> None:
    (tmp_path / "pipelines.json").write_bytes(b"\x00\x01" * 10)
    (tmp_path / "pipelines.yml").write_text("pipelines: {p: [{script: !!python/object:os.system x}]}\n")
    (tmp_path / "s.py").write_bytes(b"WORKBENCH_BATCH = {}\x00\n")
    found = problems(tmp_path)
    assert [p.split(":")[0] for p in found] == ["pipelines.json", "pipelines.yml", "s.py"]


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "a/pipelines.json": '{"pipelines": {"p": [{"script": "nope.py"}]}}',
            "b/s.py": 'WORKBENCH_BATCH = {"outputs": ["feat:x"]}\n',
            "c/pipelines.yaml": "pipelines: [\n",
        },
    )
    assert [p.split(": ")[0] for p in problems(tmp_path)] == ["a/pipelines.json:1", "b/s.py:1", "c/pipelines.yaml:2"]


def test_no_configs(tmp_path: Path) -> None:
    make(tmp_path, {"helper.py": "x = 1\n", "README.md": "hi"})
    assert one_problem(tmp_path) == (
        f"{tmp_path}: no pipeline configs found under {tmp_path}: add a pipelines.json/.yaml manifest "
        "or a module-level WORKBENCH_BATCH = {...} to a script"
    )
    manifest(tmp_path, '{"pipelines": {}}')
    assert "no pipeline configs with steps under" in one_problem(tmp_path)


def test_root_missing_or_not_a_folder(tmp_path: Path) -> None:
    assert one_problem(tmp_path / "nope") == f"{tmp_path / 'nope'}: pipeline folder does not exist"
    (tmp_path / "file.json").write_text("{}")
    assert one_problem(tmp_path / "file.json") == f"{tmp_path / 'file.json'}: pipeline folder is not a folder"
