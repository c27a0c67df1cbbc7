"""Shared stand-in logic for the example pipeline scripts (stdlib only).

Every example script is a thin wrapper around :func:`run_step`. A step:

1. reads its refs from ``PIPELINE_INPUTS`` / ``PIPELINE_OUTPUTS`` (JSON lists of ref strings such
   as ``"fs:solubility_features"`` or plain names such as ``"fs_tox_features"``); when a variable
   is unset, the script's own declared refs are used (inline-style scripts pass theirs);
2. finds artifacts in ``PIPELINE_ARTIFACTS_DIR`` (default ``./.local-runs/artifacts``), one file
   per ref named by :func:`artifact_filename` (``model:a/b`` -> ``model__a__b``, flags such as
   ``:no_promote`` dropped, no extension);
3. exits 1 if ``PIPELINE_FAIL_STEP`` names this step (see :func:`step_names`), for failure tests;
4. checks that each input artifact exists. External inputs (those no step produces) are created
   when missing: a small CSV generated from a fixed seed. An input is external when it is listed
   in ``PIPELINE_EXTERNAL_INPUTS`` (JSON list) or, when that variable is unset, when it is a
   ``ds:`` ref (raw data sets are never produced by the examples). Any other missing input
   makes the step exit 1;
5. writes each output artifact (CSV for data/feature sets, JSON otherwise), deterministically:
   the same inputs give byte-identical outputs.

The mode of a step (Workbench ``mode``: ``dt``/``ts``) comes from ``PIPELINE_MODE`` or a
``--mode X`` argument. Nothing here reads the network or needs third-party packages.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import sys
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

DEFAULT_ARTIFACTS_DIR = "./.local-runs/artifacts"
ARTIFACT_TYPES = ("ds", "fs", "model", "endpoint", "public")
TABLE_TYPES = ("ds", "fs")  # written as CSV


def strip_flags(ref: str) -> str:
    """``"model:x:no_promote"`` -> ``"model:x"``; plain names and unflagged refs unchanged."""
    parts = ref.split(":")
    if len(parts) > 2 and parts[0] in ARTIFACT_TYPES:
        return ":".join(parts[:2])
    return ref


def artifact_filename(ref: str) -> str:
    """The file name of a ref's artifact: ``:`` and ``/`` replaced by ``__`` (flags dropped)."""
    return strip_flags(ref).replace(":", "__").replace("/", "__")


def artifact_path(ref: str, artifacts_dir: str | os.PathLike[str]) -> Path:
    return Path(artifacts_dir) / artifact_filename(ref)


def _is_table(ref: str) -> bool:
    key = strip_flags(ref)
    kind = key.split(":", 1)[0] if ":" in key else None
    if kind is not None:
        return kind in TABLE_TYPES
    return key.startswith(("ds_", "fs_"))  # plain names of the inline era


def _ref_list(env_name: str, default: Iterable[str]) -> list[str]:
    raw = os.environ.get(env_name)
    if raw is None or not raw.strip():
        return list(default)
    value = json.loads(raw)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{env_name} must be a JSON list of strings, got {raw!r}")
    return value


def _mode(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--mode" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--mode="):
            return arg.split("=", 1)[1]
    return os.environ.get("PIPELINE_MODE") or None


def step_names(script: str | os.PathLike[str], mode: str | None, outputs: Iterable[str]) -> set[str]:
    """Every name ``PIPELINE_FAIL_STEP`` may use for this step.

    ``PIPELINE_STEP`` (the id a runner gives the step), the script's file name and stem, the
    stem with its mode (``stem_dt``, ``stem:dt``) and each output ref.
    """
    path = Path(script)
    names = {path.name, path.stem, *(strip_flags(o) for o in outputs)}
    if os.environ.get("PIPELINE_STEP"):
        names.add(os.environ["PIPELINE_STEP"])
    if mode:
        names |= {f"{path.stem}_{mode}", f"{path.stem}:{mode}", f"{path.name}:{mode}"}
    return names


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _seed(*parts: str) -> int:
    return zlib.crc32("\x1f".join(parts).encode())


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_external(ref: str, path: Path, rows: int = 20) -> None:
    """A small raw data set for an external input, from a seed fixed by the ref's name."""
    rng = random.Random(_seed("external", strip_flags(ref)))
    data = [
        (f"row{i:03d}", round(rng.uniform(-3, 3), 4), round(rng.uniform(0, 1), 4), rng.randint(0, 1))
        for i in range(rows)
    ]
    _write_atomic(path, _csv_text(("id", "x1", "x2", "label"), data))


def write_output(ref: str, path: Path, step: Mapping[str, object], input_digests: Mapping[str, str]) -> None:
    seed = _seed(strip_flags(ref), *sorted(input_digests.values()), os.environ.get("SEED", ""))
    rng = random.Random(seed)
    if _is_table(ref):
        data = [(f"row{i:03d}", *(round(rng.gauss(0, 1), 4) for _ in range(3))) for i in range(10)]
        _write_atomic(path, _csv_text(("id", "f1", "f2", "f3"), data))
        return
    doc = {
        "ref": strip_flags(ref),
        **step,
        "inputs": dict(sorted(input_digests.items())),
        "score": round(rng.uniform(0.6, 0.95), 4),
    }
    _write_atomic(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def run_step(
    script: str | os.PathLike[str],
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    argv: Sequence[str] | None = None,
) -> int:
    """Run one stand-in step; returns the process exit code. See the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    script = Path(script)
    mode = _mode(argv)
    ins = _ref_list("PIPELINE_INPUTS", inputs)
    outs = _ref_list("PIPELINE_OUTPUTS", outputs)
    art_dir = Path(os.environ.get("PIPELINE_ARTIFACTS_DIR") or DEFAULT_ARTIFACTS_DIR)
    external_env = os.environ.get("PIPELINE_EXTERNAL_INPUTS")
    external = None if external_env is None else {strip_flags(r) for r in _ref_list("PIPELINE_EXTERNAL_INPUTS", ())}
    label = f"{script.stem}[{mode}]" if mode else script.stem

    print(f"[{label}] start: {len(ins)} input(s), {len(outs)} output(s), artifacts in {art_dir}", flush=True)

    fail = {s.strip() for s in os.environ.get("PIPELINE_FAIL_STEP", "").split(",") if s.strip()}
    if fail & step_names(script, mode, outs):
        print(f"[{label}] failing on purpose (PIPELINE_FAIL_STEP)", file=sys.stderr, flush=True)
        return 1

    digests: dict[str, str] = {}
    for ref in ins:
        key = strip_flags(ref)
        path = artifact_path(key, art_dir)
        if not path.is_file():
            is_external = key.startswith("ds:") if external is None else key in external
            if not is_external:
                print(f"[{label}] error: missing input artifact {key} (expected {path})", file=sys.stderr)
                return 1
            make_external(key, path)
            print(f"[{label}] created external input {key} -> {path}", flush=True)
        digests[key] = _digest(path)

    step = {"script": script.name, "mode": mode, "args": argv}
    for ref in outs:
        path = artifact_path(ref, art_dir)
        write_output(ref, path, step, digests)
        print(f"[{label}] wrote {strip_flags(ref)} -> {path}", flush=True)

    print(f"[{label}] done", flush=True)
    return 0
