"""Run a pipelines folder on this machine, one process per step, with the cloud's semantics.

Steps start as soon as everything they wait for has ended (their nearest *selected*
ancestors, the order a state machine or the SQS backend keeps), up to ``max_parallel`` at
once; the plan's Parallel structure is not needed here. Failure handling is the state
machine's "isolate" mode: a step downstream of a failed or skipped step is skipped (never
started), independent steps finish, and the run fails naming both. Steps left out of the
selection count as up to date: not run, their dependants still run (unless a failure
upstream of them stops them).

Each step runs as ``sys.executable -u <script> <args>`` in the script's folder, in its own
process group, with the environment its Batch job gets (``jobs.job_spec``) plus
``PIPELINE_RUN_ID``, ``PIPELINE_ARTIFACTS_DIR`` and ``PIPELINE_RUN_ARGS``. Output goes to
``<logs dir>/<run id>/<step>.log``; ``run.json`` beside the logs records every step's status
and start/end times. POSIX only (process groups).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from sfn_pipelines import runner
from sfn_pipelines.jobs import RUN_ID_ENV, job_spec, run_environment
from sfn_pipelines.selection import select_steps
from sfn_pipelines.workflow import PipelineSet

ARTIFACTS_ENV = "PIPELINE_ARTIFACTS_DIR"
DEFAULT_BASE = Path(".local-runs")  # under the current directory; gitignored
# What a job's own overrides decide; stale values in the caller's shell must not leak in.
JOB_OWNED_ENV = frozenset({
    "PIPELINE_GROUP", "PIPELINE_NAME", "PIPELINE_STEP", "PIPELINE_SCRIPT", "PIPELINE_INPUTS",
    "PIPELINE_OUTPUTS", "PIPELINE_MODE", runner.ARGS_ENV, runner.RUN_ARGS_ENV, runner.ARCHIVE_ENV,
    runner.DIR_ENV, runner.S3_SCRIPT_ENV, RUN_ID_ENV, ARTIFACTS_ENV,
})
STOP_GRACE_SECONDS = 5.0

# Final statuses. "external": a script this machine cannot run, allowed and treated as up to date.
SUCCEEDED, FAILED, SKIPPED, STOPPED, NOT_STARTED, EXTERNAL = (
    "succeeded", "failed", "skipped", "stopped", "not started", "external")
HALTING = frozenset({FAILED, SKIPPED, STOPPED, NOT_STARTED})  # dependants of these do not run
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


class LocalRunError(Exception):
    """A mistake in the run request (selection, options): one line, exit 2."""


@dataclass(frozen=True)
class LocalStep:
    id: str
    group: str
    script: str  # as declared
    path: Path | None  # the file to run; None when this machine cannot run it
    why_not: str  # why ``path`` is None
    env: dict[str, str]
    argv: tuple[str, ...]
    # Nearest selected ancestors: this step starts after they end, and is skipped if one of
    # them did not succeed, so a failure stops everything downstream even through unselected
    # steps (as the state machine's SKIPPED markers and Batch dependsOn do).
    after: tuple[str, ...]
    priority: float = 0.0  # expected minutes to the end of the run from here: longest first


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    root: Path
    steps: dict[str, LocalStep]  # selected, in dependency order
    not_selected: tuple[str, ...]
    artifacts_dir: Path
    logs_dir: Path  # this run's folder
    max_parallel: int
    allow_missing: bool


@dataclass
class StepRecord:
    status: str = "pending"
    started: float | None = None  # seconds since the run started
    finished: float | None = None
    exit_code: int | None = None
    detail: str = ""
    log: str | None = None


@dataclass
class RunResult:
    plan: RunPlan
    records: dict[str, StepRecord]
    seconds: float
    interrupted: int | None = None  # the signal that stopped the run
    exit_code: int = EXIT_OK
    events: list[tuple[float, str, str]] = field(default_factory=list)

    def with_status(self, *statuses: str) -> list[str]:
        return [s for s, r in self.records.items() if r.status in statuses]


# --- planning -------------------------------------------------------------------------------
def new_run_id() -> str:
    """``local-20260131T120000Z-3fa9c1``: sortable, a valid execution/job name part."""
    return time.strftime("local-%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def prepare(ps: PipelineSet, patterns: Sequence[str] = (), *, run_id: str | None = None,
            artifacts_dir: str | Path | None = None, logs_dir: str | Path | None = None,
            max_parallel: int | None = None, args: Sequence[str] = (), allow_missing: bool = False,
            environ: Mapping[str, str] | None = None) -> RunPlan:
    """Select steps and work out each one's script, environment and what it waits for."""
    environ = dict(os.environ if environ is None else environ)
    max_parallel = max_parallel if max_parallel is not None else (os.cpu_count() or 1)
    if max_parallel < 1:
        raise LocalRunError(f"--max-parallel must be at least 1, got {max_parallel}")
    run_id = run_id or new_run_id()
    if not run_id.replace("-", "").replace("_", "").isalnum() or len(run_id) > 80:
        raise LocalRunError(f"run id {run_id!r} must be 1-80 letters, digits, '-' or '_'")
    try:
        selection = select_steps([w.to_dict() for w in ps.workflows], list(patterns))
        roots = runner.ref_roots(environ)
    except (ValueError, runner.RunnerError) as e:
        raise LocalRunError(str(e)) from None
    selected = {sid for ids in selection.values() for sid in ids}
    artifacts = Path(artifacts_dir or DEFAULT_BASE / "artifacts").resolve()
    logs = Path(logs_dir or DEFAULT_BASE / "logs").resolve() / run_id

    parents: dict[str, list[str]] = {}
    steps_by_id = {}
    for w in ps.workflows:
        for s in w.group.steps:
            parents[s.id] = w.group.parents(s.id)
            steps_by_id[s.id] = (w.group.name, s)
    order = _topological(parents)
    base_env = {k: v for k, v in environ.items() if k not in JOB_OWNED_ENV}

    steps: dict[str, LocalStep] = {}
    for sid in order:
        if sid not in selected:
            continue
        group, step = steps_by_id[sid]
        # exactly what the step's Batch job gets in a cloud run (jobs.run_environment)
        env = {**base_env, **run_environment(job_spec(step, group=group), run_id, args),
               ARTIFACTS_ENV: str(artifacts)}
        path, why_not = _script_path(ps.root, step.script, step.script_kind, roots)
        steps[sid] = LocalStep(
            id=sid, group=group, script=step.script, path=path, why_not=why_not, env=env,
            argv=tuple(runner.script_args(env)),
            after=tuple(sorted(_nearest_selected(sid, parents, selected))),
        )
    _set_priorities(steps, {sid: steps_by_id[sid][1].options.expected_minutes or 1.0 for sid in steps})
    return RunPlan(run_id=run_id, root=Path(ps.root).resolve(), steps=steps,
                   not_selected=tuple(s for s in order if s not in selected), artifacts_dir=artifacts,
                   logs_dir=logs, max_parallel=max_parallel, allow_missing=allow_missing)


def waves(plan: RunPlan) -> list[list[str]]:
    """Steps by earliest possible start: wave n waits only on waves before it."""
    level: dict[str, int] = {}
    for sid, st in plan.steps.items():  # dependency order
        level[sid] = 1 + max((level[a] for a in st.after), default=-1)
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for sid, n in level.items():
        out[n].append(sid)
    return out


def _script_path(root: Path, script: str, kind: str, roots: Mapping[str, str]) -> tuple[Path | None, str]:
    if kind == "local":
        return (root / script).resolve(), ""
    if kind == "s3":
        return None, f"{script} is an s3:// script, which local runs do not fetch"
    prefix = runner.ref_prefix(script) or f"{kind}:"
    where = roots.get(prefix)
    hint = f"set {runner.REF_ROOTS_ENV}='{{\"{prefix}\": \"/local/folder\"}}' to run it"
    if where is None:
        return None, f"{script} lives outside this repo; {hint}"
    if where.startswith("s3://") or where.endswith(".zip"):
        return None, f"{runner.REF_ROOTS_ENV} maps {prefix} to {where}, which local runs do not fetch; {hint}"
    rel = script[len(prefix):].lstrip("/")
    path = (Path(where) / rel).resolve()
    if ".." in Path(rel).parts or not path.is_file():
        return None, f"{script}: {rel} not found under {where} ({runner.REF_ROOTS_ENV})"
    return path, ""


def _set_priorities(steps: dict[str, LocalStep], minutes: Mapping[str, float]) -> None:
    """Critical-path list scheduling: when slots are short, start what the most work waits on."""
    children: dict[str, list[str]] = {sid: [] for sid in steps}
    for st in steps.values():
        for a in st.after:
            children[a].append(st.id)
    for sid in reversed(list(steps)):  # reverse dependency order: children first
        rest = max((steps[c].priority for c in children[sid]), default=0.0)
        steps[sid] = replace(steps[sid], priority=minutes[sid] + rest)


def _topological(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Kahn's order, ties by id: stable output for the same tree (the graph has no cycles)."""
    children: dict[str, list[str]] = {s: [] for s in parents}
    waiting = {s: len(ps) for s, ps in parents.items()}
    for s, ps in parents.items():
        for p in ps:
            children[p].append(s)
    ready = sorted(s for s, n in waiting.items() if n == 0)
    order: list[str] = []
    while ready:
        s = ready.pop(0)
        order.append(s)
        for c in children[s]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
        ready.sort()
    return order


def _nearest_selected(sid: str, parents: Mapping[str, Sequence[str]], selected: set[str]) -> set[str]:
    found: set[str] = set()
    stack, seen = list(parents[sid]), set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        if p in selected:
            found.add(p)
        else:
            stack.extend(parents[p])
    return found


# --- running -------------------------------------------------------------------------------
class _Terminated(Exception):
    """SIGTERM arrived: stop like Ctrl-C."""


class Progress:
    """One line per state change; on a terminal also a redrawn status line (plain ANSI)."""

    def __init__(self, out: IO[str], total: int, tty: bool | None = None) -> None:
        self.out = out
        self.total = total
        self.tty = out.isatty() if tty is None else tty
        self._status = False

    def line(self, t: float, word: str, step: str, detail: str = "") -> None:
        self._clear()
        self.out.write(f"[{t:7.1f}s] {word:<10} {step}{'  ' + detail if detail else ''}\n")
        self.out.flush()

    def status(self, t: float, running: Iterable[str], ended: int, failed: int) -> None:
        if not self.tty:
            return
        names = ", ".join(sorted(running))
        text = f"[{t:7.1f}s] {ended}/{self.total} ended, {failed} not ok; running: {names or '-'}"
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self._clear()
        self.out.write(text[:width])
        self.out.flush()
        self._status = True

    def text(self, text: str) -> None:
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    def _clear(self) -> None:
        if self._status:
            self.out.write("\r\x1b[K")
            self._status = False


class LocalRun:
    """Executes a RunPlan. ``stop_grace`` seconds between SIGTERM and SIGKILL on interrupt."""

    def __init__(self, plan: RunPlan, out: IO[str] | None = None, *, tty: bool | None = None,
                 stop_grace: float = STOP_GRACE_SECONDS) -> None:
        self.plan = plan
        self.progress = Progress(out or sys.stdout, len(plan.steps), tty)
        self.stop_grace = stop_grace
        self.records = {sid: StepRecord() for sid in plan.steps}
        self.events: list[tuple[float, str, str]] = []
        self._procs: dict[str, subprocess.Popen] = {}
        self._ended: queue.Queue[tuple[str, int]] = queue.Queue()
        self._t0 = 0.0

    def execute(self) -> RunResult:
        self.plan.logs_dir.mkdir(parents=True, exist_ok=True)
        self.plan.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self._t0 = time.monotonic()
        interrupted: int | None = None
        previous = self._install_sigterm()
        try:
            self._loop()
        except (KeyboardInterrupt, _Terminated) as e:
            interrupted = signal.SIGTERM if isinstance(e, _Terminated) else signal.SIGINT
            self._stop_all()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        result = RunResult(plan=self.plan, records=self.records, seconds=self._now(),
                           interrupted=interrupted, events=self.events)
        if interrupted is not None:
            result.exit_code = EXIT_SIGTERM if interrupted == signal.SIGTERM else EXIT_SIGINT
        elif any(r.status in HALTING for r in self.records.values()):
            result.exit_code = EXIT_FAILED
        write_record(result)
        return result

    # The scheduler: decide every step that can be decided, then wait for one to end.
    def _loop(self) -> None:
        pending = list(self.plan.steps)
        while pending or self._procs:
            pending = self._dispatch(pending)
            if not self._procs:
                if pending:  # nothing can start and nothing runs: cannot happen in a DAG
                    for sid in pending:
                        self._end(sid, NOT_STARTED, "waits on a step that never ended")
                    return
                break
            try:
                sid, rc = self._ended.get(timeout=1.0)
            except queue.Empty:
                self._status()
                continue
            self._finish(sid, rc)

    def _dispatch(self, pending: list[str]) -> list[str]:
        changed = True
        while changed:
            changed = False
            for sid in sorted(pending, key=lambda s: -self.plan.steps[s].priority):
                st = self.plan.steps[sid]
                bad = [p for p in st.after if self.records[p].status in HALTING]
                if bad:
                    self._end(sid, SKIPPED, f"after {', '.join(bad)} did not succeed")
                elif any(self.records[a].status in ("pending", "running") for a in st.after):
                    continue
                elif st.path is None:
                    if self.plan.allow_missing:
                        self._end(sid, EXTERNAL, f"not run: {st.why_not} (--allow-missing: treated as up to date)")
                    else:
                        self._end(sid, FAILED, f"not runnable locally: {st.why_not}, or pass --allow-missing")
                elif len(self._procs) < self.plan.max_parallel:
                    self._start(st)
                else:
                    continue
                pending.remove(sid)
                changed = True
        self._status()
        return pending

    def _start(self, st: LocalStep) -> None:
        rec = self.records[st.id]
        log_path = self.plan.logs_dir / f"{st.id}.log"
        rec.log = str(log_path)
        cmd = [sys.executable, "-u", str(st.path), *st.argv]
        rec.status, rec.started = "running", self._now()
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"# sfn-pipelines local run {self.plan.run_id}, step {st.id} ({st.group})\n"
                      f"# {' '.join(cmd)}\n# cwd {st.path.parent}\n")
            log.flush()
            try:
                proc = self._procs[st.id] = subprocess.Popen(
                    cmd, cwd=st.path.parent, env=st.env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as e:
                self._end(st.id, FAILED, f"could not start: {e}")
                return
        self._event(st.id, "started")
        self.progress.line(rec.started, "start", st.id)
        threading.Thread(target=self._wait, args=(st.id, proc), daemon=True).start()

    def _wait(self, sid: str, proc: subprocess.Popen) -> None:
        """Wait for the step; then end what it left running in its process group (a Batch
        container would end with it). WNOWAIT keeps the pid, hence the group id, reserved."""
        with contextlib.suppress(AttributeError, OSError):  # no waitid: reap at once
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        _kill_group(proc.pid, signal.SIGKILL)
        self._ended.put((sid, proc.wait()))

    def _finish(self, sid: str, rc: int) -> None:
        self._procs.pop(sid, None)
        rec = self.records[sid]
        rec.exit_code = rc
        took = self._now() - (rec.started or 0.0)
        if rc == 0:
            self._end(sid, SUCCEEDED, f"{took:.1f}s")
        else:
            code = f"signal {-rc}" if rc < 0 else f"exit {rc}"
            self._end(sid, FAILED, f"{code} after {took:.1f}s; log {_rel(rec.log)}")
        _footer(rec, rc, took)

    def _end(self, sid: str, status: str, detail: str = "") -> None:
        rec = self.records[sid]
        rec.status, rec.detail, rec.finished = status, detail, self._now()
        self._event(sid, status)
        word = {SUCCEEDED: "ok", FAILED: "FAILED"}.get(status, status)
        self.progress.line(rec.finished, word, sid, detail)

    def _stop_all(self) -> None:
        """Ctrl-C/SIGTERM: TERM every running group, KILL what outlives the grace period."""
        self.progress.text("interrupted: stopping running steps...")
        running = dict(self._procs)
        for proc in running.values():
            _kill_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        with contextlib.suppress(KeyboardInterrupt, _Terminated):  # asked twice: do not wait
            self._collect(running, deadline)
        for proc in running.values():
            _kill_group(proc.pid, signal.SIGKILL)
        self._collect(running, time.monotonic() + 5.0)
        for sid, rec in self.records.items():
            if rec.status == "pending":
                self._end(sid, NOT_STARTED, "run interrupted")

    def _collect(self, running: dict[str, subprocess.Popen], deadline: float) -> None:
        while running and time.monotonic() < deadline:
            try:
                sid, rc = self._ended.get(timeout=0.05)
            except queue.Empty:
                continue
            self._procs.pop(sid, None)
            proc = running.pop(sid, None)
            rec = self.records[sid]
            rec.exit_code = rc if proc is not None else rec.exit_code
            took = self._now() - (rec.started or 0.0)
            self._end(sid, STOPPED, f"interrupted after {took:.1f}s")
            _footer(rec, rc, took)

    def _status(self) -> None:
        ended = sum(1 for r in self.records.values() if r.status not in ("pending", "running"))
        bad = sum(1 for r in self.records.values() if r.status in HALTING)
        self.progress.status(self._now(), self._procs, ended, bad)

    def _event(self, sid: str, what: str) -> None:
        self.events.append((round(self._now(), 4), sid, what))

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _install_sigterm(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_term(_signum: int, _frame: Any) -> None:
            raise _Terminated()

        return signal.signal(signal.SIGTERM, on_term)


def _footer(rec: StepRecord, rc: int, took: float) -> None:
    if rec.log:
        with open(rec.log, "a", encoding="utf-8") as log:
            log.write(f"\n# {rec.status}: exit code {rc} after {took:.2f}s\n")


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# --- reporting -----------------------------------------------------------------------------
def write_record(result: RunResult) -> Path:
    """``run.json`` beside the logs: what ran, in which order, how it ended."""
    plan = result.plan
    doc = {
        "run_id": plan.run_id, "root": str(plan.root), "exit_code": result.exit_code,
        "seconds": round(result.seconds, 3), "interrupted": result.interrupted is not None,
        "artifacts_dir": str(plan.artifacts_dir), "max_parallel": plan.max_parallel,
        "not_selected": list(plan.not_selected),
        "steps": {sid: {"status": r.status, "started": _round(r.started), "finished": _round(r.finished),
                        "exit_code": r.exit_code, "detail": r.detail, "log": r.log,
                        "after": list(plan.steps[sid].after)}
                  for sid, r in result.records.items()},
        "events": [{"t": t, "step": s, "event": e} for t, s, e in result.events],
    }
    path = plan.logs_dir / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def summary(result: RunResult, tail_lines: int = 5) -> str:
    """Counts, then every failed step (with its last log lines), skipped and stopped step."""
    counts: dict[str, int] = {}
    for r in result.records.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    order = (SUCCEEDED, FAILED, SKIPPED, STOPPED, NOT_STARTED, EXTERNAL)
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    verdict = {EXIT_OK: "succeeded", EXIT_FAILED: "FAILED"}.get(result.exit_code, "INTERRUPTED")
    extra = f"; {len(result.plan.not_selected)} not selected (up to date)" if result.plan.not_selected else ""
    lines = [f"run {result.plan.run_id} {verdict} after {result.seconds:.1f}s: {', '.join(parts) or 'no steps'}{extra}"]
    for status, title in ((FAILED, "failed"), (SKIPPED, "skipped (an upstream step did not succeed)"),
                          (STOPPED, "stopped"), (NOT_STARTED, "not started"), (EXTERNAL, "not run here")):
        ids = result.with_status(status)
        if not ids:
            continue
        lines.append(f"{title}: {', '.join(ids)}")
        for sid in ids:
            rec = result.records[sid]
            lines.append(f"  {sid}: {rec.detail}")
            if status == FAILED and rec.log:
                lines += [f"    | {t}" for t in _tail(rec.log, tail_lines)]
    lines.append(f"logs: {_rel(str(result.plan.logs_dir))}   artifacts: {_rel(str(result.plan.artifacts_dir))}")
    return "\n".join(lines)


def describe_dry_run(plan: RunPlan) -> str:
    lines = [f"dry run {plan.run_id}: {len(plan.steps)} step(s) in {len(waves(plan))} wave(s), "
             f"up to {plan.max_parallel} at once; nothing is run"]
    for i, wave in enumerate(waves(plan), 1):
        lines.append(f"  wave {i}: {', '.join(wave)}")
    for st in plan.steps.values():
        if st.after:
            lines.append(f"  {st.id} after {', '.join(st.after)}")
    missing = [st for st in plan.steps.values() if st.path is None]
    for st in missing:
        fate = "treated as up to date (--allow-missing)" if plan.allow_missing else "would fail the run"
        lines.append(f"  not runnable locally: {st.id}: {st.why_not}; {fate}")
    if plan.not_selected:
        lines.append(f"  not selected (treated as up to date): {', '.join(plan.not_selected)}")
    lines.append(f"  artifacts: {_rel(str(plan.artifacts_dir))}   logs: {_rel(str(plan.logs_dir))}")
    return "\n".join(lines)


def _tail(path: str, n: int) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = [t for t in text.splitlines() if t.strip() and not t.startswith("# ")]
    return lines[-n:]


def _rel(path: str | None) -> str:
    if not path:
        return ""
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def _round(t: float | None) -> float | None:
    return None if t is None else round(t, 4)
