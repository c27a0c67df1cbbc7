"""The planner: exact on series-parallel orders, never drops a dependency, reports additions."""

from __future__ import annotations

import random
import re
import time

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfn_pipelines.plan import (
    AddedConstraint,
    Leaf,
    Node,
    Parallel,
    Plan,
    Series,
    makespan,
    plan_group,
    render_text,
    structure_edges,
    to_dict,
)

# --- helpers ----------------------------------------------------------------------------


def closure(steps, edges) -> set[tuple[str, str]]:
    g = nx.DiGraph()
    g.add_nodes_from(steps)
    g.add_edges_from(edges)
    return set(nx.transitive_closure_dag(g).edges)


def critical_path(steps, edges, durations) -> float:
    g = nx.DiGraph()
    g.add_nodes_from(steps)
    g.add_edges_from(edges)
    finish = {}
    for s in nx.topological_sort(g):
        finish[s] = durations.get(s, 1.0) + max((finish[p] for p in g.predecessors(s)), default=0.0)
    return max(finish.values())


def level_makespan(steps, edges, durations) -> float:
    """What a level-by-level generator gives: one Parallel per longest-path level."""
    g = nx.DiGraph()
    g.add_nodes_from(steps)
    g.add_edges_from(edges)
    level: dict[str, int] = {}
    for s in nx.topological_sort(g):
        level[s] = max((level[p] + 1 for p in g.predecessors(s)), default=0)
    longest: dict[int, float] = {}
    for s, lvl in level.items():
        longest[lvl] = max(longest.get(lvl, 0.0), durations.get(s, 1.0))
    return sum(longest.values())


def nodes(node: Node):
    yield node
    if not isinstance(node, Leaf):
        for c in node.children:
            yield from nodes(c)


def check_plan(p: Plan, steps, edges, durations=None) -> None:
    """Invariants every plan must keep, whatever the graph."""
    durations = durations or {}
    assert sorted(p.steps()) == sorted(steps)  # each step exactly once
    for n in nodes(p.root):  # normalised
        if isinstance(n, Series | Parallel):
            assert len(n.children) >= 2
            assert not any(type(c) is type(n) for c in n.children)
    tree = closure(steps, structure_edges(p.root))
    dag = closure(steps, edges)
    assert dag <= tree  # never lose a dependency
    # the added constraints are exactly what the tree adds to the graph
    added = {(a, b) for c in p.added for a in c.before for b in c.after}
    assert added <= tree
    assert closure(steps, dag | added) == tree
    for c in p.added:  # every listed step takes part in a new pair
        assert c.before == tuple(sorted(c.before)) and c.after == tuple(sorted(c.after))
        assert all(any((a, b) not in dag for b in c.after) for a in c.before)
        assert all(any((a, b) not in dag for a in c.before) for b in c.after)
    assert p.makespan == pytest.approx(makespan(p.root, durations))
    assert p.critical_path == pytest.approx(critical_path(steps, edges, durations))
    assert p.makespan >= p.critical_path - 1e-9
    assert not p.added or tree != dag
    assert p.added or tree == dag


def S(*children) -> Series:
    return Series(tuple(Leaf(c) if isinstance(c, str) else c for c in children))


def P(*children) -> Parallel:
    return Parallel(tuple(Leaf(c) if isinstance(c, str) else c for c in children))


# --- series-parallel shapes: exact, nothing added ----------------------------------------


def test_two_chains_run_side_by_side_without_level_barriers():
    steps = ["a1", "a2", "b1", "b2"]
    edges = [("a1", "a2"), ("b1", "b2")]
    durations = {"a1": 10, "a2": 1, "b1": 1, "b2": 10}
    p = plan_group(steps, edges, durations)
    assert p.root == P(S("a1", "a2"), S("b1", "b2"))
    assert p.makespan == p.critical_path == 11
    assert level_makespan(steps, edges, durations) == 20
    assert p.added == ()
    check_plan(p, steps, edges, durations)


def test_diamond():
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    p = plan_group("dcba", edges)
    assert p.root == S("a", P("b", "c"), "d")
    assert (p.makespan, p.critical_path, p.added) == (3, 3, ())


def test_fan_out_fan_in():
    mids = [f"m{i}" for i in range(7)]
    edges = [("src", m) for m in mids] + [(m, "sink") for m in mids]
    p = plan_group(["sink", *mids, "src"], edges)
    assert p.root == S("src", P(*mids), "sink")
    assert p.makespan == 3 and p.added == ()


def test_aqsol_shape_is_exact():
    """One feature set, seven models, two promotions joining disjoint subsets of them."""
    fs = "aqsol_feature_set"
    classes = ["aqsol_class_1", "aqsol_class_2"]
    regs = ["aqsol_chemprop_hpo", "aqsol_reg_1", "aqsol_reg_2", "aqsol_xgb_hpo"]
    models = [*classes, *regs, "aqsol_xgb_custom_space"]
    edges = [(fs, m) for m in models]
    edges += [(m, "promote_class") for m in classes] + [(m, "promote_regression") for m in regs]
    steps = [fs, *models, "promote_class", "promote_regression"]
    durations = {fs: 5, "aqsol_chemprop_hpo": 60, "aqsol_xgb_hpo": 30}
    p = plan_group(steps, edges, durations)
    assert p.added == ()
    assert p.root == S(
        fs,
        P(  # branches by (earliest start, smallest id): all start at 5, "...chemprop" first
            S(P(*regs), "promote_regression"),
            S(P(*classes), "promote_class"),
            "aqsol_xgb_custom_space",
        ),
    )
    assert p.makespan == p.critical_path == 5 + 60 + 1
    check_plan(p, steps, edges, durations)


def test_single_step_and_independent_steps():
    assert plan_group(["x"], []).root == Leaf("x")
    p = plan_group(["c", "a", "b"], [])
    assert p.root == P("a", "b", "c")
    assert p.steps() == ["a", "b", "c"]


def test_parallel_branches_ordered_by_earliest_start_then_id():
    # z starts at 0, the chain a -> b's second step starts later: branches (z..., a...) by start
    edges = [("r", "y"), ("y", "a"), ("r", "z")]
    p = plan_group(["a", "r", "y", "z"], edges, {"r": 1, "y": 1, "z": 5})
    assert p.root == S("r", P(S("y", "a"), "z"))


def test_redundant_and_duplicate_edges_change_nothing():
    edges = [("a", "b"), ("b", "c")]
    assert plan_group("abc", edges).root == plan_group("abc", [*edges, ("a", "c"), ("a", "b")]).root


# --- "N" shapes: one added constraint, chosen with the hints -----------------------------

N_EDGES = [("a", "c"), ("b", "c"), ("b", "d")]


def test_n_adds_one_reported_constraint():
    p = plan_group("abcd", N_EDGES)
    assert p.root == S(P("a", "b"), P("c", "d"))
    assert p.added == (AddedConstraint(before=("a",), after=("d",)),)
    assert p.makespan == p.critical_path == 2
    check_plan(p, "abcd", N_EDGES)


def test_hints_choose_the_cut():
    """Three ways to make the N series-parallel; with these hints only "b before a" is free.

    a→d: max(a,b) + max(c,d) = 22;  b→a: b + max(a+c, d) = 13;  d→c: max(a, b+d) + c = 14.
    """
    durations = {"a": 10, "b": 1, "c": 1, "d": 12}
    assert makespan(plan_group("abcd", N_EDGES).root, durations) == 22  # the choice without hints
    p = plan_group("abcd", N_EDGES, durations)
    assert p.added == (AddedConstraint(before=("b",), after=("a",)),)
    assert p.root == S("b", P(S("a", "c"), "d"))
    assert p.makespan == p.critical_path == 13
    assert level_makespan("abcd", N_EDGES, durations) == 22
    check_plan(p, "abcd", N_EDGES, durations)


def test_hints_choose_the_cut_in_a_pipeline():
    """join needs users and events, stats needs events only (planning-notes' example)."""
    edges = [("users", "join"), ("events", "join"), ("events", "stats")]
    steps = ["events", "join", "stats", "users"]
    hints = {"users": 60, "events": 5, "join": 10, "stats": 30}
    unit = plan_group(steps, edges)
    assert unit.added == (AddedConstraint(before=("users",), after=("stats",)),)
    assert makespan(unit.root, hints) == 60 + 30  # stats would wait for users
    p = plan_group(steps, edges, hints)
    assert p.added == (AddedConstraint(before=("stats",), after=("join",)),)
    assert p.root == S(P(S("events", "stats"), "users"), "join")
    assert p.makespan == p.critical_path == 70
    check_plan(p, steps, edges, hints)


def test_zero_durations_still_cut_by_level():
    durations = dict.fromkeys("abcd", 0.0)
    p = plan_group("abcd", N_EDGES, durations)
    assert len(p.added) == 1 and p.makespan == 0
    check_plan(p, "abcd", N_EDGES, durations)


def test_added_constraints_list_only_steps_with_new_pairs():
    # x -> everything below: x takes part in no new pair, only a does (a before d)
    edges = [*N_EDGES, ("x", "a"), ("x", "b")]
    p = plan_group("abcdx", edges)
    assert p.root == S("x", P("a", "b"), P("c", "d"))
    assert p.added == (AddedConstraint(before=("a",), after=("d",)),)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "edges", "durations", "message"),
    [
        ("ab", [("a", "z")], None, "edge 'a' -> 'z': unknown step 'z'"),
        ("ab", [("a", "a")], None, "edge 'a' -> 'a': a step cannot depend on itself"),
        ("abc", [("a", "b"), ("b", "c"), ("c", "a")], None, "cycle: a -> b -> c -> a"),
        (["a", "b", "a"], [], None, "duplicate step ids: a"),
        ([], [], None, "a group needs at least one step"),
        ("ab", [], {"a": -1}, "duration of step 'a' must be a finite number >= 0. Received -1.0."),
    ],
)
def test_invalid_input_raises(steps, edges, durations, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        plan_group(steps, edges, durations)


def test_cycle_message_names_only_the_cycle():
    edges = [("root", "a"), ("a", "b"), ("b", "a"), ("b", "leaf")]
    with pytest.raises(ValueError, match=r"^cycle: a -> b -> a$"):
        plan_group(["root", "a", "b", "leaf"], edges)


def test_blocks_need_two_children():
    with pytest.raises(ValueError, match=r"^Series needs at least 2 children\. Received 1\.$"):
        Series((Leaf("a"),))
    with pytest.raises(ValueError, match=r"^Parallel needs at least 2 children\. Received 0\.$"):
        Parallel(())


# --- output helpers ------------------------------------------------------------------------


def test_to_dict_render_text_and_structure_edges():
    root = S("a", P(S("b", "c"), "d"), "e")
    assert to_dict(root) == {
        "series": [
            {"step": "a"},
            {"parallel": [{"series": [{"step": "b"}, {"step": "c"}]}, {"step": "d"}]},
            {"step": "e"},
        ]
    }
    assert render_text(root) == "\n".join(
        ["series (3)", "  a", "  parallel (2)", "    series (2)", "      b", "      c", "    d", "  e"]
    )
    assert render_text(Leaf("x"), indent="-") == "x"
    # transitively reduced: the covering pairs only
    assert structure_edges(root) == {("a", "b"), ("a", "d"), ("b", "c"), ("c", "e"), ("d", "e")}
    assert makespan(root, {"b": 4}) == 1 + 5 + 1
    assert makespan(P("a", "b")) == 1


def test_deep_nesting_does_not_hit_the_recursion_limit():
    """A chain with a side step at every stage nests ~1,500 blocks deep."""
    k = 1500
    edges = [(f"a{i:04d}", f"a{i + 1:04d}") for i in range(k - 1)] + [(f"a{i:04d}", f"b{i:04d}") for i in range(k)]
    steps = [f"a{i:04d}" for i in range(k)] + [f"b{i:04d}" for i in range(k)]
    p = plan_group(steps, edges)
    assert p.makespan == p.critical_path == k + 1 and p.added == ()
    assert len(p.steps()) == 2 * k
    assert makespan(p.root) == k + 1
    assert len(structure_edges(p.root)) == len(edges)
    assert to_dict(p.root)["series"][0] == {"step": "a0000"}
    assert render_text(p.root).count("\n") == 2 * k + (k - 1) + (k - 1)


# --- determinism, and never worse than level by level --------------------------------------


def random_dag(rng: random.Random, n: int, density: float) -> tuple[list[str], list[tuple[str, str]]]:
    names = [f"s{i:03d}" for i in range(n)]
    rng.shuffle(names)  # ids in no relation to the order
    edges = [(names[i], names[j]) for i in range(n) for j in range(i + 1, n) if rng.random() < density]
    return names, edges


def test_same_input_in_any_order_gives_the_same_plan():
    rng = random.Random(7)
    for _ in range(20):
        steps, edges = random_dag(rng, 25, 0.12)
        durations = {s: rng.choice([1, 2, 5, 10]) for s in steps}
        first = plan_group(steps, edges, durations)
        rng.shuffle(steps)
        rng.shuffle(edges)
        assert plan_group(steps, edges, dict(reversed(durations.items()))) == first


def test_never_worse_than_level_by_level_on_random_dags():
    rng = random.Random(11)
    better = 0
    for _ in range(60):
        n = rng.randint(5, 80)
        steps, edges = random_dag(rng, n, rng.uniform(1.0, 4.0) / n)
        durations = {s: rng.choice([1, 2, 3, 5, 8, 13, 30]) for s in steps}
        p = plan_group(steps, edges, durations)
        check_plan(p, steps, edges, durations)
        levels = level_makespan(steps, edges, durations)
        assert p.makespan <= levels + 1e-9
        better += p.makespan < levels - 1e-9
    assert better > 40  # and usually strictly better


# --- properties ----------------------------------------------------------------------------


@st.composite
def dags(draw, max_steps: int = 9):
    n = draw(st.integers(1, max_steps))
    names = draw(st.permutations([f"s{i}" for i in range(n)]))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    edges = [(names[i], names[j]) for (i, j), keep in zip(pairs, chosen, strict=True) if keep]
    durations = dict(zip(names, draw(st.lists(st.integers(0, 20), min_size=n, max_size=n)), strict=True))
    return names, edges, durations


@st.composite
def sp_orders(draw, max_leaves: int = 12):
    """A random series-parallel order, built by composing, then given as edges."""
    shape = draw(
        st.recursive(
            st.just("leaf"),
            lambda kids: st.tuples(st.sampled_from(["series", "parallel"]), kids, kids),
            max_leaves=max_leaves,
        )
    )
    count = 0

    def build(s) -> tuple[list[str], list[str], list[str]]:  # (steps, sources, sinks)
        nonlocal count
        if s == "leaf":
            count += 1
            return [f"k{count}"], [f"k{count}"], [f"k{count}"]
        kind, left, right = s
        a, b = build(left), build(right)
        if kind == "parallel":
            return a[0] + b[0], a[1] + b[1], a[2] + b[2]
        edges.extend((x, y) for x in a[2] for y in b[1])
        return a[0] + b[0], a[1], b[2]

    edges: list[tuple[str, str]] = []
    steps = build(shape)[0]
    rename = dict(zip(steps, draw(st.permutations(steps)), strict=True))  # ids unrelated to shape
    steps = [rename[s] for s in steps]
    edges = [(rename[a], rename[b]) for a, b in edges]
    implied = sorted(closure(steps, edges) - set(edges))  # some redundant edges as well
    extra = draw(st.lists(st.sampled_from(implied), max_size=4)) if implied else []
    durations = dict(
        zip(steps, draw(st.lists(st.integers(0, 50), min_size=len(steps), max_size=len(steps))), strict=True)
    )
    return steps, edges + extra, durations


@settings(max_examples=200, deadline=None)
@given(dags())
def test_property_random_dags_keep_every_dependency(case):
    steps, edges, durations = case
    p = plan_group(steps, edges, durations)
    check_plan(p, steps, edges, durations)
    assert p.makespan <= level_makespan(steps, edges, durations) + 1e-9


@settings(max_examples=200, deadline=None)
@given(sp_orders())
def test_property_series_parallel_orders_are_exact(case):
    steps, edges, durations = case
    p = plan_group(steps, edges, durations)
    assert p.added == ()
    assert p.makespan == p.critical_path  # integer hints: exact, no tolerance
    assert closure(steps, structure_edges(p.root)) == closure(steps, edges)
    check_plan(p, steps, edges, durations)


# --- performance -----------------------------------------------------------------------------


def timed(steps, edges, durations=None) -> tuple[Plan, float]:
    start = time.process_time()  # CPU time: steadier than wall time on a busy machine
    p = plan_group(steps, edges, durations)
    return p, time.process_time() - start


def random_wide_dag(n: int, seed: int) -> tuple[list[str], list[tuple[str, str]], dict[str, float]]:
    """About 3 parents per step, each drawn from all earlier steps: N's everywhere."""
    rng = random.Random(seed)
    steps = [f"s{i:05d}" for i in range(n)]
    edges = {(steps[rng.randrange(j)], steps[j]) for j in range(1, n) for _ in range(min(j, 3))}
    return steps, sorted(edges), {s: rng.uniform(1, 10) for s in steps}


def test_performance_1000_steps():
    steps, edges, durations = random_wide_dag(1000, 1)
    p, seconds = timed(steps, edges, durations)
    assert seconds < 3  # measured ~0.1-0.2 s
    assert p.makespan <= level_makespan(steps, edges, durations)


@pytest.mark.parametrize("hints", [False, True])
def test_performance_10000_random_steps(hints):
    steps, edges, durations = random_wide_dag(10_000, 2)
    p, seconds = timed(steps, edges, durations if hints else None)
    assert seconds < 30  # measured ~1.5-2.5 s
    assert len(p.steps()) == 10_000


def test_performance_10000_fan_out_fan_in():
    mids = [f"m{i:05d}" for i in range(9_998)]
    edges = [("src", m) for m in mids] + [(m, "sink") for m in mids]
    p, seconds = timed(["src", *mids, "sink"], edges)
    assert seconds < 10  # measured ~0.3 s
    assert p.root == S("src", P(*mids), "sink")
