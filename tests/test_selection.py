"""Selection patterns over the ``plan --json`` groups: what each kind of pattern picks."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from sfn_pipelines import selection
from sfn_pipelines.selection import execution_input, select_steps
from sfn_pipelines.workflow import load_pipeline_set

EXAMPLES = Path(__file__).resolve().parents[1] / "pipelines"


def _group(name: str, steps: dict[str, str]) -> dict:
    """A plan group as ``plan --json`` writes it (only the keys selection reads)."""
    return {"name": name, "pipelines": sorted(set(steps.values())),
            "steps": [{"id": sid, "pipeline": p} for sid, p in steps.items()]}


# Workbench-shaped: the caco2 pipeline split over two groups, plus an unrelated group.
GROUPS = [
    _group("caco2-fs_caco2", {"fs_caco2": "caco2", "caco2_reg_1": "caco2", "caco2_reg_2": "caco2"}),
    _group("caco2-caco2_class", {"caco2_class": "caco2"}),
    _group("aqsol", {"aqsol_features": "aqsol", "aqsol_reg": "aqsol", "promote_caco2_aqsol": "promotion"}),
]


def test_no_patterns_select_everything_in_plan_order():
    assert select_steps(GROUPS, []) == {
        "caco2-fs_caco2": ["fs_caco2", "caco2_reg_1", "caco2_reg_2"],
        "caco2-caco2_class": ["caco2_class"],
        "aqsol": ["aqsol_features", "aqsol_reg", "promote_caco2_aqsol"],
    }


def test_exact_step_id_selects_only_that_step():
    assert select_steps(GROUPS, ["caco2_reg_2"]) == {"caco2-fs_caco2": ["caco2_reg_2"]}


def test_pipeline_name_selects_its_steps_across_groups():
    assert select_steps(GROUPS, ["caco2"]) == {
        "caco2-fs_caco2": ["fs_caco2", "caco2_reg_1", "caco2_reg_2"],
        "caco2-caco2_class": ["caco2_class"],
    }


def test_group_name_selects_the_whole_group():
    assert select_steps(GROUPS, ["caco2-caco2_class"]) == {"caco2-caco2_class": ["caco2_class"]}


def test_glob_matches_step_ids_pipelines_and_groups():
    # "run everything matching caco2": the caco2 pipeline and a step of another pipeline.
    got = select_steps(GROUPS, ["*caco2*"])
    assert got["aqsol"] == ["promote_caco2_aqsol"]
    assert sorted(got) == ["aqsol", "caco2-caco2_class", "caco2-fs_caco2"]
    assert select_steps(GROUPS, ["caco2_reg_?"]) == {"caco2-fs_caco2": ["caco2_reg_1", "caco2_reg_2"]}
    assert select_steps(GROUPS, ["aqsol_[f]*"]) == {"aqsol": ["aqsol_features"]}


def test_patterns_are_case_insensitive_and_combine_as_a_union():
    got = select_steps(GROUPS, ["AQSOL_REG", "Caco2_Class"])
    assert got == {"caco2-caco2_class": ["caco2_class"], "aqsol": ["aqsol_reg"]}


def test_overlapping_patterns_select_each_step_once():
    assert select_steps(GROUPS, ["aqsol", "aqsol_*", "aqsol_reg"]) == {
        "aqsol": ["aqsol_features", "aqsol_reg", "promote_caco2_aqsol"]}


def test_bare_word_is_exact_and_the_error_suggests_the_glob():
    with pytest.raises(ValueError) as e:
        select_steps(GROUPS, ["reg"])
    msg = str(e.value)
    assert "'reg'" in msg and "'*reg*'" in msg
    assert "caco2_reg_1" in msg  # a close name


def test_typo_lists_close_names():
    with pytest.raises(ValueError, match=r"'caco_reg_1' \(close: .*caco2_reg_1"):
        select_steps(GROUPS, ["caco_reg_1"])


def test_every_unmatched_pattern_is_reported_at_once():
    with pytest.raises(ValueError) as e:
        select_steps(GROUPS, ["caco2", "nothing*", "zzz"])
    msg = str(e.value)
    assert "patterns match no pipeline, group or step" in msg
    assert "'nothing*'" in msg and "'zzz'" in msg and "'caco2'" not in msg


@pytest.mark.parametrize("pattern", ["", "   "])
def test_empty_pattern_is_an_error(pattern):
    with pytest.raises(ValueError, match="empty selection pattern"):
        select_steps(GROUPS, [pattern])


def test_execution_input_contract():
    assert execution_input(None) == {}
    assert execution_input(["b", "a", "b"]) == {"select": {"b": True, "a": True}}
    assert execution_input(["a", "b"], group_steps=["b", "a"]) == {}  # everything: the short form
    assert execution_input(["a"], group_steps=["a", "b"]) == {"select": {"a": True}}
    with pytest.raises(ValueError, match="no step selected"):
        execution_input([])


def test_on_the_example_plan_json():
    ps = load_pipeline_set(EXAMPLES)
    groups = json.loads(json.dumps(ps.to_dict()))["groups"]  # exactly what plan --json prints
    got = select_steps(groups, ["toxicity"])
    assert sum(len(v) for v in got.values()) == 8 and len(got) == 2
    assert select_steps(groups, ["solubility_class_*"]) == {"solubility": ["solubility_class_dt",
                                                                           "solubility_class_ts"]}


def test_module_is_stdlib_only_for_the_launcher():
    """The launcher Lambda ships selection.py alone: no third-party or package imports."""
    tree = ast.parse(Path(selection.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "difflib", "fnmatch", "collections", "typing"}, imported
