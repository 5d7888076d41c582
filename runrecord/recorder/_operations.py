"""Operators' actions on pending calls, which Temporal keeps out of history.

Pausing, unpausing or resetting one activity, or updating its options (from the Temporal UI,
``temporal activity ...`` or ``runrecord pause RUN --call N``), writes no history event: only
the pending activity's info changes. While a run has pending calls the mirror describes it
and records each change it sees as an ActivityOperation of the call. Temporal keeps who
paused and why, but not who unpaused: ``runrecord resume RUN --call N`` also sends a
``runrecord.operation`` signal (an OperationNote) first, and an unpause the mirror sees takes
its author and reason from the oldest such note not yet used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from temporalio.api.workflow.v1 import PendingActivityInfo

from runrecord._contract import OPERATION_SIGNAL, OperationNote
from runrecord._redaction import default_redactor
from runrecord.recorder._projection import SeenSignal


@dataclass
class _Seen:
    paused: bool
    pause_time: datetime | None
    attempt: int
    options: dict[str, Any]


@dataclass
class ActivityWatch:
    """What one Temporal run's pending activities looked like when last described."""

    run_id: str
    seen: dict[str, _Seen] = field(default_factory=dict)
    unwritten: list[dict[str, Any]] = field(default_factory=list)
    """Rows observed but not yet in the records (kept until a write succeeds)."""
    used_notes: set[int] = field(default_factory=set)

    def observe(
        self,
        pending: Iterable[PendingActivityInfo],
        calls: Mapping[str, str],
        now: datetime,
        signals: Sequence[SeenSignal] = (),
    ) -> list[dict[str, Any]]:
        """Compare with the last description; ``calls`` maps activity ids to tool call ids,
        ``signals`` are the run's signals so far (for the notes among them).

        The first sight of an activity records only a pause (its time and author are in the
        info); unpause, reset and options updates are changes from what was seen before.
        """
        current: dict[str, _Seen] = {}
        for info in pending:
            call_id = calls.get(info.activity_id)
            if call_id is None:
                continue
            manual = info.pause_info.manual if info.HasField("pause_info") else None
            pause_time = (
                info.pause_info.pause_time.ToDatetime(UTC)
                if info.HasField("pause_info") and info.pause_info.HasField("pause_time")
                else None
            )
            seen = _Seen(
                paused=info.paused,
                pause_time=pause_time,
                attempt=info.attempt,
                options=MessageToDict(info.activity_options),
            )
            current[info.activity_id] = seen
            before = self.seen.get(info.activity_id)

            if (
                before is not None
                and before.paused
                and (not seen.paused or seen.pause_time != before.pause_time)
            ):
                self._add(
                    call_id, info, "unpaused", now, **self._note(call_id, "unpaused", signals)
                )
            if seen.paused and (before is None or seen.pause_time != before.pause_time):
                self._add(
                    call_id,
                    info,
                    "paused",
                    seen.pause_time or now,
                    identity=manual.identity if manual else None,
                    reason=manual.reason if manual else None,
                )
            if before is not None and seen.attempt < before.attempt:
                self._add(call_id, info, "reset", now, detail={"attemptBefore": before.attempt})
            if before is not None and seen.options != before.options:
                changed = sorted(
                    k
                    for k in set(seen.options) | set(before.options)
                    if seen.options.get(k) != before.options.get(k)
                )
                detail = {"changed": changed, "options": seen.options}
                self._add(call_id, info, "options_updated", now, detail=detail)
        self.seen = current
        return self.unwritten

    def _note(self, call_id: str, operation: str, signals: Sequence[SeenSignal]) -> dict[str, Any]:
        """Author and reason of an operation, from the oldest unused note about it."""
        for signal in signals:
            if signal.name != OPERATION_SIGNAL or signal.event_id in self.used_notes:
                continue
            note = _note(signal)
            if note is not None and (note.tool_call_id, note.operation) == (call_id, operation):
                self.used_notes.add(signal.event_id)
                return {"identity": signal.identity, "reason": note.reason}
        return {}

    def _add(
        self,
        call_id: str,
        info: PendingActivityInfo,
        operation: str,
        at: datetime,
        *,
        identity: str | None = None,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.unwritten.append(
            {
                "run_id": self.run_id,
                "tool_call_id": call_id,
                "operation": operation,
                "at": at,
                "identity": identity or None,
                "reason": default_redactor().text(reason) if reason else None,
                "attempt": info.attempt or None,
                "detail": detail or {},
            }
        )


def _note(signal: SeenSignal) -> OperationNote | None:
    payloads = signal.input.payloads
    if len(payloads) != 1 or payloads[0].metadata.get("encoding") != b"json/plain":
        return None
    try:
        return OperationNote.model_validate(json.loads(payloads[0].data))
    except ValueError:
        return None
