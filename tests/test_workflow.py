"""The pure front end end to end: a pipelines folder -> groups -> planned workflows.

Small trees check the shapes the planner must recover exactly (chains side by side,
diamond, fan-out/fan-in) and the one it cannot ("N"); the repo's examples and Workbench's
own manifests check that real configs come out as expected.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import networkx as nx
import pytest

from sfn_pipelines import limits, naming
from sfn_pipelines.plan import Leaf, Parallel, Series, makespan, structure_edges
from sfn_pipelines.workflow import PipelineSet, Workflow, load_pipeline_set

REPO_PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"

CONTRACT_KEYS = {"name", "pipelines", "steps", "external_inputs", "added_constraints", "structure",
                 "critical_path_minutes", "makespan_minutes", "estimated_transitions", "estimated_cost_usd"}
STEP_KEYS = {"id", "state", "pipeline", "script", "mode", "inputs", "outputs", "depends_on", "source",
             "expected_minutes"}


def manifest(root: Path, pipelines: dict[str, list[dict]], folder: str = "") -> Path:
    """Write a pipelines.json under ``root/folder`` with an empty stand-in for each local script."""
    where = root / folder
    where.mkdir(parents=True, exist_ok=True)
    (where / "pipelines.json").write_text(json.dumps({"pipelines": pipelines}, indent=1))
    for nodes in pipelines.values():
        for node in nodes:
            if ":" not in node["script"]:
                (where / node["script"]).write_text("print('stand-in')\n")
    return root


def node(script: str, inputs: list[str], outputs: list[str], minutes: float | None = None, **extra) -> dict:
    out = {"script": f"{script}.py", "inputs": inputs, "outputs": outputs, **extra}
    if minutes is not None:
        out["expected_minutes"] = minutes
    return out


def only(ps: PipelineSet) -> Workflow:
    assert len(ps.workflows) == 1, [w.name for w in ps.workflows]
    return ps.workflows[0]


def durations(w: Workflow) -> dict[str, float]:
    return {s.id: s.options.expected_minutes or 1.0 for s in w.group.steps}


def check_invariants(w: Workflow) -> None:
    """What every plan must satisfy, whatever its shape."""
    ids = w.group.step_ids
    assert sorted(w.plan.steps()) == sorted(ids), "each step exactly once"
    order = nx.DiGraph(structure_edges(w.plan.root))
    order.add_nodes_from(ids)
    closure = nx.transitive_closure_dag(order)
    for a, b in w.group.edges:
        assert closure.has_edge(a, b), f"dependency {a} -> {b} dropped"
    assert w.plan.makespan == pytest.approx(makespan(w.plan.root, durations(w)))
    assert w.plan.makespan >= w.plan.critical_path - 1e-9
    if not w.plan.added:  # series-parallel: the tree is exactly the dependency order
        assert w.plan.makespan == pytest.approx(w.plan.critical_path)
    assert set(w.layout.scopes) == set(ids)


def test_two_chains_side_by_side_do_not_wait_for_each_other(tmp_path: Path) -> None:
    """10 -> 1 next to 1 -> 10 takes 11 minutes, not the 20 a level-by-level plan would take."""
    manifest(tmp_path, {"chains": [
        node("slow_first", ["ds:a"], ["fs:a"], 10), node("fast_then", ["fs:a"], ["model:a"], 1),
        node("fast_first", ["ds:b"], ["fs:b"], 1), node("slow_then", ["fs:b"], ["model:b"], 10),
        node("report", ["model:a", "model:b"], ["public:report"], 2),
    ]})
    w = only(load_pipeline_set(tmp_path))
    root = w.plan.root
    assert isinstance(root, Series) and root.children[1] == Leaf("report")
    both = root.children[0]
    assert both == Parallel((Series((Leaf("fast_first"), Leaf("slow_then"))),
                             Series((Leaf("slow_first"), Leaf("fast_then")))))
    assert makespan(both, durations(w)) == 11
    assert w.plan.makespan == w.plan.critical_path == 13
    assert w.plan.added == ()
    check_invariants(w)


def test_two_independent_chains_are_two_workflows(tmp_path: Path) -> None:
    manifest(tmp_path, {"chains": [
        node("a1", ["ds:a"], ["fs:a"], 10), node("a2", ["fs:a"], ["model:a"], 1),
        node("b1", ["ds:b"], ["fs:b"], 1), node("b2", ["fs:b"], ["model:b"], 10),
    ]})
    ps = load_pipeline_set(tmp_path)
    assert [w.name for w in ps.workflows] == ["chains-a1", "chains-b1"]
    assert [w.plan.makespan for w in ps.workflows] == [11, 11]
    assert all(isinstance(w.plan.root, Series) for w in ps.workflows)


def test_diamond(tmp_path: Path) -> None:
    manifest(tmp_path, {"d": [
        node("top", ["ds:raw"], ["fs:top"], 2),
        node("left", ["fs:top"], ["fs:left"], 3), node("right", ["fs:top"], ["fs:right"], 7),
        node("bottom", ["fs:left", "fs:right"], ["model:m"], 1),
    ]})
    w = only(load_pipeline_set(tmp_path))
    assert w.plan.root == Series((Leaf("top"), Parallel((Leaf("left"), Leaf("right"))), Leaf("bottom")))
    assert w.plan.makespan == w.plan.critical_path == 10
    assert w.group.parents("bottom") == ["left", "right"]
    check_invariants(w)


def test_fan_out_fan_in(tmp_path: Path) -> None:
    models = [f"m{i}" for i in range(6)]
    manifest(tmp_path, {"f": [
        node("features", ["ds:raw"], ["fs:f"]),
        *(node(m, ["fs:f"], [f"model:{m}"], 1 + i) for i, m in enumerate(models)),
        {"script": "workbench:models/model_promotion.py", "inputs": [f"model:{m}" for m in models],
         "outputs": ["endpoint:best"]},
    ]})
    w = only(load_pipeline_set(tmp_path))
    assert w.plan.root == Series((Leaf("features"), Parallel(tuple(Leaf(m) for m in models)),
                                  Leaf("model_promotion")))
    assert w.plan.makespan == w.plan.critical_path == 1 + 6 + 1
    assert len(w.parallels()) == 1
    check_invariants(w)


def test_n_shape_adds_one_reported_constraint(tmp_path: Path) -> None:
    """a -> c, b -> c, b -> d with a and d unrelated: no tree of Series/Parallel is exact."""
    manifest(tmp_path, {"n": [
        node("a", ["ds:a"], ["fs:a"]), node("b", ["ds:b"], ["fs:b"]),
        node("c", ["fs:a", "fs:b"], ["model:c"]), node("d", ["fs:b"], ["model:d"]),
    ]})
    w = only(load_pipeline_set(tmp_path))
    assert len(w.plan.added) == 1
    (added,) = w.plan.added
    assert set(added.before) <= {"a", "b"} and set(added.after) <= {"c", "d"}
    assert ("a", "d") in {(x, y) for x in added.before for y in added.after}
    assert w.to_dict()["added_constraints"] == [{"before": list(added.before), "after": list(added.after)}]
    check_invariants(w)


# -- real configs ------------------------------------------------------------------------------


def test_repo_pipelines_folder() -> None:
    ps = load_pipeline_set(REPO_PIPELINES)
    assert ps.warnings == []
    names = [w.name for w in ps.workflows]
    assert len(set(names)) == len(names)
    for w in ps.workflows:
        check_invariants(w)
    by_pipeline = {p: w for w in ps.workflows for p in w.group.pipelines}
    churn = by_pipeline["churn"]
    assert len(churn.plan.added) == 1, "churn is an N: exactly one added constraint"
    assert churn.plan.makespan == churn.plan.critical_path  # the hints let the planner hide the cost
    tox = [w for w in ps.workflows if w.group.pipelines == ("toxicity",)]
    assert len(tox) == 2, "the diamond and the independent assay chain are separate groups"
    diamond = next(w for w in tox if "tox_model" in w.group.step_ids)
    assert diamond.group.parents("tox_model") == ["tox_descriptors", "tox_fingerprints"]
    assert diamond.plan.added == ()
    sol = by_pipeline["solubility"]
    assert sol.plan.added == () and "ds:solubility_raw" in sol.group.external_inputs
    assert by_pipeline["solubility_hpo"] is not sol, "sharing only an external input does not join groups"


def copy_example(examples: Path, name: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(examples / f"{name}.pipelines.json", dest / "pipelines.json")
    for nodes in json.loads((dest / "pipelines.json").read_text())["pipelines"].values():
        for n in nodes:
            if ":" not in n["script"]:
                (dest / n["script"]).write_text("print('stand-in')\n")
    return dest


def test_aqsol_example(shared_examples: Path, tmp_path: Path) -> None:
    copy_example(shared_examples, "aqsol", tmp_path / "aqsol")
    w = only(load_pipeline_set(tmp_path))
    assert w.name == "aqsol" and len(w.group.steps) == 10
    assert w.group.external_inputs == ("ds:aqsol_data",)
    promotions = {s.script: s.id for s in w.group.steps if "model_promotion" in s.script}
    assert w.group.parents(promotions["plugin:models/model_promotion.py"]) == ["aqsol_class_1", "aqsol_class_2"]
    assert w.group.parents(promotions["workbench:models/model_promotion.py"]) == [
        "aqsol_chemprop_hpo", "aqsol_reg_1", "aqsol_reg_2", "aqsol_xgb_hpo"]
    assert w.plan.added == ()
    assert w.plan.makespan == w.plan.critical_path == 3
    assert isinstance(w.plan.root, Series) and w.plan.root.children[0] == Leaf("aqsol_feature_set")
    check_invariants(w)


def test_logd_and_demo_modes_examples(shared_examples: Path, tmp_path: Path) -> None:
    copy_example(shared_examples, "logd", tmp_path / "logd")
    copy_example(shared_examples, "demo-modes", tmp_path / "demo")
    ps = load_pipeline_set(tmp_path)
    by_name = {w.name: w for w in ps.workflows}
    assert sorted(by_name) == ["demo", "logd", "logd_hpo"]
    assert by_name["logd"].group.external_inputs == by_name["logd_hpo"].group.external_inputs == (
        "fs:open_admet_logd",)
    assert by_name["demo"].group.step_ids == ["demo_fs", "demo_reg_dt", "demo_reg_ts"]
    for w in ps.workflows:
        assert w.plan.added == ()
        check_invariants(w)


# -- the JSON contract and the estimates ------------------------------------------------------


def test_to_dict_carries_the_contract(tmp_path: Path) -> None:
    manifest(tmp_path, {"c": [
        node("feat", ["ds:raw"], ["fs:f"], 4, mode="dt"),
        node("train", ["fs:f", "ds:labels"], ["model:m", "endpoint:m"]),
        node("promote", ["model:m:no_promote"], ["endpoint:prod"]),
    ]})
    ps = load_pipeline_set(tmp_path)
    d = json.loads(json.dumps(ps.to_dict()))  # JSON-safe, round-trips
    (group,) = d["groups"]
    assert set(group) >= CONTRACT_KEYS
    assert group["name"] == "c" and group["pipelines"] == ["c"]
    steps = {s["id"]: s for s in group["steps"]}
    for s in group["steps"]:
        assert set(s) >= STEP_KEYS
        assert s["state"] == naming.task_state(s["id"])
    assert steps["feat"] == {**steps["feat"], "mode": "dt", "expected_minutes": 4, "script": "feat.py",
                             "source": "pipelines.json:4", "depends_on": []}  # indent=1: node 1 opens on line 4
    assert steps["train"]["inputs"] == ["fs:f", "ds:labels"] and steps["train"]["depends_on"] == ["feat"]
    assert steps["promote"]["inputs"] == ["model:m"] and steps["promote"]["depends_on"] == ["train"]
    assert group["external_inputs"] == ["ds:labels", "ds:raw"]
    assert group["added_constraints"] == []
    assert group["structure"] == {"series": [{"step": "feat"}, {"step": "train"}, {"step": "promote"}]}
    assert group["critical_path_minutes"] == group["makespan_minutes"] == 6
    assert group["estimated_cost_usd"] == pytest.approx(group["estimated_transitions"]
                                                        * limits.PRICE_PER_TRANSITION_USD, abs=1e-6)


@pytest.mark.parametrize(("shape", "steps", "parallels"), [
    ("single", [node("only", ["ds:x"], ["fs:x"])], 0),
    ("chain", [node("a", [], ["fs:a"]), node("b", ["fs:a"], ["fs:b"]), node("c", ["fs:b"], [])], 0),
    ("diamond", [node("t", [], ["fs:t"]), node("l", ["fs:t"], ["fs:l"]), node("r", ["fs:t"], ["fs:r"]),
                 node("b", ["fs:l", "fs:r"], [])], 1),
])
def test_estimated_transitions(tmp_path: Path, shape: str, steps: list[dict], parallels: int) -> None:
    """A successful run enters: the args Choice and one args Pass, the start Pass; per step its
    Check and its Task; each Parallel; the final check and the end state."""
    manifest(tmp_path, {shape: steps})
    w = only(load_pipeline_set(tmp_path))
    assert len(w.parallels()) == parallels
    expected = 3 + 2 * len(steps) + parallels + 2
    assert w.estimated_transitions() == expected
    assert {"single": 7, "chain": 11, "diamond": 14}[shape] == expected
    assert w.to_dict()["estimated_transitions"] == expected
    assert w.estimated_history_events() < limits.HISTORY_EVENTS_MAX


def test_estimated_transitions_count_gates_and_retries(tmp_path: Path) -> None:
    manifest(tmp_path, {"g": [node("a", [], ["fs:a"], retries=2),
                              node("b", ["fs:a"], [], approval="ship it?")]})
    w = only(load_pipeline_set(tmp_path))
    assert w.estimated_transitions() == 3 + 2 * 2 + 1 + 2
    assert w.estimated_transitions(with_retries=True) == w.estimated_transitions() + 2


def test_unknown_workflow_name(tmp_path: Path) -> None:
    manifest(tmp_path, {"x": [node("a", [], [])]})
    ps = load_pipeline_set(tmp_path)
    assert ps.workflow("x").name == "x"
    with pytest.raises(KeyError, match="no dependency group named 'y'"):
        ps.workflow("y")


def test_discovery_order_does_not_change_the_plan(tmp_path: Path) -> None:
    """Same steps, spread over folders named so that discovery order differs."""
    steps = [node("feat", ["ds:r"], ["fs:f"]), node("m1", ["fs:f"], ["model:1"], 3),
             node("m2", ["fs:f"], ["model:2"], 5), node("join", ["model:1", "model:2"], [])]
    manifest(tmp_path / "one", {"p": steps})
    for i, n in enumerate(reversed(steps)):
        manifest(tmp_path / "two", {"p": [n]}, folder=f"{'zyxw'[i]}")
    a, b = load_pipeline_set(tmp_path / "one"), load_pipeline_set(tmp_path / "two")
    assert a.workflows[0].plan.root == b.workflows[0].plan.root
    assert a.workflows[0].group.edges == b.workflows[0].group.edges


def test_yaml_inline_and_json_together(tmp_path: Path) -> None:
    """One group built from a YAML manifest, a JSON manifest and an inline script."""
    (tmp_path / "fe").mkdir()
    (tmp_path / "fe" / "pipelines.yaml").write_text(textwrap.dedent("""
        pipelines:
          fe:
            - script: fe.py
              inputs: ["ds:raw"]
              outputs: ["fs:f"]
              expected_minutes: 5
        """))
    (tmp_path / "fe" / "fe.py").write_text("")
    manifest(tmp_path, {"models": [node("xgb", ["fs:f"], ["model:x"], 2)]}, folder="models")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.py").write_text('WORKBENCH_BATCH = {"inputs": ["model:x"]}\n')
    w = only(load_pipeline_set(tmp_path))
    assert w.group.pipelines == ("fe", "models", "report")
    assert w.plan.root == Series((Leaf("fe"), Leaf("xgb"), Leaf("report")))
    assert w.plan.critical_path == 8
