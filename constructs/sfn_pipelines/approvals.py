"""Deciding approval gates: find a gate's task token in the run's history, answer it.

The gate (``Approve <step>``) publishes its task token in its SNS message; the same
message is in the execution history, so whoever may read the history and call
``SendTaskSuccess``/``SendTaskFailure`` can decide it, without the e-mail at hand.
"""

from __future__ import annotations

import json
from typing import Any

REJECTED_ERROR = "ApprovalRejected"  # the gate's Catch turns it into a FAILED step


class ApprovalError(Exception):
    """The gate cannot be decided: not found, not waiting, or the call was refused."""


def execution_arn(run: str, state_machine_arn: str | None = None) -> str:
    """Accept an execution ARN, or a run id (execution name) plus its state machine's ARN."""
    if run.startswith("arn:"):
        return run
    if not state_machine_arn:
        raise ApprovalError(f"{run!r} is not an execution ARN; give --state-machine ARN to name the run by id")
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{run}"


def pending_gates(client: Any, execution: str) -> dict[str, str]:
    """Step id -> task token for every gate that was scheduled and has not ended."""
    scheduled: dict[int, tuple[str, str]] = {}
    previous: dict[int, int] = {}
    ends: list[int] = []
    for page in client.get_paginator("get_execution_history").paginate(executionArn=execution):
        for event in page["events"]:
            previous[event["id"]] = event.get("previousEventId", 0)
            kind = event["type"]
            if kind == "TaskScheduled":
                details = event.get("taskScheduledEventDetails", {})
                if details.get("resourceType") == "sns" and details.get("resource", "").endswith("waitForTaskToken"):
                    message = _message(details.get("parameters", "{}"))
                    if message.get("step") and message.get("token"):
                        scheduled[event["id"]] = (message["step"], message["token"])
            elif kind in ("TaskSucceeded", "TaskFailed", "TaskTimedOut", "TaskAborted", "TaskStartFailed",
                          "TaskSubmitFailed"):
                ends.append(event["id"])
    ended = {_walk_back(previous, e, scheduled) for e in ends}
    return {step: token for event_id, (step, token) in scheduled.items() if event_id not in ended}


def decide(client: Any, execution: str, step: str, *, approve: bool, reason: str = "", who: str = "") -> None:
    gates = pending_gates(client, execution)
    if step not in gates:
        waiting = ", ".join(sorted(gates)) or "none"
        raise ApprovalError(f"no approval gate is waiting for step {step!r} in {execution} (waiting: {waiting})")
    token = gates[step]
    try:
        if approve:
            client.send_task_success(taskToken=token, output=json.dumps({"approved": True, "by": who,
                                                                         "reason": reason}))
        else:
            client.send_task_failure(taskToken=token, error=REJECTED_ERROR,
                                     cause=reason or f"rejected by {who or 'an approver'}")
    except client.exceptions.TaskTimedOut as e:
        raise ApprovalError(f"the gate for {step!r} has timed out or was already decided") from e


def _message(parameters: str) -> dict[str, Any]:
    try:
        params = json.loads(parameters)
        message = params.get("Message", {})
        return json.loads(message) if isinstance(message, str) else message
    except (ValueError, AttributeError):
        return {}


def _walk_back(previous: dict[int, int], event_id: int, targets: dict[int, Any]) -> int:
    """Follow previousEventId links from a Task's end event back to its TaskScheduled."""
    seen = 0
    while event_id and event_id not in targets and seen < 16:
        event_id = previous.get(event_id, 0)
        seen += 1
    return event_id
