"""Generated names: step ids, state names, group names and Batch job names.

Ids double as state names and JSONPath keys, so they must be unique across the tree,
``[A-Za-z0-9_]`` starting with a letter, short enough for every state-name prefix, and
the same whatever order the steps were found in.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sfn_pipelines import limits, naming
from sfn_pipelines.config import parse_ref
from sfn_pipelines.model import Source, Step

ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
JOB_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

# Every state kind derived from a step id (approval gates only where the module has them).
STATE_FUNCS = [naming.task_state, naming.check_state, naming.skip_state, naming.failed_state,
               naming.branch_end_state, *([naming.approve_state] if hasattr(naming, "approve_state") else [])]


def step(script: str, outputs: tuple[str, ...] = (), *, mode: str | None = None, pipeline: str = "p",
         path: str | None = None) -> Step:
    return Step(pipeline=pipeline, script=script if "/" in script or ":" in script else f"{pipeline}/{script}",
                script_kind="local", inputs=(), outputs=tuple(parse_ref(o, "output") for o in outputs),
                source=Source(path or f"{pipeline}/pipelines.json", 1), mode=mode)


def ids(*steps: Step) -> list[str]:
    """Ids in the order the steps were given."""
    by_identity = {(s.identity, s.source): s.id for s in naming.assign_ids(steps)}
    return [by_identity[(s.identity, s.source)] for s in steps]


# -- readable ids -----------------------------------------------------------------------------


def test_unique_stem_is_the_id() -> None:
    assert ids(step("solubility_features.py"), step("workbench:models/model_promotion.py"),
               step("s3://bucket/jobs/train.py"), step("plugin:x/report.py")) == [
        "solubility_features", "model_promotion", "train", "report"]


def test_same_script_in_two_modes_gets_the_mode() -> None:
    assert ids(step("reg.py", ("model:r-dt",), mode="dt"), step("reg.py", ("model:r-ts",), mode="ts")) == [
        "reg_dt", "reg_ts"]


def test_same_stem_and_mode_gets_the_first_output_name() -> None:
    assert ids(step("workbench:models/model_promotion.py", ("endpoint:aqsol-class",)),
               step("plugin:models/model_promotion.py", ("endpoint:aqsol-regression",))) == [
        "model_promotion_aqsol_class", "model_promotion_aqsol_regression"]


def test_mode_and_output_together_when_neither_alone_is_unique() -> None:
    assert ids(step("reg.py", ("model:a",), mode="dt"), step("reg.py", ("endpoint:a",), mode="ts"),
               step("reg.py", ("model:b",), mode="dt")) == ["reg_dt_a", "reg_ts_a", "reg_dt_b"]


def test_pipeline_when_mode_and_output_are_not_enough() -> None:
    assert ids(step("train.py", ("model:m",), pipeline="p1"), step("train.py", ("fs:m",), pipeline="p2")) == [
        "train_p1_m", "train_p2_m"]


def test_counter_in_identity_order_as_a_last_resort() -> None:
    # Same stem, mode, first output name and pipeline: only the full identity differs.
    assert ids(step("train.py", ("model:m",)), step("train.py", ("endpoint:m",)), step("train.py")) == [
        "train_3", "train_2", "train_1"]


def test_ids_from_odd_script_names() -> None:
    assert ids(step("1-prep.py"), step("my-script.v2.py"), step("___.py"), step("modèle.py")) == [
        "s_1_prep", "my_script_v2", "step", "mod_le"]


def test_same_script_with_and_without_mode_when_a_counter_is_needed() -> None:
    """A valid manifest: reg.py twice without a mode (model and endpoint) and once in mode dt."""
    got = ids(step("reg.py", ("model:reg",)), step("reg.py", ("endpoint:reg",)),
              step("reg.py", ("model:reg-dt",), mode="dt"))
    assert len(set(got)) == 3 and all(ID.match(i) for i in got)


def test_collision_across_stems_is_resolved() -> None:
    """Stem "a_b" and stem "a" in mode "b" would both read "a_b"."""
    got = ids(step("a_b.py"), step("a.py", ("fs:x",), mode="b"), step("a.py", ("fs:y",), mode="c"))
    assert len(set(got)) == 3 and "a_b" in got and "a_c" in got


def test_ids_are_sorted_and_repeatable() -> None:
    steps = [step("z.py"), step("a.py"), step("m.py", mode="dt"), step("m.py", mode="ts")]
    first = naming.assign_ids(steps)
    assert [s.id for s in first] == ["a", "m_dt", "m_ts", "z"]
    assert naming.assign_ids(list(reversed(steps))) == first


# -- length limits ------------------------------------------------------------------------------


def test_step_ids_leave_room_for_every_state_prefix() -> None:
    longest = max(len(f("")) for f in STATE_FUNCS)
    assert naming.MAX_STEP_ID + longest <= limits.STATE_NAME_MAX


def test_very_long_script_name_is_truncated_deterministically() -> None:
    name = "train_" + "gradient_boosted_trees_with_bayesian_hyperparameter_search_" * 4 + ".py"
    (got,) = ids(step(name))
    assert ID.match(got) and len(got) <= naming.MAX_STEP_ID
    assert got.startswith("train_gradient_boosted_trees")
    assert ids(step(name)) == [got]
    for f in STATE_FUNCS:
        assert len(f(got)) <= limits.STATE_NAME_MAX, f.__name__
    assert len(naming.failed_state(got)) <= 80


def test_long_names_that_share_a_prefix_stay_distinct() -> None:
    base = "x" * 120
    got = ids(step(base + "_alpha.py"), step(base + "_beta.py"), step(base + ".py", mode="dt"),
              step(base + ".py", mode="ts"))
    assert len(set(got)) == 4
    assert all(len(i) <= naming.MAX_STEP_ID and ID.match(i) for i in got)


def test_fit_keeps_short_names_and_distinguishes_long_ones() -> None:
    assert naming.fit("short", 10) == "short"
    assert naming.fit("a" * 10, 10) == "a" * 10
    a, b = naming.fit("a" * 50 + "1", 20), naming.fit("a" * 50 + "2", 20)
    assert a != b and len(a) <= 20 and len(b) <= 20 and a.startswith("aaaa")
    assert naming.fit("a" * 50 + "1", 20) == a
    assert naming.fit("a" * 50 + "1", 20, "salt") != a


@settings(max_examples=100, deadline=None)
@given(prefix=st.text(st.sampled_from("ab_-"), min_size=0, max_size=60),
       tails=st.lists(st.text(st.sampled_from("abc_-"), min_size=1, max_size=8), min_size=2, max_size=5, unique=True),
       max_len=st.integers(min_value=12, max_value=80))
def test_fit_is_injective_and_bounded(prefix: str, tails: list[str], max_len: int) -> None:
    names = [prefix + t for t in tails]
    fitted = [naming.fit(n, max_len) for n in names]
    assert all(len(f) <= max_len for f in fitted)
    assert len(set(fitted)) == len(fitted)


def test_parallel_state_names_are_short_stable_and_distinct() -> None:
    members = ["a" * 70, "b" * 70, "c"]
    name = naming.parallel_state(members)
    assert len(name) <= limits.STATE_NAME_MAX
    assert naming.parallel_state(list(reversed(members))) == name
    assert naming.parallel_state(members[:2]) != name
    assert naming.parallel_state(["fe", "reg"]).startswith("Parallel fe +1 (")


def test_state_kinds_never_collide_with_each_other() -> None:
    step_ids = ["run", "Check_a", "a", "End", "Skip"]
    names = [f(i) for f in STATE_FUNCS for i in step_ids]
    assert len(set(names)) == len(names)


def test_fixed_state_names_of_the_construct_cannot_be_generated() -> None:
    """The construct's own states ("Start run", "Run failed", ...) must not look like a step's."""
    source = Path(naming.__file__).with_name("state_machine.py").read_text()
    fixed = set()
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "sfn"
                and node.func.attr in {"Pass", "Succeed", "Fail", "Choice", "Wait", "Parallel", "Map"}
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
            fixed.add(node.args[1].value)
    fixed |= {getattr(naming, n) for n in dir(naming) if n.endswith("_STATE") and n.isupper()}
    assert len(fixed) >= 4, "no fixed state names found: has state_machine.py changed shape?"
    prefixes = {f("").strip() for f in STATE_FUNCS}
    clashes = sorted(
        name for name in fixed
        if ID.match(name) or any(name.startswith(p + " ") and ID.match(name[len(p) + 1:]) for p in prefixes if p)
    )
    assert clashes == []


# -- group and job names ------------------------------------------------------------------------


def test_group_names() -> None:
    assert naming.group_name(["solubility"], "feat", set()) == "solubility"
    assert naming.group_name(["tox"], "tox_a", set(), split=True) == "tox-tox_a"
    assert naming.group_name(["b", "a", "c", "d"], "x", set()) == "a-b-and-2-more"
    assert naming.group_name(["a"], "x", {"a"}) == "a-x"
    assert naming.group_name(["a"], "x", {"a", "a-x"}) == "a-x-2"
    assert naming.group_name(["my pipeline/v2"], "x", set()) == "my-pipeline-v2"
    long = naming.group_name(["p" * 100], "x", set())
    assert len(long) <= naming.MAX_GROUP_NAME <= 40


def test_job_name_joins_step_and_run() -> None:
    assert naming.job_name("churn_model", "2024-06-01T10:00:00Z") == "churn_model--2024-06-01T10-00-00Z"
    long_step = "s" * 73
    name = naming.job_name(long_step, "r" * 200)
    assert JOB_NAME.match(name) and name.startswith(naming.fit(long_step, 44) + "--")
    assert naming.job_name(long_step, "a") != naming.job_name("s" * 72, "a")


# -- property: any tree of script names ---------------------------------------------------------

_name_chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
_scripts = st.one_of(
    st.text(_name_chars, min_size=1, max_size=150).map(lambda t: t.replace("/", "_") + ".py"),
    st.sampled_from(["train.py", "reg.py", "1.py", "-.py", "a_b.py", "a.py", "x" * 90 + ".py"]),
)
_modes = st.one_of(st.none(), st.sampled_from(["dt", "ts", "b"]), st.text(_name_chars, max_size=20))
_outputs = st.lists(st.sampled_from(["fs:a", "model:a", "model:b", "endpoint:b", "fs_x", "y" * 60]),
                    max_size=2, unique=True).map(tuple)
_steps = st.lists(
    st.builds(lambda script, mode, outputs, pipeline: step(script, outputs, mode=mode, pipeline=pipeline),
              _scripts, _modes, _outputs, st.sampled_from(["p", "q", "long_" * 10])),
    min_size=1, max_size=12, unique_by=lambda s: s.identity,
)


@settings(max_examples=100, deadline=None)
@given(steps=_steps, data=st.data())
def test_ids_are_unique_valid_short_and_order_independent(steps: list[Step], data: st.DataObject) -> None:
    named = naming.assign_ids(steps)
    got = [s.id for s in named]
    assert len(set(got)) == len(got) == len(steps)
    for i in got:
        assert ID.match(i), i
        assert len(i) <= naming.MAX_STEP_ID
        assert all(len(f(i)) <= limits.STATE_NAME_MAX for f in STATE_FUNCS)
        assert JOB_NAME.match(naming.job_name(i, "exec-" + "9" * 75))
    shuffled = data.draw(st.permutations(steps))
    assert naming.assign_ids(shuffled) == named


@settings(max_examples=100, deadline=None)
@given(step_id=st.from_regex(ID, fullmatch=True).filter(lambda s: len(s) <= 72),
       run_id=st.text(_name_chars, max_size=200))
def test_job_names_are_valid_batch_names(step_id: str, run_id: str) -> None:
    name = naming.job_name(step_id, run_id)
    assert len(name) <= limits.BATCH_JOB_NAME_MAX
    assert re.fullmatch(r"[A-Za-z0-9_-]+", name), name
    assert name.startswith(naming.fit(step_id, 44) + "--")
