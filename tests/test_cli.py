"""The ``sfn-pipelines`` command: exit codes, one ``path:line: message`` per problem, the
``plan --json`` contract, graph output, ``summary``, and that it stays free of aws_cdk.

Commands run in-process through ``cli.main`` (fast); a few run as ``python -m
sfn_pipelines`` in a subprocess to prove the module entry point and the import cost.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import make

from sfn_pipelines import naming
from sfn_pipelines.cli import main

REPO = Path(__file__).resolve().parents[1]
PROBLEM_LINE = re.compile(r"^(?P<path>[^:\s]+(?:/[^:\s]+)*):(?P<line>\d+): (?P<message>\S.*)$")

# The part of the `plan --json` output other tools rely on.
PLAN_SCHEMA = {
    "type": "object",
    "required": ["groups"],
    "properties": {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "steps", "external_inputs", "added_constraints", "structure"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
                    "steps": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["id", "state", "script", "inputs", "outputs", "depends_on"],
                            "properties": {
                                "id": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"},
                                "state": {"type": "string", "minLength": 1, "maxLength": 80},
                                "script": {"type": "string", "minLength": 1},
                                "inputs": {"type": "array", "items": {"type": "string"}},
                                "outputs": {"type": "array", "items": {"type": "string"}},
                                "depends_on": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                    "external_inputs": {"type": "array", "items": {"type": "string"}},
                    "added_constraints": {
                        "type": "array",
                        "items": {"type": "object", "required": ["before", "after"]},
                    },
                    "structure": {"type": "object", "minProperties": 1, "maxProperties": 1},
                },
            },
        }
    },
}




def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# An "N" (a -> c, b -> c, b -> d) fed by an external input, plus a separate diamond.
GOOD = {
    "n/pipelines.yaml": """
        pipelines:
          n:
            - {script: a.py, inputs: ["ds:raw"], outputs: ["fs:a"]}
            - {script: b.py, inputs: ["ds:raw"], outputs: ["fs:b"], expected_minutes: 4}
            - {script: c.py, inputs: ["fs:a", "fs:b"], outputs: ["model:c"]}
            - {script: d.py, inputs: ["fs:b"], outputs: ["model:d"]}
        """,
    "n/a.py": "", "n/b.py": "", "n/c.py": "", "n/d.py": "",
    "diamond/top.py": 'WORKBENCH_BATCH = {"outputs": ["fs_top"]}\n',
    "diamond/left.py": 'WORKBENCH_BATCH = {"inputs": ["fs_top"], "outputs": ["fs_left"]}\n',
    "diamond/right.py": 'WORKBENCH_BATCH = {"inputs": ["fs_top"], "outputs": ["fs_right"]}\n',
    "diamond/bottom.py": 'WORKBENCH_BATCH = {"inputs": ["fs_left", "fs_right"]}\n',
}
GOOD_EDGES = {("a", "c"), ("b", "c"), ("b", "d"), ("top", "left"), ("top", "right"), ("left", "bottom"),
              ("right", "bottom")}

# Graph-level mistakes in two files: two producers, a cycle, a step reading its own output.
BAD = {
    "one/pipelines.json": """
        {"pipelines": {"one": [
          {"script": "x.py", "outputs": ["fs:same"]},
          {"script": "y.py", "outputs": ["fs:same"]},
          {"script": "loop.py", "inputs": ["fs:l"], "outputs": ["fs:l"]}
        ]}}
        """,
    "one/x.py": "", "one/y.py": "", "one/loop.py": "",
    "two/p.py": 'WORKBENCH_BATCH = {"inputs": ["q_out"], "outputs": ["p_out"]}\n',
    "two/q.py": 'WORKBENCH_BATCH = {"inputs": ["p_out"], "outputs": ["q_out"]}\n',
}


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return make(tmp_path / "good", GOOD)


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    return make(tmp_path / "bad", BAD)


def assert_problem_lines(err: str, directory: Path | str) -> list[re.Match[str]]:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines, "expected at least one problem line"
    matches = []
    for line in lines:
        m = PROBLEM_LINE.match(line)
        assert m, f"not a 'path:line: message' line: {line!r}"
        assert m["path"].startswith(f"{directory}/"), line
        assert Path(m["path"]).is_file(), f"{m['path']} does not exist"
        matches.append(m)
    return matches


# -- validate -------------------------------------------------------------------------------------


def test_validate_good_tree(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    assert cli(capsys, "validate", str(good)) == (0, f"ok: 8 steps in 2 dependency group(s) under {good}\n", "")


def test_validate_repo_pipelines(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "validate", str(REPO / "pipelines"))
    assert (code, err) == (0, "") and out.startswith("ok: ")


def test_validate_reports_each_graph_problem_once(capsys: pytest.CaptureFixture[str], bad: Path) -> None:
    code, out, err = cli(capsys, "validate", str(bad))
    assert code == 2 and out == ""
    found = assert_problem_lines(err, bad)
    assert [(Path(m["path"]).relative_to(bad).as_posix(), int(m["line"])) for m in found] == [
        ("one/pipelines.json", 3), ("one/pipelines.json", 4), ("two/p.py", 1)]
    messages = [m["message"] for m in found]
    assert messages[0].startswith("fs:same is produced by two steps: x (one/pipelines.json:2) and y")
    assert messages[1].startswith("step loop consumes its own output fs:l")
    assert messages[2].startswith("dependency cycle: p -> q -> p")


def test_validate_reports_config_problems(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = make(tmp_path / "cfg", {
        "a/pipelines.json": '{"pipelines": {"a": [\n  {"script": "a.py", "outputs": ["feature:x"]}\n]}}\n',
        "a/a.py": "",
        "b/pipelines.json": '{"pipelines": {\n  "b": [,]\n}}\n',
        "c/c.py": 'import os\nWORKBENCH_BATCH = {"inputs": [os.environ["X"]]}\n',
    })
    code, out, err = cli(capsys, "validate", str(root))
    assert code == 2 and out == ""
    found = assert_problem_lines(err, root)
    assert [(Path(m["path"]).relative_to(root).as_posix(), int(m["line"])) for m in found] == [
        ("a/pipelines.json", 2), ("b/pipelines.json", 2), ("c/c.py", 2)]
    assert "unknown artifact type 'feature'" in found[0]["message"]
    assert found[1]["message"].startswith("invalid JSON")
    assert "must be a plain literal" in found[2]["message"]


def test_validate_missing_folder_names_it_once(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    assert cli(capsys, "validate", "nope") == (2, "", "nope: pipeline folder does not exist\n")
    code, _, err = cli(capsys, "validate", "empty")
    assert code == 2 and err.startswith("empty: no pipeline configs found under empty")


def test_validate_missing_folder_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert cli(capsys, "validate", str(missing)) == (2, "", f"{missing}: pipeline folder does not exist\n")


def test_warnings_are_printed_but_do_not_fail(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    make(good, {"n/helper.py": 'def f():\n    WORKBENCH_BATCH = {"outputs": ["fs:z"]}\n'})
    code, out, err = cli(capsys, "validate", str(good))
    assert code == 0 and out.startswith("ok: 8 steps")
    (m,) = assert_problem_lines(err, good)
    assert m["path"].endswith("n/helper.py") and m["line"] == "2" and m["message"].startswith("warning: ")


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys)
    assert code == 2 and "validate" in out and "plan" in out


def test_usage_mistakes_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["graph", "x", "--format", "png"])
    assert info.value.code == 2
    assert "invalid choice: 'png'" in capsys.readouterr().err


# -- plan -----------------------------------------------------------------------------------------


def test_plan_json_follows_the_contract(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = cli(capsys, "plan", "--json", str(good))
    assert (code, err) == (0, "")
    doc = json.loads(out)
    jsonschema.validate(doc, PLAN_SCHEMA)
    steps = {s["id"]: s for g in doc["groups"] for s in g["steps"]}
    assert sorted(steps) == ["a", "b", "bottom", "c", "d", "left", "right", "top"]
    for s in steps.values():
        assert s["state"] == naming.task_state(s["id"])
    assert {(p, s["id"]) for s in steps.values() for p in s["depends_on"]} == GOOD_EDGES
    n = next(g for g in doc["groups"] if g["name"] == "n")
    assert n["external_inputs"] == ["ds:raw"] and len(n["added_constraints"]) == 1
    assert steps["c"]["inputs"] == ["fs:a", "fs:b"] and steps["c"]["script"] == "n/c.py"


def test_plan_json_for_one_group(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, _ = cli(capsys, "plan", "--json", "--group", "diamond", str(good))
    assert code == 0
    doc = json.loads(out)
    assert [g["name"] for g in doc["groups"]] == ["diamond"]
    assert doc["groups"][0]["structure"] == {"series": [
        {"step": "top"}, {"parallel": [{"step": "left"}, {"step": "right"}]}, {"step": "bottom"}]}


def test_plan_text_shows_inputs_constraints_and_structure(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = cli(capsys, "plan", str(good))
    assert (code, err) == (0, "")
    assert "group diamond  (pipelines: diamond; 4 steps)" in out and "group n  (pipelines: n; 4 steps)" in out
    assert "  external inputs: ds:raw\n" in out
    assert "added constraints" in out
    assert re.search(r"^ {4}\S.*  before  \S", out, re.M), out
    assert re.search(r"^  structure:\n {4}series \(3\)\n {6}top\n {6}parallel \(2\)\n {8}left\n {8}right\n"
                     r" {6}bottom$", out, re.M), out
    assert re.search(r"^  bottom +diamond/bottom\.py  after left, right$", out, re.M), out
    assert re.search(r"^  b +n/b\.py  ~4 min$", out, re.M), out


def test_unknown_group_exits_2_with_the_known_ones(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    for command in ("plan", "graph"):
        code, out, err = cli(capsys, command, str(good), "--group", "nope")
        assert (code, out) == (2, "")
        assert err == "sfn-pipelines: no dependency group named 'nope' (groups: n, diamond)\n"


def test_plan_on_bad_tree_exits_2(capsys: pytest.CaptureFixture[str], bad: Path) -> None:
    code, out, err = cli(capsys, "plan", "--json", str(bad))
    assert code == 2 and out == ""
    assert len(assert_problem_lines(err, bad)) == 3


# -- graph ----------------------------------------------------------------------------------------

MERMAID_RESERVED = {"end", "subgraph", "graph", "flowchart", "style", "class", "classDef", "click", "linkStyle"}
MERMAID_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def mermaid_structure(text: str) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """A small checker for the subset we emit: (subgraph labels, node labels, solid edges by label).

    Fails on what Mermaid rejects: unbalanced subgraph/end, a keyword as a node id, a node
    inside a subgraph of the same id ("Setting X as parent of X would create a cycle").
    """
    lines = text.splitlines()
    assert lines[0].startswith("flowchart"), lines[0]
    subgraphs, labels, edges, stack, sub_ids = set(), {}, set(), [], set()
    for raw in lines[1:]:
        line = raw.strip()
        if m := re.fullmatch(r'subgraph (\S+?)\["(.*)"\]', line):
            stack.append(m.group(1))
            sub_ids.add(m.group(1))
            subgraphs.add(m.group(2))
        elif line == "end":
            assert stack, "end without subgraph"
            stack.pop()
        elif m := re.fullmatch(r"(\S+) (-->|-\.->) (\S+)", line):
            a, arrow, b = m.groups()
            assert a in labels and b in labels, f"edge to an undeclared node: {line}"
            if arrow == "-->":
                edges.add((labels[a], labels[b]))
        elif m := re.fullmatch(r'(\S+?)(?:\["(.*)"\]|\[\("(.*)"\)\])', line):
            node_id = m.group(1)
            assert MERMAID_ID.match(node_id), node_id
            assert node_id.lower() not in {w.lower() for w in MERMAID_RESERVED}, f"keyword as node id: {node_id}"
            assert node_id not in stack, f"node {node_id} inside a subgraph of the same id"
            labels[node_id] = m.group(2) or m.group(3)
        else:
            pytest.fail(f"unexpected mermaid line: {raw!r}")
    assert not stack, "subgraph without end"
    assert not sub_ids & set(labels), f"ids used for both a subgraph and a node: {sub_ids & set(labels)}"
    return subgraphs, set(labels.values()), edges


def test_graph_mermaid(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = cli(capsys, "graph", str(good))
    assert (code, err) == (0, "")
    subgraphs, nodes, edges = mermaid_structure(out)
    assert subgraphs == {"diamond", "n"}
    assert edges == GOOD_EDGES
    ext = re.search(r'^    (\S+)\[\("ds:raw"\)\]$', out, re.M)
    assert ext and "ds:raw" in nodes
    assert f"  {ext.group(1)} -.-> s_a" in out and f"  {ext.group(1)} -.-> s_b" in out


def test_graph_dot(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, err = cli(capsys, "graph", "--format", "dot", str(good))
    assert (code, err) == (0, "")
    assert out.startswith("digraph pipelines {") and out.rstrip().endswith("}")
    assert out.count("{") == out.count("}") and out.count('"') % 2 == 0
    assert out.count("subgraph ") == 2 and 'subgraph "cluster_n" {' in out
    solid = set(re.findall(r'^ {4}"([^"]+)" -> "([^"]+)";$', out, re.M))
    assert solid == GOOD_EDGES
    assert '    "ds:raw" -> "a" [style=dashed];' in out
    assert '    "ds:raw" [shape=cylinder, style=dashed];' in out


def test_graph_group_filter(capsys: pytest.CaptureFixture[str], good: Path) -> None:
    code, out, _ = cli(capsys, "graph", str(good), "--group", "n")
    assert code == 0
    subgraphs, nodes, edges = mermaid_structure(out)
    assert subgraphs == {"n"} and edges == {("a", "c"), ("b", "c"), ("b", "d")}
    assert "top" not in nodes


def test_graph_mermaid_when_a_step_is_named_like_its_group(capsys: pytest.CaptureFixture[str],
                                                         shared_examples: Path, tmp_path: Path) -> None:
    root = tmp_path / "logd"
    root.mkdir()
    (root / "pipelines.json").write_bytes((shared_examples / "logd.pipelines.json").read_bytes())
    (root / "logd.py").write_text("")
    (root / "logd_chemprop_hpo.py").write_text("")
    code, out, _ = cli(capsys, "graph", str(tmp_path))
    assert code == 0
    mermaid_structure(out)


def test_graph_mermaid_with_a_keyword_step_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    make(tmp_path, {"p/start.py": 'WORKBENCH_BATCH = {"outputs": ["fs:x"]}\n',
                    "p/end.py": 'WORKBENCH_BATCH = {"inputs": ["fs:x"]}\n'})
    code, out, _ = cli(capsys, "graph", str(tmp_path))
    assert code == 0
    mermaid_structure(out)


# -- summary --------------------------------------------------------------------------------------


def write_template(cdk_out: Path, name: str, resources: dict) -> Path:
    cdk_out.mkdir(parents=True, exist_ok=True)
    path = cdk_out / f"{name}.template.json"
    path.write_text(json.dumps({"Resources": resources}))
    return path


ASL = {
    "StartAt": "Check a",
    "States": {
        "Check a": {"Type": "Choice", "Choices": [], "Default": "a"},
        "a": {"Type": "Task", "Resource": "arn:aws:states:::batch:submitJob.sync", "Next": "Fork"},
        "Fork": {"Type": "Parallel", "End": True, "Branches": [
            {"StartAt": "b", "States": {"b": {"Type": "Task", "Resource": "x", "End": True}}},
            {"StartAt": "c", "States": {"c": {"Type": "Pass", "Next": "Done c"}, "Done c": {"Type": "Succeed"}}},
        ]},
    },
}


def test_summary_of_a_cdk_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = json.dumps(ASL)
    cut = text.index("arn:aws:states") + len("arn:")
    joined = {"Fn::Join": ["", [text[:cut], {"Ref": "AWS::Partition"}, text[cut + len("aws"):]]]}
    template = write_template(tmp_path / "cdk.out", "Stack", {
        "Machine": {"Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {"StateMachineName": "Stack-demo", "DefinitionString": joined}},
        "Plain": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {"DefinitionString": text}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
    })
    code, out, err = cli(capsys, "summary", str(tmp_path / "cdk.out"))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{template}  (") and lines[0].endswith(" bytes, 2 state machine(s))")
    kinds = "6 states (1 Choice, 1 Parallel, 1 Pass, 1 Succeed, 2 Task)"
    assert lines[1].startswith(f"  Stack-demo: {kinds}; definition ")
    assert lines[2].startswith(f"  Plain: {kinds}; definition {len(text):,} bytes of 1,048,576")


def test_summary_of_a_missing_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = cli(capsys, "summary", str(tmp_path / "cdk.out"))
    assert (code, out) == (2, "")
    assert err == f"sfn-pipelines: no *.template.json in {tmp_path / 'cdk.out'}; run the synth first\n"


def test_summary_of_a_broken_template(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "cdk.out").mkdir()
    (tmp_path / "cdk.out" / "Stack.template.json").write_text('{"Resources": {')
    code, _, err = cli(capsys, "summary", str(tmp_path / "cdk.out"))
    assert code == 2 and "Stack.template.json" in err


def test_summary_of_a_definition_object(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_template(tmp_path / "cdk.out", "Stack", {
        "M": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {"Definition": ASL}}})
    code, out, _ = cli(capsys, "summary", str(tmp_path / "cdk.out"))
    assert code == 0 and "6 states" in out


# -- the real entry point, in a fresh interpreter --------------------------------------------------


def run_module(*argv: str, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "sfn_pipelines", *argv], capture_output=True, text=True,
                          env=env, timeout=120, **kwargs)


def test_module_entry_point(good: Path, bad: Path) -> None:
    ok = run_module("validate", str(good))
    assert (ok.returncode, ok.stderr) == (0, "") and ok.stdout.startswith("ok: 8 steps")
    failed = run_module("validate", str(bad))
    assert failed.returncode == 2 and failed.stdout == ""
    assert len(assert_problem_lines(failed.stderr, bad)) == 3


def test_closed_stdout_is_not_a_traceback(good: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "sfn_pipelines", "plan", "--json", str(good)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before anything is written
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err


IMPORT_PROBE = """
import sys, time
t0 = time.perf_counter()
import sfn_pipelines.cli
t1 = time.perf_counter()
after_import = "aws_cdk" in sys.modules
code = sfn_pipelines.cli.main(["validate", sys.argv[1]])
print(f"{t1 - t0:.3f} {after_import} {'aws_cdk' in sys.modules} {code}")
"""


def test_cli_never_imports_aws_cdk(good: Path, record_property) -> None:
    """Planning must start fast: aws_cdk (seconds of jsii start-up) stays out, even after a command
    ran (the optional run/cloud command modules are loaded by then)."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_PROBE, str(good)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    seconds, after_import, after_main, code = proc.stdout.split()[-4:]
    assert (after_import, after_main, code) == ("False", "False", "0")
    record_property("cli_import_seconds", float(seconds))
    print(f"cold import of sfn_pipelines.cli: {float(seconds):.3f} s")


def test_validate_says_where_approval_gates_are_enforced(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    make(tmp_path, {"p/pipelines.json": json.dumps({"pipelines": {"p": [
        {"script": "a.py", "outputs": ["model:m"]},
        {"script": "b.py", "inputs": ["model:m"], "approval": "ship it?"}]}}),
        "p/a.py": "", "p/b.py": ""})
    code, out, err = cli(capsys, "validate", str(tmp_path))
    assert (code, err) == (0, "")
    assert "note: approval gates on b: enforced by execution_mode=step_functions only" in out
