#!/usr/bin/env python3
"""Planned makespan / critical path for every group of some pipelines folders, next to
what one Parallel per topological level would take (what other generators emit).

    .venv/bin/python scripts/measure_plans.py pipelines ../shared/workbench-examples

Durations are the steps' ``expected_minutes`` hints, 1 minute where a step has none.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "constructs"))

from sfn_pipelines.model import PipelineConfigError
from sfn_pipelines.plan import plan_group
from sfn_pipelines.workflow import DEFAULT_MINUTES, Workflow, load_pipeline_set


def level_by_level(w: Workflow) -> float:
    minutes = {s.id: s.options.expected_minutes or DEFAULT_MINUTES for s in w.group.steps}
    level: dict[str, int] = {}
    for sid in w.plan.steps():  # render order respects dependencies
        level[sid] = 1 + max((level[p] for p in w.group.parents(sid) if p in level), default=-1)
    assert len(level) == len(minutes)
    worst: dict[int, float] = {}
    for sid, n in level.items():
        worst[n] = max(worst.get(n, 0.0), minutes[sid])
    return sum(worst.values())


# name -> (edges, minutes): the shapes the issue names, with hints that make levels hurt.
SHAPES: dict[str, tuple[list[tuple[str, str]], dict[str, float]]] = {
    "two chains 10>1, 1>10": ([("a1", "a2"), ("b1", "b2")], {"a1": 10, "a2": 1, "b1": 1, "b2": 10}),
    "diamond (uneven arms)": ([("s", "l1"), ("l1", "l2"), ("s", "r"), ("l2", "t"), ("r", "t")],
                              {"s": 1, "l1": 1, "l2": 1, "r": 5, "t": 1}),
    "fan-out/fan-in 1>7>1": ([("f", f"m{i}") for i in range(7)] + [(f"m{i}", "p") for i in range(7)], {}),
    "N: join(users,events), stats(events)": ([("users", "join"), ("events", "join"), ("events", "stats")],
                                             {"users": 5, "events": 30, "join": 10, "stats": 3}),
}


def shape_levels(edges: list[tuple[str, str]], minutes: dict[str, float]) -> float:
    steps = sorted({x for e in edges for x in e})
    level: dict[str, int] = {}
    while len(level) < len(steps):
        for s in steps:
            ps = [a for a, b in edges if b == s]
            if s not in level and all(p in level for p in ps):
                level[s] = 1 + max((level[p] for p in ps), default=-1)
    worst: dict[int, float] = {}
    for s, n in level.items():
        worst[n] = max(worst.get(n, 0.0), minutes.get(s, 1.0))
    return sum(worst.values())


def main(folders: list[str]) -> int:
    print(f"{'shape':<55} {'critical':>8} {'planned':>8} {'ratio':>6} {'levels':>8} {'ratio':>6} added")
    for name, (edges, minutes) in SHAPES.items():
        steps = sorted({x for e in edges for x in e})
        plan = plan_group(steps, edges, minutes)
        cp, ms, lv = plan.critical_path, plan.makespan, shape_levels(edges, minutes)
        print(f"{name:<55} {cp:>8g} {ms:>8g} {ms / cp:>6.2f} {lv:>8g} {lv / cp:>6.2f} {len(plan.added)}")
    print()
    print(f"{'folder':<28} {'group':<26} {'steps':>5} {'critical':>8} {'planned':>8} {'ratio':>6} "
          f"{'levels':>8} {'ratio':>6} added")
    for folder in folders:
        try:
            ps = load_pipeline_set(folder)
        except PipelineConfigError as e:
            print(f"{folder}: {e}", file=sys.stderr)
            return 2
        for w in ps.workflows:
            cp, ms, lv = w.plan.critical_path, w.plan.makespan, level_by_level(w)
            print(f"{folder:<28} {w.name:<26} {len(w.group.steps):>5} {cp:>8g} {ms:>8g} {ms / cp:>6.2f} "
                  f"{lv:>8g} {lv / cp:>6.2f} {len(w.plan.added)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["pipelines"]))
