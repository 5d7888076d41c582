"""Records ↔ rows: how each record model is kept in the records database and read back.

A column holds the record field of the same name: nested records as their camelCase JSON,
so a stored value reads like the record's JSON. The few columns that differ (a call's retry
state, flattened into ``attempts`` / ``last_failure`` / ``timeout_type``) are mapped here too,
and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from runrecord.recorder._tables import (
    ArtifactRow,
    AttemptRow,
    Base,
    ModelCallRow,
    RunRow,
    TemporalRunRow,
    ToolCallRow,
)
from runrecord.records import (
    ActivityOperation,
    Artifact,
    Attempt,
    AttemptOutcome,
    ModelCall,
    Record,
    RetryState,
    RunRecord,
    TemporalRun,
    ToolCall,
    ToolCallStatus,
)

if TYPE_CHECKING:  # the projection needs temporalio; reading rows back must not
    from runrecord.recorder._projection import RunChain, RunProjection

_R = TypeVar("_R", bound=Record)


def _column(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json_dict()
    if isinstance(value, list):
        return [_column(v) for v in value]
    return value


_COLUMNS: dict[tuple[type, type], tuple[str, ...]] = {}


def columns(record: Record, table: type[Base]) -> dict[str, Any]:
    """The record's fields that ``table`` has a column for, as column values."""
    names = _COLUMNS.get((type(record), table))
    if names is None:
        stored = table.__table__.columns
        names = tuple(name for name in type(record).model_fields if name in stored)
        _COLUMNS[(type(record), table)] = names
    return {name: _column(getattr(record, name)) for name in names}


def _values(row: Any) -> Mapping[str, Any]:
    """A row's columns by name, from a result row, an ORM object or such a dict already."""
    if isinstance(row, dict):
        return row
    mapping = getattr(row, "_mapping", None)
    if mapping is not None:
        return dict(mapping)  # a dict is read many times faster than a result row
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


_FIELDS: dict[type, tuple[str, ...]] = {}


def from_row(model: type[_R], row: Any, **values: Any) -> _R:
    """A record from the row's columns of the same names, then ``values``.

    A null column leaves the field at its default: a JSON list or object written as null
    reads back empty."""
    stored = _values(row)
    names = _FIELDS.get(model)
    if names is None:
        names = _FIELDS[model] = tuple(model.model_fields)
    fields = {name: value for name in names if (value := stored.get(name)) is not None}
    return model.model_validate({**fields, **values})


# --- writing


def run_row(record: RunRecord, *, last_event_id: int, now: datetime) -> dict[str, Any]:
    return {
        **columns(record, RunRow),
        "last_event_id": last_event_id,
        "updated_at": now,
    }


def temporal_run_row(chain: RunChain, fold: RunProjection, now: datetime) -> dict[str, Any]:
    return {
        "namespace": chain.namespace,
        "workflow_id": chain.run_id,
        **columns(fold.temporal_run(), TemporalRunRow),
        "last_event_time": fold.last_event_time,
        "updated_at": now,
    }


def call_row(run_id: str, call: ToolCall, scheduled_event_id: int) -> dict[str, Any]:
    state = call.retry_state
    return {
        "run_id": run_id,
        "scheduled_event_id": scheduled_event_id,
        **columns(call, ToolCallRow),
        "attempts": state.attempts,
        "last_failure": state.last_failure,
        "timeout_type": state.timeout_type,
        "schema_drift": call.mcp is not None and call.mcp.drift is not None,
    }


def model_call_row(run_id: str, model: ModelCall) -> dict[str, Any]:
    return {"run_id": run_id, **columns(model, ModelCallRow)}


def attempt_row(run_id: str, call_id: str, made_in: str, attempt: Attempt) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "tool_call_id": call_id,
        **columns(attempt, AttemptRow),
        "temporal_run_id": made_in,
    }


def artifact_row(artifact: Artifact, call_id: str) -> dict[str, Any]:
    return {**columns(artifact, ArtifactRow), "tool_call_id": call_id}


# --- reading


def tool_call_of(
    row: Any, attempts: Sequence[Any], operations: list[ActivityOperation]
) -> ToolCall:
    """A call from its row, with its journaled attempts merged in."""
    row = _values(row)
    call = from_row(
        ToolCall,
        row,
        retry_state=RetryState(
            attempts=row["attempts"],
            last_failure=row["last_failure"],
            timeout_type=row["timeout_type"],
            maximum_attempts=(row["retry_policy"] or {}).get("maximumAttempts"),
        ),
        operations=operations,
    )
    call.retry_state = _attempts(call, attempts)
    return call


def activity_operation_of(row: Any) -> ActivityOperation:
    # The column is the author's identity, as Temporal names it.
    return from_row(ActivityOperation, row, by=row.identity)


def artifact_of(row: Any) -> Artifact:
    return from_row(Artifact, row)


def model_call_of(row: Any) -> ModelCall:
    return from_row(ModelCall, row)


def temporal_run_of(row: Any) -> TemporalRun:
    return from_row(TemporalRun, row)


_TERMINAL_CALL = {
    ToolCallStatus.SUCCEEDED: AttemptOutcome.SUCCEEDED,
    ToolCallStatus.FAILED: AttemptOutcome.FAILED,
    ToolCallStatus.TIMED_OUT: AttemptOutcome.TIMED_OUT,
    ToolCallStatus.CANCELLED: AttemptOutcome.CANCELLED,
}
_LATE_RESULT = "TimeoutError: the result arrived after the server timed the attempt out"


def _attempts(call: ToolCall, journaled: Sequence[Any]) -> RetryState:
    """Merge the journal's attempts with what history says of the final one."""
    state = call.retry_state  # freshly built from the row: no copy needed
    # A call still pending at a reset may run again in the new Temporal run: that run's
    # row of an attempt number wins.
    rows = [_values(a) for a in journaled]
    mine = sorted(rows, key=lambda a: a["temporal_run_id"] == call.temporal_run_id)
    by_number = {a["attempt"]: a for a in mine}
    last = max([*by_number, state.attempts, 0])
    history: list[Attempt] = []
    for n in range(1, last + 1):
        row = by_number.get(n)
        final = _TERMINAL_CALL.get(ToolCallStatus(call.status)) if n == last else None
        if row is None:
            if final is not None:
                history.append(
                    Attempt(
                        attempt=n,
                        started_at=call.started_at,
                        ended_at=call.ended_at,
                        outcome=final,
                        error=state.last_failure if final != AttemptOutcome.SUCCEEDED else None,
                        worker_identity=call.worker_identity,
                    )
                )
            continue
        attempt = from_row(Attempt, row)
        if attempt.outcome == AttemptOutcome.RUNNING and n < last:
            attempt.outcome = AttemptOutcome.LOST  # a later attempt started: it never reported
        elif attempt.outcome == AttemptOutcome.SUCCEEDED and n < last:
            # The server retried, so it never took this result: it had timed the attempt out.
            attempt.outcome = AttemptOutcome.TIMED_OUT
            attempt.error = _LATE_RESULT
        elif final is not None and attempt.outcome != final:
            # The server decides how the final attempt ended: a worker may still report
            # success, or cancel on shutdown, after the server has timed the attempt out.
            attempt.outcome = final
            attempt.error = None if final == AttemptOutcome.SUCCEEDED else state.last_failure
        history.append(attempt)
    state.history = history
    state.attempts = max(state.attempts, last)
    return state
