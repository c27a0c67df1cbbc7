"""Which steps a run covers: name patterns over the ``plan --json`` groups.

Pure stdlib and self-contained on purpose: the launcher Lambda ships this module as is,
and the local runner uses the same rules, so "run everything matching caco2" picks the
same steps everywhere.

A pattern is an exact name or an ``fnmatch`` glob (``*caco2*``), compared case-insensitively
with every pipeline name, group name and step id. A pipeline or group that matches selects
all of its steps. No patterns select everything.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

GLOB_CHARS = "*?["


def select_steps(plan_groups: Sequence[Mapping[str, Any]], patterns: Sequence[str]) -> dict[str, list[str]]:
    """``{group name: [selected step ids, plan order]}`` for the groups with a selected step.

    Raises ValueError naming every pattern that matches nothing, with close names.
    """
    patterns = [p.strip() for p in patterns]
    if any(not p for p in patterns):
        raise ValueError("empty selection pattern; give a pipeline, group or step name, or a glob such as '*caco2*'")
    if not patterns:
        return {g["name"]: [s["id"] for s in g["steps"]] for g in plan_groups if g["steps"]}

    chosen: set[tuple[str, str]] = set()
    unmatched: list[str] = []
    for pattern in patterns:
        hits = _matches(plan_groups, pattern)
        if not hits:
            unmatched.append(pattern)
        chosen |= hits
    if unmatched:
        raise ValueError(_no_match_message(unmatched, _names(plan_groups)))

    out: dict[str, list[str]] = {}
    for g in plan_groups:
        ids = [s["id"] for s in g["steps"] if (g["name"], s["id"]) in chosen]
        if ids:
            out[g["name"]] = ids
    return out


def execution_input(step_ids: Iterable[str] | None = None, *, group_steps: Iterable[str] | None = None) -> dict:
    """The state machine's input: ``{}`` runs every step, ``{"select": {id: true}}`` only those.

    ``step_ids=None`` means all; so does a selection equal to ``group_steps`` when given.
    """
    if step_ids is None:
        return {}
    ids = list(dict.fromkeys(step_ids))
    if not ids:
        raise ValueError("no step selected: an execution must run at least one step")
    if group_steps is not None and set(ids) == set(group_steps):
        return {}
    return {"select": {i: True for i in ids}}


def _matches(plan_groups: Sequence[Mapping[str, Any]], pattern: str) -> set[tuple[str, str]]:
    hits: set[tuple[str, str]] = set()
    for g in plan_groups:
        whole_group = _match(g["name"], pattern)
        for s in g["steps"]:
            if whole_group or _match(s["id"], pattern) or _match(s.get("pipeline") or "", pattern):
                hits.add((g["name"], s["id"]))
    return hits


def _match(name: str, pattern: str) -> bool:
    if not name:
        return False
    if any(c in pattern for c in GLOB_CHARS):
        return fnmatch.fnmatchcase(name.lower(), pattern.lower())
    return name.lower() == pattern.lower()


def _names(plan_groups: Sequence[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for g in plan_groups:
        names[g["name"]] = None
        for p in g.get("pipelines", ()):
            names[p] = None
        for s in g["steps"]:
            names[s["id"]] = None
            if s.get("pipeline"):
                names[s["pipeline"]] = None
    return sorted(names)


def _no_match_message(unmatched: list[str], names: list[str]) -> str:
    parts = []
    for pattern in unmatched:
        hints = _close(pattern, names)
        hint = f" (close: {', '.join(hints)})" if hints else ""
        parts.append(f"{pattern!r}{hint}")
    what = "pattern matches" if len(unmatched) == 1 else "patterns match"
    return (f"selection {what} no pipeline, group or step: {'; '.join(parts)}. "
            "Patterns are exact names or globs such as '*caco2*'")


def _close(pattern: str, names: list[str], n: int = 5) -> list[str]:
    """Names that look like what was meant: a glob hint for a bare part of a name, then
    similar names (ignoring glob characters and case)."""
    core = "".join(c for c in pattern if c not in GLOB_CHARS + "]").lower()
    if not core:
        return []
    hints: list[str] = []
    glob_chars = any(c in pattern for c in GLOB_CHARS)
    if not glob_chars and any(core in name.lower() for name in names):
        hints.append(f"'*{pattern}*'")
    lowered = {name.lower(): name for name in names}
    similar = difflib.get_close_matches(core, list(lowered), n=n, cutoff=0.6)
    similar += [low for low in lowered if core in low and low not in similar]
    hints += [lowered[low] for low in similar]
    return hints[:n]
