"""The dependency graph across a whole pipelines tree, and its dependency groups.

Edges run from the producer of a ref to every step that lists it as an input;
dependencies are never named directly (Workbench's rule). Each weakly connected
component becomes one state machine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import networkx as nx

from sfn_pipelines import naming
from sfn_pipelines.model import PipelineConfigError, Problem, Step


@dataclass(frozen=True)
class Group:
    """One dependency group: the steps of one state machine."""

    name: str
    steps: tuple[Step, ...]  # sorted by id
    edges: tuple[tuple[str, str], ...]  # (parent id, child id), sorted
    external_inputs: tuple[str, ...]  # refs read here that no step produces
    pipelines: tuple[str, ...]

    @property
    def step_ids(self) -> list[str]:
        return [s.id for s in self.steps]

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def parents(self, step_id: str) -> list[str]:
        return [a for a, b in self.edges if b == step_id]


@dataclass
class PipelineGraph:
    steps: dict[str, Step]
    edges: set[tuple[str, str]]
    producers: dict[str, str]  # ref key -> producing step id
    groups: list[Group] = field(default_factory=list)

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        known = ", ".join(g.name for g in self.groups) or "none"
        raise KeyError(f"no dependency group named {name!r} (groups: {known})")


def build_graph(steps: Iterable[Step]) -> PipelineGraph:
    """Assign ids, link producers to consumers, check the graph, split it into groups.

    Raises PipelineConfigError with every problem found, never the first only.
    """
    steps = naming.assign_ids(steps)
    problems: list[Problem] = []

    seen: dict[tuple, Step] = {}
    for s in steps:
        other = seen.setdefault(s.identity, s)
        if other is not s:
            mode = f" in mode {s.mode!r}" if s.mode else ""
            problems.append(Problem(s.source, f"duplicate step: {s.script}{mode} with the same outputs "
                                              f"is already declared at {other.source}"))

    producers: dict[str, str] = {}
    by_id = {s.id: s for s in steps}
    for s in steps:
        for ref in s.outputs:
            first = producers.setdefault(ref.key, s.id)
            if first != s.id and by_id[first].identity != s.identity:  # duplicates: reported above
                problems.append(Problem(s.source, f"{ref.key} is produced by two steps: {first} "
                                                  f"({by_id[first].source}) and {s.id}; "
                                                  "each artifact needs exactly one producer"))
        own = {o.key for o in s.outputs} & {i.key for i in s.inputs}
        for key in sorted(own):
            problems.append(Problem(s.source, f"step {s.id} consumes its own output {key}; "
                                              "remove it from inputs or outputs"))

    edges: set[tuple[str, str]] = set()
    for s in steps:
        for ref in s.inputs:
            p = producers.get(ref.key)
            if p is not None and p != s.id:
                edges.add((p, s.id))

    g = nx.DiGraph()
    g.add_nodes_from(by_id)
    g.add_edges_from(edges)
    for scc in sorted(nx.strongly_connected_components(g), key=min):
        if len(scc) < 2:
            continue
        cycle = [a for a, _ in nx.find_cycle(g.subgraph(scc), source=min(scc))]
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(Problem(by_id[cycle[0]].source,
                                f"dependency cycle: {path}; break it by removing one of these inputs"))
    if problems:
        raise PipelineConfigError(problems)

    graph = PipelineGraph(steps=by_id, edges=edges, producers=producers)
    graph.groups = _groups(g, by_id, edges, producers)
    return graph


def _groups(g: nx.DiGraph, by_id: dict[str, Step], edges: set[tuple[str, str]],
            producers: dict[str, str]) -> list[Group]:
    comps = sorted((sorted(c) for c in nx.weakly_connected_components(g)), key=lambda c: c[0])
    per_pipeline: dict[str, int] = defaultdict(int)
    for comp in comps:
        for p in {by_id[i].pipeline for i in comp}:
            per_pipeline[p] += 1

    groups: list[Group] = []
    taken: set[str] = set()
    for comp in comps:
        members = set(comp)
        pipelines = sorted({by_id[i].pipeline for i in comp})
        split = any(per_pipeline[p] > 1 for p in pipelines)
        name = naming.group_name(pipelines, comp[0], taken, split=split)
        taken.add(name)
        external = sorted({r.key for i in comp for r in by_id[i].inputs if r.key not in producers})
        groups.append(Group(
            name=name,
            steps=tuple(by_id[i] for i in comp),
            edges=tuple(sorted((a, b) for a, b in edges if a in members)),
            external_inputs=tuple(external),
            pipelines=tuple(pipelines),
        ))
    return groups
