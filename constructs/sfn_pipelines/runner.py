"""What a step's Batch job executes: ``python -m sfn_pipelines.runner [extra args]``.

Stdlib only (boto3 is imported when an ``s3://`` URL needs it), and nothing else from this
package, so the module can also be copied alone into a job image. It finds the step's
script from the job's environment (``jobs.job_spec`` sets it), fetches it, runs it with this
interpreter and exits with the script's exit code.

Where the script comes from, first match wins:

1. ``ML_PIPELINE_S3_PATH`` (or a ``PIPELINE_SCRIPT`` that is an ``s3://`` URL): that object.
2. A ``PIPELINE_SCRIPT`` such as ``workbench:models/x.py`` or ``plugin:y.py``: resolved
   through ``PIPELINE_REF_ROOTS``, a JSON map from prefix to a local folder, an ``s3://``
   prefix or an ``s3://``/local ``.zip`` (``{"workbench:": "/opt/workbench/scripts"}``).
3. A relative ``PIPELINE_SCRIPT``: inside ``PIPELINE_SCRIPTS_ARCHIVE`` (an ``s3://`` URL or a
   local path of a zip of the pipelines folder, extracted to a temporary folder), else inside
   ``PIPELINE_SCRIPTS_DIR`` (a folder, used in place).

The script runs as ``sys.executable -u <script> <PIPELINE_ARGS...> <PIPELINE_RUN_ARGS...>
<extra args...>`` with its own folder as working directory and the job's environment; its
output goes straight to the job's log. SIGTERM/SIGINT (Batch terminating the job) are
passed on. Exit codes: the script's own; 128+N when a signal N ended it; 2 when the runner
could not find or fetch the script (the message says why).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

SCRIPT_ENV = "PIPELINE_SCRIPT"
ARGS_ENV = "PIPELINE_ARGS"  # the step's own args (jobs.job_spec), a JSON list
RUN_ARGS_ENV = "PIPELINE_RUN_ARGS"  # args forwarded for one run (jobs.RUN_ARGS_ENV), a JSON list
ARCHIVE_ENV = "PIPELINE_SCRIPTS_ARCHIVE"
DIR_ENV = "PIPELINE_SCRIPTS_DIR"
S3_SCRIPT_ENV = "ML_PIPELINE_S3_PATH"
REF_ROOTS_ENV = "PIPELINE_REF_ROOTS"
EXIT_RUNNER = 2
PREFIX = "sfn-pipelines runner"


class RunnerError(Exception):
    """The script cannot be found or fetched; printed as one line, exit 2."""


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None, s3: Any = None) -> int:
    """Run the job's script; returns its exit code. ``environ``/``s3`` are for tests."""
    env = dict(os.environ if environ is None else environ)
    extra = list(sys.argv[1:] if argv is None else argv)
    if extra[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    try:
        args = script_args(env) + extra
        with tempfile.TemporaryDirectory(prefix="sfn-pipelines-") as tmp:
            script, origin = locate_script(env, Path(tmp), s3)
            print(f"{PREFIX}: {script.name} from {origin}", file=sys.stderr, flush=True)
            return run_script(script, args, env)
    except RunnerError as e:
        print(f"{PREFIX}: {e}", file=sys.stderr)
        return EXIT_RUNNER


def script_args(env: Mapping[str, str]) -> list[str]:
    """The step's own args, then the run's forwarded args."""
    return _json_list(env, ARGS_ENV) + _json_list(env, RUN_ARGS_ENV)


def locate_script(env: Mapping[str, str], workdir: Path, s3: Any = None) -> tuple[Path, str]:
    """The local path of the job's script (fetched into ``workdir`` if remote) and where it came from."""
    script = env.get(SCRIPT_ENV, "").strip()
    s3_path = env.get(S3_SCRIPT_ENV, "").strip() or (script if script.startswith("s3://") else "")
    if s3_path:
        return _download(s3_path, workdir / _s3_basename(s3_path), s3), s3_path
    if not script:
        raise RunnerError(f"{SCRIPT_ENV} is not set: the job does not say which script to run "
                          f"(set it, or {S3_SCRIPT_ENV} for an s3:// script)")
    prefix = ref_prefix(script)
    if prefix:
        root = ref_roots(env).get(prefix)
        if root is None:
            raise RunnerError(
                f"{script}: no root for {prefix!r} scripts. This image cannot resolve {prefix} refs: set "
                f"{REF_ROOTS_ENV} in the job definition to a JSON map such as "
                f"'{{\"{prefix}\": \"/opt/scripts\"}}' (a folder, an s3:// prefix or a .zip), or point the "
                "step's job_definition at an image that carries these scripts")
        return _from_root(root, script[len(prefix):], workdir, s3), f"{root} ({script})"
    archive = env.get(ARCHIVE_ENV, "").strip()
    if archive:
        return _from_root(archive, script, workdir, s3), archive
    folder = env.get(DIR_ENV, "").strip()
    if folder:
        return _from_root(folder, script, workdir, s3), folder
    raise RunnerError(f"{script}: neither {ARCHIVE_ENV} (a zip of the pipelines folder) nor {DIR_ENV} "
                      "(a folder holding it) is set, so the script cannot be found")


def ref_prefix(script: str) -> str | None:
    """``"workbench:"`` for ``workbench:models/x.py``; None for paths and s3:// URLs."""
    head, sep, _ = script.partition(":")
    if not sep or script.startswith("s3://") or len(head) < 2 or "/" in head:
        return None  # "C:..." drive letters and relative paths are not refs
    return head + ":"


def ref_roots(env: Mapping[str, str]) -> dict[str, str]:
    """``PIPELINE_REF_ROOTS`` as ``{"workbench:": root}`` (keys accepted with or without ``:``)."""
    raw = env.get(REF_ROOTS_ENV, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise RunnerError(f"{REF_ROOTS_ENV} is not JSON ({e}); expected e.g. "
                          '\'{"workbench:": "/opt/workbench/scripts"}\'') from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                              for k, v in value.items()):
        raise RunnerError(f"{REF_ROOTS_ENV} must be a JSON object of prefix -> folder, s3:// prefix or .zip")
    return {k if k.endswith(":") else k + ":": v for k, v in value.items()}


def run_script(script: Path, args: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``script`` with this interpreter, passing signals on; its exit code (128+N for signal N)."""
    proc = subprocess.Popen([sys.executable, "-u", str(script), *args], cwd=script.parent, env=dict(env))

    def forward(signum: int, _frame: Any) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {}
    if _main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, forward)
    try:
        rc = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return rc if rc >= 0 else 128 - rc


# --- fetching ---------------------------------------------------------------------------
def _from_root(root: str, relative: str, workdir: Path, s3: Any) -> Path:
    """``relative`` under ``root``: a folder, an s3:// prefix, or a zip (s3:// or local)."""
    rel = _safe_relative(relative)
    if root.endswith(".zip"):
        local_zip = _download(root, workdir / "scripts.zip", s3) if root.startswith("s3://") else Path(root)
        if not local_zip.is_file():
            raise RunnerError(f"scripts archive {root} not found")
        tree = workdir / "scripts"
        try:
            with zipfile.ZipFile(local_zip) as z:
                z.extractall(tree)  # zipfile drops absolute paths and ".." parts
        except zipfile.BadZipFile:
            raise RunnerError(f"{root} is not a zip archive") from None
        return _existing(tree, rel, root)
    if root.startswith("s3://"):
        return _download(f"{root.rstrip('/')}/{rel}", workdir / rel, s3)
    return _existing(Path(root), rel, root)


def _existing(tree: Path, rel: PurePosixPath, origin: str) -> Path:
    path = tree / rel
    if path.is_file():
        return path
    # A zip made of the folder itself (one top-level directory) holds the scripts one level down.
    subdirs = [p for p in tree.iterdir() if p.is_dir()] if tree.is_dir() else []
    if len(subdirs) == 1 and (subdirs[0] / rel).is_file():
        return subdirs[0] / rel
    if not tree.is_dir():
        raise RunnerError(f"{origin}: folder not found")
    raise RunnerError(f"{rel} not found in {origin}")


def _safe_relative(text: str) -> PurePosixPath:
    rel = PurePosixPath(text.strip().lstrip("/"))
    if not rel.parts or ".." in rel.parts:
        raise RunnerError(f"script path {text!r} must stay inside its root (no '..')")
    return rel


def _download(url: str, dest: Path, s3: Any) -> Path:
    bucket, _, key = url[len("s3://"):].partition("/")
    if not url.startswith("s3://") or not bucket or not key or key.endswith("/"):
        raise RunnerError(f"{url!r} is not an s3://bucket/key URL of a file")
    client = s3 if s3 is not None else _s3_client()
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        client.download_file(bucket, key, str(dest))
    except Exception as e:  # botocore's ClientError/NoCredentialsError...: say which object and why
        raise RunnerError(f"cannot fetch {url}: {e}") from None
    return dest


def _s3_client() -> Any:
    try:
        import boto3
    except ImportError:
        raise RunnerError("boto3 is needed to fetch s3:// scripts; install it in the job image") from None
    return boto3.client("s3")


def _s3_basename(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return name or "script.py"


def _json_list(env: Mapping[str, str], name: str) -> list[str]:
    raw = env.get(name, "").strip()
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RunnerError(f"{name} must be a JSON list of strings, got {raw[:200]!r}")
    return value


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in the tests
    sys.exit(main())
