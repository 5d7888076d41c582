"""Operators' actions on pending calls, which Temporal keeps out of history.

Pausing, unpausing or resetting one activity, or updating its options (from the Temporal UI,
``temporal activity ...`` or ``runrecord pause RUN --call N``), writes no history event: only
the pending activity's info changes. While a run has pending calls the mirror describes it
and records each change it sees as an ActivityOperation of the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from temporalio.api.workflow.v1 import PendingActivityInfo

from runrecord._redaction import default_redactor


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

    def observe(
        self, pending: Iterable[PendingActivityInfo], calls: Mapping[str, str], now: datetime
    ) -> list[dict[str, Any]]:
        """Compare with the last description; ``calls`` maps activity ids to tool call ids.

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
                self._add(call_id, info, "unpaused", now)
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
