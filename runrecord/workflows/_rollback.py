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
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn

import temporalio.common
import temporalio.worker
import temporalio.workflow as workflow
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError

from runrecord._contract import (
    FAILURE_STATUS,
    ROLLBACK_SIGNAL,
    SUB_AGENT_CALLS_SIGNAL,
    ApprovalRequest,
    CallHeader,
    CompensableCall,
    ControlEvent,
    ErrorType,
    RollbackRequest,
    SubAgentCalls,
)
from runrecord.records import (
    ApprovalRejection,
    CallRef,
    FinalStatus,
    NotUndone,
    RetryPolicy,
    Rollback,
    SideEffect,
)
from runrecord.workflows._approvals import error_text, redact_text
from runrecord.workflows._status import RunStatus

REASON_LIMIT = 500
"""Characters kept of a rollback's reason and of why a call was not undone (after redaction)."""
# Calls that change nothing in the world need no undoing.
_NO_EFFECT = {SideEffect.READ, SideEffect.MODEL}
ROLLBACK_ON_FAILURE = "policy:rollback-on-failure"
# A compensator scheduled without any timeout still needs one (the SDK requires it).
_COMPENSATION_TIMEOUT = timedelta(minutes=5)


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


class RunRollback:
    """One run's rollback: the calls it could undo, the ``runrecord.rollback`` signal that
    stops the agent to undo them, and the report a sub-agent run leaves its parent.

    The agent runs as its own task under ``run`` so that a rollback signal can cancel it;
    how the run ended is published through ``status``.
    """

    def __init__(
        self,
        status: RunStatus,
        pending: Callable[[], list[ApprovalRequest]],
        arity: Callable[[str], int | None],
    ) -> None:
        self.status = status
        self.pending = pending
        self.arity = arity
        self.run_id = ""
        self.depth = 0
        self.on_failure = False
        self.completed: list[CompletedCall] = []
        self.request: RollbackRequest | None = None
        self.rolling_back = False
        self.compensating: str | None = None
        # Sub-agent runs started (workflow id -> own calls scheduled before), and the calls
        # they reported as still in effect when they closed.
        self.children: dict[str, int] = {}
        self.sub_agent_calls: list[CompletedCall] = []
        self.undone: set[str] = set()

    def install(self, run_id: str, depth: int, *, on_failure: bool) -> None:
        """Listen for rollback requests and sub-agent reports; ``on_failure``: the agent's
        declaration that a failed run is rolled back."""
        self.run_id, self.depth, self.on_failure = run_id, depth, on_failure
        workflow.set_signal_handler(ROLLBACK_SIGNAL, self._on_rollback)
        workflow.set_signal_handler(SUB_AGENT_CALLS_SIGNAL, self._on_sub_agent_calls)

    @property
    def stops_calls(self) -> bool:
        """Whether the agent's calls are refused: the run is rolling back (compensators pass)."""
        return self.rolling_back and self.compensating is None

    def child_started(self, workflow_id: str, calls_before: int) -> None:
        self.children[workflow_id] = calls_before

    def track(
        self,
        handle: asyncio.Future[Any],
        header: CallHeader,
        input: temporalio.worker.StartActivityInput | temporalio.worker.StartLocalActivityInput,
    ) -> None:
        """Keep a scheduled call, once it succeeds, with what its compensator needs: its
        arguments, its result and the options to schedule the compensator with."""
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

    async def run(self, agent: Coroutine[Any, Any, Any]) -> Any:
        """Run the agent, roll it back if asked, publish how it ended and, as a sub-agent,
        report to the parent the calls it leaves in effect."""
        try:
            result = await self._supervise(agent)
        except workflow.ContinueAsNewError:
            raise
        except BaseException:
            await self._report_to_parent()
            raise
        await self._report_to_parent()
        return result

    async def _supervise(self, agent_run: Coroutine[Any, Any, Any]) -> Any:
        agent = asyncio.create_task(agent_run)
        try:
            await workflow.wait_condition(lambda: agent.done() or self.request is not None)
        except asyncio.CancelledError:
            agent.cancel()
            return await self._outcome(agent)
        if not agent.done() and self.request is not None:
            agent.cancel()
            await asyncio.wait([agent])
            await self._roll_back(self.request, None)
        return await self._outcome(agent)

    async def _outcome(self, agent: asyncio.Task[Any]) -> Any:
        try:
            result = await agent
        except (workflow.ContinueAsNewError, asyncio.CancelledError):
            raise
        except Exception as err:
            if self.on_failure and not self.rolling_back:
                request = RollbackRequest(requested_by=ROLLBACK_ON_FAILURE, reason=error_text(err))
                await self._roll_back(request, err)
            self.status.set(_failure_status(err))
            raise
        self.status.set("succeeded")
        return result

    async def _roll_back(self, request: RollbackRequest, cause: BaseException | None) -> NoReturn:
        self.rolling_back = True
        report = await roll_back(self.completed + self.sub_agent_calls, request, self._compensate)
        self.undone = undone_ids(report)
        self.status.publish(ControlEvent(kind="rollback", rollback=report), self.pending())
        self.status.set(report.outcome)
        kind = ErrorType.ROLLBACK_INCOMPLETE if report.not_undone else ErrorType.ROLLED_BACK
        raise ApplicationError(
            summary(report), report.to_json_dict(), type=kind, non_retryable=True
        ) from cause

    async def _compensate(self, call: CompletedCall) -> None:
        name = call.header.compensator or ""
        args = call.compensator_args(self.arity(name))
        self.compensating = call.undo_id
        try:
            handle = workflow.start_activity(name, args=args, **call.options)
        finally:
            self.compensating = None
        await handle

    def _on_rollback(self, *args: Any) -> None:
        try:
            request = RollbackRequest.model_validate(args[0] if len(args) == 1 else None)
        except ValidationError as err:
            why = f"malformed rollback payload: {err.errors()[0]['msg']}"
        else:
            if self.request is None and not self.rolling_back:
                self.request = request
                return
            why = "a rollback is already under way"
        rejection = ApprovalRejection(decision="rollback", reason=why, at=workflow.now())
        self.status.publish(ControlEvent(kind="rejected", rejection=rejection), self.pending())

    def _on_sub_agent_calls(self, *args: Any) -> None:
        try:
            report = SubAgentCalls.model_validate(args[0] if len(args) == 1 else None)
        except ValidationError:
            workflow.logger.warning("malformed runrecord sub-agent report ignored")
            return
        position = self.children.get(report.run_id)
        if position is None:
            # Only runs this run started may leave it calls to undo.
            workflow.logger.warning("sub-agent report from an unknown run ignored")
            return
        self.sub_agent_calls += [
            from_report(c, depth=max(c.depth - self.depth, 1), position=position)
            for c in report.calls
        ]

    async def _report_to_parent(self) -> None:
        """As a sub-agent run closes: tell the parent which calls it leaves in effect."""
        parent = workflow.info().parent
        if parent is None:
            return
        calls = [
            c
            for c in self.completed + self.sub_agent_calls
            if needs_undoing(c) and c.undo_id not in self.undone
        ]
        if not calls or not workflow.patched("runrecord-sub-agent-report"):
            return  # (histories from before reports existed replay without one)
        report = SubAgentCalls(
            run_id=self.run_id,
            calls=compensable(
                calls,
                depth=self.depth,
                task_queue=workflow.info().task_queue,
                arity=self.arity,
            ),
        )
        handle = workflow.get_external_workflow_handle(parent.workflow_id, run_id=parent.run_id)
        try:
            # Awaited: the parent has the report before it learns that this run closed.
            await handle.signal(SUB_AGENT_CALLS_SIGNAL, report.to_json_dict())
        except Exception as err:  # a parent that has closed cannot roll back any more
            workflow.logger.warning(f"sub-agent report not delivered: {err}")


def _failure_status(err: BaseException) -> str:
    """The status a run ends with for ``err``: runrecord's own ending (a denial, an expiry,
    a rollback) even when an agent framework wrapped it in an error of its own."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            break
        kind = seen.type if isinstance(seen, ApplicationError) else None
        if kind in FAILURE_STATUS:
            return FAILURE_STATUS[kind]
        seen = seen.__cause__
    return "failed"
