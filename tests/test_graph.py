"""The dependency graph: every graph-level error by its text and place, and the groups.

Most tests build ``Step`` objects directly (the graph never reads files); the tests of
edges across folders go through ``load_tree`` to cover manifests and inline scripts.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from conftest import make
from hypothesis import given, settings
from hypothesis import strategies as st

from sfn_pipelines.config import load_tree, parse_ref
from sfn_pipelines.graph import PipelineGraph, build_graph
from sfn_pipelines.model import PipelineConfigError, Source, Step

VALID_GROUP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def step(
    script: str,
    inputs: tuple[str, ...] | list[str] = (),
    outputs: tuple[str, ...] | list[str] = (),
    *,
    pipeline: str = "p",
    mode: str | None = None,
    path: str | None = None,
    line: int = 1,
) -> Step:
    """A loaded step: ``script`` is a stem ("a" -> "<pipeline>/a.py"), refs as users write them."""
    return Step(
        pipeline=pipeline,
        script=script if "/" in script or ":" in script else f"{pipeline}/{script}.py",
        script_kind="local",
        inputs=tuple(parse_ref(r) for r in inputs),
        outputs=tuple(parse_ref(r, "output") for r in outputs),
        source=Source(path or f"{pipeline}/pipelines.json", line),
        mode=mode,
    )


def problems(steps: list[Step]) -> list[str]:
    with pytest.raises(PipelineConfigError) as info:
        build_graph(steps)
    return [str(p) for p in info.value.problems]




def shape(graph: PipelineGraph) -> list[tuple]:
    """Everything observable about the groups, for comparing two builds."""
    return [
        (g.name, tuple(s.id for s in g.steps), tuple(s.source for s in g.steps), g.edges, g.external_inputs,
         g.pipelines)
        for g in graph.groups
    ]


# -- graph errors ------------------------------------------------------------------------------


def test_two_producers_of_one_ref_names_both_steps_and_places() -> None:
    found = problems([
        step("make_a", ["ds:raw"], ["fs:x"], path="one/pipelines.json", line=3),
        step("make_b", ["ds:raw"], ["fs:x"], path="two/pipelines.yaml", line=7),
    ])
    assert found == [
        "two/pipelines.yaml:7: fs:x is produced by two steps: make_a (one/pipelines.json:3) and make_b; "
        "each artifact needs exactly one producer"
    ]


def test_three_producers_report_each_extra_one_against_the_first() -> None:
    found = problems([step(name, [], ["model:m"], line=n) for n, name in enumerate(("a", "b", "c"), start=2)])
    assert found == [
        "p/pipelines.json:3: model:m is produced by two steps: a (p/pipelines.json:2) and b; "
        "each artifact needs exactly one producer",
        "p/pipelines.json:4: model:m is produced by two steps: a (p/pipelines.json:2) and c; "
        "each artifact needs exactly one producer",
    ]


def test_duplicate_step_same_script_and_outputs_in_any_order() -> None:
    found = problems([
        step("feat", ["ds:raw"], ["fs:a", "fs:b"], line=2),
        step("feat", ["ds:other"], ["fs:b", "fs:a"], line=5),
    ])
    assert "p/pipelines.json:5: duplicate step: p/feat.py with the same outputs is already declared at " \
           "p/pipelines.json:2" in found


def test_duplicate_step_names_its_mode() -> None:
    found = problems([
        step("reg", ["fs:f"], ["model:r"], mode="dt", line=2),
        step("reg", ["fs:f"], ["model:r"], mode="dt", line=3),
    ])
    assert "p/pipelines.json:3: duplicate step: p/reg.py in mode 'dt' with the same outputs is already " \
           "declared at p/pipelines.json:2" in found


def test_duplicate_step_report_does_not_depend_on_input_order() -> None:
    first = step("feat", ["ds:raw"], ["fs:a"], line=2)
    again = step("feat", ["ds:raw"], ["fs:a"], line=3)
    assert problems([first, again]) == problems([again, first])


def test_same_script_with_other_mode_or_other_outputs_is_not_a_duplicate() -> None:
    graph = build_graph([
        step("reg", ["fs:f"], ["model:r_dt"], mode="dt"),
        step("reg", ["fs:f"], ["model:r_ts"], mode="ts"),
        step("workbench:models/model_promotion.py", ["model:r_dt"], ["endpoint:a"]),
        step("workbench:models/model_promotion.py", ["model:r_ts"], ["endpoint:b"]),
    ])
    assert len(graph.steps) == 4


def test_step_consuming_its_own_output() -> None:
    assert problems([step("loop", ["fs:x", "ds:raw"], ["fs:x"], line=4)]) == [
        "p/pipelines.json:4: step loop consumes its own output fs:x; remove it from inputs or outputs"
    ]


def test_own_output_with_a_flag_is_still_self_consumption() -> None:
    found = problems([step("promote", ["model:m:no_promote"], ["model:m"])])
    assert found == ["p/pipelines.json:1: step promote consumes its own output model:m; "
                     "remove it from inputs or outputs"]


def test_two_step_cycle_lists_the_cycle() -> None:
    found = problems([
        step("a", ["fs:y"], ["fs:x"], line=2),
        step("b", ["fs:x"], ["fs:y"], line=9),
    ])
    assert found == ["p/pipelines.json:2: dependency cycle: a -> b -> a; "
                     "break it by removing one of these inputs"]


def test_three_step_cycle_follows_producer_to_consumer() -> None:
    found = problems([
        step("c", ["fs:y"], ["fs:z"], path="c/pipelines.json", line=1),
        step("a", ["fs:z"], ["fs:x"], path="a/pipelines.json", line=1),
        step("b", ["fs:x"], ["fs:y"], path="b/pipelines.json", line=1),
        step("d", ["fs:z"], ["fs:out"]),  # hangs off the cycle, not part of it
    ])
    assert found == ["a/pipelines.json:1: dependency cycle: a -> b -> c -> a; "
                     "break it by removing one of these inputs"]


def test_each_cycle_is_reported() -> None:
    found = problems([
        step("a", ["fs:b"], ["fs:a"]), step("b", ["fs:a"], ["fs:b"]),
        step("x", ["fs:y"], ["fs:x"]), step("y", ["fs:x"], ["fs:y"]),
    ])
    assert [m.split(": ", 1)[1].split(";")[0] for m in found] == [
        "dependency cycle: a -> b -> a", "dependency cycle: x -> y -> x"]


def test_all_problems_are_reported_at_once_sorted_by_place() -> None:
    with pytest.raises(PipelineConfigError) as info:
        build_graph([
            step("loop", ["fs:l"], ["fs:l"], path="c/pipelines.json", line=8),
            step("a", ["fs:b"], ["fs:a"], path="b/pipelines.json", line=2),
            step("b", ["fs:a"], ["fs:b"], path="b/pipelines.json", line=6),
            step("p1", [], ["fs:twice"], path="a/pipelines.json", line=4),
            step("p2", [], ["fs:twice"], path="a/pipelines.json", line=3),
            step("fine", ["ds:raw"], ["fs:ok"], path="a/pipelines.json", line=1),
        ])
    found = [str(p) for p in info.value.problems]
    assert [m.split(": ")[0] for m in found] == ["a/pipelines.json:3", "b/pipelines.json:2", "c/pipelines.json:8"]
    assert "fs:twice is produced by two steps: p1 (a/pipelines.json:4) and p2" in found[0]
    assert "dependency cycle: a -> b -> a" in found[1] and "step loop consumes its own output fs:l" in found[2]
    assert str(info.value) == "\n".join(found)


# -- edges, external inputs, matching ----------------------------------------------------------


def test_input_nobody_produces_is_an_external_input() -> None:
    graph = build_graph([
        step("feat", ["ds:raw", "ds:raw"], ["fs:f"]),
        step("model", ["fs:f", "ds:labels", "model:base:no_promote"], ["model:m"]),
    ])
    (group,) = graph.groups
    assert group.external_inputs == ("ds:labels", "ds:raw", "model:base")
    assert group.edges == (("feat", "model"),)
    assert group.parents("model") == ["feat"] and group.parents("feat") == []


def test_plain_names_and_typed_refs_do_not_match() -> None:
    graph = build_graph([
        step("plain_out", [], ["fs_x"]),
        step("typed_in", ["fs:x"], ["fs:y"]),
        step("typed_out", [], ["fs:z"]),
        step("plain_in", ["fs_z", "z"], []),
    ])
    assert graph.edges == set()
    assert len(graph.groups) == 4
    externals = {g.name: g.external_inputs for g in graph.groups}
    assert sorted(e for ext in externals.values() for e in ext) == ["fs:x", "fs_z", "z"]


def test_plain_names_match_plain_names() -> None:
    graph = build_graph([step("prod", [], ["fs_x"]), step("cons", ["fs_x"], [])])
    assert graph.edges == {("prod", "cons")} and graph.groups[0].external_inputs == ()


def test_flags_are_stripped_for_matching() -> None:
    graph = build_graph([
        step("train", ["fs:f"], ["model:m"]),
        step("promote", ["model:m:no_promote"], ["endpoint:e"]),
    ])
    assert graph.edges == {("train", "promote")}
    assert graph.producers["model:m"] == "train"


def test_edges_across_folders_form_one_group(tmp_path: Path) -> None:
    """A feature set built in one folder feeds models declared in two other folders."""
    make(tmp_path, {
        "features/pipelines.json": """
            {"pipelines": {"features": [
              {"script": "build.py", "inputs": ["ds:raw"], "outputs": ["fs:shared"]}
            ]}}
            """,
        "features/build.py": "",
        "models/xgb/pipelines.yaml": """
            pipelines:
              models_xgb:
                - script: train.py
                  inputs: ["fs:shared"]
                  outputs: ["model:xgb"]
            """,
        "models/xgb/train.py": "",
        "models/nn/train.py": 'WORKBENCH_BATCH = {"inputs": ["fs:shared"], "outputs": ["model:nn"]}\n',
        "unrelated/pipelines.json": '{"pipelines": {"other": [{"script": "o.py", "outputs": ["fs:o"]}]}}',
        "unrelated/o.py": "",
    })
    graph = build_graph(load_tree(tmp_path).steps)
    assert len(graph.groups) == 2
    shared = next(g for g in graph.groups if "features" in g.pipelines)
    assert shared.pipelines == ("features", "models/nn", "models_xgb")
    assert {s.script for s in shared.steps} == {"features/build.py", "models/nn/train.py", "models/xgb/train.py"}
    ids = {s.script: s.id for s in shared.steps}
    assert shared.edges == tuple(sorted(("build", ids[f"models/{m}/train.py"]) for m in ("nn", "xgb")))
    assert shared.external_inputs == ("ds:raw",)
    for g in graph.groups:
        assert VALID_GROUP_NAME.match(g.name), g.name


# -- groups --------------------------------------------------------------------------------------


def test_weakly_connected_components_become_groups() -> None:
    graph = build_graph([
        step("a", ["ds:r"], ["fs:a"]), step("b", ["ds:r"], ["fs:b"]),  # share only an external input
        step("c", ["fs:a", "fs:b"], ["model:c"]),                       # fan-in joins a and b
        step("d", [], ["fs:d"]), step("e", ["fs:d"], []),
        step("f", ["ds:r"], []),
    ])
    assert [g.step_ids for g in graph.groups] == [["a", "b", "c"], ["d", "e"], ["f"]]
    assert [g.edges for g in graph.groups] == [(("a", "c"), ("b", "c")), (("d", "e"),), ()]
    assert [g.external_inputs for g in graph.groups] == [("ds:r",), (), ("ds:r",)]


def test_group_of_one_pipeline_is_named_after_it() -> None:
    graph = build_graph([step("a", [], ["fs:a"], pipeline="solubility"),
                         step("b", ["fs:a"], [], pipeline="solubility")])
    assert [g.name for g in graph.groups] == ["solubility"]
    assert graph.group("solubility").pipelines == ("solubility",)


def test_pipeline_split_over_groups_gets_distinct_names() -> None:
    graph = build_graph([
        step("a1", [], ["fs:a"], pipeline="tox"), step("a2", ["fs:a"], [], pipeline="tox"),
        step("b1", [], ["fs:b"], pipeline="tox"), step("b2", ["fs:b"], [], pipeline="tox"),
        step("c1", [], [], pipeline="tox"),
        step("other", [], [], pipeline="solo"),
    ])
    names = [g.name for g in graph.groups]
    assert len(set(names)) == len(names) == 4
    tox = [g.name for g in graph.groups if g.pipelines == ("tox",)]
    assert tox == ["tox-a1", "tox-b1", "tox-c1"]
    assert graph.group("solo").step_ids == ["other"]


def test_group_spanning_pipelines_names_them() -> None:
    graph = build_graph([
        step("a", [], ["fs:a"], pipeline="zeta"),
        step("b", ["fs:a"], ["fs:b"], pipeline="alpha"),
        step("c", ["fs:b"], ["fs:c"], pipeline="mid"),
        step("d", ["fs:c"], [], pipeline="beta"),
    ])
    (group,) = graph.groups
    assert group.pipelines == ("alpha", "beta", "mid", "zeta")
    assert group.name == "alpha-beta-and-2-more"


@pytest.mark.parametrize("pipelines", [
    ["x" * 100],
    ["my pipeline (v2)", "another/one"],
    ["日本語", "—"],
    ["", "a.b.c"],
    ["p" * 39 + "-" + "q" * 50, "p" * 39 + "-" + "r" * 50],
])
def test_group_names_are_valid_and_short(pipelines: list[str]) -> None:
    steps = [step(f"s{i}", [], [], pipeline=p) for i, p in enumerate(pipelines)]
    steps.append(step("joined", [], ["fs:j"], pipeline=pipelines[0]))
    steps += [step(f"t{i}", ["fs:j"], [], pipeline=p) for i, p in enumerate(pipelines)]
    graph = build_graph(steps)
    names = [g.name for g in graph.groups]
    assert len(set(names)) == len(names) == len(pipelines) + 1
    for name in names:
        assert VALID_GROUP_NAME.match(name), name


def test_long_pipeline_names_stay_distinct() -> None:
    long = "churn_prediction_for_enterprise_accounts_in_europe"
    graph = build_graph([step("a", [], [], pipeline=long + "_v1"), step("b", [], [], pipeline=long + "_v2")])
    names = [g.name for g in graph.groups]
    assert len(set(names)) == 2 and all(len(n) <= 40 and n.startswith("churn_prediction") for n in names)


def test_unknown_group_lists_the_known_ones() -> None:
    graph = build_graph([step("a", [], [], pipeline="one"), step("b", [], [], pipeline="two")])
    with pytest.raises(KeyError, match=r"no dependency group named 'three' \(groups: one, two\)"):
        graph.group("three")


# -- determinism ----------------------------------------------------------------------------------

ORDER_TREE = [
    step("feat", ["ds:raw"], ["fs:f"], pipeline="fe", path="fe/pipelines.json", line=2),
    step("train", ["fs:f"], ["model:a"], pipeline="m1", path="m1/pipelines.json", line=2),
    step("train", ["fs:f"], ["model:b"], pipeline="m2", path="m2/pipelines.json", line=2),
    step("reg", ["fs:f"], ["model:dt"], mode="dt", pipeline="m2", path="m2/pipelines.json", line=5),
    step("reg", ["fs:f"], ["model:ts"], mode="ts", pipeline="m2", path="m2/pipelines.json", line=8),
    step("workbench:models/model_promotion.py", ["model:a", "model:b:no_promote"], ["endpoint:ab"],
         pipeline="m1", path="m1/pipelines.json", line=9),
    step("workbench:models/model_promotion.py", ["model:dt", "model:ts"], ["endpoint:reg"],
         pipeline="m2", path="m2/pipelines.json", line=12),
    step("lonely", ["ds:x"], [], pipeline="m2", path="m2/lonely.py", line=1),
    step("other", [], ["fs:o"], pipeline="o", path="o/pipelines.json", line=1),
    step("other", ["fs:o"], [], pipeline="o", path="o/pipelines.json", line=4),
]


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(ORDER_TREE))
def test_graph_does_not_depend_on_discovery_order(order: list[Step]) -> None:
    assert shape(build_graph(order)) == shape(build_graph(ORDER_TREE))


def test_discovery_order_example_ids_and_groups() -> None:
    """The fixed point of the property above, spelled out so a change is visible."""
    graph = build_graph(random.Random(7).sample(ORDER_TREE, len(ORDER_TREE)))
    assert sorted(graph.steps) == ["feat", "lonely", "model_promotion_ab", "model_promotion_reg",
                                   "other", "other_o", "reg_dt", "reg_ts", "train_a", "train_b"]
    # m2 is split over two groups, so both carry their first step.
    assert [g.name for g in graph.groups] == ["fe-m1-and-1-more-feat", "m2-lonely", "o"]
    assert graph.group("o").edges == (("other_o", "other"),)
