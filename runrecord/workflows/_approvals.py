"""Approvals inside a run: requests wait for ``runrecord.approve`` / ``runrecord.deny`` signals.

Everything here runs in the workflow: it decides from the policy, the signals and the
workflow clock only, so replay decides the same. Each change is published through
``publish`` (the recording interceptor upserts it as memo, so it lands in history).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import temporalio.workflow as workflow
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from runrecord._contract import (
    APPROVE_SIGNAL,
    DECISION_QUERY,
    DENY_SIGNAL,
    PENDING_QUERY,
    ApprovalDecision,
    ApprovalRequest,
    CallHeader,
    ControlEvent,
    DecisionOutcome,
    ErrorType,
)
from runrecord._redaction import Redactor, default_redactor
from runrecord.records import Approval, ApprovalRejection, ApprovalState
from runrecord.workflows._policy import Action, Policy, Requirement, signing_message

PREVIEW_LIMIT = 500
APPROVAL_SIGNALS = {APPROVE_SIGNAL: "approve", DENY_SIGNAL: "deny"}
"""Signal name -> decision."""

# A signal sent with no payload calls its handler with no argument.
_NO_PAYLOAD = RawValue(Payload())


class ToolDenied(ApplicationError):
    """A call was denied (by a person or a policy rule). Unhandled, the run ends ``escalated``."""

    def __init__(self, tool: str, tool_call_id: str, decided_by: str | None, reason: str) -> None:
        super().__init__(
            f"call {tool_call_id} to {tool!r} denied by {decided_by}: {reason}",
            {"tool": tool, "toolCallId": tool_call_id, "decidedBy": decided_by, "reason": reason},
            type=ErrorType.TOOL_DENIED,
            non_retryable=True,
        )
        self.tool, self.tool_call_id = tool, tool_call_id
        self.decided_by, self.reason = decided_by, reason


class ApprovalExpired(ApplicationError):
    """Nobody decided a call in time. Unhandled, the run ends ``escalated``."""

    def __init__(self, tool: str, tool_call_id: str, expiry: timedelta) -> None:
        super().__init__(
            f"call {tool_call_id} to {tool!r}: no decision within {_span(expiry)}",
            {"tool": tool, "toolCallId": tool_call_id, "expirySeconds": expiry.total_seconds()},
            type=ErrorType.APPROVAL_EXPIRED,
            non_retryable=True,
        )
        self.tool, self.tool_call_id, self.expiry = tool, tool_call_id, expiry


def _span(expiry: timedelta) -> str:
    seconds = int(expiry.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{expiry.total_seconds():g}s"


def redact(value: Any) -> Any:
    """The recorder's redaction (secrets found by content or by field name)."""
    return _redactor().value(value)


def redact_text(text: str, limit: int | None = None) -> str:
    """``text`` redacted whole, then cut to ``limit`` characters: what a run may record of a
    text someone typed or an error said (a signal may come from anywhere, not only the CLI)."""
    return _redactor().text(text, limit)


ERROR_LIMIT = 2000
"""Characters kept of an error text, after redaction."""


def error_text(err: BaseException) -> str:
    """What a run may record of an error: its type and message, redacted and cut."""
    return redact_text(f"{type(err).__name__}: {err}", ERROR_LIMIT)


def _redactor() -> Redactor:
    with workflow.unsafe.sandbox_unrestricted():
        return default_redactor()  # built outside the sandbox: it reads its patterns once


def describe_arguments(args: Sequence[Any]) -> tuple[str, str]:
    """A redacted, shortened JSON preview of the arguments, and the sha256 of their payloads."""
    payloads = workflow.payload_converter().to_payloads(list(args))
    digest = hashlib.sha256()
    shown: list[Any] = []
    for p in payloads:
        digest.update(len(p.data).to_bytes(8, "big") + p.data)
        if p.metadata.get("encoding") == b"json/plain":
            shown.append(json.loads(p.data))
        else:
            shown.append(f"<{len(p.data)} bytes>")
    preview = json.dumps(redact(shown), default=str)
    if len(preview) > PREVIEW_LIMIT:
        preview = preview[: PREVIEW_LIMIT - 3] + "..."
    return preview, digest.hexdigest()


@dataclass
class _Waiting:
    header: CallHeader
    request: ApprovalRequest
    requirement: Requirement


Publish = Callable[[ControlEvent, list[ApprovalRequest]], None]


class ApprovalGate:
    """One run's approvals: waiting requests, decisions, and refused attempts."""

    def __init__(self, policy: Policy, publish: Publish) -> None:
        self.policy = policy
        self.publish = publish
        self.waiting: dict[str, _Waiting] = {}
        self.closed: dict[str, Approval] = {}
        self.calls: dict[str, str] = {}
        self.outcomes: dict[str, DecisionOutcome] = {}
        self._signals = 0

    def install(self) -> None:
        workflow.set_signal_handler(APPROVE_SIGNAL, self._approve)
        workflow.set_signal_handler(DENY_SIGNAL, self._deny)
        workflow.set_query_handler(DECISION_QUERY, self._outcome)
        workflow.set_query_handler(PENDING_QUERY, self._pending)

    def pending(self) -> list[ApprovalRequest]:
        return [w.request for w in self.waiting.values()]

    # --- calls the agent makes

    def requirement(self, header: CallHeader, declared: bool) -> Requirement:
        self.calls[header.tool_call_id] = header.tool
        return self.policy.requirement(
            header.tool,
            header.side_effect,
            declared,
            server=header.mcp_server,
            trusted=header.mcp is not None and header.mcp.trusted,
        )

    def decide_by_policy(self, header: CallHeader, requirement: Requirement) -> Approval:
        """The decision for a call the policy settles alone; raises ToolDenied for ``deny``."""
        if requirement.action is Action.NOT_REQUIRED:
            return Approval(state=ApprovalState.NOT_REQUIRED)
        allowed = requirement.action is Action.ALLOW
        approval = Approval(
            state=ApprovalState.APPROVED if allowed else ApprovalState.DENIED,
            decided_by=f"policy:{requirement.rule}",
            decided_at=workflow.now(),
            reason=f"{'allowed' if allowed else 'denied'} by policy rule {requirement.rule!r}",
            rule=requirement.rule,
        )
        if not allowed:
            self.closed[header.tool_call_id] = approval
            call = header.model_copy(update={"approval": approval})
            self.publish(ControlEvent(kind="decided", call=call), self.pending())
            raise ToolDenied(
                header.tool, header.tool_call_id, approval.decided_by, approval.reason or ""
            )
        return approval

    async def wait(
        self, header: CallHeader, requirement: Requirement, args: Sequence[Any]
    ) -> Approval:
        """Ask for a decision and wait for it; raises ToolDenied or ApprovalExpired."""
        call_id, rule = header.tool_call_id, requirement.rule or ""
        now = workflow.now()
        preview, arguments_digest = describe_arguments(args)
        request_digest = hashlib.sha256(
            json.dumps([header.run_id, call_id, header.tool, arguments_digest]).encode()
        ).hexdigest()
        approval = Approval(
            state=ApprovalState.REQUESTED,
            rule=rule,
            requested_at=now,
            expires_at=now + requirement.expiry,
            approvers=list(requirement.approvers),
        )
        header = header.model_copy(update={"approval": approval})
        self.waiting[call_id] = _Waiting(
            header,
            ApprovalRequest(
                run_id=header.run_id,
                tool_call_id=call_id,
                tool=header.tool,
                side_effect=header.side_effect,
                rule=rule,
                approvers=list(requirement.approvers),
                signatures_required=requirement.signatures_required,
                requested_at=now,
                expires_at=now + requirement.expiry,
                request_digest=request_digest,
                arguments=preview,
                agent_id=header.agent_id,
            ),
            requirement,
        )
        self.publish(ControlEvent(kind="requested", call=header), self.pending())
        try:
            await workflow.wait_condition(
                lambda: call_id in self.closed, timeout=requirement.expiry
            )
        except TimeoutError:
            expired = approval.model_copy(
                update={
                    "state": ApprovalState.EXPIRED,
                    "decided_by": f"policy:{rule}",
                    "decided_at": workflow.now(),
                    "reason": f"no decision within {_span(requirement.expiry)}",
                }
            )
            self._close(call_id, expired, "expired")
            raise ApprovalExpired(header.tool, call_id, requirement.expiry) from None
        except asyncio.CancelledError:
            if call_id in self.waiting:
                withdrawn = approval.model_copy(
                    update={"reason": "request withdrawn: the call was cancelled"}
                )
                self._close(call_id, withdrawn, "withdrawn")
            raise
        decided = self.closed[call_id]
        if decided.state == ApprovalState.DENIED:
            raise ToolDenied(header.tool, call_id, decided.decided_by, decided.reason or "")
        return decided

    def _close(
        self, call_id: str, approval: Approval, kind: str, signal: int | None = None
    ) -> None:
        waiting = self.waiting.pop(call_id)
        self.closed[call_id] = approval
        call = waiting.header.model_copy(update={"approval": approval})
        self.publish(ControlEvent(kind=kind, call=call, signal=signal), self.pending())

    # --- signals

    # The handlers take the raw payload: typed (or untyped) ones let the SDK decode it first
    # and drop, unseen, a signal it cannot decode. The gate decodes, and refuses what it can't.

    def _approve(self, payload: RawValue = _NO_PAYLOAD) -> None:
        self._on_signal("approve", payload)

    def _deny(self, payload: RawValue = _NO_PAYLOAD) -> None:
        self._on_signal("deny", payload)

    def refuse_unreadable(self, decision: str, why: str) -> None:
        """An approval signal no handler can take (the SDK passes several payloads decoded)."""
        self._signals += 1
        self._refuse(self._signals, None, decision, None, None, f"malformed payload: {why}")

    def _pending(self) -> list[dict[str, Any]]:
        return [r.to_json_dict() for r in self.pending()]

    def _outcome(self, nonce: str) -> dict[str, Any] | None:
        outcome = self.outcomes.get(nonce)
        return outcome.to_json_dict() if outcome else None

    def _on_signal(self, decision: str, received: RawValue) -> None:
        # Counted before anything can go wrong: the n-th signal's identity is in history.
        self._signals += 1
        number = self._signals
        if received is _NO_PAYLOAD:
            self._refuse(number, None, decision, None, None, "malformed payload: no payload")
            return
        try:
            raw = workflow.payload_converter().from_payload(received.payload)
        except Exception:
            # The decoder's message quotes the payload, which may hold anything: leave it out.
            encoding = received.payload.metadata.get("encoding", b"")[:40].decode(errors="replace")
            shown = encoding if encoding.isprintable() else "an unprintable encoding"
            refused = f"malformed payload: not decodable ({shown or 'no encoding'})"
            self._refuse(number, None, decision, None, None, refused)
            return
        nonce = raw.get("nonce") if isinstance(raw, dict) else None
        nonce = nonce if isinstance(nonce, str) else None
        try:
            payload = ApprovalDecision.model_validate(raw)
        except ValidationError as err:
            problem = err.errors()[0]
            where = ".".join(str(p) for p in problem["loc"]) or "payload"
            self._refuse(
                number, nonce, decision, None, None, f"malformed payload: {where}: {problem['msg']}"
            )
            return
        why = self._refusal(decision, payload)
        if why is not None:
            self._refuse(number, nonce, decision, payload.tool_call_id, payload.approver, why)
            return
        waiting = self.waiting[payload.tool_call_id]
        approval = waiting.header.approval.model_copy(
            update={
                "state": ApprovalState.APPROVED if decision == "approve" else ApprovalState.DENIED,
                "decided_by": payload.approver,
                "decided_at": workflow.now(),
                "reason": redact_text(payload.reason),
                "signed": bool(payload.signature),
            }
        )
        self._close(payload.tool_call_id, approval, "decided", number)
        if nonce:
            verb = "approved" if decision == "approve" else "denied"
            self.outcomes[nonce] = DecisionOutcome(
                nonce=nonce, applied=True, message=f"call {payload.tool_call_id} {verb}"
            )

    def _refusal(self, decision: str, payload: ApprovalDecision) -> str | None:
        call_id, approver = payload.tool_call_id, payload.approver
        run_id = workflow.info().workflow_id
        if payload.run_id is not None and payload.run_id != run_id:
            return f"the decision names run {payload.run_id!r}, not {run_id!r}"
        if not approver.strip() or approver.startswith("policy:"):
            return f"{approver!r} is not a person's identity"
        if not payload.reason.strip():
            return "a decision needs a reason"
        waiting = self.waiting.get(call_id)
        if waiting is None:
            closed = self.closed.get(call_id)
            if closed is not None and closed.state == ApprovalState.EXPIRED:
                return f"call {call_id} expired at {closed.decided_at:%Y-%m-%d %H:%M:%S} UTC"
            if closed is not None and closed.state == ApprovalState.REQUESTED:
                return f"call {call_id} was withdrawn"
            if closed is not None:
                return f"call {call_id} was already {closed.state} by {closed.decided_by}"
            if call_id in self.calls:
                return f"call {call_id} ({self.calls[call_id]}) is not waiting for approval"
            return f"no call {call_id} in this run"
        requirement = waiting.requirement
        if not self.policy.may_decide(approver, requirement.approvers):
            return (
                f"{approver!r} may not decide {waiting.header.side_effect} calls "
                f"(rule {requirement.rule!r} allows {', '.join(requirement.approvers)})"
            )
        if requirement.signatures_required or payload.signature:
            message = signing_message(
                decision,
                run_id,
                call_id,
                waiting.request.request_digest,
                approver,
                payload.reason,
            )
            bad = self.policy.verify(approver, message, payload.signature)
            if bad is not None:
                return f"signature refused: {bad}"
        return None

    def _refuse(
        self,
        number: int,
        nonce: str | None,
        decision: str,
        call_id: str | None,
        approver: str | None,
        why: str,
    ) -> None:
        why = redact_text(why)  # it quotes what the sender typed
        rejection = ApprovalRejection(
            tool_call_id=call_id,
            decision=decision,
            approver=approver,
            reason=why,
            at=workflow.now(),
        )
        self.publish(
            ControlEvent(kind="rejected", rejection=rejection, signal=number), self.pending()
        )
        if nonce:
            self.outcomes[nonce] = DecisionOutcome(nonce=nonce, applied=False, message=why)
