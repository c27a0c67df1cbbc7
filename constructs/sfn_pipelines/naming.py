"""Every generated name in one place: step ids, state names, group names, job names.

Step Functions caps state names at 80 characters (unique per machine, CDK does not
check); execution names at 80; Batch job names at 128 of ``[A-Za-z0-9_-]``. Ids double
as JSONPath keys in the execution data, so they are ``[A-Za-z0-9_]`` and start with a
letter. Names are derived only from the configs, so they are stable across synths.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from sfn_pipelines import limits
from sfn_pipelines.model import Step

# State names are "<prefix><step id>"; ids leave room for the longest prefix.
STATE_PREFIXES = ("Check ", "Skip ", "Failed ", "Approve ", "End ")
MAX_STEP_ID = limits.STATE_NAME_MAX - max(map(len, STATE_PREFIXES))
MAX_GROUP_NAME = 40  # leaves room for a stack prefix in the 80-char state machine name

_NOT_KEY = re.compile(r"[^A-Za-z0-9_]+")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def short_hash(*parts: str, n: int = 6) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:n]


def fit(name: str, max_len: int, *salt: str) -> str:
    """Truncate deterministically, keeping names distinct with a hash of the full name."""
    if len(name) <= max_len:
        return name
    h = short_hash(name, *salt)
    return f"{name[: max_len - len(h) - 1].rstrip('_-')}_{h}"


def to_key(text: str) -> str:
    """A JSONPath-safe identifier: letters, digits, underscores; starts with a letter."""
    key = _NOT_KEY.sub("_", text).strip("_")
    if not key:
        return "step"
    return key if key[0].isalpha() else f"s_{key}"


def assign_ids(steps: Iterable[Step]) -> list[Step]:
    """Give every step a readable id unique across the tree.

    The script stem alone when it is unique; otherwise disambiguated by mode, then by
    the first output's name, then by pipeline, then by a counter in identity order.
    """
    steps = list(steps)
    by_stem: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(steps):
        by_stem[to_key(s.script_stem)].append(i)

    ids: list[str] = [""] * len(steps)
    for stem, idx in by_stem.items():
        if len(idx) == 1:
            ids[idx[0]] = stem
            continue
        for extra in (_mode, _first_output, _mode_and_output, _pipeline_and_output):
            cands = [to_key(f"{stem}_{extra(steps[i])}") if extra(steps[i]) else stem for i in idx]
            if len(set(cands)) == len(cands):
                break
        else:
            order = sorted(idx, key=lambda i: _order_key(steps[i]))
            cands_by_i = {i: f"{stem}_{n + 1}" for n, i in enumerate(order)}
            cands = [cands_by_i[i] for i in idx]
        for i, c in zip(idx, cands, strict=True):
            ids[i] = c

    # Truncation and cross-stem collisions (e.g. "a_b" vs stem "a" + mode "b").
    seen: dict[str, int] = {}
    out = []
    for s, sid in sorted(zip(steps, ids, strict=True), key=lambda t: (t[1], *_order_key(t[0]))):
        final = fit(sid, MAX_STEP_ID, *map(str, s.identity))
        if final in seen:
            seen[final] += 1
            final = fit(f"{sid}_{seen[final]}", MAX_STEP_ID, *map(str, s.identity))
        seen.setdefault(final, 1)
        out.append(replace(s, id=final))
    return sorted(out, key=lambda s: s.id)  # deterministic, independent of discovery order


def _order_key(s: Step) -> tuple:
    """Total, deterministic order of steps (identity may hold None modes; add the place)."""
    script, mode, outputs = s.identity
    return (script, mode is not None, mode or "", outputs, s.source.path, s.source.line or 0)


def _mode(s: Step) -> str:
    return s.mode or ""


def _first_output(s: Step) -> str:
    return s.outputs[0].name if s.outputs else ""


def _mode_and_output(s: Step) -> str:
    return "_".join(p for p in (_mode(s), _first_output(s)) if p)


def _pipeline_and_output(s: Step) -> str:
    return "_".join(p for p in (s.pipeline, _mode(s), _first_output(s)) if p)


# --- state names (one function per kind of state, so they never collide) -----------
# The run's own states: each has a space and no step prefix, so no step id can produce them.
ARGS_CHECK_STATE = "Forwarded args?"
TAKE_ARGS_STATE = "Take forwarded args"
NO_ARGS_STATE = "No forwarded args"
START_STATE = "Start run"
FINAL_CHECK_STATE = "Any step not succeeded?"
RUN_SUCCEEDED_STATE = "Run succeeded"
RUN_FAILED_STATE = "Run failed"

def task_state(step_id: str) -> str:
    return step_id


def check_state(step_id: str) -> str:
    return f"Check {step_id}"


def skip_state(step_id: str) -> str:
    return f"Skip {step_id}"


def failed_state(step_id: str) -> str:
    return f"Failed {step_id}"


def approve_state(step_id: str) -> str:
    return f"Approve {step_id}"


def branch_end_state(step_id: str) -> str:
    """Where a branch's last step goes when it is left out: a Succeed ends only the branch."""
    return f"End {step_id}"


def parallel_state(member_ids: list[str]) -> str:
    """Named after its first member and a hash of all members: stable and readable."""
    h = short_hash(*sorted(member_ids))
    first = sorted(member_ids)[0]
    name = f"Parallel {first} +{len(member_ids) - 1} ({h})"
    return name if len(name) <= limits.STATE_NAME_MAX else f"Parallel ({h})"


def group_name(pipelines: list[str], first_step: str, taken: set[str], split: bool = False) -> str:
    """A readable, valid, unique name for a dependency group.

    One pipeline → its name; several → the first two joined; a pipeline split over
    several groups (``split``) gets the group's first step appended.
    """
    base = "-".join(_NOT_NAME.sub("-", p).strip("-") or "pipeline" for p in sorted(pipelines)[:2])
    if len(pipelines) > 2:
        base += f"-and-{len(pipelines) - 2}-more"
    name = fit(base, MAX_GROUP_NAME)
    if split or name in taken:
        name = fit(f"{base}-{first_step}", MAX_GROUP_NAME)
    n = 2
    while name in taken:
        name = fit(f"{base}-{first_step}-{n}", MAX_GROUP_NAME)
        n += 1
    return name


def job_name(step_id: str, run_id: str) -> str:
    """Batch job name shared by both backends: ``<step>--<run>``, ≤ 128 valid chars."""
    step_part = fit(step_id, 44)
    run_part = _NOT_NAME.sub("-", run_id)[: limits.BATCH_JOB_NAME_MAX - len(step_part) - 2]
    return f"{step_part}--{run_part}"
