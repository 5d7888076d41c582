"""Rollback: undo a run's completed side-effecting calls, newest first, with their compensators.

A compensator is called with the original call's arguments followed by its result, as many
of them as it declares: ``write_file(path, content) -> previous`` may be undone by
``restore_file(path, content, previous)`` or by ``delete_file(path)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import temporalio.workflow as workflow

from runrecord.records import (
    CallHeader,
    FinalStatus,
    NotUndone,
    Rollback,
    RollbackRequest,
    SideEffect,
)
from runrecord.workflows._approvals import redact_text

REASON_LIMIT = 500
"""Characters kept of a rollback's reason and of why a call was not undone (after redaction)."""
# Calls that change nothing in the world need no undoing.
_NO_EFFECT = {SideEffect.READ, SideEffect.MODEL}
ROLLBACK_ON_FAILURE = "policy:rollback-on-failure"


@dataclass
class CompletedCall:
    """A call that succeeded, with what a compensator needs to undo it."""

    header: CallHeader
    args: list[Any]
    result: Any
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def order(self) -> int:
        call_id = self.header.tool_call_id
        return int(call_id) if call_id.isdigit() else 0


Compensate = Callable[[CompletedCall], Awaitable[None]]


async def roll_back(
    completed: list[CompletedCall], request: RollbackRequest, compensate: Compensate
) -> Rollback:
    """Undo every completed side-effecting call after ``request.to_call``, newest first."""
    started = workflow.now()
    after = int(request.to_call) if request.to_call and request.to_call.isdigit() else 0
    targets = sorted(
        (
            c
            for c in completed
            if c.header.side_effect not in _NO_EFFECT
            and c.header.compensates is None
            and c.order > after
        ),
        key=lambda c: c.order,
        reverse=True,
    )
    compensated: list[str] = []
    not_undone: list[NotUndone] = []
    for call in targets:
        header = call.header
        if header.irreversible:
            not_undone.append(_not_undone(header, "declared irreversible"))
        elif not header.compensator:
            not_undone.append(_not_undone(header, "no compensator declared"))
        else:
            try:
                await compensate(call)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                cause = err.__cause__ or err
                why = f"compensator {header.compensator} failed: {type(cause).__name__}: {cause}"
                not_undone.append(_not_undone(header, redact_text(why, REASON_LIMIT)))
            else:
                compensated.append(header.tool_call_id)
    return Rollback(
        requested_by=request.requested_by,
        reason=redact_text(request.reason, REASON_LIMIT) if request.reason else request.reason,
        to_call=request.to_call,
        started_at=started,
        ended_at=workflow.now(),
        compensated=compensated,
        not_undone=not_undone,
        outcome=FinalStatus.ROLLBACK_INCOMPLETE if not_undone else FinalStatus.ROLLED_BACK,
    )


def _not_undone(header: CallHeader, why: str) -> NotUndone:
    return NotUndone(tool_call_id=header.tool_call_id, tool=header.tool, why=why)


def summary(report: Rollback) -> str:
    text = f"rolled back {len(report.compensated)} call(s)"
    if report.not_undone:
        listed = ", ".join(f"{n.tool_call_id} {n.tool} ({n.why})" for n in report.not_undone)
        text += f"; not undone: {listed}"
    return text
