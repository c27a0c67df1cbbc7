"""Scheduled runs: context ``schedules`` maps a group name (or a glob over group names) to
an EventBridge schedule expression, e.g. ``{"churn": "cron(0 3 * * ? *)", "tox*": "rate(1 day)"}``.

Each matched group gets a rule. With the launcher in the stack the rule invokes it with
``{"select": ["<group>"], "run_id": "<group>-<event time>"}``: the launcher names the
execution after the run id, so a retried delivery of the same scheduled event starts
nothing new. Without a launcher the rule starts the group's machine directly with ``{}``
(every step); Step Functions then picks the execution name, so a retried delivery could
start a second run.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from sfn_pipelines.state_machine import WorkbenchPipelineStateMachine

_RATE = re.compile(r"^rate\((?P<n>\d+) (?P<unit>minutes?|hours?|days?)\)$")
_CRON = re.compile(r"^cron\((?P<fields>[^()]+)\)$")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*?,/\-#L W]+$")


@dataclass(frozen=True)
class Schedule:
    group: str
    expression: str
    key: str  # the context key (group name or pattern) it came from


def parse_schedules(value: Any, groups: list[str]) -> list[Schedule]:
    """Read context ``schedules`` (a JSON object or its text); every problem in one error."""
    if value is None or value == "" or value == {}:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise ValueError(f"context schedules must be a JSON object of group -> schedule expression ({e})") from None
    if not isinstance(value, Mapping):
        raise ValueError("context schedules must be a JSON object of group name (or pattern) -> schedule "
                         f"expression, e.g. {{\"churn\": \"cron(0 3 * * ? *)\"}}. Received {value!r}.")
    problems: list[str] = []
    out: list[Schedule] = []
    for key, expression in value.items():
        problem = expression_problem(expression)
        if problem:
            problems.append(f"{key}: {problem}")
            continue
        matched = [g for g in groups if g == key] or fnmatch.filter(groups, key)
        if not matched:
            problems.append(f"{key}: no group has this name or matches it (groups: {', '.join(groups) or 'none'})")
        out += [Schedule(group=g, expression=expression.strip(), key=key) for g in matched]
    if problems:
        raise ValueError("context schedules: " + "; ".join(problems))
    return out


def expression_problem(expression: Any) -> str | None:
    """Why ``expression`` is not an EventBridge schedule expression, or None."""
    if not isinstance(expression, str):
        return f"the schedule must be a string such as 'rate(1 day)' or 'cron(0 3 * * ? *)', not {expression!r}"
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        n, unit = int(rate["n"]), rate["unit"]
        if n < 1:
            return f"{text!r}: the rate must be at least 1"
        if (n == 1) != (not unit.endswith("s")):
            return f"{text!r}: write 'rate(1 {unit.rstrip('s')})' for 1 and the plural for more"
        return None
    cron = _CRON.match(text)
    if cron:
        fields = cron["fields"].split()
        if len(fields) != 6:
            return (f"{text!r}: a cron expression has 6 fields (minutes hours day-of-month month day-of-week year), "
                    f"got {len(fields)}")
        if not all(_CRON_FIELD.match(f) for f in fields):
            return f"{text!r}: unexpected characters in the cron fields"
        if "?" not in (fields[2], fields[4]):
            return f"{text!r}: one of day-of-month and day-of-week must be '?'"
        return None
    return f"{text!r} is neither rate(...) nor cron(...)"


class PipelineSchedules(Construct):
    """One EventBridge rule per scheduled group.

    :param machines: the state machine of each group, by group name.
    :param launcher: the launcher Lambda; without it the rules start the machines directly.
    :param schedules: group (or pattern) -> expression. Default: context ``schedules``.
    """

    def __init__(self, scope: Construct, construct_id: str, *,
                 machines: Mapping[str, WorkbenchPipelineStateMachine],
                 launcher: lambda_.IFunction | None = None,
                 schedules: Mapping[str, str] | str | None = None) -> None:
        super().__init__(scope, construct_id)
        value = self.node.try_get_context("schedules") if schedules is None else schedules
        self.schedules = parse_schedules(value, sorted(machines))
        self.rules: dict[str, events.Rule] = {}
        for i, schedule in enumerate(self.schedules):
            rule_id = schedule.group if schedule.group not in self.rules else f"{schedule.group}-{i}"
            rule = events.Rule(self, rule_id, schedule=events.Schedule.expression(schedule.expression),
                               description=f"sfn-pipelines: run group {schedule.group} on {schedule.expression}")
            if launcher is not None:
                rule.add_target(targets.LambdaFunction(launcher, event=launch_input(schedule.group),
                                                       retry_attempts=4, max_event_age=cdk.Duration.hours(2)))
            else:
                rule.add_target(targets.SfnStateMachine(machines[schedule.group].state_machine,
                                                        input=events.RuleTargetInput.from_object({}),
                                                        retry_attempts=4, max_event_age=cdk.Duration.hours(2)))
            self.rules[rule_id] = rule


def launch_input(group: str) -> events.RuleTargetInput:
    """The launcher request of a scheduled run: the group, and a run id from the event's
    time (the scheduled time, the same on every delivery of that event)."""
    return events.RuleTargetInput.from_object({"select": [group], "run_id": f"{group}-{events.EventField.time}"})
