"""Temporal history → run record: the one parser of history events.

``RunProjection`` folds one Temporal run's events in event-id order. An event it has
already applied changes nothing, and one that arrives early waits for the events
before it, so a stream may be duplicated, reordered, cut short and resumed.
``RunChain`` merges the Temporal runs of one workflow id (continue-as-new, resets)
into one run record.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.common.v1 import RetryPolicy as RetryPolicyProto
from temporalio.api.enums.v1 import EventType, TimeoutType, WorkflowTaskFailedCause
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent

from runrecord._contract import (
    APPROVE_SIGNAL,
    DENY_SIGNAL,
    EVENT_MEMO_KEY,
    FAILURE_STATUS,
    HEADER_KEY,
    MEMO_KEY,
    CallHeader,
    ControlEvent,
    ErrorType,
    RequestedModel,
    RunContext,
    RunMemo,
)
from runrecord._pricing import price
from runrecord._redaction import default_redactor
from runrecord.integrations import ModelUsage, answers_in_results, model_answer, usage
from runrecord.recorder._blobs import canonical_json
from runrecord.records import (
    UNDECLARED,
    ApprovalRejection,
    ApprovalState,
    FinalStatus,
    ModelCall,
    ModelResult,
    ModelSpec,
    Pause,
    Ref,
    RetryPolicy,
    RetryState,
    Rollback,
    RunRecord,
    SchemaDrift,
    SideEffect,
    TemporalRun,
    Timeouts,
    ToolCall,
    ToolCallStatus,
    ToolRegistryEntry,
)

_MEDIA_TYPES = {
    b"json/plain": "application/json",
    b"binary/null": "application/x-null",
    b"binary/plain": "application/octet-stream",
    b"json/protobuf": "application/x-protobuf+json",
    b"binary/protobuf": "application/x-protobuf",
}
LOCAL_ACTIVITY_MARKER = "core_local_activity"
Body = tuple[bytes, str]
"""A payload's canonical bytes and media type, kept until the mirror stores its redacted copy."""
# A stamp the MCP client wrapper (runrecord.activities._mcp) leaves in history.
_MCP_CALL_META = "runrecord/call"

_R = TypeVar("_R", bound=BaseModel)


def _time(ts: Timestamp) -> datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def _ms(d: Duration) -> int | None:
    total = d.seconds * 1000 + d.nanos // 1_000_000
    return total or None


def _json(payload: Payload) -> Any:
    if payload.metadata.get("encoding") != b"json/plain":
        return None
    try:
        return json.loads(payload.data)
    except ValueError:
        return None


# Where tracing puts a call's trace context in its headers: Temporal's OpenTelemetry
# interceptors and plugin (a W3C ``traceparent`` carrier), the OpenAI Agents plugin's spans.
_OTEL_HEADER = "_tracer-data"
_OPENAI_AGENTS_HEADER = "__openai_span"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def _trace(headers: Mapping[str, Payload]) -> tuple[str | None, str | None]:
    """The trace and span a call was scheduled in, from its headers (OpenTelemetry first)."""
    otel = headers.get(_OTEL_HEADER)
    carrier = _json(otel) if otel is not None else None
    parent = carrier.get("traceparent") if isinstance(carrier, dict) else None
    found = _TRACEPARENT.match(parent) if isinstance(parent, str) else None
    if found is not None and found.group(1) != "0" * 32:
        return found.group(1), found.group(2)
    openai = headers.get(_OPENAI_AGENTS_HEADER)
    span = _json(openai) if openai is not None else None
    if isinstance(span, dict):
        trace_id, span_id = span.get("traceId"), span.get("spanId")
        if isinstance(trace_id, str) and trace_id and trace_id != "no-op":
            real = isinstance(span_id, str) and span_id not in ("", "no-op")
            return trace_id[:64], str(span_id)[:64] if real else None
    return None, None


def _record_of(model: type[_R], payload: Payload) -> _R | None:
    """The record a payload carries, or None when it is not JSON of that shape."""
    value = _json(payload)
    if not isinstance(value, dict):
        return None
    try:
        return model.model_validate(value)
    except ValueError:
        return None


def canonical(payload: Payload) -> Body:
    """The bytes a ref hashes: JSON re-serialized with sorted keys, anything else as sent."""
    media_type = _MEDIA_TYPES.get(payload.metadata.get("encoding", b""), "application/octet-stream")
    if media_type == "application/json":
        try:
            return canonical_json(json.loads(payload.data)), media_type
        except ValueError:
            return payload.data, "application/octet-stream"
    return payload.data, media_type


def _refs(payloads: Payloads, bodies: dict[str, Body]) -> list[Ref]:
    refs = []
    for payload in payloads.payloads:
        data, media_type = canonical(payload)
        sha = hashlib.sha256(data).hexdigest()
        bodies[sha] = (data, media_type)
        refs.append(Ref.model_construct(sha256=sha, size=len(data), media_type=media_type))
    return refs


def _retry_policy(policy: RetryPolicyProto) -> RetryPolicy:
    return RetryPolicy(
        initial_interval_ms=_ms(policy.initial_interval),
        backoff_coefficient=policy.backoff_coefficient or None,
        maximum_interval_ms=_ms(policy.maximum_interval),
        maximum_attempts=policy.maximum_attempts or None,
        non_retryable_error_types=list(policy.non_retryable_error_types),
    )


def _failure_text(failure: Failure) -> str | None:
    if not failure.message and not failure.HasField("cause"):
        return None
    text = failure.message or "failure"
    kind = (
        failure.application_failure_info.type
        if failure.HasField("application_failure_info")
        else ""
    )
    if kind:
        text = f"{kind}: {text}"
    if failure.HasField("cause") and failure.cause.message:
        text += f" (cause: {failure.cause.message})"
    return default_redactor().text(text)[:2000]


def _timeout_type(failure: Failure) -> str | None:
    while True:
        if failure.HasField("timeout_failure_info"):
            name = TimeoutType.Name(failure.timeout_failure_info.timeout_type)
            return name.removeprefix("TIMEOUT_TYPE_").lower()
        if not failure.HasField("cause"):
            return None
        failure = failure.cause


def _mcp_result(call: ToolCall, value: Any) -> None:
    """An MCP tool's answer: ``isError`` makes the call failed; a drift let through is kept."""
    if not isinstance(value, dict) or call.mcp is None:
        return
    is_error = bool(value.get("is_error", value.get("isError")))
    call.mcp.is_error = is_error
    meta = value.get("meta", value.get("_meta"))
    stamp = meta.get(_MCP_CALL_META) if isinstance(meta, dict) else None
    if isinstance(stamp, dict) and isinstance(stamp.get("drift"), dict):
        try:
            call.mcp.drift = SchemaDrift.model_validate(stamp["drift"])
        except ValueError:
            pass
    if is_error:
        call.status = ToolCallStatus.FAILED
        texts = [
            c.get("text", "")
            for c in value.get("content") or []
            if isinstance(c, dict) and c.get("type") == "text"
        ]
        detail = " ".join(t for t in texts if t).strip() or "no message"
        call.retry_state.last_failure = default_redactor().text(f"MCP tool error: {detail}")[:2000]


def _drift_failure(failure: Failure) -> SchemaDrift | None:
    while True:
        info = failure.application_failure_info
        if failure.HasField("application_failure_info") and info.type == ErrorType.MCP_SCHEMA_DRIFT:
            payloads = info.details.payloads
            return _record_of(SchemaDrift, payloads[0]) if payloads else None
        if not failure.HasField("cause"):
            return None
        failure = failure.cause


@dataclass(frozen=True)
class SeenSignal:
    """A signal as history holds it: enough to send it again (after a reset)."""

    event_id: int
    name: str
    identity: str
    input: Payloads


class RunProjection:
    """The run record as one Temporal run of a workflow id tells it."""

    def __init__(
        self, run_id: str, namespace: str = "default", temporal_run_id: str | None = None
    ) -> None:
        self.run_id = run_id
        self.namespace = namespace
        self.temporal_run_id = temporal_run_id
        self.workflow_type = ""
        self.task_queue: str | None = None
        self.temporal_run_ids: list[str] = []
        self.memo = RunMemo()
        self.context = RunContext()
        self.final_status = FinalStatus.RUNNING
        self.failure: str | None = None
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.calls: dict[str, ToolCall] = {}
        self.model_calls: dict[str, ModelCall] = {}
        # Framework model requests by call id: what was asked, until the result says the rest.
        self.requested: dict[str, RequestedModel] = {}
        # Inputs of framework calls that may turn out to be model calls by their result.
        self._framework_inputs: dict[str, Any] = {}
        self.child_run_ids: list[str] = []
        self.last_event_id = 0
        self._by_scheduled: dict[int, str] = {}
        self._scheduled_event: dict[str, int] = {}
        self._parent_from_history: str | None = None
        self._root_from_history: str | None = None
        self.bodies: dict[str, Body] = {}
        self.signals: list[SeenSignal] = []
        self.approval_rejections: list[ApprovalRejection] = []
        self.rollback: Rollback | None = None
        self._approval_identities: list[str] = []
        self._approval_times: list[datetime | None] = []
        self._last_task_completed = 0
        self._reset_points: dict[str, int] = {}
        self.pause: Pause | None = None
        self.began_at: datetime | None = None
        self._last_stamp: Timestamp | None = None
        self.continued_from: str | None = None
        self.reset_from: str | None = None
        self.reset_reason: str | None = None
        # What changed since the last save: calls to rewrite, timeline events to add.
        self.dirty: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self._early: dict[int, HistoryEvent] = {}

    def apply_all(self, events: Iterable[HistoryEvent]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: HistoryEvent) -> None:
        """Fold one event; duplicates are ignored and early events wait for the gap to fill."""
        event_id = event.event_id
        if event_id <= self.last_event_id:
            return
        if event_id != self.last_event_id + 1:
            self._early.setdefault(event_id, event)
            return
        self._fold(event)
        while self._early:
            following = self._early.pop(self.last_event_id + 1, None)
            if following is None:
                break
            self._fold(following)
        if self._early:
            self._early = {k: v for k, v in self._early.items() if k > self.last_event_id}

    def _fold(self, event: HistoryEvent) -> None:
        self.last_event_id = event.event_id
        if event.HasField("event_time"):
            self._last_stamp = event.event_time  # converted only when asked for
        handler = _HANDLERS.get(event.event_type)
        if handler is not None:
            handler(self, event, self.temporal_run_id)

    @property
    def last_event_time(self) -> datetime | None:
        return _time(self._last_stamp) if self._last_stamp is not None else None

    @property
    def waiting(self) -> int:
        """Events held back until the ones before them arrive."""
        return len(self._early)

    def _timeline(self, event: HistoryEvent, kind: str, identity: str = "", **detail: Any) -> None:
        """A workflow-level event kept in the records' timeline (run_events)."""
        self.events.append(
            {
                "namespace": self.namespace,
                "workflow_id": self.run_id,
                "temporal_run_id": self.temporal_run_id or "",
                "event_id": event.event_id,
                "kind": kind,
                "event_time": _time(event.event_time),
                "identity": identity or None,
                "detail": {k: v for k, v in detail.items() if v not in (None, "", [], {})},
            }
        )

    # --- workflow-level events

    def _started(self, event: HistoryEvent, temporal_run_id: str | None) -> None:
        attrs = event.workflow_execution_started_event_attributes
        self.workflow_type = attrs.workflow_type.name
        self.task_queue = attrs.task_queue.name or None
        self.started_at = _time(event.event_time)
        self.began_at = self.started_at
        self.continued_from = attrs.continued_execution_run_id or None
        self._timeline(
            event,
            "started",
            attrs.identity,
            workflowType=attrs.workflow_type.name,
            taskQueue=attrs.task_queue.name,
            continuedFrom=attrs.continued_execution_run_id,
            parent=attrs.parent_workflow_execution.workflow_id,
        )
        temporal_run = temporal_run_id or attrs.original_execution_run_id
        if temporal_run and temporal_run not in self.temporal_run_ids:
            self.temporal_run_ids.append(temporal_run)
        if attrs.HasField("parent_workflow_execution"):
            self._parent_from_history = attrs.parent_workflow_execution.workflow_id or None
        if attrs.HasField("root_workflow_execution"):
            self._root_from_history = attrs.root_workflow_execution.workflow_id or None
        header = attrs.header.fields.get(HEADER_KEY)
        context = _record_of(RunContext, header) if header is not None else None
        if context is not None:
            self.context = context
        memo = attrs.memo.fields.get(MEMO_KEY)
        if memo is not None:
            self._set_memo(memo)

    def _properties_modified(self, event: HistoryEvent, _: str | None) -> None:
        fields = event.workflow_properties_modified_event_attributes.upserted_memo.fields
        memo = fields.get(MEMO_KEY)
        if memo is not None:
            self._set_memo(memo)
        control = fields.get(EVENT_MEMO_KEY)
        if control is not None:
            self._control_event(control, event)

    def _task_completed(self, event: HistoryEvent, _: str | None) -> None:
        self._last_task_completed = event.event_id

    def _task_failed(self, event: HistoryEvent, temporal_run_id: str | None) -> None:
        """A reset shows in the new Temporal run as a workflow task failed for RESET_WORKFLOW."""
        attrs = event.workflow_task_failed_event_attributes
        if attrs.cause != WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW:
            return
        if temporal_run_id and attrs.new_run_id != temporal_run_id:
            return  # an earlier reset, copied into this run's history with the prefix
        self.reset_from = attrs.base_run_id or None
        self.reset_reason = default_redactor().text(attrs.failure.message) or None
        self.began_at = _time(event.event_time)
        self.pause = None
        self._timeline(
            event,
            "reset",
            attrs.identity,
            baseRunId=attrs.base_run_id,
            newRunId=attrs.new_run_id,
            reason=self.reset_reason,
        )

    def _paused(self, event: HistoryEvent, _: str | None) -> None:
        attrs = event.workflow_execution_paused_event_attributes
        reason = default_redactor().text(attrs.reason) or None
        self.pause = Pause(
            paused_by=attrs.identity or None, reason=reason, paused_at=_time(event.event_time)
        )
        self._timeline(event, "paused", attrs.identity, reason=reason)

    def _unpaused(self, event: HistoryEvent, _: str | None) -> None:
        attrs = event.workflow_execution_unpaused_event_attributes
        self.pause = None
        self._timeline(
            event, "unpaused", attrs.identity, reason=default_redactor().text(attrs.reason)
        )

    def _search_attributes(self, event: HistoryEvent, _: str | None) -> None:
        fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
        values = {name: _json(payload) for name, payload in fields.indexed_fields.items()}
        self._timeline(event, "search_attributes", values=default_redactor().value(values))

    # --- human control: approval signals and the run's own record of what it did with them

    def _signaled(self, event: HistoryEvent, _: str | None) -> None:
        attrs = event.workflow_execution_signaled_event_attributes
        self.signals.append(
            SeenSignal(event.event_id, attrs.signal_name, attrs.identity, attrs.input)
        )
        self._timeline(event, "signaled", attrs.identity, signal=attrs.signal_name)
        if attrs.signal_name in (APPROVE_SIGNAL, DENY_SIGNAL):
            self._approval_identities.append(attrs.identity)
            self._approval_times.append(_time(event.event_time))

    def _signal_identity(self, number: int | None) -> str | None:
        if number is None or not 0 < number <= len(self._approval_identities):
            return None
        return self._approval_identities[number - 1] or None

    def _signal_time(self, number: int | None) -> datetime | None:
        """When the approval signal reached Temporal: when the person decided. The run may
        apply it much later (it was paused, or no worker ran it)."""
        if number is None or not 0 < number <= len(self._approval_times):
            return None
        return self._approval_times[number - 1]

    def _control_event(self, payload: Payload, event: HistoryEvent) -> None:
        control = _record_of(ControlEvent, payload)
        if control is None:
            return
        control = _redacted_control(control)
        identity = self._signal_identity(control.signal)
        if control.kind == "rejected" and control.rejection is not None:
            rejection = control.rejection.model_copy(update={"signal_identity": identity})
            self.approval_rejections.append(rejection)
        elif control.kind == "rollback" and control.rollback is not None:
            self.rollback = control.rollback
        elif control.call is not None:
            self._approval_event(
                control.kind, control.call, identity, self._signal_time(control.signal), event
            )

    def _approval_event(
        self,
        kind: str,
        header: CallHeader,
        identity: str | None,
        signalled: datetime | None,
        event: HistoryEvent,
    ) -> None:
        approval = header.approval.model_copy(update={"signal_identity": identity})
        if approval.decided_at is not None:
            # The run stamps a decision with its own clock when it applies it.
            approval.applied_at = approval.decided_at
            approval.decided_at = signalled or approval.decided_at
        call = self.calls.get(header.tool_call_id)
        if call is None:
            call = self._call_from_header(header, header.tool_call_id, ToolCallStatus.SCHEDULED)
            call.scheduled_at = _time(event.event_time)
            call.temporal_run_id = self.temporal_run_id
            self.calls[header.tool_call_id] = call
            self._scheduled_event[header.tool_call_id] = event.event_id
            self._reset_points[header.tool_call_id] = self._last_task_completed
        call.approval, call.approval_state = approval, approval.state
        self.dirty.add(header.tool_call_id)
        if kind == "expired":
            call.status = ToolCallStatus.EXPIRED
        elif kind == "withdrawn":
            call.status = ToolCallStatus.CANCELLED
        elif approval.state == ApprovalState.DENIED:
            call.status = ToolCallStatus.DENIED
        if call.status != ToolCallStatus.SCHEDULED:
            call.ended_at = _time(event.event_time)

    def _call_from_header(
        self, header: CallHeader | None, call_id: str, status: ToolCallStatus
    ) -> ToolCall:
        if header is None:
            return ToolCall(**UNDECLARED.traits(), tool_call_id=call_id, tool="", status=status)
        approval = header.approval
        if approval.applied_at is None and approval.decided_at:
            approval = approval.model_copy(update={"applied_at": approval.decided_at})
        origin = header.origin()  # lists are copied as the call validates them
        if header.mcp is not None:
            origin["mcp"] = header.mcp.model_copy(deep=True)
        return ToolCall(
            **{**origin, "tool_call_id": call_id},
            approval_state=header.approval.state,
            approval=approval,
            status=status,
        )

    def _set_memo(self, payload: Payload) -> None:
        memo = _record_of(RunMemo, payload)
        if memo is not None:
            self.memo = memo

    def _continued(self, event: HistoryEvent, _: str | None) -> None:
        new_run = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        if new_run and new_run not in self.temporal_run_ids:
            self.temporal_run_ids.append(new_run)
        self.final_status = FinalStatus.SUCCEEDED
        self.ended_at = _time(event.event_time)
        self._timeline(event, "continued_as_new", newRunId=new_run)

    def _child_initiated(self, event: HistoryEvent, _: str | None) -> None:
        child = event.start_child_workflow_execution_initiated_event_attributes.workflow_id
        if child and child not in self.child_run_ids:
            self.child_run_ids.append(child)
        self._timeline(event, "child_initiated", workflowId=child)

    # --- activity events

    def _scheduled(self, event: HistoryEvent, temporal_run_id: str | None) -> None:
        attrs = event.activity_task_scheduled_event_attributes
        header_payload = attrs.header.fields.get(HEADER_KEY)
        header = _record_of(CallHeader, header_payload) if header_payload is not None else None
        call_id = header.tool_call_id if header else f"a{attrs.activity_id}"
        policy = attrs.retry_policy
        call = self._call_from_header(header, call_id, ToolCallStatus.SCHEDULED)
        if header is None:
            call.tool = attrs.activity_type.name
        elif header.model is not None:
            self.requested[call_id] = header.model
        elif header.framework is not None and answers_in_results(header.framework):
            self._framework_inputs[call_id] = [_json(p) for p in attrs.input.payloads]
        requested = self.calls.get(call_id)
        if requested is not None and requested.approval is not None:
            # Waited for approval: keep what the approval events said (the sender's identity).
            call.approval, call.approval_state = requested.approval, requested.approval_state
        call.input_refs = _refs(attrs.input, self.bodies)
        call.retry_state = RetryState.model_construct(
            attempts=0,
            last_failure=None,
            timeout_type=None,
            maximum_attempts=policy.maximum_attempts or None,
            history=[],
        )
        call.retry_policy = _retry_policy(policy) if attrs.HasField("retry_policy") else None
        call.timeouts = Timeouts(
            schedule_to_close_ms=_ms(attrs.schedule_to_close_timeout),
            schedule_to_start_ms=_ms(attrs.schedule_to_start_timeout),
            start_to_close_ms=_ms(attrs.start_to_close_timeout),
            heartbeat_ms=_ms(attrs.heartbeat_timeout),
        )
        call.trace_id, call.span_id = _trace(attrs.header.fields)
        call.activity_id = attrs.activity_id
        call.temporal_run_id = temporal_run_id
        call.scheduled_at = _time(event.event_time)
        self.calls[call_id] = call
        self.dirty.add(call_id)
        self._by_scheduled[event.event_id] = call_id
        self._scheduled_event.setdefault(call_id, event.event_id)
        self._reset_points.setdefault(call_id, self._last_task_completed)

    def _call(self, scheduled_event_id: int) -> ToolCall | None:
        call_id = self._by_scheduled.get(scheduled_event_id)
        if call_id is None:
            return None
        self.dirty.add(call_id)
        return self.calls.get(call_id)

    def _activity_started(self, event: HistoryEvent, _: str | None) -> None:
        attrs = event.activity_task_started_event_attributes
        call = self._call(attrs.scheduled_event_id)
        if call is None:
            return
        call.status = ToolCallStatus.RUNNING
        call.started_at = _time(event.event_time)
        call.worker_identity = attrs.identity or None
        call.retry_state.attempts = max(call.retry_state.attempts, attrs.attempt)
        if attrs.HasField("last_failure"):
            call.retry_state.last_failure = _failure_text(attrs.last_failure)

    def _activity_closed(
        self, scheduled_event_id: int, event: HistoryEvent, status: ToolCallStatus
    ) -> ToolCall | None:
        call = self._call(scheduled_event_id)
        if call is None:
            return None
        call.status = status
        call.ended_at = _time(event.event_time)
        if call.retry_state.attempts == 0:
            call.retry_state.attempts = 1
        if call.scheduled_at and call.ended_at:
            call.duration_ms = int((call.ended_at - call.scheduled_at).total_seconds() * 1000)
        return call

    def _completed(self, event: HistoryEvent, _: str | None) -> None:
        attrs = event.activity_task_completed_event_attributes
        call = self._activity_closed(attrs.scheduled_event_id, event, ToolCallStatus.SUCCEEDED)
        if call is None:
            return
        undone = self.calls.get(call.compensates) if call.compensates else None
        if undone is not None:
            undone.status = ToolCallStatus.COMPENSATED
            self.dirty.add(undone.tool_call_id)
        self._outputs(call, attrs.result)

    def _outputs(self, call: ToolCall, result_payloads: Payloads) -> None:
        call.output_refs = _refs(result_payloads, self.bodies)
        if call.mcp is not None and call.mcp.operation == "call-tool" and result_payloads.payloads:
            _mcp_result(call, _json(result_payloads.payloads[0]))
        asked = self._framework_inputs.pop(call.tool_call_id, None)
        if asked is not None and result_payloads.payloads:
            result = _json(result_payloads.payloads[0])
            found = model_answer(call.framework or "", call.activity_type or "", asked, result)
            if found is not None:
                # The activity turned out to ask a model: undeclared, it is a model call.
                if call.side_effect == SideEffect.UNKNOWN:
                    call.side_effect = SideEffect.MODEL
                self.requested[call.tool_call_id] = found
                self._framework_model_call(call, found, result)
                return
        if call.side_effect != SideEffect.MODEL or not result_payloads.payloads:
            return
        requested = self.requested.get(call.tool_call_id)
        if requested is not None and call.framework is not None:
            self._framework_model_call(call, requested, _json(result_payloads.payloads[0]))
            return
        result = _record_of(ModelResult, result_payloads.payloads[0])
        if result is not None:
            call.cost = result.cost
            self.model_calls[call.tool_call_id] = ModelCall(
                tool_call_id=call.tool_call_id,
                provider=result.provider,
                model=result.model,
                parameters=default_redactor().value(result.parameters),
                prompt_version=result.prompt_version,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
                cost=result.cost,
                latency_ms=result.latency_ms,
            )

    def _registry(self, memo: RunMemo) -> list[ToolRegistryEntry]:
        """The memo's registry, then the in-workflow tools framework model requests offered."""
        registry = list(memo.tool_registry)
        known = {t.name for t in registry}
        for requested in self.requested.values():
            for entry in requested.in_workflow:
                if entry.name not in known:
                    known.add(entry.name)
                    registry.append(entry.model_copy(update={"in_workflow": True}))
        return registry

    def _framework_model_call(self, call: ToolCall, requested: RequestedModel, result: Any) -> None:
        """A framework's model request: what was asked from the header, the rest from the
        result, the cost from the price table."""
        used = usage(call.framework or "", call.activity_type or "", result) or ModelUsage()
        provider = used.provider or requested.provider
        model = used.model or requested.model
        cost = price(
            provider,
            model,
            used.input_tokens,
            used.output_tokens,
            cache_read_tokens=used.cache_read_tokens,
            cache_write_tokens=used.cache_write_tokens,
        )
        call.cost = cost.cost
        self.model_calls[call.tool_call_id] = ModelCall(
            **used.model_dump(exclude={"provider", "model"}),
            tool_call_id=call.tool_call_id,
            provider=provider,
            model=model,
            parameters=default_redactor().value(requested.parameters),
            prompt_version=requested.prompt_version,
            tools_offered=list(requested.tools_offered),
            cost=cost.cost,
            priced=cost.priced,
            latency_ms=call.duration_ms,
        )

    def _failed(self, event: HistoryEvent, _: str | None) -> None:
        attrs = event.activity_task_failed_event_attributes
        call = self._activity_closed(attrs.scheduled_event_id, event, ToolCallStatus.FAILED)
        if call is not None:
            call.retry_state.last_failure = _failure_text(attrs.failure)
            if call.mcp is not None:
                call.mcp.drift = _drift_failure(attrs.failure) or call.mcp.drift

    def _timed_out(self, event: HistoryEvent, _: str | None) -> None:
        attrs = event.activity_task_timed_out_event_attributes
        call = self._activity_closed(attrs.scheduled_event_id, event, ToolCallStatus.TIMED_OUT)
        if call is not None:
            call.retry_state.timeout_type = _timeout_type(attrs.failure)
            call.retry_state.last_failure = _failure_text(attrs.failure)

    def _canceled(self, event: HistoryEvent, _: str | None) -> None:
        attrs = event.activity_task_canceled_event_attributes
        self._activity_closed(attrs.scheduled_event_id, event, ToolCallStatus.CANCELLED)

    def _marker(self, event: HistoryEvent, temporal_run_id: str | None) -> None:
        """A local activity: history has only this marker (no header), written when it ended."""
        attrs = event.marker_recorded_event_attributes
        if attrs.marker_name != LOCAL_ACTIVITY_MARKER:
            self._timeline(event, "marker", name=attrs.marker_name)
            return
        if "data" not in attrs.details:
            return
        data = attrs.details["data"].payloads
        value = _json(data[0]) if data else None
        if not isinstance(value, dict):
            return
        activity_id = str(value.get("activity_id") or "")
        activity_type = str(value.get("activity_type") or "")
        # The interceptor numbers activities and local activities with one counter, the
        # same one the SDK uses for default activity ids, so the id is the toolCallId.
        call_id = activity_id if activity_id.isdigit() else f"local-{activity_id}"
        if self.continued_from and self.temporal_run_id:
            call_id = f"{self.temporal_run_id[:8]}.{call_id}"
        existing = self.calls.get(call_id)
        if existing is not None and existing.activity_id not in (None, activity_id):
            call_id, existing = f"local-{activity_id}", None
        tool = next((t for t in self.memo.tool_registry if t.name == activity_type), None)
        ended = _time(event.event_time)
        failed = attrs.HasField("failure")
        call = ToolCall(
            **(tool or UNDECLARED).traits(),
            tool_call_id=call_id,
            tool=activity_type,
            status=ToolCallStatus.FAILED if failed else ToolCallStatus.SUCCEEDED,
            retry_state=RetryState(
                attempts=int(value.get("attempt") or 1),
                last_failure=_failure_text(attrs.failure) if failed else None,
            ),
            local=True,
            activity_id=activity_id,
            temporal_run_id=temporal_run_id,
            scheduled_at=ended,
            ended_at=ended,
            duration_ms=0,
        )
        if failed and (timeout := _timeout_type(attrs.failure)):
            call.status = ToolCallStatus.TIMED_OUT
            call.retry_state.timeout_type = timeout
        if existing is not None and existing.approval is not None:
            # It waited for approval: the approval events described it first.
            call.approval, call.approval_state = existing.approval, existing.approval_state
        self.calls[call_id] = call
        self.dirty.add(call_id)
        self._scheduled_event.setdefault(call_id, event.event_id)
        if "result" in attrs.details:
            self._outputs(call, attrs.details["result"])

    # --- the result

    def pending_activities(self) -> dict[str, str]:
        """Activity id -> tool call id of the calls scheduled and not yet closed."""
        open_ = (ToolCallStatus.SCHEDULED, ToolCallStatus.RUNNING)
        return {
            c.activity_id: call_id
            for call_id, c in self.calls.items()
            if c.activity_id and not c.local and c.status in open_
        }

    def scheduled_event_id(self, tool_call_id: str) -> int:
        """The call's first event: its approval request, else its ActivityTaskScheduled."""
        return self._scheduled_event.get(tool_call_id, 0)

    def reset_point(self, tool_call_id: str) -> int | None:
        """The WorkflowTaskCompleted event just before the call began: where a reset to
        before the call goes. None if the run has no such call."""
        return self._reset_points.get(tool_call_id)

    def record(self) -> RunRecord:
        memo = self.memo
        parent = self.context.parent_run_id or memo.parent_run_id or self._parent_from_history
        root = (
            self.context.root_run_id
            or memo.root_run_id
            or self._root_from_history
            or (self.run_id if parent is None else None)
        )
        model_calls = list(self.model_calls.values())
        status = self.final_status
        if status is FinalStatus.RUNNING and any(
            c.approval_state == ApprovalState.REQUESTED and c.status == ToolCallStatus.SCHEDULED
            for c in self.calls.values()
        ):
            status = FinalStatus.AWAITING_APPROVAL
        if status in (FinalStatus.RUNNING, FinalStatus.AWAITING_APPROVAL) and self.pause:
            status = FinalStatus.PAUSED
        return RunRecord(
            run_id=self.run_id,
            temporal_run_ids=list(self.temporal_run_ids),
            namespace=self.namespace,
            workflow_type=self.workflow_type,
            task_queue=self.task_queue,
            turn_id=self.context.turn_id or memo.turn_id,
            agent_id=memo.agent_id or self.workflow_type or None,
            agent_version=memo.agent_version,
            model=_redacted_model(memo.model),
            prompt_version=memo.prompt_version
            or next((m.prompt_version for m in model_calls if m.prompt_version), None),
            tool_registry=self._registry(memo),
            mcp_servers=list(memo.mcp_servers),
            tool_calls=list(self.calls.values()),
            model_calls=model_calls,
            final_status=status,
            failure=self.failure,
            parent_run_id=parent,
            root_run_id=root,
            depth=self.context.depth or memo.depth,
            child_run_ids=list(self.child_run_ids),
            consumes=list(self.context.consumes),
            rerun_of=self.context.rerun_of,
            approval_rejections=list(self.approval_rejections),
            rollback=self.rollback,
            pause=self.pause if status is FinalStatus.PAUSED else None,
            temporal_runs=[self.temporal_run()],
            started_at=self.started_at,
            ended_at=self.ended_at,
        )

    def temporal_run(self) -> TemporalRun:
        return TemporalRun(
            temporal_run_id=self.temporal_run_id or "",
            began_at=self.began_at,
            status=self.final_status,
            continued_from=self.continued_from,
            reset_from=self.reset_from,
            reset_reason=self.reset_reason,
            last_event_id=self.last_event_id,
        )


def _redacted_control(control: ControlEvent) -> ControlEvent:
    """The texts people typed (reasons) redacted again: a run on older code, or any other
    writer of the memo, may not have."""
    text = default_redactor().text
    update: dict[str, Any] = {}
    call = control.call
    if call is not None and call.approval.reason:
        approval = call.approval.model_copy(update={"reason": text(call.approval.reason)})
        update["call"] = call.model_copy(update={"approval": approval})
    if control.rejection is not None:
        update["rejection"] = control.rejection.model_copy(
            update={"reason": text(control.rejection.reason)}
        )
    rollback = control.rollback
    if rollback is not None:
        update["rollback"] = rollback.model_copy(
            update={
                "reason": text(rollback.reason) if rollback.reason else rollback.reason,
                "not_undone": [
                    n.model_copy(update={"why": text(n.why)}) for n in rollback.not_undone
                ],
            }
        )
    return control.model_copy(update=update) if update else control


def _redacted_model(model: ModelSpec | None) -> ModelSpec | None:
    if model is None:
        return None
    return model.model_copy(
        update={
            "parameters": default_redactor().value(model.parameters),
            "fallbacks": [_redacted_model(m) for m in model.fallbacks],
        }
    )


def _failure_status(failure: Failure, status: FinalStatus) -> FinalStatus:
    """Runrecord's own ending of a run (escalated, rolled back), also when an agent framework
    wrapped it in a failure of its own (the OpenAI Agents runner does): found among causes."""
    for _ in range(8):
        kind = failure.application_failure_info.type
        if kind in FAILURE_STATUS:
            return FAILURE_STATUS[kind]
        if not failure.HasField("cause"):
            break
        failure = failure.cause
    return status


# An event handler: the fold, the event, and the Temporal run whose history holds it.
_Handler = Callable[[RunProjection, HistoryEvent, str | None], None]


def _closed(status: FinalStatus) -> _Handler:
    def handle(self: RunProjection, event: HistoryEvent, _: str | None) -> None:
        self.final_status = status
        self.ended_at = _time(event.event_time)
        self.pause = None
        if status is FinalStatus.FAILED:
            failure = event.workflow_execution_failed_event_attributes.failure
            self.failure = _failure_text(failure)
            # Runs runrecord ends itself: escalated (unhandled denial or expiry), rolled back.
            self.final_status = _failure_status(failure, status)
        elif status is FinalStatus.TERMINATED:
            reason = event.workflow_execution_terminated_event_attributes.reason
            self.failure = default_redactor().text(reason) or None
        identity = (
            event.workflow_execution_terminated_event_attributes.identity
            if status is FinalStatus.TERMINATED
            else ""
        )
        self._timeline(event, status.value, identity, failure=self.failure)

    return handle


def _child_event(kind: str) -> _Handler:
    def handle(self: RunProjection, event: HistoryEvent, _: str | None) -> None:
        execution = getattr(event, _CHILD_ATTRS[kind]).workflow_execution
        self._timeline(event, kind, workflowId=execution.workflow_id, runId=execution.run_id)

    return handle


_CHILD_ATTRS = {
    "child_started": "child_workflow_execution_started_event_attributes",
    "child_completed": "child_workflow_execution_completed_event_attributes",
    "child_failed": "child_workflow_execution_failed_event_attributes",
    "child_cancelled": "child_workflow_execution_canceled_event_attributes",
    "child_terminated": "child_workflow_execution_terminated_event_attributes",
    "child_timed_out": "child_workflow_execution_timed_out_event_attributes",
}


_HANDLERS: dict[int, _Handler] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: RunProjection._started,
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED: RunProjection._properties_modified,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: _closed(FinalStatus.SUCCEEDED),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: _closed(FinalStatus.FAILED),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: _closed(FinalStatus.CANCELLED),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: _closed(FinalStatus.TERMINATED),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: _closed(FinalStatus.TIMED_OUT),
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: RunProjection._continued,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: RunProjection._signaled,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: RunProjection._task_completed,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: RunProjection._child_initiated,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: RunProjection._scheduled,
    EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: RunProjection._activity_started,
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: RunProjection._completed,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: RunProjection._failed,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: RunProjection._timed_out,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: RunProjection._canceled,
    EventType.EVENT_TYPE_MARKER_RECORDED: RunProjection._marker,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: RunProjection._task_failed,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_PAUSED: RunProjection._paused,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UNPAUSED: RunProjection._unpaused,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: RunProjection._search_attributes,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED: _child_event("child_started"),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: _child_event("child_completed"),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: _child_event("child_failed"),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED: _child_event("child_cancelled"),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED: _child_event("child_terminated"),
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT: _child_event("child_timed_out"),
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def kept_id(tool_call_id: str, temporal_run_id: str) -> str:
    """The id a call of an earlier Temporal run is kept under once a later run of the same
    workflow id re-uses its id. The last 8 characters of the run id: Temporal's run ids are
    UUIDv7, whose first characters are a timestamp shared by runs a minute apart."""
    return f"{tool_call_id}~{temporal_run_id[-8:]}"


class RunChain:
    """The Temporal runs of one workflow id (continue-as-new, resets, and runs started again
    under the same id), merged into one record.

    Run-level facts come from the Temporal run that began last. A call keeps its id; a
    reset's new run re-uses the ids of the calls it runs again, and so does a run started
    again under the same id (a sub-agent its parent's reset runs again), so an earlier
    run's call that a later run replaced is kept as ``<id>~<last 8 of its run id>``. Only a
    call a reset copied into its new run (same id, same first event) is carried on by it.
    """

    def __init__(self, run_id: str, namespace: str = "default") -> None:
        self.run_id = run_id
        self.namespace = namespace
        self.folds: dict[str, RunProjection] = {}

    def fold(self, temporal_run_id: str) -> RunProjection:
        fold = self.folds.get(temporal_run_id)
        if fold is None:
            fold = self.folds[temporal_run_id] = RunProjection(
                self.run_id, self.namespace, temporal_run_id
            )
        return fold

    def ordered(self) -> list[RunProjection]:
        """The Temporal runs with history, in the order they began."""
        folds = [f for f in self.folds.values() if f.last_event_id > 0]
        return sorted(folds, key=lambda f: (f.began_at or _EPOCH, f.temporal_run_id or ""))

    @property
    def current(self) -> RunProjection:
        folds = self.ordered()
        return folds[-1] if folds else self.fold("")

    @property
    def calls(self) -> dict[str, ToolCall]:
        return {call.tool_call_id: call for call, _, _ in self.call_versions(everything=True)}

    @property
    def memo(self) -> RunMemo:
        return self.current.memo

    @property
    def last_event_id(self) -> int:
        return sum(f.last_event_id for f in self.folds.values())

    def call_versions(self, *, everything: bool) -> list[tuple[ToolCall, int, ModelCall | None]]:
        """(call under its record id, first event id, model call) to write: every call, or
        only the ones changed since the last save."""
        folds = self.ordered()
        later: dict[str, list[tuple[RunProjection, int]]] = {}
        for fold in folds:
            for call_id in fold.calls:
                later.setdefault(call_id, []).append((fold, fold.scheduled_event_id(call_id)))
        out: list[tuple[ToolCall, int, ModelCall | None]] = []
        for position, fold in enumerate(folds):
            wanted = fold.calls.keys() if everything else self._touched(fold, folds, position)
            for call_id in wanted:
                call = fold.calls.get(call_id)
                if call is None:
                    continue
                first = fold.scheduled_event_id(call_id)
                newer = [(f, e) for f, e in later[call_id] if f is not fold and _after(f, fold)]
                if any(e == first and f.reset_from == fold.temporal_run_id for f, e in newer):
                    continue  # a reset copied it into a later run, which carries it on
                model = fold.model_calls.get(call_id)
                if newer:
                    key = kept_id(call_id, fold.temporal_run_id or "")
                    call = call.model_copy(update={"tool_call_id": key})
                    if model is not None:
                        model = model.model_copy(update={"tool_call_id": key})
                out.append((call, first, model))
        return out

    def ran_in(self, call: ToolCall) -> tuple[str, list[str]] | None:
        """For a call kept under ``<id>~<run>``: its id in the Temporal runs, and the Temporal
        runs whose workers ran it (its own, and those a reset copied it from), so that the
        attempts and artifacts journaled under the plain id follow it. None for other calls."""
        fold = self.folds.get(call.temporal_run_id or "")
        base = call.tool_call_id.rpartition("~")[0]
        if fold is None or base not in fold.calls:
            return None
        if kept_id(base, fold.temporal_run_id or "") != call.tool_call_id:
            return None
        runs = [fold.temporal_run_id or ""]
        first = fold.scheduled_event_id(base)
        while fold.reset_from in self.folds:
            earlier = self.folds[fold.reset_from or ""]
            if base not in earlier.calls or earlier.scheduled_event_id(base) != first:
                break
            runs.append(earlier.temporal_run_id or "")
            fold = earlier
        return base, runs

    @staticmethod
    def _touched(fold: RunProjection, folds: list[RunProjection], position: int) -> set[str]:
        # A call changed in a later run may rename the same id in this one.
        touched = set(fold.dirty)
        for newer in folds[position + 1 :]:
            touched.update(c for c in newer.dirty if c in fold.calls)
        return touched

    def record(self, *, calls: bool = True) -> RunRecord:
        """The merged record; without ``calls`` only the run-level facts (cheaper)."""
        folds = self.ordered()
        if not folds:
            return self.current.record()
        base = folds[-1].record()
        temporal_ids: list[str] = []
        children: list[str] = []
        rejections: list[ApprovalRejection] = []
        for fold in folds:
            for temporal_run_id in [fold.temporal_run_id or "", *fold.temporal_run_ids]:
                if temporal_run_id and temporal_run_id not in temporal_ids:
                    temporal_ids.append(temporal_run_id)
            children.extend(c for c in fold.child_run_ids if c not in children)
            rejections.extend(r for r in fold.approval_rejections if r not in rejections)
        versions = self.call_versions(everything=True) if calls else []
        return base.model_copy(
            update={
                "temporal_run_ids": temporal_ids,
                "child_run_ids": children,
                "approval_rejections": rejections,
                "tool_calls": [call for call, _, _ in versions],
                "model_calls": [model for _, _, model in versions if model is not None],
                "temporal_runs": [f.temporal_run() for f in folds],
                "started_at": folds[0].started_at,
            }
        )

    def scheduled_event_id(self, tool_call_id: str) -> int:
        return self.current.scheduled_event_id(tool_call_id)

    def taken(self) -> dict[str, tuple[int, set[str]]]:
        """A change set was taken: later changes start a new one. Returns what to forget
        once it is written (timeline events and payload copies are kept until then, so a
        failed write loses neither)."""
        marks = {}
        for temporal_run_id, fold in self.folds.items():
            fold.dirty.clear()
            marks[temporal_run_id] = (len(fold.events), set(fold.bodies))
        return marks

    def written(self, marks: dict[str, tuple[int, set[str]]]) -> None:
        for temporal_run_id, (events, bodies) in marks.items():
            fold = self.folds.get(temporal_run_id)
            if fold is not None:
                del fold.events[:events]
                for sha in bodies:
                    fold.bodies.pop(sha, None)


def _after(a: RunProjection, b: RunProjection) -> bool:
    return (a.began_at or _EPOCH, a.temporal_run_id or "") > (
        b.began_at or _EPOCH,
        b.temporal_run_id or "",
    )
