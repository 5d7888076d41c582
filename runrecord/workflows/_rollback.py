"""Rollback: undo a run's completed side-effecting calls, and its sub-agents', with their
compensators: the deepest sub-agents' first, each run's newest first.

A compensator is called with the original call's arguments followed by its result, as many
of them as it declares: ``write_file(path, content) -> previous`` may be undone by
``restore_file(path, content, previous)`` or by ``delete_file(path)``.

A sub-agent run cannot be compensated once it has closed (a closed workflow takes no
signal), so each sub-agent run, as it closes, reports the calls it leaves in effect to its
parent (``runrecord.sub-agent-calls``, with its own sub-agents' reports folded in); a parent
that is rolled back later runs their compensators itself.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import temporalio.common
import temporalio.workflow as workflow
from temporalio.api.common.v1 import Payload

from runrecord._contract import CallHeader, CompensableCall, RollbackRequest
from runrecord.records import CallRef, FinalStatus, NotUndone, RetryPolicy, Rollback, SideEffect
from runrecord.workflows._approvals import redact_text

REASON_LIMIT = 500
"""Characters kept of a rollback's reason and of why a call was not undone (after redaction)."""
# Calls that change nothing in the world need no undoing.
_NO_EFFECT = {SideEffect.READ, SideEffect.MODEL}
ROLLBACK_ON_FAILURE = "policy:rollback-on-failure"


@dataclass
class CompletedCall:
    """A call that succeeded, with what a compensator needs to undo it.

    A sub-agent's call (``depth`` > 0) comes from its report: ``args`` are then the
    compensator's arguments as payloads, and ``position`` is how many of this run's own
    calls were scheduled before the sub-agent started.
    """

    header: CallHeader
    args: list[Any]
    result: Any
    options: dict[str, Any] = field(default_factory=dict)
    depth: int = 0
    position: int = 0

    @property
    def order(self) -> int:
        call_id = self.header.tool_call_id
        return int(call_id) if call_id.isdigit() else 0

    @property
    def undo_id(self) -> str:
        """What the compensation's ``compensates`` names: ``<run id>/<call id>`` for a
        sub-agent's call, so it is never taken for this run's call of the same number."""
        if self.depth == 0:
            return self.header.tool_call_id
        return f"{self.header.run_id}/{self.header.tool_call_id}"

    def compensator_args(self, arity: int | None) -> list[Any]:
        if self.depth > 0:
            return list(self.args)
        args = [*self.args, self.result]
        return args if arity is None else args[:arity]

    def after(self, to_call: int) -> bool:
        return self.order > to_call if self.depth == 0 else self.position >= to_call


Compensate = Callable[[CompletedCall], Awaitable[None]]


def needs_undoing(call: CompletedCall) -> bool:
    header = call.header
    return header.side_effect not in _NO_EFFECT and header.compensates is None


async def roll_back(
    completed: list[CompletedCall], request: RollbackRequest, compensate: Compensate
) -> Rollback:
    """Undo every completed side-effecting call after ``request.to_call``, the deepest
    sub-agents' first, newest first."""
    started = workflow.now()
    after = int(request.to_call) if request.to_call and request.to_call.isdigit() else 0
    targets = sorted(
        (c for c in completed if needs_undoing(c) and c.after(after)),
        key=lambda c: (c.depth, c.position, c.order),
        reverse=True,
    )
    compensated: list[str] = []
    sub_agent_compensated: list[CallRef] = []
    not_undone: list[NotUndone] = []
    for call in targets:
        header = call.header
        if header.irreversible:
            not_undone.append(_not_undone(call, "declared irreversible"))
        elif not header.compensator:
            not_undone.append(_not_undone(call, "no compensator declared"))
        else:
            try:
                await compensate(call)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                cause = err.__cause__ or err
                why = f"compensator {header.compensator} failed: {type(cause).__name__}: {cause}"
                not_undone.append(_not_undone(call, redact_text(why, REASON_LIMIT)))
            else:
                if call.depth == 0:
                    compensated.append(header.tool_call_id)
                else:
                    sub_agent_compensated.append(
                        CallRef(
                            run_id=header.run_id, tool_call_id=header.tool_call_id, tool=header.tool
                        )
                    )
    return Rollback(
        requested_by=request.requested_by,
        reason=redact_text(request.reason, REASON_LIMIT) if request.reason else request.reason,
        to_call=request.to_call,
        started_at=started,
        ended_at=workflow.now(),
        compensated=compensated,
        sub_agent_compensated=sub_agent_compensated,
        not_undone=not_undone,
        outcome=FinalStatus.ROLLBACK_INCOMPLETE if not_undone else FinalStatus.ROLLED_BACK,
    )


def undone_ids(report: Rollback) -> set[str]:
    """The ``undo_id`` of every call a rollback undid."""
    return set(report.compensated) | {
        f"{c.run_id}/{c.tool_call_id}" for c in report.sub_agent_compensated
    }


def compensable(
    calls: Iterable[CompletedCall],
    *,
    depth: int,
    task_queue: str,
    arity: Callable[[str], int | None],
) -> list[CompensableCall]:
    """What a closing run reports to its parent: its own calls still in effect (as payloads,
    from inside the workflow) followed by those its sub-agents reported."""
    converter = workflow.payload_converter()
    reported: list[CompensableCall] = []
    for call in calls:
        if call.depth > 0:
            reported.append(_from_sub_agent(call, depth + call.depth))
            continue
        header = call.header
        args: list[Any] = []
        if header.compensator and not header.irreversible:
            args = call.compensator_args(arity(header.compensator))
        options = call.options
        reported.append(
            CompensableCall(
                header=header,
                depth=depth,
                arguments=[_encode(p) for p in converter.to_payloads(args)] if args else [],
                task_queue=options.get("task_queue") or task_queue,
                schedule_to_close_ms=_ms(options.get("schedule_to_close_timeout")),
                start_to_close_ms=_ms(options.get("start_to_close_timeout")),
                heartbeat_ms=_ms(options.get("heartbeat_timeout")),
                retry_policy=_retry_record(options.get("retry_policy")),
            )
        )
    return reported


def from_report(call: CompensableCall, *, depth: int, position: int) -> CompletedCall:
    """A sub-agent's reported call, as this run's rollback undoes it (``depth`` relative)."""
    policy = call.retry_policy
    return CompletedCall(
        header=call.header,
        args=[temporalio.common.RawValue(_decode(a)) for a in call.arguments],
        result=None,
        options={
            "task_queue": call.task_queue,
            "schedule_to_close_timeout": _span(call.schedule_to_close_ms),
            "start_to_close_timeout": _span(call.start_to_close_ms),
            "heartbeat_timeout": _span(call.heartbeat_ms),
            "retry_policy": _retry_policy(policy) if policy else None,
        },
        depth=depth,
        position=position,
    )


def _from_sub_agent(call: CompletedCall, depth: int) -> CompensableCall:
    options = call.options
    return CompensableCall(
        header=call.header,
        depth=depth,
        arguments=[_encode(a.payload) for a in call.args],
        task_queue=options["task_queue"],
        schedule_to_close_ms=_ms(options.get("schedule_to_close_timeout")),
        start_to_close_ms=_ms(options.get("start_to_close_timeout")),
        heartbeat_ms=_ms(options.get("heartbeat_timeout")),
        retry_policy=_retry_record(options.get("retry_policy")),
    )


def _encode(payload: Payload) -> str:
    return base64.b64encode(payload.SerializeToString()).decode()


def _decode(text: str) -> Payload:
    return Payload.FromString(base64.b64decode(text))


def _ms(span: timedelta | None) -> int | None:
    return int(span.total_seconds() * 1000) if span else None


def _span(ms: int | None) -> timedelta | None:
    return timedelta(milliseconds=ms) if ms else None


def _retry_record(policy: temporalio.common.RetryPolicy | None) -> RetryPolicy | None:
    if policy is None:
        return None
    return RetryPolicy(
        initial_interval_ms=_ms(policy.initial_interval),
        backoff_coefficient=policy.backoff_coefficient,
        maximum_interval_ms=_ms(policy.maximum_interval),
        maximum_attempts=policy.maximum_attempts or None,
        non_retryable_error_types=list(policy.non_retryable_error_types or []),
    )


def _retry_policy(policy: RetryPolicy) -> temporalio.common.RetryPolicy:
    return temporalio.common.RetryPolicy(
        initial_interval=_span(policy.initial_interval_ms) or timedelta(seconds=1),
        backoff_coefficient=policy.backoff_coefficient or 2.0,
        maximum_interval=_span(policy.maximum_interval_ms),
        maximum_attempts=policy.maximum_attempts or 0,
        non_retryable_error_types=policy.non_retryable_error_types or None,
    )


def _not_undone(call: CompletedCall, why: str) -> NotUndone:
    header = call.header
    run_id = header.run_id if call.depth > 0 else None
    return NotUndone(tool_call_id=header.tool_call_id, tool=header.tool, why=why, run_id=run_id)


def summary(report: Rollback) -> str:
    text = f"rolled back {len(report.compensated)} call(s)"
    if report.not_undone:
        listed = ", ".join(
            f"{f'{n.run_id}/' if n.run_id else ''}{n.tool_call_id} {n.tool} ({n.why})"
            for n in report.not_undone
        )
        text += f"; not undone: {listed}"
    return text
