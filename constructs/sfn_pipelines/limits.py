"""AWS limits the generator must respect, each with where the number comes from.

Keep every such number here so the checks stay in one place.
"""

from __future__ import annotations

# Step Functions quotas: docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
STATE_NAME_MAX = 80  # state names: 1-80 characters, unique in the machine
STATE_MACHINE_NAME_MAX = 80
EXECUTION_NAME_MAX = 80  # and only 0-9A-Za-z-_ if CloudWatch logging is on
DEFINITION_MAX_BYTES = 1_048_576  # 1 MB, hard limit on the definition
HISTORY_EVENTS_MAX = 25_000  # hard; the execution FAILS when reached
PAYLOAD_MAX_BYTES = 262_144  # 256 KiB between states
FAIL_CAUSE_MAX = 32_768  # characters in a Fail state's Cause
PRICE_PER_TRANSITION_USD = 0.025 / 1000  # Standard workflows, us-east-1 list price

# Events written per executed state, measured from histories (aws-notes.md): a `.sync`
# Batch task writes ~5-6 (Entered, Scheduled, Started, Submitted, Succeeded, Exited).
EVENTS_PER_SYNC_TASK = 6
EVENTS_PER_FLOW_STATE = 2  # Entered + Exited for Choice / Pass / Parallel

# CloudFormation: templates uploaded through S3 may be up to 1,000,000 bytes.
TEMPLATE_MAX_BYTES = 1_000_000

# AWS Batch: SubmitJob API reference.
BATCH_JOB_NAME_MAX = 128  # letters, numbers, hyphens, underscores
BATCH_DEPENDS_ON_MAX = 20
BATCH_ATTEMPTS_MAX = 10
BATCH_CONTAINER_OVERRIDES_MAX_CHARS = 8_192
BATCH_RESERVED_ENV_PREFIX = "AWS_BATCH"
