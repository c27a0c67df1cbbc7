#!/usr/bin/env python3
"""The default CDK app: one stack of state machines for the pipelines folder.

Context: ``pipelines_dir`` (default ``pipelines``), ``stack_name`` (default
``SfnPipelines``), ``on_failure`` (``isolate`` | ``stop_all``), ``execution_mode``
(``step_functions`` | ``sqs``: how the launcher runs them), ``nag`` (true: run the cdk-nag
AwsSolutions checks), ``notify_emails`` / ``notify_on_success`` (``infra/notifications.py``),
``schedules`` (``infra/schedules.py``), plus the Batch keys in ``infra/batch_environment.py``.
A bad pipelines folder exits 2 with one line per problem.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "constructs"))  # works without `pip install -e .` too

import aws_cdk as cdk  # noqa: E402

from infra.nag import enable_checks  # noqa: E402
from infra.pipelines_stack import PipelinesStack  # noqa: E402
from sfn_pipelines.model import PipelineConfigError  # noqa: E402
from sfn_pipelines.workflow import load_pipeline_set  # noqa: E402


def pipelines_folder(app: cdk.App) -> Path:
    """Context ``pipelines_dir``, relative to the current directory, else to this repo."""
    folder = Path(app.node.try_get_context("pipelines_dir") or "pipelines")
    if not folder.is_absolute():
        folder = (Path.cwd() / folder) if (Path.cwd() / folder).exists() else HERE / folder
    return folder


def shown(folder: Path) -> str:
    """The folder as a user finds it from where they ran synth."""
    try:
        return os.path.relpath(folder) if folder.resolve().is_relative_to(Path.cwd()) else str(folder)
    except ValueError:
        return str(folder)


def build_app(app: cdk.App | None = None) -> cdk.App:
    app = app or cdk.App(outdir=os.environ.get("CDK_OUTDIR") or str(HERE / "cdk.out"))
    enable_checks(app)  # context nag=true
    folder = pipelines_folder(app)
    pipeline_set = load_pipeline_set(folder)
    for warning in pipeline_set.warnings:
        print(warning.render(shown(folder)), file=sys.stderr)
    stack_name = app.node.try_get_context("stack_name") or "SfnPipelines"
    PipelinesStack(app, stack_name, pipeline_set=pipeline_set,
                   on_failure=app.node.try_get_context("on_failure") or "isolate",
                   execution_mode=app.node.try_get_context("execution_mode") or "step_functions",
                   suppress_template_indentation=True,
                   description="ML pipelines as Step Functions workflows (sfn-pipelines)")
    return app


def main() -> int:
    app = cdk.App(outdir=os.environ.get("CDK_OUTDIR") or str(HERE / "cdk.out"))
    try:
        build_app(app)
    except PipelineConfigError as e:
        folder = shown(pipelines_folder(app))
        print(f"sfn-pipelines: {len(e.problems)} problem(s) in {folder}:", file=sys.stderr)
        for problem in e.problems:
            print(problem.render(folder), file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"sfn-pipelines: {e}", file=sys.stderr)
        return 2
    try:
        app.synth()
    except RuntimeError as e:  # how jsii surfaces a failed validation (cdk-nag's findings are printed above)
        if "ValidationFailed" not in str(e):
            raise
        print(f"sfn-pipelines: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
