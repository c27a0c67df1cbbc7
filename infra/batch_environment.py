"""The Batch side of the app: created from scratch, or imported from context keys.

Mirrors what Workbench runs today (workbench-format.md): one Fargate compute
environment, one queue, job definitions small/medium/large, 24 h timeout, 3 attempts
retrying only infrastructure failures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.job_image import default_job_image

# name -> (vCPU, memory MiB)
JOB_SIZES: dict[str, tuple[float, int]] = {"small": (2, 4096), "medium": (4, 8192), "large": (8, 16384)}
JOB_COMMAND = ["python", "-m", "sfn_pipelines.runner"]
INFRA_RETRY_REASONS = ("Timeout waiting for network interface*", "Host EC2*")


@dataclass
class BatchEnvironment:
    job_queue: batch.IJobQueue
    job_definitions: dict[str, batch.IJobDefinition]
    job_role: iam.IRole | None  # None when imported: the caller's definitions carry their own


def batch_environment(scope: Construct, *, image: str | None = None, max_vcpus: int = 40) -> BatchEnvironment:
    """Import the queue and definitions named by context keys, or create them.

    Context keys: ``job_queue_arn`` and ``job_definition_arns`` (a JSON object or dict
    of name -> ARN) import existing ones; ``job_image`` replaces the default image (built
    at deploy from infra/job_image) by a registry image that runs the same command.
    """
    node = scope.node
    queue_arn = node.try_get_context("job_queue_arn")
    def_arns = node.try_get_context("job_definition_arns")
    if queue_arn or def_arns:
        if not (queue_arn and def_arns):
            raise ValueError("context keys job_queue_arn and job_definition_arns go together: give both")
        if isinstance(def_arns, str):
            def_arns = json.loads(def_arns)
        queue = batch.JobQueue.from_job_queue_arn(scope, "ImportedJobQueue", queue_arn)
        defs = {name: batch.EcsJobDefinition.from_job_definition_arn(scope, f"ImportedJobDefinition-{name}", arn)
                for name, arn in sorted(def_arns.items())}
        return BatchEnvironment(job_queue=queue, job_definitions=defs, job_role=None)
    image = image or node.try_get_context("job_image")
    return _create(scope, ecs.ContainerImage.from_registry(image) if image else default_job_image(), max_vcpus)


def _create(scope: Construct, image: ecs.ContainerImage, max_vcpus: int) -> BatchEnvironment:
    vpc = ec2.Vpc(scope, "Vpc", max_azs=2, nat_gateways=0,
                  subnet_configuration=[ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)])
    compute = batch.FargateComputeEnvironment(scope, "FargateCompute", vpc=vpc, maxv_cpus=max_vcpus,
                                              vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC))
    queue = batch.JobQueue(scope, "JobQueue", compute_environments=[
        batch.OrderedComputeEnvironment(compute_environment=compute, order=1)])
    job_role = iam.Role(scope, "JobRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                        description="Role the pipeline scripts run with")
    retry = [batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom(on_status_reason=r))
             for r in INFRA_RETRY_REASONS]
    retry.append(batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")))
    defs: dict[str, batch.IJobDefinition] = {}
    for name, (vcpus, memory) in JOB_SIZES.items():
        container = batch.EcsFargateContainerDefinition(
            scope, f"Container-{name}",
            image=image,
            cpu=vcpus,
            memory=cdk.Size.mebibytes(memory),
            assign_public_ip=True,
            job_role=job_role,
            command=JOB_COMMAND,
        )
        defs[name] = batch.EcsJobDefinition(scope, f"JobDefinition-{name}", container=container,
                                            retry_attempts=3, retry_strategies=retry,
                                            timeout=cdk.Duration.hours(24), propagate_tags=True)
    return BatchEnvironment(job_queue=queue, job_definitions=defs, job_role=job_role)
