"""What one step's Batch job looks like, shared by the state machine and the SQS backend.

Both backends build their SubmitJob calls from ``job_spec``, so the same request gives
the same jobs (name, definition, overrides, script) whichever way it runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sfn_pipelines import limits
from sfn_pipelines.model import Step

RUN_ID_ENV = "PIPELINE_RUN_ID"
RUN_ARGS_ENV = "PIPELINE_RUN_ARGS"  # script args forwarded for one run, a JSON list ("[]" if none)
# Cost allocation: every job is tagged with its pipeline, group, step and run id.
TAG_PREFIX = "sfn-pipelines:"
RUN_ID_TAG = f"{TAG_PREFIX}run-id"


@dataclass(frozen=True)
class JobSpec:
    step: str
    job_definition: str | None  # a name configured in the app; None = the default
    job_queue: str | None  # likewise
    environment: dict[str, str]  # everything but the run id, which is known at run time
    vcpus: float | None
    memory: int | None  # MiB
    gpus: int | None
    timeout_minutes: int | None
    retries: int
    tags: dict[str, str]  # all but RUN_ID_TAG, known at run time


def job_spec(step: Step, *, group: str, scripts_archive: str | None = None) -> JobSpec:
    """The job for ``step``: its script reference, artifacts and resources as overrides."""
    o = step.options
    env = {
        "PIPELINE_GROUP": group,
        "PIPELINE_NAME": step.pipeline,
        "PIPELINE_STEP": step.id,
        "PIPELINE_SCRIPT": step.script,
        "PIPELINE_INPUTS": json.dumps([_written(r) for r in step.inputs]),
        "PIPELINE_OUTPUTS": json.dumps([r.key for r in step.outputs]),
    }
    if step.script_kind == "local" and scripts_archive:
        env["PIPELINE_SCRIPTS_ARCHIVE"] = scripts_archive
    if step.script_kind == "s3":
        env["ML_PIPELINE_S3_PATH"] = step.script  # what Workbench's own image downloads
    if step.mode:
        env["PIPELINE_MODE"] = step.mode
    if o.args:
        env["PIPELINE_ARGS"] = json.dumps(list(o.args))
    env.update(dict(o.environment))
    return JobSpec(
        step=step.id,
        job_definition=o.job_definition,
        job_queue=o.job_queue,
        environment=env,
        vcpus=o.vcpus,
        memory=o.memory,
        gpus=o.gpus,
        timeout_minutes=o.timeout,
        retries=o.retries or 0,
        tags={f"{TAG_PREFIX}group": group, f"{TAG_PREFIX}pipeline": step.pipeline, f"{TAG_PREFIX}step": step.id},
    )


def run_environment(spec: JobSpec, run_id: str, args: Sequence[str] | None = None) -> dict[str, str]:
    """The complete environment of a step's job in one run, in every backend.

    Forwarded args are compact JSON, as ``States.JsonToString`` writes it in the machine.
    """
    return {**spec.environment, RUN_ID_ENV: run_id,
            RUN_ARGS_ENV: json.dumps(list(args or []), separators=(",", ":"))}


def overrides_size(spec: JobSpec) -> int:
    """Characters the container overrides take, against Batch's 8,192 limit (run id included)."""
    env = [{"name": k, "value": v} for k, v in spec.environment.items()]
    env.append({"name": RUN_ID_ENV, "value": "x" * limits.EXECUTION_NAME_MAX})
    return len(json.dumps({"environment": env, "resourceRequirements": [{"type": "VCPU", "value": "16"}] * 3}))


def _written(ref) -> str:
    return ":".join([ref.key, *ref.flags])
