"""Generated state machines really run: moto's Step Functions executor with a fake Batch.

What only execution can show: every dependency is waited for and nothing else is; a failed
step stops exactly its descendants (``isolate``) or the whole run (``stop_all``); a
selection runs exactly the selected steps; ``retries`` resubmit a failed job.

All machines are synthesized in one CDK app (jsii start-up dominates), and all runs start
at once in one moto account (moto parses and interprets definitions slowly; runs mostly
wait), so the module costs one synth plus the slowest run. See ``aslrun`` and
``moto_patches`` for the harness and the moto bugs it works around.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aslrun import (
    JOB_DEFINITIONS,
    QUEUE_ARN,
    FakeBatch,
    Machine,
    MachineCase,
    Run,
    RunResult,
    chain_steps,
    descendants,
    job_definition_arn,
    run_machines,
    stage_manifest,
    synth_machines,
    workflows_in,
    write_pipelines,
)
from conftest import EXAMPLES, SHARED

from sfn_pipelines import naming
from sfn_pipelines.jobs import job_spec, run_environment
from sfn_pipelines.layout import flatten_statuses
from sfn_pipelines.state_machine import RUN_FAILED_ERROR

# moto race, harmless to the results: a task starting in a Parallel branch that stop_all has
# just stopped reads its timeout off an empty stack in a helper thread, which dies with a
# TypeError. Outcomes are asserted from the execution and the jobs, not from threads.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")

# Small DAGs, one dependency group each: {shape: manifest steps}.
SHAPES = {
    "diamond": chain_steps(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")),
    # two chains after a common root
    "fork": chain_steps(("root", "a1"), ("a1", "a2"), ("root", "b1"), ("b1", "b2")),
    "fan": chain_steps(*[("src", f"m{i}") for i in range(1, 5)], *[(f"m{i}", "sink") for i in range(1, 5)]),
    # not series-parallel: the planner adds a constraint, the real edges must still hold
    "n": chain_steps(("a", "c"), ("b", "c"), ("b", "d")),
    # ids that are also keys of the execution data (select, up, st) or of a status (halt, status)
    "names": chain_steps(("select", "up"), ("select", "st"), ("up", "halt"), ("st", "halt"), ("halt", "status")),
    "retry": chain_steps(("root", "flaky"), ("root", "once"), ("root", "spent"),
                         flaky={"retries": 2}, spent={"retries": 1}),
}
STOP_ALL_SHAPES = ("diamond", "fork")
SLOW = 5.0  # seconds a deliberately slow job runs; every other job runs 0.02 s


def _scenarios(m: dict[str, Machine]) -> dict[str, Run]:
    """Every execution this module checks, by name (= execution name = run id)."""
    runs = {
        **{f"all-{shape}": Run(m[shape]) for shape in SHAPES if shape != "retry"},
        "diamond-args": Run(m["diamond"], {"args": ["--epochs", "3", "a b"]}),
        # ordering that must not over-wait: one slow job beside fast independent work
        "fork-slow-a1": Run(m["fork"], batch=FakeBatch(durations={"a1": SLOW})),
        "fan-slow-m1": Run(m["fan"], batch=FakeBatch(durations={"m1": SLOW})),
        # isolate
        "diamond-fail-b": Run(m["diamond"], batch=FakeBatch(fail={"b"})),
        "diamond-fail-a": Run(m["diamond"], batch=FakeBatch(fail={"a"})),
        "fork-fail-a1": Run(m["fork"], batch=FakeBatch(fail={"a1"})),
        "fan-fail-m2-m3": Run(m["fan"], batch=FakeBatch(fail={"m2", "m3"})),
        "n-fail-a": Run(m["n"], batch=FakeBatch(fail={"a"})),
        "n-fail-b": Run(m["n"], batch=FakeBatch(fail={"b"})),
        "names-fail-up": Run(m["names"], batch=FakeBatch(fail={"up"})),
        # selection
        "diamond-select-b-d": Run(m["diamond"], {"select": {"b": True, "d": True}}),
        "fork-select-a2-b1-b2": Run(m["fork"], {"select": {"a2": True, "b1": True, "b2": True}}),
        "fan-select-sink": Run(m["fan"], {"select": {"sink": True}}),
        "diamond-select-none": Run(m["diamond"], {"select": {}}),
        "names-select-up-status": Run(m["names"], {"select": {"up": True, "status": True}}),
        "diamond-select-fail-c": Run(m["diamond"], {"select": {"b": True, "c": True, "d": True}},
                                     batch=FakeBatch(fail={"c"})),
        # b and c left out: a's failure must still stop d (as Batch dependsOn does in sqs mode)
        "diamond-select-ad-fail-a": Run(m["diamond"], {"select": {"a": True, "d": True}},
                                        batch=FakeBatch(fail={"a"})),
        # stop_all
        "stop-diamond-fail-b": Run(m["diamond:stop_all"], batch=FakeBatch(fail={"b"})),
        # b1 would run a minute: the run must end (and its job be abandoned) long before
        "stop-fork-fail-a1": Run(m["fork:stop_all"], batch=FakeBatch(fail={"a1"}, durations={"b1": 60})),
        "stop-all-ok": Run(m["fork:stop_all"]),
        # retries: flaky fails once (retries 2), once fails (no retries), spent fails twice (retries 1)
        "retry": Run(m["retry"], batch=FakeBatch(fail={"once", "spent"}, fail_attempts={"flaky": 1})),
        # the example pipelines of this repo
        "churn-fail-events": Run(_example_with(m, "churn_events"), batch=FakeBatch(fail={"churn_events"})),
        "tox-fail-descriptors": Run(_example_with(m, "tox_descriptors"), batch=FakeBatch(fail={"tox_descriptors"})),
    }
    for key, machine in m.items():
        if key.startswith(("example:", "shared:")):
            runs[f"all-{key}"] = Run(machine)
    return {name.replace(":", "-"): run for name, run in runs.items()}


def _example_with(m: dict[str, Machine], step: str) -> Machine:
    """The repo example machine that runs ``step`` (group names are the planner's business)."""
    return next(x for k, x in m.items() if k.startswith("example:") and step in x.workflow.group.step_ids)


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Machine]:
    cases: dict[str, MachineCase] = {}
    for shape, steps in SHAPES.items():
        (workflow,) = workflows_in(write_pipelines(tmp_path_factory.mktemp(shape), {shape: steps})).values()
        cases[shape] = MachineCase(workflow)
        if shape in STOP_ALL_SHAPES:
            cases[f"{shape}:stop_all"] = MachineCase(workflow, on_failure="stop_all")
    for name, workflow in workflows_in(EXAMPLES).items():
        cases[f"example:{name}"] = MachineCase(workflow)
    shared = SHARED / "workbench-examples"
    if shared.is_dir():  # the test using these skips through the shared_examples fixture
        root = tmp_path_factory.mktemp("shared")
        for manifest in sorted(shared.glob("*.pipelines.json")):
            stage_manifest(manifest, root / manifest.name.removesuffix(".pipelines.json"))
        for name, workflow in workflows_in(root).items():
            cases[f"shared:{name}"] = MachineCase(workflow)
    return synth_machines(cases)


@pytest.fixture(scope="module")
def results(machines: dict[str, Machine]) -> dict[str, RunResult]:
    scenarios = _scenarios(machines)
    return dict(zip(scenarios, run_machines([Run(r.machine, r.input, r.batch, name)
                                             for name, r in scenarios.items()], timeout=120), strict=True))


# --- helpers -------------------------------------------------------------------------------


def steps_of(result: RunResult) -> set[str]:
    return set(result.machine.workflow.group.step_ids)


def assert_all_ran(result: RunResult) -> None:
    """Succeeded, each step's job submitted exactly once, every edge waited for."""
    assert result.status == "SUCCEEDED", result.describe()
    assert sorted(result.submitted_steps) == sorted(steps_of(result)), result.describe()
    assert len(result.jobs) == len(steps_of(result)), result.describe()
    assert result.ordering_violations(result.machine.edges()) == [], result.describe()
    assert result.statuses == {s: {"status": "SUCCEEDED", "job": result.statuses[s].get("job")}
                               for s in steps_of(result)}, result.describe()
    assert all(result.statuses[s]["job"] for s in steps_of(result))


def assert_isolated(result: RunResult, failed: set[str], selected: set[str] | None = None) -> None:
    """Failed steps' descendants skipped and never submitted; everything else succeeded."""
    workflow = result.machine.workflow
    in_run = selected if selected is not None else steps_of(result)
    skipped = descendants(workflow, failed) & in_run
    assert result.status == "FAILED" and result.error == RUN_FAILED_ERROR, result.describe()
    expected = {s: ("FAILED" if s in failed else "SKIPPED" if s in skipped else "SUCCEEDED") for s in in_run}
    assert {s: v["status"] for s, v in result.statuses.items()} == expected, result.describe()
    # the cause is the JSON of $.st: what `sfn-pipelines` shows a user
    assert flatten_statuses(json.loads(result.cause)) == result.statuses
    assert set(result.submitted_steps) == in_run - skipped, result.describe()
    assert all(result.statuses[s].get("error") == "States.TaskFailed" for s in failed)
    assert result.ordering_violations(result.machine.edges()) == [], result.describe()
    assert "Run failed" in result.entered_states()


# --- (a) ordering ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "retry"])
def test_every_step_runs_once_after_its_parents(results: dict[str, RunResult], shape: str) -> None:
    assert_all_ran(results[f"all-{shape}"])


def test_n_shape_keeps_real_edges_beside_added_constraint(results: dict[str, RunResult]) -> None:
    result = results["all-n"]
    assert result.machine.workflow.plan.added, "the N shape should need an added constraint"
    assert set(result.machine.edges()) == {("a", "c"), ("b", "c"), ("b", "d")}
    assert_all_ran(result)


def test_independent_chain_does_not_wait_for_slow_step(results: dict[str, RunResult]) -> None:
    result = results["fork-slow-a1"]
    assert_all_ran(result)
    slow = result.last("a1")
    assert result.last("b1").start > result.last("root").end
    assert result.last("b2").end < slow.end, f"b chain waited for a1: {result.describe()}"
    assert result.last("a2").start > slow.end


def test_fan_out_branches_run_side_by_side(results: dict[str, RunResult]) -> None:
    result = results["fan-slow-m1"]
    assert_all_ran(result)
    slow = result.last("m1")
    for sibling in ("m2", "m3", "m4"):
        assert result.last(sibling).start < slow.end and result.last(sibling).end < slow.end, result.describe()
    assert result.last("sink").start > slow.end


@pytest.mark.parametrize(("name", "args"), [("all-diamond", None), ("diamond-args", ["--epochs", "3", "a b"])])
def test_jobs_are_submitted_as_job_spec_describes(results: dict[str, RunResult], name: str,
                                                  args: list[str] | None) -> None:
    result = results[name]
    workflow = result.machine.workflow
    assert len(result.submitted_jobs) == len(workflow.group.steps)
    for job in result.submitted_jobs:
        step = job["environment"]["PIPELINE_STEP"]
        spec = job_spec(workflow.group.step(step), group=workflow.name)
        assert job["job_name"] == naming.job_name(step, name)
        assert job["job_queue"] == QUEUE_ARN
        assert job["job_definition"] == job_definition_arn("small")
        assert job["environment"] == run_environment(spec, name, args)


def test_example_resources_reach_batch(results: dict[str, RunResult]) -> None:
    result = next(r for k, r in results.items()
                  if k.startswith("all-example-") and "solubility_reg_nn" in steps_of(r))
    nn = next(j for j in result.submitted_jobs if j["environment"]["PIPELINE_STEP"] == "solubility_reg_nn")
    assert nn["resource_requirements"] == {"VCPU": "4", "MEMORY": "8192"}
    assert {j["job_definition"] for j in result.submitted_jobs} <= {job_definition_arn(n) for n in JOB_DEFINITIONS}


# --- (c) the repo's and Workbench's example pipelines ---------------------------------------


def test_repo_examples_run_every_step(results: dict[str, RunResult]) -> None:
    runs = {k: r for k, r in results.items() if k.startswith("all-example-")}
    ran = set().union(*(steps_of(r) for r in runs.values()))
    assert {"churn_join", "solubility_promote", "tox_deploy", "tox_assay_report", "solubility_hpo"} <= ran
    for result in runs.values():
        assert_all_ran(result)


def test_workbench_examples_run_every_step(results: dict[str, RunResult], shared_examples: Path) -> None:
    runs = {k: r for k, r in results.items() if k.startswith("all-shared-")}
    assert len(runs) >= 3, sorted(results)
    for result in runs.values():
        assert_all_ran(result)


# --- (b) failure isolation ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "failed"), [
    ("diamond-fail-b", {"b"}),
    ("diamond-fail-a", {"a"}),
    ("fork-fail-a1", {"a1"}),
    ("fan-fail-m2-m3", {"m2", "m3"}),
    ("n-fail-a", {"a"}),
    ("n-fail-b", {"b"}),
    ("names-fail-up", {"up"}),
    ("churn-fail-events", {"churn_events"}),
    ("tox-fail-descriptors", {"tox_descriptors"}),
])
def test_failure_skips_only_descendants(results: dict[str, RunResult], name: str, failed: set[str]) -> None:
    assert_isolated(results[name], failed)


def test_n_shape_failure_does_not_block_the_other_side(results: dict[str, RunResult]) -> None:
    # a fails: c (needs a) is skipped, but d only needs b, whatever constraint the plan added
    result = results["n-fail-a"]
    assert result.step_status("d") == "SUCCEEDED" and result.step_status("c") == "SKIPPED"


# --- (d) selection --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "selected"), [
    ("diamond-select-b-d", {"b", "d"}),
    ("fork-select-a2-b1-b2", {"a2", "b1", "b2"}),
    ("fan-select-sink", {"sink"}),
    ("diamond-select-none", set()),
    ("names-select-up-status", {"up", "status"}),
])
def test_selection_runs_only_selected_steps(results: dict[str, RunResult], name: str, selected: set[str]) -> None:
    result = results[name]
    assert result.status == "SUCCEEDED", result.describe()
    assert set(result.submitted_steps) == selected and len(result.jobs) == len(selected), result.describe()
    assert {s: v["status"] for s, v in result.statuses.items()} == dict.fromkeys(selected, "SUCCEEDED")
    assert result.ordering_violations(result.machine.edges()) == [], result.describe()


def test_selection_with_failure_skips_selected_descendants(results: dict[str, RunResult]) -> None:
    assert_isolated(results["diamond-select-fail-c"], {"c"}, selected={"b", "c", "d"})


def test_a_failure_stops_what_is_downstream_through_unselected_steps(results: dict[str, RunResult]) -> None:
    result = results["diamond-select-ad-fail-a"]
    assert result.status == "FAILED" and result.error == RUN_FAILED_ERROR, result.describe()
    assert result.submitted_steps == ["a"], result.describe()
    statuses = {s: v["status"] for s, v in result.statuses.items()}
    # b and c were left out of the selection, yet carry the SKIPPED marker on to d
    assert statuses == {"a": "FAILED", "b": "SKIPPED", "c": "SKIPPED", "d": "SKIPPED"}, result.describe()


# --- (e) stop_all -----------------------------------------------------------------------------


def test_stop_all_failure_ends_run_without_dependants(results: dict[str, RunResult]) -> None:
    result = results["stop-diamond-fail-b"]
    assert result.status == "FAILED" and result.error == "States.TaskFailed", result.describe()
    assert "d" not in result.submitted_steps and result.last("b").status == "FAILED"
    assert "Run failed" not in result.entered_states() and "Failed b" not in result.entered_states()


def test_stop_all_stops_independent_work(results: dict[str, RunResult]) -> None:
    result = results["stop-fork-fail-a1"]
    assert result.status == "FAILED" and result.error == "States.TaskFailed", result.describe()
    assert {"a2", "b2"}.isdisjoint(result.submitted_steps), result.describe()
    # the run ended while b1 was still running: it did not wait for the other branch
    assert result.last("b1").status == "RUNNING" and result.last("b1").end is None, result.describe()


def test_stop_all_without_failure_succeeds(results: dict[str, RunResult]) -> None:
    assert_all_ran(results["stop-all-ok"])


# --- (f) retries ------------------------------------------------------------------------------


def test_retries_resubmit_only_steps_that_ask_for_them(results: dict[str, RunResult]) -> None:
    result = results["retry"]
    assert [(j.attempt, j.status) for j in result.attempts("flaky")] == [(1, "FAILED"), (2, "SUCCEEDED")]
    assert [(j.attempt, j.status) for j in result.attempts("once")] == [(1, "FAILED")]
    assert [(j.attempt, j.status) for j in result.attempts("spent")] == [(1, "FAILED"), (2, "FAILED")]
    for step in ("flaky", "spent"):  # a retry is submitted only after the failed attempt ended
        first, second = result.attempts(step)
        assert first.end is not None and first.end < second.start
    assert_isolated(result, {"once", "spent"})
    assert result.step_status("flaky") == "SUCCEEDED"
