"""What ``runrecord pause``, ``resume``, ``rollback``, ``reset``, ``rerun`` and ``replay`` do,
callable from code (the commands are in ``_repair``).

Pause and resume are Temporal's native workflow pause; rollback is a signal the run acts on;
reset, rerun and replay work on the run's history.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.enums.v1 import ResetReapplyExcludeType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    PauseActivityRequest,
    PauseWorkflowExecutionRequest,
    ResetWorkflowExecutionRequest,
    SignalWorkflowExecutionRequest,
    UnpauseActivityRequest,
    UnpauseWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Replayer

from runrecord._contract import (
    APPROVE_SIGNAL,
    DENY_SIGNAL,
    OPERATION_SIGNAL,
    ROLLBACK_SIGNAL,
    ErrorType,
    OperationNote,
    RollbackRequest,
    RunContext,
)
from runrecord._redaction import default_redactor
from runrecord._settings import RunRecordError
from runrecord.cli._approvals import pending_approvals
from runrecord.cli._stack import agent_plugins, load_agents
from runrecord.cli._temporal import (
    describe_run,
    require_open,
)
from runrecord.recorder import RunProjection
from runrecord.recorder._decoding import decode_events
from runrecord.records import Rollback
from runrecord.worker import RunRecordPlugin, starting
from runrecord.workflows import Policy

_APPROVALS = (APPROVE_SIGNAL, DENY_SIGNAL)


@dataclass(frozen=True)
class ResetResult:
    """What a reset did: the Temporal run it replaced and the new one, the event it went back
    to, and how many later signals it sent again or withheld."""

    old_temporal_run_id: str
    new_temporal_run_id: str
    event_id: int
    resent: int
    withheld: int


async def pause_run(client: Client, run_id: str, *, by: str, reason: str) -> None:
    state = await describe_run(client, run_id)
    require_open(state, "pause it")
    if state.status == "paused":
        raise RunRecordError(f"run {run_id!r} is already paused")
    await _set_paused(client, run_id, True, by=by, reason=reason)


async def resume_run(client: Client, run_id: str, *, by: str, reason: str) -> None:
    state = await describe_run(client, run_id)
    if state.status != "paused":
        raise RunRecordError(f"run {run_id!r} is not paused ({state.status})")
    await _set_paused(client, run_id, False, by=by, reason=reason)


async def _set_paused(client: Client, run_id: str, paused: bool, *, by: str, reason: str) -> None:
    """Temporal's native pause or unpause; history keeps who (``by``) and why."""
    fields = {
        "namespace": client.namespace,
        "workflow_id": run_id,
        "identity": by,
        "reason": default_redactor().text(reason),
        "request_id": str(uuid.uuid4()),
    }
    service = client.workflow_service
    try:
        if paused:
            await service.pause_workflow_execution(PauseWorkflowExecutionRequest(**fields))
        else:
            await service.unpause_workflow_execution(UnpauseWorkflowExecutionRequest(**fields))
    except RPCError as err:
        action = "pause" if paused else "resume"
        raise RunRecordError(f"cannot {action} run {run_id!r}: {err.message}") from None


async def pause_call(client: Client, run_id: str, call_id: str, *, by: str, reason: str) -> None:
    """Temporal's activity pause of one pending call; its info keeps who and why."""
    activity_id = await _pending_activity(client, run_id, call_id)
    request = PauseActivityRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=run_id),
        identity=by,
        id=activity_id,
        reason=default_redactor().text(reason),
        request_id=str(uuid.uuid4()),
    )
    try:
        await client.workflow_service.pause_activity(request)
    except RPCError as err:
        raise RunRecordError(f"cannot pause call {call_id} of {run_id!r}: {err.message}") from None


async def resume_call(client: Client, run_id: str, call_id: str, *, by: str, reason: str) -> None:
    """Temporal's activity unpause. Temporal keeps no author for it, so a note with who and
    why goes into the run's history first (a ``runrecord.operation`` signal)."""
    activity_id = await _pending_activity(client, run_id, call_id)
    note = OperationNote(
        tool_call_id=call_id, operation="unpaused", reason=default_redactor().text(reason)
    )
    # Through the client's converter, so a configured codec encrypts the note too.
    payloads = await client.data_converter.encode([note.to_json_dict()])
    signal = SignalWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=run_id),
        signal_name=OPERATION_SIGNAL,
        input=Payloads(payloads=payloads),
        identity=by,
        request_id=str(uuid.uuid4()),
    )
    request = UnpauseActivityRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=run_id),
        identity=by,
        id=activity_id,
    )
    try:
        await client.workflow_service.signal_workflow_execution(signal)
        await client.workflow_service.unpause_activity(request)
    except RPCError as err:
        raise RunRecordError(f"cannot resume call {call_id} of {run_id!r}: {err.message}") from None


async def _pending_activity(client: Client, run_id: str, call_id: str) -> str:
    """The activity id of a call that is scheduled or running."""
    projection, _ = await _projection(client, run_id)
    call = projection.calls.get(call_id)
    if call is None:
        raise RunRecordError(f"run {run_id!r} has no call {call_id!r}")
    for activity_id, pending in projection.pending_activities().items():
        if pending == call_id:
            return activity_id
    raise RunRecordError(f"call {call_id} of {run_id!r} is not a pending activity ({call.status})")


async def _projection(client: Client, run_id: str) -> tuple[RunProjection, list[HistoryEvent]]:
    try:
        history = await client.get_workflow_handle(run_id).fetch_history()
    except RPCError as err:
        raise RunRecordError(f"cannot read the history of run {run_id!r}: {err.message}") from None
    events = list(history.events)
    # Decoded, signals and inputs resent through this client are encoded once, not twice.
    await decode_events(events, client.data_converter.payload_codec)
    projection = RunProjection(run_id, client.namespace)
    projection.apply_all(events)
    return projection, events


async def request_rollback(
    client: Client, run_id: str, *, by: str, reason: str | None, to_call: str | None
) -> None:
    """Ask the run to undo its completed side-effecting calls after ``to_call`` (all if None)."""
    state = await describe_run(client, run_id)
    require_open(state, "roll it back (reset it first to bring it back)")
    if to_call is not None:
        projection, _ = await _projection(client, run_id)
        if to_call not in projection.calls:
            raise RunRecordError(f"run {run_id!r} has no call {to_call}")
    if reason is not None:
        reason = default_redactor().text(reason)
    payload = RollbackRequest(requested_by=by, reason=reason, to_call=to_call)
    try:
        await client.get_workflow_handle(run_id).signal(ROLLBACK_SIGNAL, payload.to_json_dict())
    except RPCError as err:
        raise RunRecordError(f"cannot signal run {run_id!r}: {err.message}") from None


async def rollback_report(client: Client, run_id: str, timeout: float) -> Rollback:
    """Wait for a rolling-back run to end and return what it undid."""
    try:
        await asyncio.wait_for(client.get_workflow_handle(run_id).result(), timeout)
    except TimeoutError:
        raise RunRecordError(
            f"run {run_id!r} did not finish its rollback within {timeout:.0f} s"
        ) from None
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type in (
            ErrorType.ROLLED_BACK,
            ErrorType.ROLLBACK_INCOMPLETE,
        ):
            return Rollback.model_validate(cause.details[0])
        raise RunRecordError(f"run {run_id!r} ended without a rollback: {cause}") from None
    raise RunRecordError(f"run {run_id!r} finished before the rollback started")


async def reset_run(
    client: Client,
    run_id: str,
    to_call: str,
    *,
    by: str,
    reason: str,
    reapply_approvals: bool = False,
) -> ResetResult:
    """Reset the run to just before ``to_call``. Signals after that point are sent again, in
    order, except runrecord's own (approvals, unless ``reapply_approvals``, and rollbacks):
    Temporal would re-apply them all, silently reusing a person's approval."""
    state = await describe_run(client, run_id)
    projection, _ = await _projection(client, run_id)
    point = projection.reset_point(to_call)
    if point is None:
        raise RunRecordError(f"run {run_id!r} has no call {to_call}")
    request = ResetWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=run_id, run_id=state.temporal_run_id),
        reason=default_redactor().text(
            f"runrecord reset to before call {to_call} by {by}: {reason}"
        ),
        workflow_task_finish_event_id=point,
        request_id=str(uuid.uuid4()),
        reset_reapply_exclude_types=[ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL],
        identity=by,
    )
    try:
        response = await client.workflow_service.reset_workflow_execution(request)
    except RPCError as err:
        raise RunRecordError(f"cannot reset run {run_id!r}: {err.message}") from None
    later = [s for s in projection.signals if s.event_id > point]
    resend = [
        s
        for s in later
        if s.name != ROLLBACK_SIGNAL and (reapply_approvals or s.name not in _APPROVALS)
    ]
    handle = client.get_workflow_handle(run_id, run_id=response.run_id)
    for seen in resend:
        if seen.name in _APPROVALS:
            # Delivered before the new run asks again, the decision would find no such call.
            await _until_waiting(client, run_id, _call_id(seen.input.payloads))
        await handle.signal(seen.name, args=[RawValue(p) for p in seen.input.payloads])
    return ResetResult(
        old_temporal_run_id=state.temporal_run_id,
        new_temporal_run_id=response.run_id,
        event_id=point,
        resent=len(resend),
        withheld=len(later) - len(resend),
    )


def _call_id(payloads: Sequence[Payload]) -> str | None:
    try:
        value = json.loads(payloads[0].data) if len(payloads) == 1 else None
    except ValueError:
        return None
    call = value.get("toolCallId") if isinstance(value, dict) else None
    return call if isinstance(call, str) else None


async def _until_waiting(
    client: Client, run_id: str, call: str | None, timeout: float = 30
) -> None:
    """Wait (bounded) until the run asks for a decision on ``call`` again."""
    if call is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if any(r.tool_call_id == call for r in await pending_approvals(client, run_id)):
            return
        await asyncio.sleep(0.05)


async def rerun_run(client: Client, run_id: str, new_run_id: str | None = None) -> str:
    """Start the run again as a new run, with the same workflow, inputs, task queue and
    timeouts, linked as ``rerunOf``. ``client`` must have the runrecord plugin."""
    _, events = await _projection(client, run_id)
    if not events or not events[0].HasField("workflow_execution_started_event_attributes"):
        raise RunRecordError(f"run {run_id!r} has no start event to rerun")
    started = events[0].workflow_execution_started_event_attributes
    new_run_id = new_run_id or f"{run_id}-rerun-{uuid.uuid4().hex[:8]}"

    def span(d: object) -> timedelta | None:
        seconds = getattr(d, "seconds", 0) + getattr(d, "nanos", 0) / 1e9
        return timedelta(seconds=seconds) if seconds else None

    with starting(RunContext(turn_id=str(uuid.uuid4()), rerun_of=run_id)):
        try:
            await client.start_workflow(
                started.workflow_type.name,
                args=[RawValue(p) for p in started.input.payloads],
                id=new_run_id,
                task_queue=started.task_queue.name,
                execution_timeout=span(started.workflow_execution_timeout),
                run_timeout=span(started.workflow_run_timeout),
                task_timeout=span(started.workflow_task_timeout),
            )
        except RPCError as err:
            raise RunRecordError(f"cannot start the rerun of {run_id!r}: {err.message}") from None
    return new_run_id


async def replay_run(
    client: Client, run_id: str, module: str | None, policy: Policy | None = None
) -> str | None:
    """Replay the run's history against the current worker code: None, or the first failure."""
    agents = load_agents(module)
    try:
        history = await client.get_workflow_handle(run_id).fetch_history()
    except RPCError as err:
        raise RunRecordError(f"cannot read the history of run {run_id!r}: {err.message}") from None
    replayer = Replayer(
        workflows=agents.WORKFLOWS,
        plugins=[*agent_plugins(agents), RunRecordPlugin(policy=policy)],
        data_converter=client.data_converter,
        header_codec_behavior=client.config()["header_codec_behavior"],
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return None
    failure = result.replay_failure
    text = str(failure).strip() or type(failure).__name__
    return text.splitlines()[0]
