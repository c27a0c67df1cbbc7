"""The default app's stack: Batch, the scripts asset, and one state machine per group."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra.batch_environment import batch_environment
from infra.launcher_construct import PipelineLauncher
from infra.nag import acknowledge_findings
from infra.notifications import PipelineNotifications
from infra.schedules import PipelineSchedules
from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine
from sfn_pipelines.workflow import PipelineSet

SCRIPT_EXCLUDES = ["**/__pycache__", "**/*.pyc", ".local-runs", ".*"]


class PipelinesStack(cdk.Stack):
    """Everything one pipelines folder needs to run on Step Functions and Batch."""

    def __init__(self, scope: Construct, construct_id: str, *, pipeline_set: PipelineSet,
                 on_failure: str = "isolate", execution_mode: str = "step_functions", **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        env = batch_environment(self)
        scripts = s3_assets.Asset(self, "Scripts", path=str(Path(pipeline_set.root)), exclude=SCRIPT_EXCLUDES,
                                  display_name="pipeline scripts")
        if env.job_role is not None:
            scripts.grant_read(env.job_role)
        self.machines: dict[str, WorkbenchPipelineStateMachine] = {}
        for workflow in pipeline_set.workflows:
            self.machines[workflow.name] = WorkbenchPipelineStateMachine(
                self, f"Pipeline-{workflow.name}",
                workflow=workflow,
                job_queue=env.job_queue,
                job_definitions=env.job_definitions,
                scripts_archive_url=scripts.s3_object_url,
                on_failure=on_failure,  # type: ignore[arg-type]
                state_machine_name=f"{construct_id}-{workflow.name}",
            )
            cdk.CfnOutput(self, f"StateMachineArn-{workflow.name}",
                          value=self.machines[workflow.name].state_machine.state_machine_arn)
        if self.machines:
            self.launcher = PipelineLauncher(self, "Launcher", pipeline_set=pipeline_set, machines=self.machines,
                                             execution_mode=execution_mode, job_queue=env.job_queue,
                                             job_definitions=env.job_definitions)
            cdk.CfnOutput(self, "LauncherFunctionName", value=self.launcher.function.function_name)
            self.notifications = PipelineNotifications(self, "Notifications", machines=self.machines,
                                                       job_queues=[env.job_queue], execution_mode=execution_mode)
            cdk.CfnOutput(self, "NotificationsTopicArn", value=self.notifications.topic.topic_arn)
            self.schedules = PipelineSchedules(self, "Schedules", machines=self.machines,
                                               launcher=self.launcher.function)
        acknowledge_findings(self, env=env, machines=self.machines, launcher=getattr(self, "launcher", None))
