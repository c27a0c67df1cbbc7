"""Patches that let moto 5.2.5 execute our generated Step Functions definitions, fast.

moto bugs worked around (each patch's docstring says how it shows and why the fix is right):
1. ASL parameter names reach boto3 unconverted (getmoto/moto#10076, fix pending in #10094).
2. A Parallel branch failing with a ``States.*`` error crashes (same code as in
   localstack/localstack#10489).
3. ``$[0].st`` returns ``[{...}]`` instead of the object (moto's own fix for getmoto/moto#7825).
4. DescribeJobs iterates the job table while other threads add to it (thread safety).
5. A retried `.sync` task waits on an already interrupted callback endpoint and fails with
   ``States.Timeout`` (callback listening came with localstack/localstack#11197).
Speed-ups, no change in behaviour: ANTLR parse trees, JSONPath parses and the Batch client are
reused, `.sync` polls every 50 ms instead of 500 ms, moto's per-state ERROR logs are muted.
Plus a hook for ``aslrun.FakeBatch`` to decide how each job ends. Everything is applied only
inside ``patched_moto()``. Remove a patch when the pinned moto fixes its bug.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import botocore.session
from jsonpath_ng.jsonpath import Index
from moto.batch.models import BatchBackend, Job
from moto.batch_simple.models import BatchSimpleBackend
from moto.stepfunctions.parser.asl.component.common.error_name import custom_error_name
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.common.string import string_expression
from moto.stepfunctions.parser.asl.component.intrinsic.argument import argument
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_batch,
    state_task_service_callback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
    StateTaskServiceBatch,
)
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils import json_path
from moto.stepfunctions.parser.utils import camel_to_snake_case

# Called by moto's simple Batch backend for each submitted job instead of finishing it at once.
JobRunner = Callable[[Job], None]

# moto polls a `.sync` job every 0.5 s; tests with dozens of jobs would spend most time waiting.
SYNC_POLL_SECONDS = 0.05
_TREES: dict[str, Any] = {}  # ANTLR parse tree by definition text, see _cached_parser


@functools.cache
def _batch_model() -> Any:
    return botocore.session.get_session().get_service_model("batch")


def _operation(action: str) -> Any:
    """botocore's operation model for an action given as ``submitJob`` or ``submit_job``."""
    model = _batch_model()
    wanted = camel_to_snake_case(action)
    name = next(op for op in model.operation_names if camel_to_snake_case(op) == wanted)
    return model.operation_model(name)


def _normalise_parameters(self: StateTaskServiceBatch, parameters: dict, boto_service_name: str | None = None,
                          service_action_name: str | None = None) -> None:
    """ASL names (``JobDefinition``, ``ContainerOverrides.Environment[].Name``) -> boto3 names.

    moto bug getmoto/moto#10076 (fix pending in getmoto/moto#10094): moto's copy of
    LocalStack's Batch integration left this hook empty, so SubmitJob raises
    ``KeyError: 'JobDefinition'``. This is LocalStack's implementation of the hook.
    """
    shape = _operation(service_action_name or self.resource.api_action).input_shape
    if shape is not None:
        self._to_boto_request(parameters, shape)


def _normalise_response(self: StateTaskServiceBatch, response: Any, boto_service_name: str | None = None,
                        service_action_name: str | None = None) -> None:
    """boto3 names in the SubmitJob/DescribeJobs answers -> ASL names (``JobId``), same bug."""
    shape = _operation(service_action_name or self.resource.api_action).output_shape
    if shape is not None:
        self._from_boto_response(response, shape)


def _error_name(error_name: str | None) -> Any:
    """What a failed Parallel re-raises: ``States.*`` errors keep their reserved type.

    moto bug (aws-notes.md, bug 2; localstack/localstack#10489 shows the same crash): a branch
    failing with e.g. ``States.TaskFailed`` is re-raised as ``CustomErrorName``, whose
    constructor rejects the ``States.`` prefix with ValueError, so the execution crashes
    instead of failing with the branch's error.
    """
    if error_name is not None and error_name.startswith(custom_error_name.ILLEGAL_CUSTOM_ERROR_PREFIX):
        try:
            return StatesErrorName.from_name(error_name)
        except ValueError:  # a States.* name moto does not know: keep it as a plain name
            name = custom_error_name.CustomErrorName(None)
            name.error_name = error_name
            return name
    return custom_error_name.CustomErrorName(error_name)


# Speed only: jsonpath_ng builds a new PLY parser for every parse() (~3 ms); moto parses each
# path at every evaluation. Parsed paths are immutable, so one parse per path text is enough.
_parse_ext = functools.lru_cache(maxsize=None)(json_path.parse)
_parse_plain = functools.lru_cache(maxsize=None)(result_path.parse)


def _extract_json(path: str, data: Any) -> Any:
    """A path such as ``$[0].st`` (what a Parallel's ResultSelector uses) selects one value.

    moto bug: its ``extract_json`` departs from LocalStack's to fix getmoto/moto#7825
    (filters such as ``$.a[?(@.x == 1)].y``) and now wraps *every* field read under an
    array index in a list, so ``$[0].st`` gives ``[{...}]``. Step Functions returns the
    object: a path of fields and indexes only names a single node (AWS docs, "Using
    JSONPath paths", reference paths). Filter paths keep moto's behaviour.
    """
    if "?" in path or "*" in path or ":" in path or ".." in path:
        return json_path.extract_json(path, data)
    matches = _parse_ext(path).find(data)
    if len(matches) == 1 and not isinstance(matches[0].path, Index):
        return matches[0].value
    return json_path.extract_json(path, data)  # errors and array results as moto does


def _cached_parser() -> Callable[[str], tuple[Any, Any]]:
    """Parse each definition once: moto parses it with ANTLR at create and at every start
    (0.3-0.5 s CPU for our 4-10 step machines). The tree is only read afterwards; each call
    still builds fresh evaluation components from it, as moto does."""
    original = AmazonStateLanguageParser.parse

    def parse(definition: str) -> tuple[Any, Any]:
        tree = _TREES.get(definition)
        if tree is None:
            program, tree = original(definition)
            _TREES[definition] = tree
            return program, tree
        return Preprocessor().visit(tree), tree

    return parse


def _describe_jobs(self: BatchBackend, jobs: list[str] | None) -> list[dict[str, Any]]:
    """DescribeJobs over a snapshot of the job table.

    moto bug (thread safety): ``BatchBackend.describe_jobs`` iterates ``self._jobs`` while
    other threads submit jobs, which raises "dictionary changed size during iteration";
    the `.sync` poll then fails the task with ``States.Runtime``. Any Parallel whose
    branches submit and poll at the same time can hit it, so concurrent runs hit it often.
    """
    wanted = set(jobs or ())
    return [job.describe() for key, job in list(self._jobs.items())
            if not wanted or key in wanted or job.arn in wanted]


def _retry_with_fresh_callback(original: Callable[..., None]) -> Callable[..., None]:
    """Each attempt of a `.sync` task waits on a callback endpoint that is not yet interrupted.

    moto bug (also in LocalStack's ``state_task_service_callback.py``): a Batch task listens
    for a task-token callback beside its `.sync` poll, on an endpoint created once per state
    entry and interrupted (event set) when an attempt ends. A retry reuses the interrupted
    endpoint, its wait returns at once, and the attempt fails with ``States.Timeout`` unless
    the job had already finished at the first poll.
    """

    def eval_integration_pattern(self: StateTaskServiceBatch, env: Any, *args: Any, **kwargs: Any) -> None:
        token = env.states.context_object.context_object_data.get("Task", {}).get("Token")
        endpoint = env.callback_pool_manager.get(token) if token else None
        if endpoint is not None and endpoint.get_outcome() is None:
            endpoint._notify_event.clear()
        original(self, env, *args, **kwargs)

    return eval_integration_pattern


def _cached_batch_client() -> Callable[..., Any]:
    """One boto3 Batch client per region for the block, instead of two per task.

    Speed only: creating a client walks botocore's data folders (~20 ms, more under load);
    clients are thread-safe. Credentials per state are not used by our definitions.
    """
    clients: dict[str, Any] = {}
    lock = threading.Lock()
    original = state_task_service_batch.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        with lock:
            if region not in clients:
                clients[region] = original(region=region, service=service, state_credentials=state_credentials)
            return clients[region]

    return boto_client_for


def _simple_batch_runner(runner: JobRunner) -> Callable[..., None]:
    def mark_job(self: BatchSimpleBackend, include_start_attempt: bool, job: Job) -> None:
        self.backend._jobs[job.job_id] = job
        job.log_stream_name = job._stream_name
        runner(job)

    return mark_job


@contextmanager
def patched_moto(job_runner: JobRunner | None = None) -> Iterator[None]:
    """Apply the patches for the duration of the block.

    ``job_runner`` replaces what moto's simple Batch backend does with a submitted job
    (normally: succeed at once). It receives moto's ``Job`` and must eventually call
    ``job._mark_stopped(success=...)``; see ``aslrun.FakeBatch``.
    """
    _batch_model()  # load once here, not in every execution thread at the same time
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(StateTaskServiceBatch, "_normalise_parameters", _normalise_parameters))
        stack.enter_context(mock.patch.object(StateTaskServiceBatch, "_normalise_response", _normalise_response))
        stack.enter_context(mock.patch.object(branches_decl, "CustomErrorName", _error_name))
        stack.enter_context(mock.patch.object(BatchBackend, "describe_jobs", _describe_jobs))
        stack.enter_context(mock.patch.object(
            StateTaskServiceBatch, "_eval_integration_pattern",
            _retry_with_fresh_callback(StateTaskServiceBatch._eval_integration_pattern)))
        stack.enter_context(mock.patch.object(AmazonStateLanguageParser, "parse", staticmethod(_cached_parser())))
        stack.enter_context(mock.patch.object(json_path, "parse", _parse_ext))
        stack.enter_context(mock.patch.object(result_path, "parse", _parse_plain))
        stack.enter_context(mock.patch.object(state_task_service_batch, "boto_client_for", _cached_batch_client()))
        for module in (string_expression, argument):
            stack.enter_context(mock.patch.object(module, "extract_json", _extract_json))
        stack.enter_context(mock.patch.object(state_task_service_callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK",
                                              SYNC_POLL_SECONDS))
        # moto logs every Choice `IsPresent` miss and caught job failure at ERROR with the whole
        # state's repr; the outcome is in the execution history, so keep test output readable.
        log = logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component")
        stack.callback(log.setLevel, log.level)
        log.setLevel(logging.CRITICAL)
        if job_runner is not None:
            stack.enter_context(mock.patch.object(BatchSimpleBackend, "_mark_job_as_finished",
                                                  _simple_batch_runner(job_runner)))
        yield
