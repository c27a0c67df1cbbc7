"""Plain data shared by every stage: loaded steps, artifact refs and problems.

Nothing here imports CDK or touches the file system: config loading produces these
objects, the graph and the planner consume them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

# Workbench's artifact types (shared/reference/workbench-format.md).
ARTIFACT_TYPES: tuple[str, ...] = ("ds", "fs", "model", "endpoint", "public")

ScriptKind = Literal["local", "workbench", "plugin", "s3"]


@dataclass(frozen=True, order=True)
class ArtifactRef:
    """One artifact a step reads or writes.

    ``kind`` is None for the plain names of the inline era (``"fs_x"``); a plain name
    only ever matches the same plain name. Flags such as ``no_promote`` (written
    ``"model:x:no_promote"``) do not take part in matching.
    """

    kind: str | None
    name: str
    flags: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        """The identity used for matching producers to consumers."""
        return f"{self.kind}:{self.name}" if self.kind else self.name

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class Source:
    """Where a step (or a problem) was declared: a root-relative posix path and a line."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class StepOptions:
    """Per-step keys beyond Workbench's own. None means "use the app's default"."""

    expected_minutes: float | None = None
    vcpus: float | None = None
    memory: int | None = None  # MiB
    gpus: int | None = None
    timeout: int | None = None  # minutes
    retries: int | None = None  # extra attempts of a failed job, 0-9
    environment: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    job_queue: str | None = None
    job_definition: str | None = None
    approval: str | None = None  # None: no gate; "" or a message: a human approves first


@dataclass(frozen=True)
class Step:
    """One script run: Workbench's identity is (script, mode, sorted outputs).

    ``id`` is empty when loaded and is assigned by ``naming.assign_ids`` once the whole
    tree is known (ids must be unique across it).
    """

    pipeline: str
    script: str  # root-relative posix path for local scripts, else the ref as written
    script_kind: ScriptKind
    inputs: tuple[ArtifactRef, ...]
    outputs: tuple[ArtifactRef, ...]
    source: Source
    mode: str | None = None
    no_auto: bool = False
    options: StepOptions = StepOptions()
    id: str = ""

    @property
    def identity(self) -> tuple[str, str | None, tuple[str, ...]]:
        return (self.script, self.mode, tuple(sorted(o.key for o in self.outputs)))

    @property
    def script_stem(self) -> str:
        base = self.script.rstrip("/").rsplit("/", 1)[-1]
        return base[:-3] if base.endswith(".py") else base


@dataclass(frozen=True)
class Problem:
    """One user-facing problem: rendered as ``path:line: message``."""

    source: Source
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.source}: {kind}{self.message}"

    def render(self, folder: str | None = None) -> str:
        """``path:line: message`` with the path as seen from where the tool runs.

        Sources are relative to the pipelines folder; ``folder`` (as the user gave it) is
        joined on, except for problems about the folder itself or absolute paths.
        """
        path = self.source.path
        if folder and path and not os.path.isabs(path) and os.path.normpath(path) != os.path.normpath(folder):
            path = os.path.join(folder, path)
        line = f":{self.source.line}" if self.source.line else ""
        kind = "warning: " if self.warning else ""
        return f"{path}{line}: {kind}{self.message}"


class PipelineConfigError(Exception):
    """The pipeline tree has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.source.path, p.source.line or 0, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))
