"""What the deployment tells the launcher and the consumer: environment and plan.json."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfn_pipelines import cloud

MODES = ("step_functions", "sqs")


@dataclass
class Config:
    mode: str
    plan: dict
    state_machines: dict[str, str]  # group -> ARN
    arns: dict[str, dict[str, str]]  # {"definitions": {name: ARN}, "queues": {"" (default) or name: ARN}}
    queue_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """``EXECUTION_MODE``, ``LAUNCH_PLAN`` (default: plan.json beside this file),
        ``STATE_MACHINES`` (JSON group -> ARN) or ``STATE_MACHINE_ARN_PREFIX`` + the plan's
        machine names, ``JOB_DEFINITIONS`` / ``JOB_QUEUES`` (JSON name -> ARN), ``QUEUE_URL``;
        ``{"$env": NAME}`` values in the plan come from the environment too."""
        env = os.environ if env is None else env
        mode = env.get("EXECUTION_MODE", "step_functions")
        if mode not in MODES:
            raise cloud.CloudError(f"EXECUTION_MODE must be one of {', '.join(MODES)}. Received {mode!r}.")
        path = Path(env.get("LAUNCH_PLAN") or Path(__file__).with_name("plan.json"))
        plan = cloud.resolve_env_refs(json.loads(path.read_text()), env)
        if plan.get("version") != cloud.PLAN_VERSION:
            raise cloud.CloudError(f"{path.name} is version {plan.get('version')}, this code reads version "
                                   f"{cloud.PLAN_VERSION}: redeploy")
        machines = json.loads(env.get("STATE_MACHINES") or "{}")
        prefix = env.get("STATE_MACHINE_ARN_PREFIX", "")
        for g in plan["groups"]:
            if g["name"] not in machines and g.get("state_machine") and prefix:
                machines[g["name"]] = prefix + g["state_machine"]
        arns = {"definitions": json.loads(env.get("JOB_DEFINITIONS") or "{}"),
                "queues": json.loads(env.get("JOB_QUEUES") or "{}")}
        return cls(mode=mode, plan=plan, state_machines=machines, arns=arns, queue_url=env.get("QUEUE_URL"))


@dataclass
class Clients:
    """boto3 clients made on first use; tests pre-fill ``made`` with moto or stub clients."""

    made: dict[str, Any] = field(default_factory=dict)

    def __call__(self, service: str) -> Any:
        if service not in self.made:
            import boto3  # from the Lambda runtime

            self.made[service] = boto3.client(service)
        return self.made[service]
