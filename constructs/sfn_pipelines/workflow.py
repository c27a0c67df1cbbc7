"""The pure front end: pipelines folder -> validated graph -> one planned workflow per group.

Everything the construct, the CLI and the launcher need to know about a workflow is
computed here without CDK, so it can be tested, printed and shipped as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfn_pipelines import limits, naming
from sfn_pipelines.config import load_tree
from sfn_pipelines.graph import Group, PipelineGraph, build_graph
from sfn_pipelines.layout import Layout, build_layout
from sfn_pipelines.model import Problem
from sfn_pipelines.plan import Leaf, Parallel, Plan, Series, plan_group, to_dict

DEFAULT_MINUTES = 1.0


@dataclass(frozen=True)
class Workflow:
    """One dependency group, planned: what one state machine runs."""

    group: Group
    plan: Plan
    layout: Layout

    @property
    def name(self) -> str:
        return self.group.name

    def parallels(self) -> list[Parallel]:
        return list(self.layout.parallel_keys)

    def gates(self) -> int:
        return sum(1 for s in self.group.steps if s.options.approval is not None)

    def estimated_transitions(self, with_retries: bool = False) -> int:
        """State transitions of a run where every step succeeds; each one is billed.

        Args check + args pass + start + (check + task) per step + one per gate + one per
        Parallel + final check + end state. ``with_retries``: every step also uses all its ``retries`` (each
        retry is billed as a transition); Batch API retries are not counted.
        """
        n = 3 + 2 * len(self.group.steps) + self.gates() + len(self.layout.parallel_keys) + 2
        if with_retries:
            n += sum(s.options.retries or 0 for s in self.group.steps)
        return n

    def estimated_cost_usd(self, with_retries: bool = False) -> float:
        return self.estimated_transitions(with_retries) * limits.PRICE_PER_TRANSITION_USD

    def estimated_cause_chars(self) -> int:
        """Upper estimate of the ``Run failed`` cause: the JSON of every step's status
        (``"<id>":{"status":"SUCCEEDED","job":"<36-char job id>"}``) and the Parallel nesting."""
        per_step = len('"":{"status":"SUCCEEDED","job":""},') + 36
        per_parallel, per_branch = len('"_p000":{},'), len('"_b000":{},')
        nesting = sum(per_parallel + per_branch * len(p.children) for p in self.layout.parallel_keys)
        return 2 + sum(len(s.id) + per_step for s in self.group.steps) + nesting

    def estimated_history_events(self) -> int:
        flow = 3 + len(self.group.steps) + 2  # args check, args pass, start, checks, final check, end
        tasks = len(self.group.steps) + self.gates()
        return (2 + limits.EVENTS_PER_SYNC_TASK * tasks
                + limits.EVENTS_PER_FLOW_STATE * flow + 4 * len(self.layout.parallel_keys))

    def to_dict(self) -> dict[str, Any]:
        g = self.group
        return {
            "name": g.name,
            "pipelines": list(g.pipelines),
            "steps": [
                {
                    "id": s.id,
                    "state": naming.task_state(s.id),
                    "pipeline": s.pipeline,
                    "script": s.script,
                    "mode": s.mode,
                    "inputs": [r.key for r in s.inputs],
                    "outputs": [r.key for r in s.outputs],
                    "depends_on": g.parents(s.id),
                    "source": str(s.source),
                    "expected_minutes": s.options.expected_minutes,
                    "approval": s.options.approval is not None,
                }
                for s in g.steps
            ],
            "external_inputs": list(g.external_inputs),
            "added_constraints": [
                {"before": list(c.before), "after": list(c.after)} for c in self.plan.added
            ],
            "structure": to_dict(self.plan.root),
            "critical_path_minutes": self.plan.critical_path,
            "makespan_minutes": self.plan.makespan,
            "estimated_transitions": self.estimated_transitions(),
            "estimated_transitions_with_retries": self.estimated_transitions(with_retries=True),
            "estimated_cost_usd": round(self.estimated_cost_usd(), 6),
            "estimated_cost_usd_with_retries": round(self.estimated_cost_usd(with_retries=True), 6),
        }


@dataclass
class PipelineSet:
    """A whole pipelines folder: its graph, workflows and load-time warnings."""

    root: Path
    graph: PipelineGraph
    workflows: list[Workflow]
    warnings: list[Problem] = field(default_factory=list)

    def workflow(self, name: str) -> Workflow:
        return next(w for w in self.workflows if w.name == self.graph.group(name).name)

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [w.to_dict() for w in self.workflows]}


def plan_workflow(group: Group) -> Workflow:
    durations = {s.id: s.options.expected_minutes or DEFAULT_MINUTES for s in group.steps}
    plan = plan_group(group.step_ids, group.edges, durations)
    return Workflow(group=group, plan=plan, layout=build_layout(plan.root))


def load_pipeline_set(root: str | Path) -> PipelineSet:
    """Load, validate, group and plan a pipelines folder; raises PipelineConfigError."""
    loaded = load_tree(root)
    graph = build_graph(loaded.steps)
    return PipelineSet(root=Path(root), graph=graph,
                       workflows=[plan_workflow(g) for g in graph.groups], warnings=loaded.warnings)


__all__ = ["Leaf", "Parallel", "PipelineSet", "Series", "Workflow", "load_pipeline_set", "plan_workflow"]
