"""What the control commands share: who is acting, and a run's state read from raw responses.

temporalio 1.35 cannot decode status 8 (PAUSED) in ``describe()``, so runs are read through
``workflow_service`` directly.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from runrecord._settings import RunRecordError, Settings

if TYPE_CHECKING:
    from temporalio.api.common.v1 import Payload
    from temporalio.api.workflow.v1 import WorkflowExecutionInfo
    from temporalio.client import Client

_STATUS = {
    1: "running",
    2: "completed",
    3: "failed",
    4: "canceled",
    5: "terminated",
    6: "continued-as-new",
    7: "timed-out",
    8: "paused",
}


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def acting_as(name: str | None) -> str:
    """The person an action is recorded for: ``--as``, else the OS user."""
    person = (name or os_user()).strip()
    if not person or person.startswith("policy:"):
        raise RunRecordError(f"{person!r} cannot act: give a person's name with --as")
    return person


# The arguments every command that acts on a run takes, spelled once for all of them.
RUN_ARGUMENT = typer.Argument(..., help="The run (workflow id).")
REASON_FILE_OPTION = typer.Option(
    None,
    "--reason-file",
    help="Read the reason from this file ('-': standard input), not the command line.",
)


def typed_reason(
    reason: str | None, reason_file: str | None, *, default: str | None = None
) -> str | None:
    """The reason a person gave, from ``--reason`` or ``--reason-file`` (``-`` for stdin), so
    that a reason quoting a secret need not sit on a command line (redacted when sent)."""
    if reason is not None and reason_file is not None:
        raise RunRecordError("give --reason or --reason-file, not both")
    if reason_file is None:
        return reason if reason is not None else default
    if reason_file == "-":
        return sys.stdin.read().strip()
    try:
        return Path(reason_file).read_text(encoding="utf-8", errors="replace").strip()
    except OSError as err:
        raise RunRecordError(f"cannot read --reason-file {reason_file}: {err.strerror}") from None


def client_identity() -> str:
    """The Temporal identity of CLI requests: who really sent them, whatever ``--as`` says."""
    return f"{os_user()}@{socket.gethostname()} (runrecord cli)"


@dataclass(frozen=True)
class RunState:
    run_id: str
    temporal_run_id: str
    status: str
    memo: dict[str, Payload]

    @property
    def open(self) -> bool:
        return self.status in ("running", "paused")

    def memo_json(self, key: str) -> Any:
        payload = self.memo.get(key)
        if payload is None:
            return None
        try:
            return json.loads(payload.data)
        except ValueError:
            return None


async def describe_run(client: Client, run_id: str) -> RunState:
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
    from temporalio.service import RPCError, RPCStatusCode

    from runrecord.recorder._decoding import decode_memo

    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=run_id)
    )
    try:
        response = await client.workflow_service.describe_workflow_execution(request)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise RunRecordError(f"no run {run_id!r} in namespace {client.namespace}") from None
        raise RunRecordError(f"cannot read run {run_id!r}: {err.message}") from None
    info = response.workflow_execution_info
    return RunState(
        run_id=run_id,
        temporal_run_id=info.execution.run_id,
        status=_STATUS.get(int(info.status), f"status {int(info.status)}"),
        memo=await decode_memo(info.memo.fields, client.data_converter.payload_codec),
    )


async def list_runs(client: Client, query: str) -> AsyncIterator[WorkflowExecutionInfo]:
    """Every execution visibility finds for ``query``, paused ones included."""
    from temporalio.service import RPCError

    from runrecord.recorder._visibility import list_executions

    try:
        async for info in list_executions(client, query):
            yield info
    except RPCError as err:
        raise RunRecordError(f"cannot list runs ({query}): {err.message}") from None


def require_open(state: RunState, action: str) -> None:
    if not state.open:
        raise RunRecordError(f"run {state.run_id!r} has ended ({state.status}); cannot {action}")


@asynccontextmanager
async def control_client(*, recording: bool = False) -> AsyncIterator[tuple[Settings, Client]]:
    """A client of the configured cluster (never starts a dev server)."""
    from runrecord.cli._cluster import connect, temporal_cluster

    settings = Settings.from_env()
    async with temporal_cluster(settings, start_if_missing=False) as temporal:
        plugins = []
        if recording:
            from runrecord.cli._stack import load_policy
            from runrecord.worker import RunRecordPlugin

            plugins.append(RunRecordPlugin(policy=load_policy(settings)))
        client = await connect(
            temporal,
            plugins=plugins,
            identity=client_identity(),
            payload_codec=settings.payload_codec,
        )
        yield settings, client
