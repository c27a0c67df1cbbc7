"""JSON Schemas for pipeline configs, and one-line messages for their violations.

Workbench's manifest keys are kept unchanged; our per-step keys are optional extras. The
schemas are plain dicts so they can also be exported for editors. jsonschema's own messages
talk about schema internals, so ``check`` rewrites each violation for the person who wrote
the file, keeping the path so the caller can attach a line number.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

KeyPath = tuple[Any, ...]  # str keys and int list indexes, as in ValidationError.absolute_path

_REFS = 'a list of artifact refs (strings such as "fs:name")'

NODE_PROPERTIES: dict[str, dict[str, Any]] = {
    "script": {
        "type": "string",
        "minLength": 1,
        "description": "a path relative to the manifest's folder, or a workbench:, plugin: or s3:// ref",
    },
    "inputs": {"type": "array", "items": {"type": "string"}, "description": _REFS},
    "outputs": {"type": "array", "items": {"type": "string"}, "description": _REFS},
    "mode": {"type": "string", "minLength": 1, "description": 'a non-empty string such as "dt" or "ts"'},
    "no_auto": {"type": "boolean", "description": "true or false"},
    "expected_minutes": {"type": "number", "exclusiveMinimum": 0, "description": "a number of minutes > 0"},
    "vcpus": {"type": "number", "exclusiveMinimum": 0, "description": "a number > 0 (e.g. 0.5 or 2)"},
    "memory": {"type": "integer", "exclusiveMinimum": 0, "description": "a whole number of MiB > 0 (e.g. 4096)"},
    "gpus": {"type": "integer", "minimum": 0, "description": "a whole number >= 0"},
    "timeout": {"type": "integer", "exclusiveMinimum": 0, "description": "a whole number of minutes > 0"},
    "retries": {"type": "integer", "minimum": 0, "maximum": 9, "description": "a whole number from 0 to 9"},
    "environment": {
        "type": "object",
        "propertyNames": {"minLength": 1, "not": {"pattern": "^AWS_BATCH"}},
        "additionalProperties": {"type": "string"},
        "description": "a map of variable names to string values",
    },
    "args": {"type": "array", "items": {"type": "string"}, "description": "a list of strings"},
    "job_queue": {"type": "string", "minLength": 1, "description": "a non-empty job queue name or ARN"},
    "job_definition": {"type": "string", "minLength": 1, "description": "a non-empty job definition name or ARN"},
    "approval": {
        "anyOf": [{"type": "boolean"}, {"type": "string", "minLength": 1}],
        "description": "true, false, or a message for the approvers",
    },
}

NODE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["script"],
    "properties": NODE_PROPERTIES,
    "additionalProperties": False,
}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "pipelines.json / pipelines.yaml (Workbench's manifest plus optional Batch keys)",
    "type": "object",
    "required": ["pipelines"],
    "properties": {
        "pipelines": {
            "type": "object",
            "propertyNames": {"type": "string", "minLength": 1},
            "additionalProperties": {"type": "array", "items": NODE_SCHEMA},
        }
    },
    "additionalProperties": False,
}

INLINE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "WORKBENCH_BATCH = {...} in a script (the script itself is implied)",
    "type": "object",
    "properties": {k: v for k, v in NODE_PROPERTIES.items() if k != "script"},
    "additionalProperties": False,
}

# Keys the inline dict once had or can never have, with what to do instead.
INLINE_RETIRED: dict[str, str] = {
    "group": "'group' is no longer supported (old WORKBENCH_BATCH format): declare the data flow instead, "
    "'outputs' in the producer and 'inputs' in the consumer",
    "priority": "'priority' is no longer supported (old WORKBENCH_BATCH format): run order now follows "
    "'inputs'/'outputs' (a consumer runs after the producer of each input)",
    "script": "'script' is implied in WORKBENCH_BATCH (it is the file itself); remove it",
}

_MANIFEST_SHAPE = '{"pipelines": {"<pipeline name>": [{"script": ...}, ...]}}'


def suggest(word: object, choices: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    match = difflib.get_close_matches(str(word).lower(), choices, n=1, cutoff=cutoff)
    return f" (did you mean {match[0]!r}?)" if match else ""


def show(value: object) -> str:
    """A short JSON-ish rendering of a bad value for a message."""
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def check(
    schema: dict[str, Any],
    instance: object,
    *,
    node_at: int,
    node_label: str,
    retired: Mapping[str, str] | None = None,
) -> list[tuple[KeyPath, str]]:
    """Validate ``instance``; return ``(path, message)`` per problem, in document order.

    ``node_at`` is the path depth of a pipeline node (3 in a manifest, 0 inline) so that
    messages can name the node key at fault.
    """
    out: list[tuple[KeyPath, str]] = []
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: _order(e.absolute_path))
    for err in errors:
        for item in _describe(err, node_at, node_label, retired or {}):
            if item not in out:
                out.append(item)
    return out


def _order(path: Any) -> list[tuple[int, str]]:
    return [(0, f"{p:09d}") if isinstance(p, int) else (1, str(p)) for p in path]


def _describe(err: ValidationError, node_at: int, label: str, retired: Mapping[str, str]) -> list[tuple[KeyPath, str]]:
    path: KeyPath = tuple(err.absolute_path)
    inst = err.instance
    if err.validator == "additionalProperties" and isinstance(inst, Mapping):
        known = list(err.schema.get("properties", {}))
        return [
            ((*path, k), retired.get(k) if isinstance(k, str) and k in retired else _unknown(k, known))
            for k in inst
            if k not in known
        ]
    if err.validator == "required" and isinstance(inst, Mapping):
        missing = [k for k in err.validator_value if k not in inst]
        if len(path) < node_at:
            return [(path, f"missing top-level key {k!r}; a manifest looks like {_MANIFEST_SHAPE}") for k in missing]
        return [(path, f"{label} has no {k!r} key ({NODE_PROPERTIES[k]['description']})") for k in missing]
    if len(path) < node_at:
        return [_structure(err, path)]
    if len(path) == node_at:
        example = '{"script": "x.py", "inputs": [...], "outputs": [...]}'
        if label != "pipeline node":
            example = '{"inputs": [...], "outputs": [...]}'
        return [(path, f"{label} must be a map such as {example}, got {show(inst)}")]
    key, sub = path[node_at], path[node_at + 1 :]
    if key == "environment" and "propertyNames" in err.schema_path:
        if not inst:
            return [((*path, inst), "environment variable names must not be empty")]
        return [
            (
                (*path, inst),
                f"environment variable {inst!r} is reserved: AWS Batch rejects names starting with AWS_BATCH",
            )
        ]
    desc = NODE_PROPERTIES.get(str(key), {}).get("description", "valid")
    if sub:
        where = f"item {sub[0] + 1}" if isinstance(sub[0], int) else repr(sub[0])
        return [(path, f"{key!r} must be {desc}; {where} is {show(inst)}")]
    return [(path, f"{key!r} must be {desc}, got {show(inst)}")]


def _unknown(key: object, known: list[str]) -> str:
    hint = suggest(key, known)
    return f"unknown key {key!r}" + (hint or f"; known keys: {', '.join(known)}")


def _structure(err: ValidationError, path: KeyPath) -> tuple[KeyPath, str]:
    """Messages for the manifest levels above the nodes."""
    inst = err.instance
    if not path:
        return path, f"a manifest must be a map like {_MANIFEST_SHAPE}, got {show(inst)}"
    if len(path) == 1 and "propertyNames" in err.schema_path:
        return (*path, inst), f"pipeline names must be non-empty strings, got {show(inst)}"
    if len(path) == 1:
        return path, f"'pipelines' must be a map of pipeline names to lists of nodes, got {show(inst)}"
    return path, f"pipeline {path[1]!r} must be a list of nodes, got {show(inst)}"
