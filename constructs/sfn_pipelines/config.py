"""Load the pipeline configs under a folder into Steps, reporting every problem at once.

Users declare steps two ways (shared/reference/workbench-format.md): ``pipelines.json`` /
``.yaml`` manifests, and inline ``WORKBENCH_BATCH = {...}`` dicts in scripts. Scripts are
only parsed with ``ast``, never imported: synth must not run user code. Checks here are per
file; graph-level checks (producers, cycles, duplicates) happen after all files are read.
"""

from __future__ import annotations

import ast
import json
import os
import posixpath
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from sfn_pipelines.model import (
    ARTIFACT_TYPES,
    ArtifactRef,
    PipelineConfigError,
    Problem,
    ScriptKind,
    Source,
    Step,
    StepOptions,
)
from sfn_pipelines.schema import INLINE_RETIRED, INLINE_SCHEMA, MANIFEST_SCHEMA, KeyPath, check, suggest

MANIFEST_NAMES = ("pipelines.json", "pipelines.yaml", "pipelines.yml")
SKIP_DIRS = frozenset({"__pycache__", "node_modules", "cdk.out", ".venv", "site-packages"})
MARKER = "WORKBENCH_BATCH"
SCRIPT_REFS: dict[str, ScriptKind] = {"workbench:": "workbench", "plugin:": "plugin", "s3://": "s3"}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass
class LoadResult:
    """Steps in source order (ids still empty) plus warnings; errors are raised instead."""

    root: Path
    steps: list[Step] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def load_tree(root: str | Path) -> LoadResult:
    """Read every manifest and inline config under ``root``; raise PipelineConfigError listing all errors."""
    given = Path(root)
    if not given.is_dir():
        what = "is not a folder" if given.exists() else "does not exist"
        raise PipelineConfigError([Problem(Source(str(given)), f"pipeline folder {what}")])
    loader = _Loader(given.resolve())
    loader.run()
    errors = [p for p in loader.problems if not p.warning]
    if not errors and not loader.steps:
        what = "with steps" if loader.configs else "found"
        hint = "add a pipelines.json/.yaml manifest or a module-level WORKBENCH_BATCH = {...} to a script"
        errors.append(Problem(Source(str(given)), f"no pipeline configs {what} under {given}: {hint}"))
    if errors:
        raise PipelineConfigError(errors + loader.warnings)
    steps = sorted(loader.steps, key=lambda s: (s.source.path, s.source.line or 0))
    return LoadResult(root=loader.root, steps=steps, warnings=loader.warnings)


def parse_ref(text: str, role: str = "input") -> ArtifactRef:
    """``type:name[:flag...]`` or a plain name; raise ValueError with a one-line message."""
    if not text.strip():
        raise ValueError(f"{role} {text!r} is empty; write a name such as fs:my_features")
    if text != text.strip():
        raise ValueError(f"{role} {text!r} has leading or trailing spaces")
    if ":" not in text:
        return ArtifactRef(None, text)
    kind, name, *flags = text.split(":")
    if kind not in ARTIFACT_TYPES:
        raise ValueError(
            f"{role} {text!r} has unknown artifact type {kind!r}{suggest(kind, ARTIFACT_TYPES, 0.5)}; "
            f"known types: {', '.join(ARTIFACT_TYPES)}"
        )
    if not name:
        raise ValueError(f"{role} {text!r} has an empty name; write {kind}:<name>")
    if not all(flags):
        raise ValueError(f"{role} {text!r} has an empty flag (a stray ':')")
    if flags and role == "output":
        raise ValueError(
            f"output {text!r} has flags ({', '.join(flags)}); flags such as no_promote only apply to inputs"
        )
    return ArtifactRef(kind, name, tuple(flags))


class _Lines(dict[KeyPath, int]):
    """Line per document path (mapping keys give the key's line); unknown paths use an ancestor's."""

    def at(self, path: KeyPath) -> int:
        while path not in self and path:
            path = path[:-1]
        return self.get(path, 1)


class _Loader:
    """One pass over a tree: collects steps, problems, and which scripts manifests configure."""

    def __init__(self, root: Path):
        self.root = root
        self.steps: list[Step] = []
        self.problems: list[Problem] = []
        self.claimed: dict[str, Source] = {}  # local script -> first manifest node naming it
        self.configs = 0

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.warning]

    def error(self, path: str, line: int | None, message: str, warning: bool = False) -> None:
        self.problems.append(Problem(Source(path, line), message, warning))

    def run(self) -> None:
        manifests, scripts = self.discover()
        for rel in manifests:
            self.load_manifest(rel)
        for rel in scripts:
            self.load_script(rel)

    def discover(self) -> tuple[list[str], list[str]]:
        manifests: list[str] = []
        scripts: list[str] = []

        def unreadable(exc: OSError) -> None:
            self.error(self.rel(exc.filename), None, f"cannot read folder: {exc.strerror or exc}")

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=unreadable):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not _skipped(here / d))
            for name in filenames:
                if name in MANIFEST_NAMES:
                    manifests.append(self.rel(here / name))
                elif name.endswith(".py"):
                    scripts.append(self.rel(here / name))
        return sorted(manifests), sorted(scripts)

    def rel(self, path: str | Path) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def read(self, rel: str) -> bytes | None:
        try:
            return (self.root / rel).read_bytes()
        except OSError as exc:
            self.error(rel, None, f"cannot read file: {exc.strerror or exc}")
            return None

    # -- manifests ---------------------------------------------------------------------------

    def load_manifest(self, rel: str) -> None:
        data = self.read(rel)
        if data is None:
            return
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            self.error(rel, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8")
            return
        doc = self.parse_document(rel, text)
        if doc is _INVALID:
            return
        self.configs += 1
        # Tabs are fine in JSON but not in YAML; spaces keep every line and column in place.
        lines, duplicates = _document_lines(text.replace("\t", " ") if rel.endswith(".json") else text)
        for key, line, first in duplicates:
            self.error(rel, line, f"duplicate key {key!r} (first at line {first}); only the last one would be used")
        if doc is None:
            self.error(rel, 1, 'manifest is empty; expected {"pipelines": {"<pipeline name>": [...]}}')
            return
        issues = check(MANIFEST_SCHEMA, doc, node_at=3, node_label="pipeline node")
        for path, message in issues:
            self.error(rel, lines.at(path), message)
        bad_nodes = {path[:3] for path, _ in issues}
        pipelines = doc.get("pipelines") if isinstance(doc, dict) else None
        if not isinstance(pipelines, dict):
            return
        for pipeline, nodes in pipelines.items():
            if not isinstance(pipeline, str) or not isinstance(nodes, list):
                continue
            for index, node in enumerate(nodes):
                base = ("pipelines", pipeline, index)
                if isinstance(node, dict):
                    self.manifest_node(rel, lines, base, node, pipeline, base in bad_nodes)

    def parse_document(self, rel: str, text: str) -> Any:
        if rel.endswith(".json"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                self.error(rel, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})")
            except (ValueError, RecursionError) as exc:
                self.error(rel, None, f"invalid JSON: {exc}")
            return _INVALID
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (column {mark.column + 1})" if mark else ""
            what = " ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
            self.error(rel, mark.line + 1 if mark else None, f"invalid YAML: {what or exc}{where}")
        except RecursionError:
            self.error(rel, None, "invalid YAML: nested too deeply")
        return _INVALID

    def manifest_node(self, rel: str, lines: _Lines, base: KeyPath, node: dict, pipeline: str, bad: bool) -> None:
        script = node.get("script")
        if not isinstance(script, str) or not script:
            return  # reported by the schema
        line = lines.at((*base, "script"))
        try:
            resolved, kind = self.resolve_script(posixpath.dirname(rel), script)
        except ValueError as exc:
            self.error(rel, line, str(exc))
            return
        if kind == "local":
            self.claimed.setdefault(resolved, Source(rel, line))
        self.add_step(rel, lines, base, node, pipeline, resolved, kind, lines.at(base), bad)

    def resolve_script(self, folder: str, script: str) -> tuple[str, ScriptKind]:
        """The root-relative path of a local script, or a ref kept as written."""
        for prefix, kind in SCRIPT_REFS.items():
            if script.startswith(prefix):
                rest = script[len(prefix) :].strip("/")
                if not rest or (kind == "s3" and "/" not in rest):
                    shape = "s3://<bucket>/<key>" if kind == "s3" else f"{prefix}<path>"
                    raise ValueError(f"script ref {script!r} names no script; write {shape}")
                return script, kind
        if PurePosixPath(script).is_absolute() or PureWindowsPath(script).drive:
            raise ValueError(f"script path {script!r} is absolute; write it relative to the manifest's folder")
        if _SCHEME.match(script):
            raise ValueError(
                f"script {script!r} has an unknown prefix; use a path relative to the manifest, "
                "or a workbench:, plugin: or s3:// ref"
            )
        path = posixpath.normpath(posixpath.join(folder, script))
        if path == ".." or path.startswith("../"):
            raise ValueError(f"script path {script!r} leaves the pipeline folder; scripts must live under it")
        try:
            target = self.root / path
            found, folder_ = target.is_file(), target.is_dir()
        except (OSError, ValueError):
            found = folder_ = False
        if not found:
            problem = "is a folder, not a file" if folder_ else "not found"
            raise ValueError(f"script {script!r} {problem} (looked for {path})")
        return path, "local"

    # -- inline scripts ----------------------------------------------------------------------

    def load_script(self, rel: str) -> None:
        data = self.read(rel)
        if data is None or MARKER.encode() not in data:
            return  # a helper module, not a pipeline step
        try:
            with warnings.catch_warnings():  # e.g. SyntaxWarning for "\d": not ours to report
                warnings.simplefilter("ignore")
                tree = ast.parse(data, filename=rel)
        except SyntaxError as exc:
            self.error(
                rel, exc.lineno, f"Python syntax error: {exc.msg} (the file mentions {MARKER}, so it must parse)"
            )
            return
        except (ValueError, RecursionError, MemoryError) as exc:
            self.error(rel, None, f"cannot parse Python: {exc or type(exc).__name__}")
            return
        assigns = [n for n in tree.body if _assigned(n) is not None]
        if not assigns:
            nested = [n for n in ast.walk(tree) if _assigned(n) is not None]
            if nested:
                self.error(
                    rel,
                    nested[0].lineno,
                    f"{MARKER} is only set inside a function or block and is ignored; move it to module level",
                    warning=True,
                )
            return
        self.configs += 1
        first = assigns[0]
        if rel in self.claimed:
            self.error(
                rel,
                first.lineno,
                f"{MARKER} ignored: {self.claimed[rel]} configures this script and "
                "the manifest wins; remove one of them",
                warning=True,
            )
            return
        if len(assigns) > 1:
            where = ", ".join(str(n.lineno) for n in assigns)
            self.error(rel, assigns[1].lineno, f"{MARKER} is assigned more than once (lines {where}); keep one")
            return
        changed = [n for n in tree.body if _modifies(n)]
        if changed:
            self.error(
                rel,
                changed[0].lineno,
                f"{MARKER} is modified after line {first.lineno}; scripts are "
                "never run, so put everything in the literal",
            )
            return
        self.inline_step(rel, first)

    def inline_step(self, rel: str, assign: ast.Assign | ast.AnnAssign) -> None:
        value_node = _assigned(assign)
        assert value_node is not None
        try:
            value = _listify(ast.literal_eval(value_node))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            bad = _first_non_literal(value_node)
            self.error(
                rel,
                getattr(bad, "lineno", assign.lineno),
                f"{MARKER} must be a plain literal "
                f"(strings, numbers, lists, dicts); `{_snippet(bad)}` is computed and scripts are never run",
            )
            return
        lines = _Lines({(): assign.lineno})
        _ast_lines(value_node, (), lines)
        issues = check(INLINE_SCHEMA, value, node_at=0, node_label=MARKER, retired=INLINE_RETIRED)
        for path, message in issues:
            self.error(rel, lines.at(path), message)
        if not isinstance(value, dict):
            return
        folder = posixpath.dirname(rel)
        pipeline = folder or self.root.name or "root"
        self.add_step(rel, lines, (), value, pipeline, rel, "local", assign.lineno, bool(issues))

    # -- both --------------------------------------------------------------------------------

    def add_step(
        self,
        rel: str,
        lines: _Lines,
        base: KeyPath,
        node: dict,
        pipeline: str,
        script: str,
        kind: ScriptKind,
        line: int,
        bad: bool,
    ) -> None:
        inputs = self.refs(rel, lines, (*base, "inputs"), node.get("inputs"), "input")
        outputs = self.refs(rel, lines, (*base, "outputs"), node.get("outputs"), "output")
        if bad or inputs is None or outputs is None:
            return
        options = StepOptions(
            expected_minutes=node.get("expected_minutes"),
            vcpus=node.get("vcpus"),
            memory=_int(node.get("memory")),
            gpus=_int(node.get("gpus")),
            timeout=_int(node.get("timeout")),
            retries=_int(node.get("retries")),
            environment=tuple(node.get("environment", {}).items()),
            args=tuple(node.get("args", ())),
            job_queue=node.get("job_queue"),
            job_definition=node.get("job_definition"),
            approval=_approval(node.get("approval")),
        )
        self.steps.append(
            Step(
                pipeline=pipeline,
                script=script,
                script_kind=kind,
                inputs=inputs,
                outputs=outputs,
                source=Source(rel, line),
                mode=node.get("mode"),
                no_auto=node.get("no_auto", False),
                options=options,
            )
        )

    def refs(self, rel: str, lines: _Lines, path: KeyPath, items: object, role: str) -> tuple[ArtifactRef, ...] | None:
        if not isinstance(items, list):
            return ()
        refs: list[ArtifactRef] = []
        for index, text in enumerate(items):
            if not isinstance(text, str):
                return None  # reported by the schema
            try:
                refs.append(parse_ref(text, role))
            except ValueError as exc:
                self.error(rel, lines.at((*path, index)), str(exc))
        return tuple(refs) if len(refs) == len(items) else None


_INVALID = object()


def _skipped(folder: Path) -> bool:
    name = folder.name
    return name.startswith(".") or name in SKIP_DIRS or (folder / "pyvenv.cfg").exists()


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _listify(value: Any) -> Any:
    """Tuples are as good as lists in a Python literal; the schema speaks JSON."""
    if isinstance(value, tuple | list):
        return [_listify(v) for v in value]
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    return value


def _assigned(node: ast.AST) -> ast.expr | None:
    """The value of ``WORKBENCH_BATCH = ...`` / ``WORKBENCH_BATCH: T = ...``, else None."""
    if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == MARKER for t in node.targets):
        return node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == MARKER:
        return node.value
    return None


def _modifies(node: ast.AST) -> bool:
    """``WORKBENCH_BATCH[k] = v``, ``WORKBENCH_BATCH |= ...`` or ``WORKBENCH_BATCH.update(...)``."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == MARKER
    if isinstance(node, ast.AugAssign):
        targets: list[ast.expr] = [node.target]
    elif isinstance(node, ast.Assign):
        targets = node.targets
    else:
        return False
    return any(
        (isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == MARKER)
        or (isinstance(node, ast.AugAssign) and isinstance(t, ast.Name) and t.id == MARKER)
        for t in targets
    )


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _first_non_literal(node: ast.expr) -> ast.expr:
    """The innermost container child that ``ast.literal_eval`` rejects, to point the user at it."""
    children: list[ast.expr] = []
    if isinstance(node, ast.Dict) and None not in node.keys:
        children = [c for pair in zip(node.keys, node.values, strict=True) for c in pair if c is not None]
    elif isinstance(node, ast.List | ast.Tuple | ast.Set):
        children = node.elts
    for child in children:
        if not _is_literal(child):
            return _first_non_literal(child)
    return node


def _snippet(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 50 else text[:47] + "..."


def _ast_lines(node: ast.AST, path: KeyPath, lines: _Lines) -> None:
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant):
                lines[(*path, key.value)] = key.lineno
                _ast_lines(value, (*path, key.value), lines)
    elif isinstance(node, ast.List | ast.Tuple):
        for index, value in enumerate(node.elts):
            lines[(*path, index)] = value.lineno
            _ast_lines(value, (*path, index), lines)


def _document_lines(text: str) -> tuple[_Lines, list[tuple[object, int, int]]]:
    """Lines for every path of a JSON/YAML text via ``yaml.compose`` (JSON is nearly YAML),
    plus duplicate mapping keys as (key, line, first line). Best effort: if composing fails,
    every path falls back to line 1.
    """
    lines = _Lines({(): 1})
    duplicates: list[tuple[object, int, int]] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return lines, duplicates
    stack: list[tuple[yaml.Node, KeyPath]] = [(root, ())] if root is not None else []
    while stack and len(lines) < 100_000:  # aliases can multiply paths; stay bounded
        node, path = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        duplicates.append((key.value, line, seen[key.value]))
                    seen[key.value] = lines[(*path, key.value)] = line
                    stack.append((value, (*path, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                lines[(*path, index)] = value.start_mark.line + 1
                stack.append((value, (*path, index)))
    return lines, duplicates


def _approval(value: object) -> str | None:
    """``true`` → a gate with the default message, a string → that message, else no gate."""
    if value is True:
        return ""
    return value if isinstance(value, str) else None
