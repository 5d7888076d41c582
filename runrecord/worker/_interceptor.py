"""The recording interceptor: one object for client and worker, one header key.

Workflow side: every scheduled activity, local activity, child workflow, signal sent
and continue-as-new carries a ``runrecord`` header, so what the run did is in Temporal
history (the mirror reads it back). Nothing is written from inside the workflow, so
replay records nothing twice. Every activity passes the approval gate first: a call the
policy wants approved is not scheduled until an approval signal arrives (memo
``runrecord.event`` records each request and decision in history). A rollback signal
cancels the agent and compensates its completed calls.

Activity side: every attempt (start, end, outcome, error, model route) and every
artifact goes to the journal, because history keeps only an activity's final attempt.
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
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar, cast

import temporalio.activity
import temporalio.api.common.v1
import temporalio.client
import temporalio.converter
import temporalio.worker
import temporalio.workflow
from pydantic import BaseModel, ValidationError
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

from runrecord._contract import (
    AGENT_ATTR,
    AWAITING_ATTR,
    EVENT_MEMO_KEY,
    FAILURE_STATUS,
    HEADER_KEY,
    MEMO_KEY,
    OPERATION_SIGNAL,
    PENDING_MEMO_KEY,
    ROLLBACK_SIGNAL,
    STATUS_ATTR,
    SUB_AGENT_CALLS_SIGNAL,
    TURN_ATTR,
    ApprovalRequest,
    CallHeader,
    ControlEvent,
    JournalEntry,
    RollbackRequest,
    RunContext,
    RunMemo,
    SubAgentCalls,
)
from runrecord.activities._artifacts import CurrentCall, current_call
from runrecord.activities._mcp import MCPServerSpec, parse_activity
from runrecord.activities._tool import ToolSpec, tool_spec, undeclared
from runrecord.records import (
    ApprovalRejection,
    ApprovalState,
    Artifact,
    Attempt,
    AttemptOutcome,
    MCPCall,
    ModelSpec,
)
from runrecord.worker._nudge import nudge
from runrecord.workflows._agent import AgentSpec, agent_spec
from runrecord.workflows._approvals import APPROVAL_SIGNALS, ApprovalGate, redact, redact_text
from runrecord.workflows._mcp import MCPSnapshot
from runrecord.workflows._policy import Action, Policy
from runrecord.workflows._rollback import (
    ROLLBACK_ON_FAILURE,
    CompletedCall,
    compensable,
    from_report,
    needs_undoing,
    roll_back,
    summary,
    undone_ids,
)

_M = TypeVar("_M", bound=BaseModel)
_converter = temporalio.converter.default().payload_converter


def encode_header(model: BaseModel) -> temporalio.api.common.v1.Payload:
    return _converter.to_payload(model.model_dump(mode="json", by_alias=True))


def decode_header(
    headers: Mapping[str, temporalio.api.common.v1.Payload], model: type[_M]
) -> _M | None:
    payload = headers.get(HEADER_KEY)
    if payload is None:
        return None
    try:
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


_COMPENSATION_TIMEOUT = timedelta(minutes=5)


def _positional_parameters(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.name != "self")


def _redacted_model(model: ModelSpec | None) -> ModelSpec | None:
    """The agent's model as the memo may hold it: its parameters can carry keys and headers."""
    if model is None:
        return None
    return ModelSpec.model_validate(redact(model.model_dump(mode="json", by_alias=True)))


ERROR_LIMIT = 2000
"""Characters kept of an error text, after redaction."""


def _error_text(err: BaseException) -> str:
    return redact_text(f"{type(err).__name__}: {err}", ERROR_LIMIT)


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
        outer = self

        class _BoundWorkflowInbound(_WorkflowInbound):
            interceptor = outer

        self._workflow_class = _BoundWorkflowInbound

    def add_tools(self, activities: Iterable[Callable[..., Any]]) -> None:
        for fn in activities:
            spec = tool_spec(fn)
            if spec is not None:
                self.tools[spec.name] = spec
                self._arity[spec.name] = _positional_parameters(fn)

    def spec_for(self, name: str) -> ToolSpec:
        return self.tools.get(name) or tool_spec(name) or undeclared(name)

    def arity(self, name: str) -> int | None:
        """How many positional arguments the activity ``name`` takes, if this worker knows it."""
        return self._arity.get(name)

    def refusal(self, activity: str, header: CallHeader | None) -> str | None:
        """Why an activity must not run here: the fail-closed check on the activity side."""
        target = parse_activity(activity)
        if header is not None and target is not None:
            # An MCP call: the tool and its side effect come from the run's MCP snapshot,
            # its server from the activity name and its trust from this worker's registration.
            registration = self.mcp_servers.get(target[0])
            need = self.policy.requirement(
                header.tool,
                header.side_effect,
                False,
                server=target[0],
                trusted=registration is not None and registration.trusted,
            )
        else:
            spec = self.spec_for(activity)
            need = self.policy.requirement(spec.name, spec.side_effect, spec.approval)
        if need.action is Action.NOT_REQUIRED:
            return None
        if need.action is Action.DENY:
            return f"tool {activity!r} is denied by policy rule {need.rule!r}; it was not run"
        approval = header.approval if header is not None else None
        if approval is None or approval.state != ApprovalState.APPROVED:
            return (
                f"tool {activity!r} needs approval (policy rule {need.rule!r}) but was scheduled "
                "without one, outside the runrecord approval gate; it was not run"
            )
        decider = approval.decided_by or ""
        if need.action is Action.REQUIRE and not self.policy.may_decide(decider, need.approvers):
            return (
                f"tool {activity!r} was approved by {decider!r}, who may not approve it under "
                f"policy rule {need.rule!r}; it was not run"
            )
        return None

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
            input.headers = {**input.headers, HEADER_KEY: encode_header(context)}
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
        self.memo = RunMemo()
        self.mcp = MCPSnapshot(self.interceptor.mcp_servers)
        self._seq = 0
        self._call_prefix = ""
        self._awaiting = False
        self.gate = ApprovalGate(self.interceptor.policy, self._publish)
        self.completed: list[CompletedCall] = []
        self.rollback_request: RollbackRequest | None = None
        self.rolling_back = False
        self.compensating: str | None = None
        # Sub-agent runs started (workflow id -> own calls scheduled before), and the calls
        # they reported as still in effect when they closed.
        self.children: dict[str, int] = {}
        self.sub_agent_calls: list[CompletedCall] = []
        self.undone: set[str] = set()
        super().init(_WorkflowOutbound(outbound, self))

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
        self.memo = RunMemo(
            agent_id=self.agent_id,
            agent_version=spec.version if spec else None,
            turn_id=context.turn_id,
            model=_redacted_model(spec.model) if spec else None,
            prompt_version=spec.prompt.prompt_version if spec and spec.prompt else None,
            tool_registry=[
                t.registry_entry()
                for t in sorted(self.interceptor.tools.values(), key=lambda t: t.name)
            ],
            parent_run_id=context.parent_run_id,
            root_run_id=context.root_run_id,
            depth=context.depth,
        )
        self._upsert_memo()
        self.gate.install()
        temporalio.workflow.set_signal_handler(ROLLBACK_SIGNAL, self._on_rollback)
        temporalio.workflow.set_signal_handler(SUB_AGENT_CALLS_SIGNAL, self._on_sub_agent_calls)
        # Notes for the record only (the mirror reads them from history): nothing to do here.
        temporalio.workflow.set_signal_handler(OPERATION_SIGNAL, _ignore)
        self._set_status("running", first=True)
        try:
            result = await self._supervise(input)
        except temporalio.workflow.ContinueAsNewError:
            raise
        except BaseException:
            await self._report_to_parent()
            raise
        await self._report_to_parent()
        return result

    async def _supervise(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        # The agent runs as its own task so that a rollback signal can stop it.
        agent = asyncio.create_task(self._run_agent(input))
        try:
            await temporalio.workflow.wait_condition(
                lambda: agent.done() or self.rollback_request is not None
            )
        except asyncio.CancelledError:
            agent.cancel()
            return await self._outcome(agent)
        if not agent.done() and self.rollback_request is not None:
            agent.cancel()
            await asyncio.wait([agent])
            await self._roll_back(self.rollback_request, None)
        return await self._outcome(agent)

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

    async def _outcome(self, agent: asyncio.Task[Any]) -> Any:
        try:
            result = await agent
        except (temporalio.workflow.ContinueAsNewError, asyncio.CancelledError):
            raise
        except Exception as err:
            if self.spec is not None and self.spec.rollback_on_failure and not self.rolling_back:
                request = RollbackRequest(requested_by=ROLLBACK_ON_FAILURE, reason=_error_text(err))
                await self._roll_back(request, err)
            kind = err.type if isinstance(err, ApplicationError) else None
            self._set_status(FAILURE_STATUS[kind] if kind in FAILURE_STATUS else "failed")
            raise
        self._set_status("succeeded")
        return result

    async def _roll_back(self, request: RollbackRequest, cause: BaseException | None) -> NoReturn:
        self.rolling_back = True
        report = await roll_back(self.completed + self.sub_agent_calls, request, self._compensate)
        self.undone = undone_ids(report)
        self._publish(ControlEvent(kind="rollback", rollback=report), self.gate.pending())
        self._set_status(report.outcome)
        kind = "RollbackIncomplete" if report.not_undone else "RolledBack"
        raise ApplicationError(
            summary(report), report.to_json_dict(), type=kind, non_retryable=True
        ) from cause

    async def _compensate(self, call: CompletedCall) -> None:
        name = call.header.compensator or ""
        args = call.compensator_args(self.interceptor.arity(name))
        self.compensating = call.undo_id
        try:
            handle = temporalio.workflow.start_activity(name, args=args, **call.options)
        finally:
            self.compensating = None
        await handle

    def _on_sub_agent_calls(self, *args: Any) -> None:
        try:
            report = SubAgentCalls.model_validate(args[0] if len(args) == 1 else None)
        except ValidationError:
            temporalio.workflow.logger.warning("malformed runrecord sub-agent report ignored")
            return
        position = self.children.get(report.run_id)
        if position is None:
            # Only runs this run started may leave it calls to undo.
            temporalio.workflow.logger.warning("sub-agent report from an unknown run ignored")
            return
        own = self.context.depth
        self.sub_agent_calls += [
            from_report(c, depth=max(c.depth - own, 1), position=position) for c in report.calls
        ]

    async def _report_to_parent(self) -> None:
        """As a sub-agent run closes: tell the parent which calls it leaves in effect."""
        parent = temporalio.workflow.info().parent
        if parent is None:
            return
        calls = [
            c
            for c in self.completed + self.sub_agent_calls
            if needs_undoing(c) and c.undo_id not in self.undone
        ]
        if not calls or not temporalio.workflow.patched("runrecord-sub-agent-report"):
            return  # (histories from before reports existed replay without one)
        report = SubAgentCalls(
            run_id=self.run_id,
            calls=compensable(
                calls,
                depth=self.context.depth,
                task_queue=temporalio.workflow.info().task_queue,
                arity=self.interceptor.arity,
            ),
        )
        handle = temporalio.workflow.get_external_workflow_handle(
            parent.workflow_id, run_id=parent.run_id
        )
        try:
            # Awaited: the parent has the report before it learns that this run closed.
            await handle.signal(SUB_AGENT_CALLS_SIGNAL, report.to_json_dict())
        except Exception as err:  # a parent that has closed cannot roll back any more
            temporalio.workflow.logger.warning(f"sub-agent report not delivered: {err}")

    def _on_rollback(self, *args: Any) -> None:
        try:
            request = RollbackRequest.model_validate(args[0] if len(args) == 1 else None)
        except ValidationError as err:
            why = f"malformed rollback payload: {err.errors()[0]['msg']}"
        else:
            if self.rollback_request is None and not self.rolling_back:
                self.rollback_request = request
                return
            why = "a rollback is already under way"
        rejection = ApprovalRejection(decision="rollback", reason=why, at=temporalio.workflow.now())
        self._publish(ControlEvent(kind="rejected", rejection=rejection), self.gate.pending())

    def _publish(self, event: ControlEvent, pending: list[ApprovalRequest]) -> None:
        temporalio.workflow.upsert_memo(
            {
                # Defaults left out: memo size is limited (the dev server warns above 2 KB).
                EVENT_MEMO_KEY: event.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                PENDING_MEMO_KEY: [
                    p.model_dump(mode="json", by_alias=True, exclude_defaults=True) for p in pending
                ],
            }
        )
        awaiting = bool(pending)
        if awaiting != self._awaiting:
            self._awaiting = awaiting
            self._set_status("awaiting_approval" if awaiting else "running")

    def _set_status(self, status: str, *, first: bool = False) -> None:
        pairs: list[SearchAttributeUpdate[Any]] = [
            STATUS_ATTR.value_set(status),
            AWAITING_ATTR.value_set(self._awaiting and status == "awaiting_approval"),
        ]
        if first:
            pairs += [
                AGENT_ATTR.value_set(self.agent_id or ""),
                TURN_ATTR.value_set(self.context.turn_id or ""),
            ]
        try:
            temporalio.workflow.upsert_search_attributes(pairs)
        except Exception:
            # An unregistered attribute must not break the agent; the memo still records it.
            temporalio.workflow.logger.warning("runrecord search attributes not registered")

    def mcp_listed(self, server: str, listing: asyncio.Task[Any]) -> None:
        """A tools listing finished: the first one per server goes into the registry snapshot."""
        if self.mcp.listed(server, listing):
            declared = [t for t in self.memo.tool_registry if t.server is None]
            self.memo = self.memo.model_copy(
                update={
                    "tool_registry": declared + self.mcp.registry(),
                    "mcp_servers": self.mcp.server_infos(),
                }
            )
            self._upsert_memo()

    def _upsert_memo(self) -> None:
        value = self.memo.model_dump(mode="json", by_alias=True, exclude_none=True)
        temporalio.workflow.upsert_memo({MEMO_KEY: value})

    def next_call(
        self, activity: str, args: Sequence[Any], *, local: bool
    ) -> tuple[CallHeader, ToolSpec]:
        self._seq += 1
        target = parse_activity(activity)
        mcp: MCPCall | None = None
        if target is not None:
            spec, mcp = self.mcp.call(*target, args, host=self.host)
        else:
            spec = self.interceptor.spec_for(activity)
        header = CallHeader(
            **spec.traits(),
            tool_call_id=f"{self._call_prefix}{self._seq}",
            tool=spec.name,
            run_id=self.run_id,
            agent_id=self.agent_id,
            turn_id=self.context.turn_id,
            local=local,
            mcp_server=target[0] if target else None,
            mcp=mcp,
            consumes=artifact_ids(args),
            compensates=self.compensating,
        )
        return header, spec

    def schedule(
        self,
        input: temporalio.worker.StartActivityInput | temporalio.worker.StartLocalActivityInput,
        start: Callable[[Any], temporalio.workflow.ActivityHandle[Any]],
    ) -> temporalio.workflow.ActivityHandle[Any]:
        """Pass a call through the approval gate, then schedule it with its header."""
        local = isinstance(input, temporalio.worker.StartLocalActivityInput)
        if self.rolling_back and self.compensating is None:
            raise asyncio.CancelledError(f"run {self.run_id} is rolling back")
        header, spec = self.next_call(input.activity, input.args, local=local)
        need = self.gate.requirement(header, spec.approval)
        if need.action is not Action.REQUIRE:
            header.approval = self.gate.decide_by_policy(header, need)
            return self._start(input, header, start)

        async def after_approval() -> Any:
            approval = await self.gate.wait(header, need, input.args)
            return await self._start(input, header.model_copy(update={"approval": approval}), start)

        # Nothing reaches history until the decision; the agent awaits this task like a handle.
        return cast(temporalio.workflow.ActivityHandle[Any], asyncio.create_task(after_approval()))

    def _start(
        self,
        input: temporalio.worker.StartActivityInput | temporalio.worker.StartLocalActivityInput,
        header: CallHeader,
        start: Callable[[Any], temporalio.workflow.ActivityHandle[Any]],
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = {**input.headers, HEADER_KEY: encode_header(header)}
        server = header.mcp_server
        registration = self.interceptor.mcp_servers.get(server) if server else None
        if registration is not None and input.retry_policy is None:
            # temporalio-mcp retries a dead server forever by default; the registration bounds it.
            input.retry_policy = registration.retry_policy
        handle = start(input)
        if server and header.mcp and header.mcp.operation == "list-tools":
            handle.add_done_callback(functools.partial(self.mcp_listed, server))
        args = list(input.args)
        options = {
            "task_queue": getattr(input, "task_queue", None),
            "schedule_to_close_timeout": input.schedule_to_close_timeout,
            "start_to_close_timeout": input.start_to_close_timeout
            or (None if input.schedule_to_close_timeout else _COMPENSATION_TIMEOUT),
            "heartbeat_timeout": getattr(input, "heartbeat_timeout", None),
            "retry_policy": input.retry_policy,
        }

        def completed(task: asyncio.Future[Any]) -> None:
            if not task.cancelled() and task.exception() is None:
                self.completed.append(CompletedCall(header, args, task.result(), options))

        handle.add_done_callback(completed)
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
        self._root.children[input.id] = self._root._seq
        input.headers = {
            **input.headers,
            HEADER_KEY: encode_header(self._root.child_context(input.args)),
        }
        return await super().start_child_workflow(input)

    async def signal_child_workflow(
        self, input: temporalio.worker.SignalChildWorkflowInput
    ) -> None:
        input.headers = {**input.headers, HEADER_KEY: encode_header(self._root.sender_context())}
        await super().signal_child_workflow(input)

    async def signal_external_workflow(
        self, input: temporalio.worker.SignalExternalWorkflowInput
    ) -> None:
        input.headers = {**input.headers, HEADER_KEY: encode_header(self._root.sender_context())}
        await super().signal_external_workflow(input)

    def continue_as_new(self, input: temporalio.worker.ContinueAsNewInput) -> NoReturn:
        input.headers = {**input.headers, HEADER_KEY: encode_header(self._root.context)}
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
        refusal = self._root.refusal(info.activity_type, header)
        if refusal is not None:
            raise ApplicationError(refusal, type="ApprovalMissing", non_retryable=True)
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
                self._finish(record, call, attempt, AttemptOutcome.CANCELLED, _error_text(err))
            raise
        except BaseException as err:
            self._finish(record, call, attempt, AttemptOutcome.FAILED, _error_text(err))
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


class starting:  # noqa: N801 - a context manager
    """Runs started inside this block get ``context`` (e.g. a ``rerun_of`` link) as theirs."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self._token: contextvars.Token[RunContext | None] | None = None

    def __enter__(self) -> RunContext:
        self._token = _start_var.set(self.context)
        return self.context

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _start_var.reset(self._token)


def current_turn() -> str | None:
    """The user turn that runs started from this context belong to (see ``turn``)."""
    return _turn_var.get()


class turn:  # noqa: N801 - a context manager: ``with runrecord.turn("t-1"): ...``
    """Runs started inside this block belong to the user turn ``turn_id``."""

    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> str:
        self._token = _turn_var.set(self.turn_id)
        return self.turn_id

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _turn_var.reset(self._token)
