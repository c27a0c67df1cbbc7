"""Where each step's status lives in the execution data of a generated machine.

Step Functions' JSONPath cannot merge the outputs of Parallel branches, so statuses are
kept in a tree whose shape is known at synth time:

- the run's data is ``{"select"?: {...}, "args"?: [...], "run": {"args": "<JSON>"},
  "st": {<status by step id>}}``;
- a Parallel hands each branch ``{"up": <parent data>, "st": {}}`` and stores the
  branches' ``st`` objects back as ``st._p<N>._b<i>``.

So a step's status is found at a fixed path from any later step: climb ``up`` out of
the reader's branches, then descend ``_p<N>._b<i>`` into the writer's. Every path is
linear in the nesting depth and nothing is copied twice, whatever the fan-out.
A status is ``{"status": "SUCCEEDED"}``, or ``{"status": "FAILED"|"SKIPPED", "halt":
true, ...}``; steps left out by a selection have none (they count as up to date).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sfn_pipelines.plan import Leaf, Node, Parallel, Series

Scope = tuple[tuple[str, int], ...]  # (parallel key, branch index) from the root down


@dataclass(frozen=True)
class Layout:
    scopes: dict[str, Scope]  # step id -> scope it runs in
    parallel_keys: dict[Parallel, str]  # each Parallel node -> its key ("_p1", ...)

    def status_path(self, step: str, reader: Scope) -> str:
        """JSONPath, valid while running in ``reader``, of ``step``'s status object."""
        target = self.scopes[step]
        common = 0
        while common < min(len(target), len(reader)) and target[common] == reader[common]:
            common += 1
        parts = ["$"] + ["up"] * (len(reader) - common) + ["st"]
        for pkey, branch in target[common:]:
            parts += [pkey, f"_b{branch}"]
        return ".".join([*parts, step])

    @staticmethod
    def select_path(reader: Scope) -> str:
        return ".".join(["$"] + ["up"] * len(reader) + ["select"])

    @staticmethod
    def run_args_path(reader: Scope) -> str:
        """The run's forwarded script args, a JSON string set once at the start."""
        return ".".join(["$"] + ["up"] * len(reader) + ["run", "args"])


def build_layout(root: Node) -> Layout:
    scopes: dict[str, Scope] = {}
    keys: dict[Parallel, str] = {}

    def walk(node: Node, scope: Scope) -> None:
        if isinstance(node, Leaf):
            scopes[node.step] = scope
        elif isinstance(node, Series):
            for child in node.children:
                walk(child, scope)
        elif isinstance(node, Parallel):
            key = keys[node] = f"_p{len(keys) + 1}"
            for i, child in enumerate(node.children):
                walk(child, (*scope, (key, i)))
        else:  # pragma: no cover - guards against new node kinds
            raise TypeError(f"unknown plan node {node!r}")

    walk(root, ())
    return Layout(scopes=scopes, parallel_keys=keys)


def flatten_statuses(st: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Turn the nested ``st`` object of an execution's output into {step id: status}."""
    return dict(_walk_statuses(st))


def _walk_statuses(st: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, value in st.items():
        if key.startswith("_p") and isinstance(value, Mapping):
            for branch in value.values():
                yield from _walk_statuses(branch)
        elif isinstance(value, Mapping):
            yield key, dict(value)
