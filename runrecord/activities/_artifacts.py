"""``runrecord.artifact``: a tool says what it produced, from inside its activity."""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from runrecord._contract import CallHeader, JournalEntry
from runrecord.records import Artifact


@dataclass(frozen=True)
class CurrentCall:
    """Set by the recording interceptor around each activity attempt."""

    header: CallHeader
    attempt: int
    record: Callable[[JournalEntry], None]
    temporal_run_id: str = ""
    # Filled by the tool while it runs (e.g. the model route an attempt took).
    notes: dict[str, str] = field(default_factory=dict)


current_call: contextvars.ContextVar[CurrentCall | None] = contextvars.ContextVar(
    "runrecord_current_call", default=None
)


def artifact(
    uri: str,
    *,
    kind: str = "file",
    content: bytes | str | None = None,
    sha256: str | None = None,
    size: int | None = None,
) -> Artifact:
    """Record that the running tool call produced ``uri``.

    Pass ``content`` to have it hashed here, or ``sha256`` (and ``size``) if the
    tool hashed it itself. The content itself is never stored.
    """
    call = current_call.get()
    if call is None:
        raise RuntimeError(
            "runrecord.artifact() must be called inside an activity run by a worker "
            "with the runrecord interceptor installed"
        )
    if content is not None:
        data = content.encode() if isinstance(content, str) else content
        sha256, size = hashlib.sha256(data).hexdigest(), len(data)
    header = call.header
    # Each Temporal run of a workflow id makes its own artifacts: a sub-agent run again
    # under the same id reuses the call ids of the run before it.
    made_in = f"\0{call.temporal_run_id}" if call.temporal_run_id else ""
    artifact_id = hashlib.sha256(
        f"{header.run_id}\0{header.tool_call_id}\0{kind}\0{uri}{made_in}".encode()
    ).hexdigest()[:24]
    made = Artifact(
        artifact_id=artifact_id,
        kind=kind,
        uri=uri,
        sha256=sha256,
        size=size,
        tool_call_id=header.tool_call_id,
        attempt=call.attempt,
        run_id=header.run_id,
        agent_id=header.agent_id,
        turn_id=header.turn_id,
        created_at=datetime.now(UTC),
        temporal_run_id=call.temporal_run_id or None,
    )
    call.record(
        JournalEntry(
            kind="artifact",
            run_id=header.run_id,
            tool_call_id=header.tool_call_id,
            temporal_run_id=call.temporal_run_id or None,
            artifact=made,
        )
    )
    return made
