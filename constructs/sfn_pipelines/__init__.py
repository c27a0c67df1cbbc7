"""sfn-pipelines: synth-time AWS Step Functions workflows for ML pipeline scripts.

The core (config, graph, plan) is plain Python; only ``sfn_pipelines.state_machine``
imports aws_cdk, so the CLI and the launcher start fast.
"""

from sfn_pipelines.model import ArtifactRef, PipelineConfigError, Problem, Source, Step, StepOptions

__all__ = ["ArtifactRef", "PipelineConfigError", "Problem", "Source", "Step", "StepOptions"]
__version__ = "0.1.0"
