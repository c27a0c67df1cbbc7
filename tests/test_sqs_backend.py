"""The sqs backend: launcher -> FIFO queue -> consumer -> Batch jobs with ``dependsOn``.

moto's simple Batch backend finishes jobs at submission and ignores ``dependsOn``;
``DependencyBatch`` adds Batch's rule (a job whose dependency FAILED fails without
running, "Dependent Job failed"), which is enough because the consumer submits parents
first. The equivalence test runs the same request through the generated state machines
(moto's executor, ``aslrun.FakeBatch``) and through this backend, and compares the jobs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aslrun import ACCOUNT, QUEUE_ARN, REGION, FakeBatch, _request_of, job_definition_arn
from conftest import REPO
from moto.batch.models import Job, batch_backends
from test_launcher import Cloud, Stage, deployment, moto_cloud

from sfn_pipelines import cloud, naming

sys.path.insert(0, str(REPO / "infra" / "launcher"))  # the Lambda's modules are top-level there
import consumer
import handler
import jobgraph


class DependencyBatch:
    """Batch's dependency rule on moto: jobs end at submission, in submission order.

    :param fail: (run id, step) pairs whose job fails.
    """

    def __init__(self, fail: Iterable[tuple[str, str]] = ()) -> None:
        self.fail = set(fail)
        self.jobs: list[Job] = []
        self.records: list[dict] = []  # what was asked, read before moto adds to the overrides

    def __call__(self, job: Job) -> None:
        deps = [d["jobId"] for d in job.depends_on or []]
        missing = [d for d in deps if d not in job.all_jobs]
        assert not missing, f"{job.job_name} depends on unknown job ids {missing}"  # real Batch rejects these
        assert len(deps) <= 20, f"{job.job_name}: {len(deps)} dependsOn entries"
        self.jobs.append(job)
        self.records.append(_record(job))
        env = {e["name"]: e["value"] for e in job.container_overrides.get("environment", [])}
        if any(job.all_jobs[d].status == "FAILED" for d in deps):
            job.job_stopped_reason = "Dependent Job failed"
            job._mark_stopped(success=False)
            return
        job._start_attempt()
        ok = (env.get("PIPELINE_RUN_ID"), env.get("PIPELINE_STEP")) not in self.fail
        if not ok:
            job.exit_code = 1
            job.job_stopped_reason = "Essential container in task exited"
        job._mark_stopped(success=ok)


@dataclass
class SqsCloud:
    cloud: Cloud
    config: Any
    queue_url: str

    def start(self, request: Mapping[str, Any]) -> dict:
        r = handler.handler(dict(request), None, config=self.config, clients=self.cloud.clients)
        assert r.get("ok"), r
        return r

    def drain(self) -> list[dict]:
        """Feed the queue to the consumer as Lambda's event source would (10 at a time,
        deleting what it did not report as failed); returns the consumer's answers."""
        sqs = self.cloud.client("sqs")
        answers = []
        while True:
            msgs = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return answers
            answer = consumer.handler(
                {"Records": [{"messageId": m["MessageId"], "body": m["Body"]} for m in msgs]}, None,
                config=self.config, clients=self.cloud.clients)
            answers.append(answer)
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            for m in msgs:
                if m["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            if failed:
                return answers

    def call(self, request: Mapping[str, Any]) -> dict:
        return handler.handler(dict(request), None, config=self.config, clients=self.cloud.clients)


@contextmanager
def sqs_cloud(runner: DependencyBatch) -> Any:
    stage = deployment()["sqs"]
    with moto_cloud(stage, runner, execute=False) as c:
        url = c.client("sqs").create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        queue_ref = next(k for k, q in stage.resources("AWS::SQS::Queue").items() if "RedrivePolicy" in q["Properties"])
        yield SqsCloud(cloud=c, config=stage.config({queue_ref: url}), queue_url=url)


def _batch_jobs() -> list[Job]:
    return list(batch_backends[ACCOUNT][REGION]._jobs.values())


def _record(job: Job) -> dict:
    """What a backend asked Batch for, comparable across backends (aslrun's reading + timeout)."""
    r = _request_of(job)
    return {**r, "timeout": job.timeout}


def _key(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


@pytest.fixture(scope="module")
def sqs_stage() -> Stage:
    return deployment()["sqs"]


# --- the job graph (pure) ---------------------------------------------------------------------
def test_jobs_wait_on_the_nearest_selected_ancestors(sqs_stage: Stage) -> None:
    train = cloud.plan_group(sqs_stage.plan, "train")

    def after(selected: list[str]) -> dict[str, list[str]]:
        msgs = jobgraph.job_messages(train, selected, "r1")
        return {m["step"]: sorted(a["job"].split("--")[0] for a in m["after"]) for m in msgs}

    everything = after(["prep", "feat", "model_a", "model_b", "promote", "report"])
    assert everything == {"prep": [], "feat": ["prep"], "report": ["prep"], "model_a": ["feat"],
                          "model_b": ["feat"], "promote": ["model_a", "model_b"]}
    assert after(["prep", "promote"]) == {"prep": [], "promote": ["prep"]}  # ordered through unselected steps
    # feat is implied by model_a (which waits on it), so promote waits on model_a only
    assert after(["feat", "model_a", "promote"]) == {"feat": [], "model_a": ["feat"], "promote": ["model_a"]}


def test_more_than_20_parents_go_through_barrier_jobs(sqs_stage: Stage) -> None:
    wide = cloud.plan_group(sqs_stage.plan, "wide")
    msgs = jobgraph.job_messages(wide, [s["id"] for s in wide["steps"]], "r1")
    by_job = {m["job"]: m for m in msgs}
    join = by_job[naming.job_name("join", "r1")]
    assert len(join["after"]) == 2 and all(by_job[a["job"]]["step"] is None for a in join["after"])
    assert sorted(len(by_job[a["job"]]["after"]) for a in join["after"]) == [5, 20]

    # 450 parents: two levels of barriers, nobody waits on more than 20 jobs
    big = {"name": "big", "steps": [{"id": f"p{i}", "depends_on": [], "job": {"queue": ""}} for i in range(450)]
           + [{"id": "sink", "depends_on": [f"p{i}" for i in range(450)], "job": {"queue": ""}}]}
    msgs = jobgraph.job_messages(big, [s["id"] for s in big["steps"]], "r1")
    seen: set[str] = set()
    for m in msgs:
        assert len(m["after"]) <= 20
        assert all(a["job"] in seen for a in m["after"]), f"{m['job']} waits on a job queued later"
        seen.add(m["job"])
    assert sum(m["step"] is None for m in msgs) == 23 + 2
    assert len({m["job"] for m in msgs}) == len(msgs)  # barrier names are unique


def test_unknown_steps_are_refused(sqs_stage: Stage) -> None:
    with pytest.raises(cloud.CloudError, match="has no step"):
        jobgraph.job_messages(cloud.plan_group(sqs_stage.plan, "other"), ["clean", "nope"], "r1")


# --- launcher + consumer under moto -------------------------------------------------------------
def test_consumer_submits_each_step_once_with_dependencies() -> None:
    batch = DependencyBatch()
    with sqs_cloud(batch) as s:
        r = s.start({"run_id": "sqs-1"})
        assert r["barriers"] == 2 and len(r["jobs"]) == 2 + 6 + 2 + 27
        answers = s.drain()
        assert all(a == {"batchItemFailures": []} for a in answers)
        jobs = {j.job_name: j for j in batch.jobs}
        assert len(jobs) == len(batch.jobs) == len(r["jobs"])
        by_id = {j.job_id: j.job_name for j in batch.jobs}

        def deps(step: str) -> list[str]:
            return sorted(by_id[d["jobId"]] for d in jobs[naming.job_name(step, "sqs-1")].depends_on or [])

        assert deps("promote") == ["model_a--sqs-1", "model_b--sqs-1"]
        assert deps("prep") == []
        barriers = deps("join")
        assert [n.split("--")[0] for n in barriers] == ["join-b1-1", "join-b1-2"]
        assert sorted(x for b in barriers for x in (by_id[d["jobId"]] for d in jobs[b].depends_on)) == \
            sorted(naming.job_name(f"w{i:02}", "sqs-1") for i in range(1, 26))
        model_b = jobs["model_b--sqs-1"]
        assert model_b.job_definition.arn == job_definition_arn("large")
        assert model_b.job_queue.arn == QUEUE_ARN
        assert model_b.timeout == {"attemptDurationSeconds": 1800}
        rec = batch.records[batch.jobs.index(model_b)]
        assert rec["resource_requirements"] == {"MEMORY": "8192", "VCPU": "4"}
        assert rec["environment"]["PIPELINE_RUN_ID"] == "sqs-1" and rec["environment"]["SEED"] == "7"
        barrier = batch.records[batch.jobs.index(jobs[barriers[0]])]
        assert barrier["environment"] == {"PIPELINE_BARRIER": "1", "PIPELINE_RUN_ID": "sqs-1"}
        assert jobs[barriers[0]].container_overrides["command"] == jobgraph.BARRIER_COMMAND

        status = s.call({"status": "sqs-1"})
        assert status["status"] == "SUCCEEDED" and len(status["steps"]) == 35  # barriers left out


def test_redelivered_messages_and_repeated_requests_submit_nothing_twice() -> None:
    batch = DependencyBatch()
    with sqs_cloud(batch) as s:
        first = s.start({"select": ["other"], "run_id": "twice"})
        s.drain()
        msgs = [{"messageId": str(i), "body": json.dumps(m)} for i, m in
                enumerate(jobgraph.job_messages(cloud.plan_group(s.config.plan, "other"), ["ingest", "clean"],
                                                "twice"))]
        assert consumer.handler({"Records": msgs}, None, config=s.config, clients=s.cloud.clients) == {
            "batchItemFailures": []}
        s.start({"select": ["other"], "run_id": "twice"})  # FIFO deduplication, then the consumer's check
        s.drain()
        assert sorted(j.job_name for j in batch.jobs) == sorted(first["jobs"]) == ["clean--twice", "ingest--twice"]


def test_a_missing_parent_fails_its_message_and_the_rest_of_the_batch() -> None:
    batch = DependencyBatch()
    with sqs_cloud(batch) as s:
        plan_group = cloud.plan_group(s.config.plan, "train")
        msgs = jobgraph.job_messages(plan_group, ["prep", "feat", "report"], "lost")
        records = [{"messageId": m["step"], "body": json.dumps(m)} for m in msgs if m["step"] != "prep"]
        records.insert(0, {"messageId": "ok", "body": json.dumps(
            jobgraph.job_messages(cloud.plan_group(s.config.plan, "other"), ["ingest"], "lost")[0])})
        answer = consumer.handler({"Records": records}, None, config=s.config, clients=s.cloud.clients)
        assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == ["feat", "report"]
        assert [j.job_name for j in batch.jobs] == ["ingest--lost"]


def test_a_failed_step_fails_its_dependants_and_resume_reruns_them() -> None:
    batch = DependencyBatch(fail={("bad-1", "model_a"), ("bad-1", "w03")})
    with sqs_cloud(batch) as s:
        s.start({"select": ["train", "wide"], "run_id": "bad-1"})
        s.drain()
        status = s.call({"status": "bad-1"})
        steps = status["steps"]
        assert status["status"] == "FAILED"
        assert steps["model_a"]["status"] == "FAILED" and steps["w03"]["status"] == "FAILED"
        for dependant in ("promote", "join", "publish"):
            assert steps[dependant]["status"] == "SKIPPED", steps[dependant]
            assert steps[dependant]["batch_status"] == "FAILED"
            assert "Dependent Job failed" in steps[dependant]["reason"]
        independent = ["prep", "feat", "model_b", "report"] + [f"w{i:02}" for i in range(1, 26) if i != 3]
        assert all(steps[s_]["status"] == "SUCCEEDED" for s_ in independent)

        resumed = s.call({"resume": "bad-1"})
        assert resumed["ok"] and resumed["run_id"] == "bad-1-r1", resumed
        assert resumed["steps"] == {"train": ["model_a", "promote"], "wide": ["join", "publish", "w03"]}
        s.drain()
        again = s.call({"status": "bad-1-r1"})
        assert again["status"] == "SUCCEEDED" and sorted(again["steps"]) == ["join", "model_a", "promote",
                                                                             "publish", "w03"]
        # the resumed run waits only on its own jobs: the old run's are up to date
        join = next(j for j in batch.jobs if j.job_name == "join--bad-1-r1")
        assert [d["jobId"] for d in join.depends_on] == [next(j.job_id for j in batch.jobs
                                                              if j.job_name == "w03--bad-1-r1")]
        running = s.call({"resume": "nobody"})
        assert not running["ok"] and "no Batch jobs found" in running["error"]


# --- pagination -----------------------------------------------------------------------------------
class PagedBatch:
    """A Batch client whose ListJobs answers 2 jobs per page, as the real API may."""

    def __init__(self, jobs: list[dict]) -> None:
        self.jobs = jobs
        self.calls: list[dict] = []

    def list_jobs(self, **kw: Any) -> dict:
        self.calls.append(kw)
        jobs = [j for j in self.jobs if kw.get("jobStatus") in (None, j["status"])]
        if kw.get("filters"):
            wanted = kw["filters"][0]["values"][0].lower()
            jobs = [j for j in jobs if j["jobName"].lower() == wanted]
        start = int(kw.get("nextToken") or 0)
        page = {"jobSummaryList": jobs[start:start + 2]}
        if start + 2 < len(jobs):
            page["nextToken"] = str(start + 2)
        return page


def test_every_list_call_follows_next_tokens() -> None:
    jobs = [{"jobName": naming.job_name(f"s{i}", "pg"), "jobId": f"id{i}", "status": "SUCCEEDED", "createdAt": i}
            for i in range(7)]
    jobs += [{"jobName": "s0--pg", "jobId": "newer", "status": "FAILED", "createdAt": 100},
             {"jobName": "s1--other-run", "jobId": "x", "status": "SUCCEEDED", "createdAt": 5}]
    client = PagedBatch(jobs)
    found = cloud.run_jobs(client, [QUEUE_ARN], "pg")
    assert sorted(found) == sorted(naming.job_name(f"s{i}", "pg") for i in range(7))
    assert found["s0--pg"]["jobId"] == "newer"  # newest job of a name wins
    assert any(c.get("nextToken") for c in client.calls)
    # exact-name lookups (the consumer's parents) page too: 5 jobs of one name over 3 pages
    same = [{"jobName": "p--r", "jobId": f"j{i}", "status": "SUCCEEDED", "createdAt": i} for i in range(5)]
    assert [j["jobId"] for j in cloud.find_jobs(PagedBatch(same), QUEUE_ARN, "p--r")] == [
        "j4", "j3", "j2", "j1", "j0"]


# --- both backends, same request, same jobs -----------------------------------------------------------
def _ancestors(plan_group: Mapping[str, Any]) -> dict[str, set[str]]:
    parents = {s["id"]: s.get("depends_on", []) for s in plan_group["steps"]}
    out: dict[str, set[str]] = {}
    for sid in cloud.topological_order(plan_group):
        out[sid] = set().union(*[{p} | out[p] for p in parents[sid]]) if parents[sid] else set()
    return out


def _run_state_machines(request: Mapping[str, Any]) -> tuple[list[dict], FakeBatch]:
    stage = deployment()["step_functions"]
    fake = FakeBatch()
    with moto_cloud(stage, fake) as c:
        r = handler.handler(dict(request), None, config=stage.config(), clients=c.clients)
        assert r["ok"], r
        ends = c.wait([e["execution_arn"] for e in r["executions"]], timeout=120)
        assert {d["status"] for d in ends.values()} == {"SUCCEEDED"}, ends
        timeouts = {j.job_name: j.timeout for j in _batch_jobs()}
        records = [{**r.request, "timeout": timeouts[r.request["job_name"]]} for r in fake.jobs]
    return records, fake


def _run_sqs(request: Mapping[str, Any]) -> tuple[list[dict], list[Job]]:
    batch = DependencyBatch()
    with sqs_cloud(batch) as s:
        s.start(request)
        s.drain()
    return batch.records, batch.jobs


@pytest.mark.parametrize(("select", "args"), [([], []),
                                              (["prep", "model_b", "promote", "w0*", "publish", "clean"],
                                               ["--epochs", "3", "a b"])],
                         ids=["everything", "a-selection-with-args"])
def test_both_backends_submit_the_same_jobs_in_a_valid_order(select: list[str], args: list[str]) -> None:
    request = {"select": select, "run_id": "eq-1", "args": args}
    sfn_records, fake = _run_state_machines(request)
    sqs_records, sqs_jobs = _run_sqs(request)

    steps_only = [r for r in sqs_records if "PIPELINE_BARRIER" not in r["environment"]]
    assert sorted(map(_key, sfn_records)) == sorted(map(_key, steps_only))
    assert {r["environment"]["PIPELINE_RUN_ARGS"] for r in steps_only} == {json.dumps(args, separators=(",", ":"))}
    assert len(sfn_records) == len({r["job_name"] for r in sfn_records})  # one job per step

    plan = deployment()["sqs"].plan
    selected = {r["environment"]["PIPELINE_STEP"] for r in sfn_records}
    pairs = [(a, c) for g in plan["groups"] for c, anc in _ancestors(g).items() if c in selected
             for a in anc if a in selected]
    assert pairs  # the selections above do contain ordered steps
    # Step Functions: each step's job was submitted after its selected ancestors' jobs ended.
    last = {r.step: r for r in fake.jobs}
    for a, c in pairs:
        assert last[a].end is not None and last[a].end < last[c].start, f"{c} started before {a} ended"
    # SQS: each step's job depends, through dependsOn (and barriers), on its selected ancestors' jobs.
    by_id = {j.job_id: j for j in sqs_jobs}

    def upstream(job: Job) -> set[str]:
        found: set[str] = set()
        todo = [job]
        while todo:
            for d in todo.pop().depends_on or []:
                parent = by_id[d["jobId"]]
                if parent.job_name not in found:
                    found.add(parent.job_name)
                    todo.append(parent)
        return found

    by_name = {j.job_name: j for j in sqs_jobs}
    for a, c in pairs:
        assert naming.job_name(a, "eq-1") in upstream(by_name[naming.job_name(c, "eq-1")]), f"{c} may run before {a}"
