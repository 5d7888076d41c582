"""``runrecord approvals``, ``approve``, ``deny`` and ``keygen``: decide calls waiting for a person.

A decision is a ``runrecord.approve`` / ``runrecord.deny`` signal to the run; the run itself
checks it (known call, still waiting, approver allowed, signature) and records the outcome.
The same signal can be sent from the Temporal UI or ``temporal workflow signal``:

    {"toolCallId": "3", "approver": "alice", "reason": "checked the diff"}
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from runrecord._settings import RunRecordError, Settings
from runrecord.cli._temporal import (
    REASON_FILE_OPTION,
    RUN_ARGUMENT,
    acting_as,
    control_client,
    describe_run,
    list_runs,
    typed_reason,
)
from runrecord.records import to_json_list

if TYPE_CHECKING:
    from temporalio.client import Client

    from runrecord._contract import ApprovalRequest, DecisionOutcome
    from runrecord.workflows import Policy

CONFIRM_TIMEOUT = 20.0


async def pending_approvals(client: Client, run_id: str | None = None) -> list[ApprovalRequest]:
    """Calls waiting for a decision, oldest first: all runs, or one run (read from its memo)."""
    from runrecord._contract import AWAITING_ATTR, PENDING_MEMO_KEY, ApprovalRequest
    from runrecord.recorder._decoding import decode_memo

    if run_id is not None:
        state = await describe_run(client, run_id)
        raw = (state.memo_json(PENDING_MEMO_KEY) or []) if state.open else []
        found = [ApprovalRequest.model_validate(r) for r in raw]
    else:
        found = []
        async for info in list_runs(client, f"{AWAITING_ATTR.name} = true"):
            memo = await decode_memo(info.memo.fields, client.data_converter.payload_codec)
            payload = memo.get(PENDING_MEMO_KEY)
            if payload is None:
                continue
            try:
                found += [ApprovalRequest.model_validate(r) for r in json.loads(payload.data)]
            except ValueError:
                continue
    return sorted(found, key=lambda r: (r.requested_at, r.run_id, int(r.tool_call_id or 0)))


_NOUN = {"approve": "approval", "deny": "denial"}


class DecisionDeferred(RunRecordError):
    """The decision reached a paused run: the run checks and applies it when it resumes."""

    def __init__(self, run_id: str, tool_call_id: str, decision: str) -> None:
        super().__init__(
            f"run {run_id} is paused: the {_NOUN[decision]} of call {tool_call_id} was "
            "delivered and is applied when the run resumes"
        )


async def send_decision(
    client: Client,
    run_id: str,
    tool_call_id: str,
    decision: str,
    *,
    approver: str,
    reason: str,
    policy: Policy | None = None,
    private_key: bytes | None = None,
    timeout: float = CONFIRM_TIMEOUT,
) -> DecisionOutcome:
    """Send an approve/deny signal, signed when the policy has the approver's key, and wait for
    the run to say what it did with it."""
    from temporalio.service import RPCError

    from runrecord._contract import (
        APPROVE_SIGNAL,
        DENY_SIGNAL,
        PENDING_MEMO_KEY,
        ApprovalDecision,
        ApprovalRequest,
    )
    from runrecord._redaction import default_redactor
    from runrecord.workflows import Policy, PolicyError, sign
    from runrecord.workflows._policy import signing_message

    if decision not in ("approve", "deny"):
        raise ValueError(f"decision must be approve or deny, not {decision!r}")
    if not reason.strip():
        raise RunRecordError("give a reason with --reason or --reason-file")
    # Redacted before it is signed and sent: the signal stays in the run's history.
    reason = default_redactor().text(reason)
    policy = policy or Policy()
    state = await describe_run(client, run_id)
    if not state.open:
        raise RunRecordError(
            f"run {run_id!r} has ended ({state.status}); call {tool_call_id} can no longer be "
            "decided"
        )
    raw = state.memo_json(PENDING_MEMO_KEY) or []
    request = next(
        (
            r
            for r in (ApprovalRequest.model_validate(x) for x in raw)
            if r.tool_call_id == tool_call_id
        ),
        None,
    )
    signature = None
    if request is not None and (request.signatures_required or approver in policy.keys):
        message = signing_message(
            decision, run_id, tool_call_id, request.request_digest, approver, reason
        )
        try:
            signature = sign(policy, approver, message, private_key)
        except PolicyError as err:
            raise RunRecordError(
                f"cannot sign the decision for call {tool_call_id}: {err}"
            ) from None
    nonce = uuid.uuid4().hex
    payload = ApprovalDecision(
        tool_call_id=tool_call_id,
        approver=approver,
        reason=reason,
        run_id=run_id,
        signature=signature,
        nonce=nonce,
    )
    handle = client.get_workflow_handle(run_id)
    try:
        await handle.signal(
            APPROVE_SIGNAL if decision == "approve" else DENY_SIGNAL,
            payload.to_json_dict(),
        )
    except RPCError as err:
        raise RunRecordError(f"cannot signal run {run_id!r}: {err.message}") from None
    if state.status == "paused":
        raise DecisionDeferred(run_id, tool_call_id, decision)
    return await _outcome(client, run_id, nonce, timeout)


async def _outcome(client: Client, run_id: str, nonce: str, timeout: float) -> DecisionOutcome:
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from runrecord._contract import DECISION_QUERY, DecisionOutcome

    handle = client.get_workflow_handle(run_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            answer = await handle.query(
                DECISION_QUERY, nonce, rpc_timeout=timedelta(seconds=max(1.0, timeout / 2))
            )
        except (RPCError, WorkflowQueryFailedError):
            answer = None
        if answer:
            return DecisionOutcome.model_validate(answer)
        if loop.time() > deadline:
            raise RunRecordError(
                f"the decision was sent to run {run_id!r}, but the run did not confirm it within "
                f"{timeout:.0f} s: is a worker running for it?"
            )
        await asyncio.sleep(0.05)


def _private_key(settings: Settings, approver: str, key: Path | None) -> bytes | None:
    path = key or settings.home / "keys" / f"{approver}.pem"
    if key is None and not path.is_file():
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise RunRecordError(f"cannot read private key {path}: {err.strerror}") from None


def _decide(
    decision: str,
    run_id: str,
    call: str,
    reason: str | None,
    reason_file: str | None,
    name: str | None,
    key: Path | None,
) -> None:
    from runrecord._redaction import default_redactor
    from runrecord.cli._stack import load_policy

    approver = acting_as(name)
    reason = typed_reason(reason, reason_file) or ""

    async def main() -> DecisionOutcome:
        async with control_client() as (settings, client):
            return await send_decision(
                client,
                run_id,
                call,
                decision,
                approver=approver,
                reason=reason,
                policy=load_policy(settings),
                private_key=_private_key(settings, approver, key),
            )

    try:
        outcome = asyncio.run(main())
    except DecisionDeferred as deferred:
        typer.echo(default_redactor().text(str(deferred)))
        return
    message = default_redactor().text(outcome.message)  # a run on older code may not have
    if not outcome.applied:
        raise RunRecordError(f"refused by run {run_id}: {message}")
    typer.echo(f"{message} in run {run_id} by {approver}")


_REASON = typer.Option(None, "--reason", help="Why: recorded with the decision (redacted).")
_WAITING_CALL = typer.Argument(..., help="The tool call id waiting for approval.")
_AS = typer.Option(None, "--as", help="Who decides (default: your OS user name).")
_KEY = typer.Option(
    None,
    "--key",
    help="Ed25519 private key (PEM) to sign with (default $RUNRECORD_HOME/keys/NAME.pem).",
)


def _decision_command(decision: str, doc: str) -> Callable[..., None]:
    """``approve`` or ``deny``: one command, told which decision it sends."""

    def command(
        run_id: str = RUN_ARGUMENT,
        call: str = _WAITING_CALL,
        reason: str = _REASON,
        reason_file: str = REASON_FILE_OPTION,
        name: str = _AS,
        key: Path = _KEY,
    ) -> None:
        _decide(decision, run_id, call, reason, reason_file, name, key)

    command.__name__ = command.__qualname__ = decision
    command.__doc__ = doc
    return command


approve = _decision_command(
    "approve",
    """Approve a call waiting in RUN: the run checks the decision and runs the tool.

    Exits non-zero, with the run's reason, when the run refuses the decision (unknown or
    already decided call, expired request, approver not allowed, bad signature).
    """,
)
deny = _decision_command(
    "deny", "Deny a call waiting in RUN: the agent gets a ToolDenied error (unhandled: escalated)."
)


def approvals(
    as_json: bool = typer.Option(False, "--json", help="Print as a JSON array."),
) -> None:
    """List the calls waiting for a decision, oldest first, across all runs."""

    async def main() -> list[ApprovalRequest]:
        async with control_client() as (_, client):
            return await pending_approvals(client)

    found = asyncio.run(main())
    if as_json:
        typer.echo(json.dumps(to_json_list(found), indent=2))
        return
    if not found:
        typer.echo("No calls are waiting for approval.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "RUN", "CALL", "TOOL", "EFFECT", "RULE", "APPROVERS", "WAITING", "EXPIRES IN", "ARGUMENTS"
    )
    now = datetime.now(UTC)
    for r in found:
        table.add_row(
            r.run_id,
            r.tool_call_id,
            r.tool,
            r.side_effect,
            r.rule + (" (signed)" if r.signatures_required else ""),
            ", ".join(r.approvers),
            _ago(now - r.requested_at),
            _ago(r.expires_at - now),
            r.arguments,
        )
    Console(width=200).print(table)


def _ago(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def keygen(
    name: str = typer.Argument(..., help="The approver the key is for."),
    force: bool = typer.Option(False, "--force", help="Replace an existing key."),
) -> None:
    """Make an Ed25519 key pair for an approver: the private key goes to
    $RUNRECORD_HOME/keys/NAME.pem, the public key is printed for the policy file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    settings = Settings.from_env()
    path = settings.home / "keys" / f"{name}.pem"
    if path.exists() and not force:
        raise RunRecordError(f"{path} exists: pass --force to replace it")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    typer.echo(f"private key written to {path}\nadd to the policy file:\n")
    typer.echo(f'[approvers.{name}]\ned25519_public_key = "{base64.b64encode(public).decode()}"')
