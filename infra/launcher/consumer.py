"""Consumer Lambda (sqs mode): submit each queued job to Batch, waiting on its parents' jobs.

Messages arrive in order per run (FIFO, one message group per run), so a parent's job
is always submitted before its children look for it. Parents are found by exact job
name (paginated ``ListJobs``; ids submitted in this invocation are remembered), and a
job that already exists is not submitted again: a redelivered message or a repeated
request submits nothing twice.

Failures: Batch fails the dependants of a failed job itself (PENDING -> FAILED, reason
"Dependent Job failed"); they are FAILED in Batch, not skipped, and ``status`` shows them
as SKIPPED. A message that cannot be processed (a parent job missing, an AWS error) is
retried, then moves to the dead-letter queue; with it the rest of its batch is retried,
keeping the order.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from typing import Any

import jobgraph
from settings import Clients, Config

from sfn_pipelines import cloud

_CONFIG: Config | None = None
_CLIENTS = Clients()


class MissingParent(cloud.CloudError):
    """A job to wait on does not exist (its message failed or is not processed yet)."""


def handler(event: Mapping[str, Any], context: Any = None, *, config: Config | None = None,
            clients: Clients | None = None) -> dict:
    """SQS event source entry point; reports partial batch failures (``ReportBatchItemFailures``)."""
    global _CONFIG
    if config is None:
        _CONFIG = _CONFIG or Config.from_env()
        config = _CONFIG
    batch = (clients or _CLIENTS)("batch")
    records = list(event.get("Records", []))
    known: dict[str, str] = {}
    for i, record in enumerate(records):
        try:
            message = json.loads(record["body"])
            outcome = submit(message, config, batch, known)
            print(json.dumps({"job": message["job"], "outcome": outcome, "job_id": known.get(message["job"])}))
        except Exception:
            traceback.print_exc()
            # FIFO: this message and every later one go back, in order.
            return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records[i:]]}
    return {"batchItemFailures": []}


def submit(message: Mapping[str, Any], config: Config, batch: Any, known: dict[str, str]) -> str:
    """Submit one job unless it exists; ``known`` (job name -> id) is filled as we go."""
    name = message["job"]
    queues = config.arns["queues"]
    existing = cloud.find_jobs(batch, jobgraph.arn_for(queues, message["queue"], "job queue"), name)
    if existing:
        known[name] = existing[0]["jobId"]
        return "exists"
    depends_on = []
    for dep in message["after"]:
        job_id = known.get(dep["job"])
        if job_id is None:
            found = cloud.find_jobs(batch, jobgraph.arn_for(queues, dep["queue"], "job queue"), dep["job"])
            if not found:
                raise MissingParent(f"{name} waits on {dep['job']}, which was never submitted")
            job_id = known[dep["job"]] = found[0]["jobId"]
        depends_on.append(job_id)
    kwargs = jobgraph.submit_kwargs(message, config.plan, config.arns, depends_on)
    known[name] = batch.submit_job(**kwargs)["jobId"]
    return "submitted"
