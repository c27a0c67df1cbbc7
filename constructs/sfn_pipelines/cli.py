"""``sfn-pipelines``: check, plan and draw pipelines without CDK (it never imports aws_cdk).

Exit codes: 0 ok, 1 a run or check failed, 2 bad input (one ``path:line: message`` each).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfn_pipelines import __version__, limits
from sfn_pipelines.definition import definition_text
from sfn_pipelines.model import PipelineConfigError, Problem
from sfn_pipelines.plan import render_text
from sfn_pipelines.workflow import PipelineSet, Workflow, load_pipeline_set

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in the command line itself; printed as one line, exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except PipelineConfigError as e:
        _print_problems(e.problems, getattr(args, "dir", None))
        return EXIT_USAGE
    except UsageError as e:
        print(f"sfn-pipelines: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sfn-pipelines: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as the docs of `signal` advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sfn-pipelines",
        description="Turn ML pipeline script configs (pipelines.json/.yaml manifests or inline "
        "WORKBENCH_BATCH dicts) into Step Functions workflows. Scripts are parsed, never run.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(metavar="COMMAND")

    v = sub.add_parser("validate", help="check a pipelines folder; exit 2 with one line per problem")
    v.add_argument("dir", metavar="DIR", help="the pipelines folder")
    v.set_defaults(func=cmd_validate)

    pl = sub.add_parser("plan", help="show groups, steps, external inputs, added constraints and structure")
    pl.add_argument("dir", metavar="DIR")
    pl.add_argument("--json", action="store_true", help="machine-readable output (a stable contract)")
    pl.add_argument("--group", metavar="NAME", help="only this dependency group")
    pl.set_defaults(func=cmd_plan)

    g = sub.add_parser("graph", help="print the dependency graph as Mermaid or Graphviz dot")
    g.add_argument("dir", metavar="DIR")
    g.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    g.add_argument("--group", metavar="NAME", help="only this dependency group")
    g.set_defaults(func=cmd_graph)

    s = sub.add_parser("summary", help="summarise the state machines in a synthesized cdk.out folder")
    s.add_argument("cdk_out", metavar="CDK_OUT", nargs="?", default="cdk.out")
    s.set_defaults(func=cmd_summary)

    for extra in _extra_commands():
        extra(sub)
    return p


def _extra_commands():
    """Run-time commands live in their own modules (local runs; cloud runs), each exposing
    ``COMMANDS``: callables that add subparsers. Keeps validate/plan import-light."""
    import importlib

    commands = []
    for name in ("sfn_pipelines.cli_run", "sfn_pipelines.cli_cloud", "sfn_pipelines.cli_ops"):
        try:
            commands += importlib.import_module(name).COMMANDS
        except ModuleNotFoundError as e:  # pragma: no cover - module not written yet
            if e.name != name:
                raise
    return commands


# --- validate / plan / graph ------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    ps = _load(args.dir)
    steps = sum(len(w.group.steps) for w in ps.workflows)
    print(f"ok: {steps} steps in {len(ps.workflows)} dependency group(s) under {args.dir}")
    gated = sorted(s.id for w in ps.workflows for s in w.group.steps if s.options.approval is not None)
    if gated:
        print(f"note: approval gates on {', '.join(gated)}: enforced by execution_mode=step_functions only; "
              "a stack with execution_mode=sqs refuses them at synth (Batch has no way to wait for a person)")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    ps = _load(args.dir)
    workflows = _select(ps, args.group)
    if args.json:
        json.dump({"groups": [w.to_dict() for w in workflows]}, sys.stdout, indent=2)
        print()
        return EXIT_OK
    for i, w in enumerate(workflows):
        if i:
            print()
        _print_plan(w)
    return EXIT_OK


def _print_plan(w: Workflow) -> None:
    g, plan = w.group, w.plan
    print(f"group {g.name}  (pipelines: {', '.join(g.pipelines)}; {len(g.steps)} steps)")
    for s in g.steps:
        parents = g.parents(s.id)
        after = f"  after {', '.join(parents)}" if parents else ""
        hint = f"  ~{s.options.expected_minutes:g} min" if s.options.expected_minutes else ""
        print(f"  {s.id:<32} {s.script}{hint}{after}")
    if g.external_inputs:
        print(f"  external inputs: {', '.join(g.external_inputs)}")
    if plan.added:
        print("  added constraints (the order is not series-parallel; restructure to remove them):")
        for c in plan.added:
            print(f"    {', '.join(c.before)}  before  {', '.join(c.after)}")
    print("  structure:")
    print("\n".join("    " + line for line in render_text(plan.root).splitlines()))
    ratio = plan.makespan / plan.critical_path if plan.critical_path else 1.0
    t, tr = w.estimated_transitions(), w.estimated_transitions(with_retries=True)
    print(f"  critical path {plan.critical_path:g} min, planned makespan {plan.makespan:g} min "
          f"(x{ratio:.2f}); hints from expected_minutes, else 1 min per step")
    print(f"  per run: ~{t} state transitions, ${w.estimated_cost_usd():.5f} at "
          f"${limits.PRICE_PER_TRANSITION_USD * 1000:.3f}/1,000 (with every step's retries: {tr}, "
          f"${w.estimated_cost_usd(with_retries=True):.5f}); Batch compute billed separately")
    print(f"  ~{w.estimated_history_events()} history events per run of {limits.HISTORY_EVENTS_MAX:,} allowed")


def cmd_graph(args: argparse.Namespace) -> int:
    ps = _load(args.dir)
    workflows = _select(ps, args.group)
    print(to_dot(workflows) if args.format == "dot" else to_mermaid(workflows))
    return EXIT_OK


def to_mermaid(workflows: list[Workflow]) -> str:
    """Node ids are prefixed (``s_``/``x_``/``g_``) so no step or group name can be a
    Mermaid keyword (``end``) or collide with its own subgraph."""
    lines = ["flowchart TD"]
    for n, w in enumerate(workflows, 1):
        ext_ids = {ext: f"x{n}_{i}" for i, ext in enumerate(w.group.external_inputs)}
        lines.append(f'  subgraph g_{n}["{w.name}"]')
        for s in w.group.steps:
            lines.append(f'    s_{s.id}["{s.id}"]')
        for ext, node in ext_ids.items():
            lines.append(f'    {node}[("{ext}")]')
        lines.append("  end")
        for a, b in w.group.edges:
            lines.append(f"  s_{a} --> s_{b}")
        for s in w.group.steps:
            for r in s.inputs:
                if r.key in ext_ids:
                    lines.append(f"  {ext_ids[r.key]} -.-> s_{s.id}")
    return "\n".join(lines)


def to_dot(workflows: list[Workflow]) -> str:
    lines = ["digraph pipelines {", "  rankdir=TB;", "  node [shape=box];"]
    for w in workflows:
        lines.append(f'  subgraph "cluster_{w.name}" {{')
        lines.append(f'    label="{w.name}";')
        for s in w.group.steps:
            lines.append(f'    "{s.id}";')
        for ext in w.group.external_inputs:
            lines.append(f'    "{ext}" [shape=cylinder, style=dashed];')
        for a, b in w.group.edges:
            lines.append(f'    "{a}" -> "{b}";')
        for s in w.group.steps:
            for r in s.inputs:
                if r.key in w.group.external_inputs:
                    lines.append(f'    "{r.key}" -> "{s.id}" [style=dashed];')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines)


# --- summary of a cdk.out ------------------------------------------------------------
def cmd_summary(args: argparse.Namespace) -> int:
    out = Path(args.cdk_out)
    templates = sorted(out.glob("*.template.json"))
    if not templates:
        raise UsageError(f"no *.template.json in {out}; run the synth first")
    for path in templates:
        try:
            template = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: not a readable template ({e})") from None
        machines = {k: r for k, r in template.get("Resources", {}).items()
                    if r.get("Type") == "AWS::StepFunctions::StateMachine"}
        print(f"{path}  ({path.stat().st_size:,} bytes, {len(machines)} state machine(s))")
        for logical_id, res in sorted(machines.items()):
            props = res.get("Properties", {})
            definition = definition_text(props.get("DefinitionString") or props.get("Definition") or {})
            try:
                states = _count_states(json.loads(definition))
            except (ValueError, AttributeError, KeyError, TypeError):
                states = {}
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(states.items()))
            print(f"  {props.get('StateMachineName', logical_id)}: {sum(states.values())} states "
                  f"({kinds}); definition {len(definition):,} bytes of {limits.DEFINITION_MAX_BYTES:,}")
    return EXIT_OK


def _count_states(definition: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in definition.get("States", {}).values():
        counts[state["Type"]] = counts.get(state["Type"], 0) + 1
        for branch in state.get("Branches", []):
            for k, n in _count_states(branch).items():
                counts[k] = counts.get(k, 0) + n
    return counts


# --- helpers -----------------------------------------------------------------------------
def split_script_args(parser: argparse.ArgumentParser) -> None:
    """Send everything after the first ``--`` to the scripts verbatim, as ``script_args``.

    argparse cannot mix an optional positional with trailing args, so the split happens
    before it parses (used by ``run`` and ``start``)."""
    parse = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        rest: list[str] = []
        if "--" in args:
            i = args.index("--")
            args, rest = args[:i], args[i + 1:]
        ns, extras = parse(args, namespace)
        ns.script_args = rest
        return ns, extras

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _load(directory: str) -> PipelineSet:
    ps = load_pipeline_set(directory)
    _print_problems(ps.warnings, directory)
    return ps


def _select(ps: PipelineSet, group: str | None) -> list[Workflow]:
    if group is None:
        return ps.workflows
    try:
        return [ps.workflow(group)]
    except KeyError as e:
        raise UsageError(e.args[0]) from None


def _print_problems(problems: list[Problem], directory: str | None) -> None:
    for p in problems:
        print(p.render(directory), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
