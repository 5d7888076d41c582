"""The recording interceptor: one object for client and worker, one header key.

Workflow side: every scheduled activity, local activity, child workflow, signal sent
and continue-as-new carries a ``runrecord`` header, so what the run did is in Temporal
history (the mirror reads it back). Nothing is written from inside the workflow, so
replay records nothing twice. The hooks here build headers and schedule calls; each
other concern lives with the module that owns it: what the run publishes (memo, search
attributes) in ``workflows/_status.py``, the approval gate every activity passes first in
``workflows/_approvals.py``, rollback and sub-agent reports in ``workflows/_rollback.py``.

Activity side: every attempt (start, end, outcome, error, model route) and every
artifact goes to the journal, because history keeps only an activity's final attempt.
A tool the policy gates that arrives without an approved header is refused first
(``Policy.refusal``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, NoReturn, TypeVar, cast

import temporalio.activity
import temporalio.api.common.v1
import temporalio.client
import temporalio.converter
import temporalio.worker
import temporalio.workflow
from pydantic import BaseModel
from temporalio.exceptions import ApplicationError

from runrecord._contract import (
    HEADER_KEY,
    OPERATION_SIGNAL,
    CallHeader,
    ErrorType,
    JournalEntry,
    RunContext,
)
from runrecord.activities._artifacts import CurrentCall, current_call
from runrecord.activities._mcp import MCPServerSpec, parse_activity
from runrecord.activities._tool import ToolSpec, activity_name, tool_spec, undeclared
from runrecord.integrations import Recognised, recognise
from runrecord.records import (
    Artifact,
    Attempt,
    AttemptOutcome,
    MCPCall,
    SideEffect,
)
from runrecord.worker._nudge import nudge
from runrecord.workflows._agent import AgentSpec, agent_spec
from runrecord.workflows._approvals import APPROVAL_SIGNALS, ApprovalGate, error_text
from runrecord.workflows._mcp import MCPSnapshot
from runrecord.workflows._policy import Action, Policy
from runrecord.workflows._rollback import RunRollback
from runrecord.workflows._status import RunStatus

__all__ = [
    "RunRecordInterceptor",
    "RunStartInterceptor",
    "current_turn",
    "decode_header",
    "encode_header",
    "starting",
    "turn",
]

_M = TypeVar("_M", bound=BaseModel)
_converter = temporalio.converter.default().payload_converter


def encode_header(model: BaseModel) -> temporalio.api.common.v1.Payload:
    return _converter.to_payload(model.model_dump(mode="json", by_alias=True))


def _with_header(
    headers: Mapping[str, temporalio.api.common.v1.Payload], model: BaseModel
) -> dict[str, temporalio.api.common.v1.Payload]:
    """``headers`` with ``model`` as the ``runrecord`` header (any earlier one replaced)."""
    return {**headers, HEADER_KEY: encode_header(model)}


def decode_header(
    headers: Mapping[str, temporalio.api.common.v1.Payload], model: type[_M]
) -> _M | None:
    payload = headers.get(HEADER_KEY)
    if payload is None:
        return None
    try:
        if payload.metadata.get("encoding") == b"json/plain":
            # What encode_header writes: parsed by pydantic at once (on every activity's path).
            return model.model_validate_json(payload.data)
        return model.model_validate(_converter.from_payload(payload))
    except Exception:
        return None


def artifact_ids(values: Any, depth: int = 0) -> list[str]:
    """Artifacts passed in arguments (as Artifact or its JSON form): the lineage edges of a call."""
    found: list[str] = []
    if depth > 3 or values is None or isinstance(values, str | bytes | int | float | bool):
        return found
    if isinstance(values, Artifact):
        return [values.artifact_id]
    if isinstance(values, Mapping):
        artifact_id = values.get("artifactId")
        if isinstance(artifact_id, str) and "uri" in values:
            return [artifact_id]
        items: Iterable[Any] = values.values()
    elif isinstance(values, list | tuple | set | frozenset):
        items = values
    elif isinstance(values, BaseModel):
        items = values.__dict__.values()
    else:
        return found
    for item in items:
        for artifact_id in artifact_ids(item, depth + 1):
            if artifact_id not in found:
                found.append(artifact_id)
    return found


def _fired_timeout(info: temporalio.activity.Info, started: datetime) -> str | None:
    """Which timeout cancelled this attempt, as far as the worker can tell."""
    elapsed = (datetime.now(UTC) - started).total_seconds()
    limit = info.start_to_close_timeout
    if limit is not None and elapsed + 0.5 >= limit.total_seconds():
        return "start_to_close"
    if info.schedule_to_close_timeout is not None:
        return "schedule_to_close"
    return None


def _positional_parameters(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.name != "self")


class RunRecordInterceptor(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """Records agent runs. Install it on the client (or through ``RunRecordPlugin``)."""

    def __init__(
        self,
        record: Callable[[JournalEntry], None] | None = None,
        *,
        tools: Iterable[ToolSpec] = (),
        identity: str | None = None,
        mcp_servers: Iterable[MCPServerSpec] = (),
        policy: Policy | None = None,
    ) -> None:
        self.record = record
        self.identity = identity or f"{os.getpid()}@{socket.gethostname()}"
        self.tools: dict[str, ToolSpec] = {spec.name: spec for spec in tools}
        self.mcp_servers: dict[str, MCPServerSpec] = {s.name: s for s in mcp_servers}
        self.policy = policy or Policy()
        self._arity: dict[str, int] = {}
        # Every activity this worker runs, declared or not.
        self.activity_names: set[str] = set()
        outer = self

        class _BoundWorkflowInbound(_WorkflowInbound):
            interceptor = outer

        self._workflow_class = _BoundWorkflowInbound

    def add_tools(self, activities: Iterable[Callable[..., Any]]) -> None:
        for fn in activities:
            self.activity_names.add(activity_name(fn))
            spec = tool_spec(fn)
            if spec is not None:
                self.tools[spec.name] = spec
                self._arity[spec.name] = _positional_parameters(fn)

    def spec_for(self, name: str) -> ToolSpec:
        return self.tools.get(name) or tool_spec(name) or self.policy.tool(name) or undeclared(name)

    def framework_spec(self, call: Recognised) -> ToolSpec:
        """A framework call's declaration; a call the framework itself wants approved (its
        own approval step) needs runrecord's approval, so a person decides once, here."""
        spec = self._framework_declaration(call)
        if call.approval and not spec.approval:
            return spec.model_copy(update={"approval": True})
        return spec

    def _framework_declaration(self, call: Recognised) -> ToolSpec:
        """A framework call's declaration: a model request, or its tool by its real name
        (``toolset:name`` first, then the name alone) as ``@runrecord.tool`` declares it,
        else as the policy file's [tools] do; undeclared tools stay ``unknown``."""
        if call.model is not None:
            return ToolSpec(name=call.tool, side_effect=SideEffect.MODEL, idempotent=True)
        if call.side_effect is not None:
            return ToolSpec(name=call.tool, side_effect=call.side_effect, idempotent=True)
        if call.tools:
            return self._together(
                call.tool,
                [
                    self.framework_spec(call.model_copy(update={"tool": name, "tools": []}))
                    for name in call.tools
                ],
            )
        if call.toolset:
            qualified = f"{call.toolset}:{call.tool}"
            found = self.tools.get(qualified) or tool_spec(qualified)
            if found is not None:
                return found.model_copy(update={"name": call.tool})
        declared = self.tools.get(call.tool) or tool_spec(call.tool)
        if declared is not None:
            return declared
        return self.policy.tool(call.tool, call.toolset) or undeclared(call.tool)

    @staticmethod
    def _together(name: str, specs: list[ToolSpec]) -> ToolSpec:
        """Several tools run by one activity, as one call: needs approval if any does; a
        side effect they share, else ``unknown`` (the most dangerous class)."""
        effects = {spec.side_effect for spec in specs}
        return ToolSpec(
            name=name,
            side_effect=effects.pop() if len(effects) == 1 else SideEffect.UNKNOWN,
            approval=any(spec.approval for spec in specs),
            idempotent=all(spec.idempotent for spec in specs),
            irreversible=any(spec.irreversible for spec in specs),
            network=any(spec.network for spec in specs),
        )

    def arity(self, name: str) -> int | None:
        """How many positional arguments the activity ``name`` takes, if this worker knows it."""
        return self._arity.get(name)

    def refusal(
        self, activity: str, header: CallHeader | None, args: Sequence[Any] = ()
    ) -> str | None:
        """Why an activity must not run here: the fail-closed check on the activity side.

        A framework's activity is judged as the tool it really is, recognised again from
        its arguments here: never from what its header claims."""
        framework_call = recognise(activity, args)
        if framework_call is not None:
            spec = self.framework_spec(framework_call)
            return self.policy.refusal(spec.name, header, spec)
        target = parse_activity(activity)
        # An MCP server's trust comes from this worker's registration, never from the header.
        registration = self.mcp_servers.get(target[0]) if target else None
        return self.policy.refusal(
            activity,
            header,
            self.spec_for(activity),
            server=target[0] if target else None,
            trusted=registration is not None and registration.trusted,
        )

    def intercept_client(
        self, next: temporalio.client.OutboundInterceptor
    ) -> temporalio.client.OutboundInterceptor:
        return _ClientOutbound(next)

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        return _ActivityInbound(next, self)

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        # The workflow's way out of the sandbox to tell mirrors a run started (no I/O here).
        input.unsafe_extern_functions[_RUN_STARTED] = nudge
        return self._workflow_class


class RunStartInterceptor(temporalio.client.Interceptor):
    """The client side alone: runs started through the client get their ``runrecord`` header.

    ``RunRecordPlugin`` installs this on the client and a ``RunRecordInterceptor`` per
    worker, since the SDK shares a client's worker interceptors with all its workers.
    """

    def intercept_client(
        self, next: temporalio.client.OutboundInterceptor
    ) -> temporalio.client.OutboundInterceptor:
        return _ClientOutbound(next)


class _ClientOutbound(temporalio.client.OutboundInterceptor):
    async def start_workflow(
        self, input: temporalio.client.StartWorkflowInput
    ) -> temporalio.client.WorkflowHandle[Any, Any]:
        if HEADER_KEY not in input.headers:
            context = _start_var.get() or RunContext(turn_id=current_turn() or str(uuid.uuid4()))
            input.headers = _with_header(input.headers, context)
        handle = await super().start_workflow(input)
        nudge(input.id, handle.result_run_id or "")
        return handle


class _WorkflowInbound(temporalio.worker.WorkflowInboundInterceptor):
    interceptor: RunRecordInterceptor

    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        self.run_id = ""
        self.agent_id: str | None = None
        self.host: str | None = None
        self.spec: AgentSpec | None = None
        self.context = RunContext()
        self.mcp = MCPSnapshot(self.interceptor.mcp_servers)
        self._seq = 0
        self._identified = False
        self._call_prefix = ""
        self.status = RunStatus(self.mcp)
        self.gate = ApprovalGate(self.interceptor.policy, self.status.publish)
        self.rollback = RunRollback(self.status, self.gate.pending, self.interceptor.arity)
        super().init(_WorkflowOutbound(outbound, self))

    @property
    def compensating(self) -> str | None:
        """The call a compensator being scheduled undoes (its header's ``compensates``)."""
        return self.rollback.compensating

    async def execute_workflow(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        info = temporalio.workflow.info()
        context = decode_header(input.headers, RunContext) or RunContext()
        # Call ids restart with each continue-as-new run: qualify them so they stay unique
        # in the run record (the mirror derives local activities' ids the same way).
        self._call_prefix = f"{info.run_id[:8]}." if info.continued_run_id else ""
        if not context.turn_id:
            context.turn_id = str(temporalio.workflow.uuid4())
        if context.root_run_id is None:
            context.root_run_id = info.workflow_id
        self.run_id, self.context = info.workflow_id, context
        spec = self.spec = agent_spec(input.type)
        self.agent_id = spec.agent_id if spec else info.workflow_type
        self.host = f"{self.agent_id}@{spec.version}" if spec and spec.version else self.agent_id
        self.status.start(self.agent_id, spec, context, self.interceptor.tools.values())
        self.gate.install()
        on_failure = spec is not None and spec.rollback_on_failure
        self.rollback.install(self.run_id, context.depth, on_failure=on_failure)
        # Notes for the record only (the mirror reads them from history): nothing to do here.
        temporalio.workflow.set_signal_handler(OPERATION_SIGNAL, _ignore)
        self.status.set("running", first=True)
        started = temporalio.workflow.extern_functions().get(_RUN_STARTED)
        if started is not None and not temporalio.workflow.unsafe.is_replaying():
            started(info.workflow_id, info.run_id)
        return await self.rollback.run(self._run_agent(input))

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        decision = APPROVAL_SIGNALS.get(input.signal)
        if decision is not None and len(input.args) > 1:
            # Several payloads reach the one-argument handler decoded: refuse, never raise.
            self.gate.refuse_unreadable(decision, f"{len(input.args)} payloads, expected one")
            return
        await super().handle_signal(input)

    async def _run_agent(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        spec = self.spec
        if spec and spec.mcp_servers:
            # Listed side by side: each server starts while the others do.
            listings = (self.mcp.list_at_start(s, self.agent_id) for s in spec.mcp_servers)
            await asyncio.gather(*listings)
        return await super().execute_workflow(input)

    def next_call(
        self, activity: str, args: Sequence[Any], *, local: bool
    ) -> tuple[CallHeader, ToolSpec]:
        self._seq += 1
        target = parse_activity(activity)
        mcp: MCPCall | None = None
        framework_call = recognise(activity, args) if target is None else None
        if target is not None:
            spec, mcp = self.mcp.call(*target, args, host=self.host)
        elif framework_call is not None:
            spec = self.interceptor.framework_spec(framework_call)
            self._identify(framework_call)

        else:
            spec = self.interceptor.spec_for(activity)
        header = CallHeader(
            **spec.traits(),
            tool_call_id=f"{self._call_prefix}{self._seq}",
            tool=spec.name,
            run_id=self.run_id,
            agent_id=(framework_call and framework_call.agent_id) or self.agent_id,
            turn_id=self.context.turn_id,
            local=local,
            mcp_server=target[0] if target else None,
            mcp=mcp,
            consumes=artifact_ids(args),
            compensates=self.compensating,
        )
        if framework_call is not None:
            header.framework = framework_call.framework
            header.activity_type = activity
            header.toolset = framework_call.toolset
            header.model = framework_call.model
            if header.model is not None and framework_call.in_workflow_tools:
                # In the header, not the memo: a replayer knows no activities, and a header
                # never makes replay nondeterministic.
                header.model.in_workflow = [
                    self.interceptor.spec_for(name).registry_entry()
                    for name in dict.fromkeys(framework_call.in_workflow_tools)
                    if name not in self.interceptor.activity_names
                ]
        return header, spec

    def _identify(self, call: Recognised) -> None:
        """The first framework agent seen names a run no ``@runrecord.agent`` names."""
        if self.spec is not None or not call.agent_id or self._identified:
            return
        self._identified = True
        self.agent_id = call.agent_id
        self.host = f"{call.agent_id}@{call.agent_version}" if call.agent_version else call.agent_id
        self.status.identify(call.agent_id, call.agent_version)

    def schedule(
        self,
        input: temporalio.worker.StartActivityInput | temporalio.worker.StartLocalActivityInput,
        start: Callable[[Any], temporalio.workflow.ActivityHandle[Any]],
    ) -> temporalio.workflow.ActivityHandle[Any]:
        """Pass a call through the approval gate, then schedule it with its header."""
        local = isinstance(input, temporalio.worker.StartLocalActivityInput)
        if self.rollback.stops_calls:
            raise asyncio.CancelledError(f"run {self.run_id} is rolling back")
        header, spec = self.next_call(input.activity, input.args, local=local)
        need = self.gate.requirement(header, spec.approval)
        if need.action is not Action.REQUIRE:
            header.approval = self.gate.decide_by_policy(header, need)
            return self._start(input, header, start)

        shown: Sequence[Any] = input.args
        if header.framework is not None:
            found = recognise(input.activity, input.args)
            if found is not None and found.arguments is not None:
                shown = found.arguments

        async def after_approval() -> Any:
            approval = await self.gate.wait(header, need, shown)
            return await self._start(input, header.model_copy(update={"approval": approval}), start)

        # Nothing reaches history until the decision; the agent awaits this task like a handle.
        return cast(temporalio.workflow.ActivityHandle[Any], asyncio.create_task(after_approval()))

    def _start(
        self,
        input: temporalio.worker.StartActivityInput | temporalio.worker.StartLocalActivityInput,
        header: CallHeader,
        start: Callable[[Any], temporalio.workflow.ActivityHandle[Any]],
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = _with_header(input.headers, header)
        server = header.mcp_server
        registration = self.interceptor.mcp_servers.get(server) if server else None
        if registration is not None and input.retry_policy is None:
            # temporalio-mcp retries a dead server forever by default; the registration bounds it.
            input.retry_policy = registration.retry_policy
        handle = start(input)
        if server and header.mcp and header.mcp.operation == "list-tools":
            handle.add_done_callback(functools.partial(self.status.mcp_listed, server))
        self.rollback.track(handle, header, input)
        return handle

    def sender_context(self) -> RunContext:
        """On a signal this run sends: which run (and turn) it came from."""
        return RunContext(
            turn_id=self.context.turn_id,
            parent_run_id=self.run_id,
            root_run_id=self.context.root_run_id or self.run_id,
            depth=self.context.depth,
        )

    def child_context(self, args: Sequence[Any]) -> RunContext:
        return RunContext(
            consumes=artifact_ids(args),
            turn_id=self.context.turn_id,
            parent_run_id=self.run_id,
            root_run_id=self.context.root_run_id or self.run_id,
            depth=self.context.depth + 1,
        )


class _WorkflowOutbound(temporalio.worker.WorkflowOutboundInterceptor):
    def __init__(
        self, next: temporalio.worker.WorkflowOutboundInterceptor, root: _WorkflowInbound
    ) -> None:
        super().__init__(next)
        self._root = root

    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        return self._root.schedule(input, self.next.start_activity)

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        return self._root.schedule(input, self.next.start_local_activity)

    async def start_child_workflow(
        self, input: temporalio.worker.StartChildWorkflowInput
    ) -> temporalio.workflow.ChildWorkflowHandle[Any, Any]:
        self._root.rollback.child_started(input.id, self._root._seq)
        input.headers = _with_header(input.headers, self._root.child_context(input.args))
        return await super().start_child_workflow(input)

    async def signal_child_workflow(
        self, input: temporalio.worker.SignalChildWorkflowInput
    ) -> None:
        input.headers = _with_header(input.headers, self._root.sender_context())
        await super().signal_child_workflow(input)

    async def signal_external_workflow(
        self, input: temporalio.worker.SignalExternalWorkflowInput
    ) -> None:
        input.headers = _with_header(input.headers, self._root.sender_context())
        await super().signal_external_workflow(input)

    def continue_as_new(self, input: temporalio.worker.ContinueAsNewInput) -> NoReturn:
        input.headers = _with_header(input.headers, self._root.context)
        super().continue_as_new(input)


class _ActivityInbound(temporalio.worker.ActivityInboundInterceptor):
    def __init__(
        self, next: temporalio.worker.ActivityInboundInterceptor, root: RunRecordInterceptor
    ) -> None:
        super().__init__(next)
        self._root = root

    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        info = temporalio.activity.info()
        header = decode_header(input.headers, CallHeader)
        refusal = self._root.refusal(info.activity_type, header, input.args)
        if refusal is not None:
            raise ApplicationError(refusal, type=ErrorType.APPROVAL_MISSING, non_retryable=True)
        if header is None:
            # Not scheduled by a recorded run (e.g. a standalone activity): nothing to link to.
            return await super().execute_activity(input)
        nudge(info.workflow_id or header.run_id, info.workflow_run_id or "")
        # Without a journal the call still knows its header (MCP drift checks read it).
        record = self._root.record or _discard
        started = datetime.now(UTC)
        attempt = Attempt(
            attempt=info.attempt,
            started_at=started,
            outcome=AttemptOutcome.RUNNING,
            worker_identity=self._root.identity,
        )
        self._write(record, header, info.workflow_run_id, attempt)
        call = CurrentCall(header, info.attempt, record, temporal_run_id=info.workflow_run_id or "")
        token = current_call.set(call)
        try:
            result = await super().execute_activity(input)
        except asyncio.CancelledError as err:
            details = temporalio.activity.cancellation_details()
            if details is not None and details.timed_out:
                fired = _fired_timeout(info, started)
                error = f"TimeoutError: activity {fired} timeout" if fired else "TimeoutError"
                self._finish(record, call, attempt, AttemptOutcome.TIMED_OUT, error)
            else:
                self._finish(record, call, attempt, AttemptOutcome.CANCELLED, error_text(err))
            raise
        except BaseException as err:
            self._finish(record, call, attempt, AttemptOutcome.FAILED, error_text(err))
            raise
        finally:
            current_call.reset(token)
        self._finish(record, call, attempt, AttemptOutcome.SUCCEEDED, None)
        return result

    def _finish(
        self,
        record: Callable[[JournalEntry], None],
        call: CurrentCall,
        attempt: Attempt,
        outcome: AttemptOutcome,
        error: str | None,
    ) -> None:
        done = attempt.model_copy(
            update={
                "ended_at": datetime.now(UTC),
                "outcome": outcome,
                "error": error,
                "route": call.notes.get("route"),
            }
        )
        self._write(record, call.header, call.temporal_run_id, done)

    @staticmethod
    def _write(
        record: Callable[[JournalEntry], None],
        header: CallHeader,
        temporal_run_id: str | None,
        attempt: Attempt,
    ) -> None:
        record(
            JournalEntry(
                kind="attempt",
                run_id=header.run_id,
                tool_call_id=header.tool_call_id,
                temporal_run_id=temporal_run_id or None,
                attempt=attempt,
            )
        )


_RUN_STARTED = "__runrecord_run_started"


def _discard(entry: JournalEntry) -> None:
    pass


def _ignore(*args: Any) -> None:
    pass


_turn_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "runrecord_turn", default=None
)


_start_var: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "runrecord_start", default=None
)

_V = TypeVar("_V")


class _Within(Generic[_V]):
    """A block during which a context variable holds ``value``; left, it holds what it did."""

    _var: contextvars.ContextVar[_V | None]

    def __init__(self, value: _V) -> None:
        self._value = value
        self._token: contextvars.Token[_V | None] | None = None

    def __enter__(self) -> _V:
        self._token = self._var.set(self._value)
        return self._value

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            self._var.reset(self._token)


class starting(_Within[RunContext]):  # noqa: N801 - a context manager
    """Runs started inside this block get ``context`` (e.g. a ``rerun_of`` link) as theirs."""

    _var = _start_var

    @property
    def context(self) -> RunContext:
        return self._value


def current_turn() -> str | None:
    """The user turn that runs started from this context belong to (see ``turn``)."""
    return _turn_var.get()


class turn(_Within[str]):  # noqa: N801 - a context manager: ``with runrecord.turn("t-1"): ...``
    """Runs started inside this block belong to the user turn ``turn_id``."""

    _var = _turn_var

    @property
    def turn_id(self) -> str:
        return self._value
