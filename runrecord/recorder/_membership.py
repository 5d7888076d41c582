"""Mirror membership: several mirrors share a namespace's runs by heartbeats.

Each mirror upserts its row in the ``mirrors`` table every poll, with what it follows,
what it holds in quarantine and its recent errors; the mirrors whose heartbeat is fresh
split the workflow ids between them by CRC-32, so a run has one follower without any
coordinator. ``runrecord mirror status`` reads the same rows back.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select

from runrecord._redaction import default_redactor
from runrecord.recorder._store import upsert
from runrecord.recorder._tables import JournalCursorRow, MirrorRow, RunRow

# A mirror whose heartbeat is older than this many poll intervals (at least 10 s) is gone.
_ALIVE_INTERVALS = 5


@dataclass
class Followed:
    """What ``mirror status`` shows of one followed Temporal run."""

    workflow_id: str
    temporal_run_id: str
    last_event_id: int = 0
    last_event_time: datetime | None = None
    error: str | None = None


@dataclass
class Quarantined:
    """A run whose rows the records database refused: shown in ``mirror status``, retried
    alone with backoff, released once a write succeeds."""

    workflow_id: str
    error: str
    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    attempts: int = 1
    retry_at: float = 0.0
    retry: asyncio.TimerHandle | None = None

    def due(self, now: float) -> bool:
        return self.retry_at <= now


@dataclass
class Membership:
    """This mirror's share of the runs: workflow ids whose hash modulo ``count`` is ``index``."""

    index: int = 0
    count: int = 1
    peers: list[str] = field(default_factory=list)

    def owns(self, workflow_id: str) -> bool:
        return self.count <= 1 or zlib.crc32(workflow_id.encode()) % self.count == self.index


def _alive_for(poll_interval: float) -> timedelta:
    return timedelta(seconds=max(10.0, _ALIVE_INTERVALS * poll_interval))


def heartbeat(
    conn: Connection,
    *,
    mirror_id: str,
    namespace: str,
    started_at: datetime,
    poll_interval: float,
    followed: Iterable[Followed],
    quarantined: Iterable[Quarantined],
    errors: Sequence[str],
    copies: dict[str, Any] | None = None,
) -> Membership:
    """Report this mirror alive, with what it does, and return its share of the runs among
    the mirrors alive on the namespace. Error texts (an exception's, a database's refusal
    quoting a value) are redacted before they reach the records."""
    now = datetime.now(UTC)
    said = default_redactor().text
    if copies is not None and copies.get("error"):
        copies = {**copies, "error": said(copies["error"])}
    state = {
        "pollInterval": poll_interval,
        "followed": [
            {
                "workflowId": f.workflow_id,
                "temporalRunId": f.temporal_run_id,
                "lastEventId": f.last_event_id,
                "lastEventTime": f.last_event_time.isoformat() if f.last_event_time else None,
                "error": said(f.error) if f.error else f.error,
            }
            for f in followed
        ],
        "quarantined": [
            {
                "runId": q.workflow_id,
                "error": said(q.error),
                "since": q.since.isoformat(),
                "attempts": q.attempts,
            }
            for q in quarantined
        ],
        "errors": [said(e) for e in errors[-20:]],
        # Payload copies held in memory while the blob store is out, and those dropped.
        "payloadCopies": copies,
    }
    upsert(
        conn,
        MirrorRow,
        [
            {
                "mirror_id": mirror_id,
                "namespace": namespace,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": started_at,
                "heartbeat_at": now,
                "state": state,
            }
        ],
        ["mirror_id"],
    )
    peers = sorted(
        conn.execute(
            select(MirrorRow.mirror_id).where(
                MirrorRow.namespace == namespace,
                MirrorRow.heartbeat_at > now - _alive_for(poll_interval),
            )
        ).scalars()
    )
    index = peers.index(mirror_id) if mirror_id in peers else 0
    return Membership(index=index, count=max(1, len(peers)), peers=peers)


def leave(conn: Connection, mirror_id: str) -> None:
    """Hand this mirror's share to the others at once, not when its heartbeat goes stale."""
    conn.execute(delete(MirrorRow).where(MirrorRow.mirror_id == mirror_id))


def lag_seconds(last_event_time: datetime | None) -> float | None:
    if last_event_time is None:
        return None
    return max(0.0, time.time() - last_event_time.timestamp())


def mirror_status(conn: Connection, namespace: str) -> dict[str, Any]:
    """What ``runrecord mirror status`` shows: live mirrors, the runs they follow with their
    lag (now minus the time of the last projected event), the runs they hold in quarantine,
    their recent errors, and the journal lines set aside."""
    now = datetime.now(UTC)
    mirrors = []
    followed: set[str] = set()
    table = MirrorRow.__table__
    rows = conn.execute(
        select(table).where(table.c.namespace == namespace).order_by(table.c.mirror_id)
    ).all()
    for row in rows:
        state = dict(row.state or {})
        poll = float(state.get("pollInterval") or 1.0)
        beat = row.heartbeat_at if row.heartbeat_at.tzinfo else row.heartbeat_at.replace(tzinfo=UTC)
        alive = now - beat <= _alive_for(poll)
        runs = []
        for f in state.get("followed") or []:
            last = datetime.fromisoformat(f["lastEventTime"]) if f.get("lastEventTime") else None
            lag = lag_seconds(last)
            runs.append({**f, "lagMs": None if lag is None else int(lag * 1000)})
            if alive:
                followed.add(f["workflowId"])
        mirrors.append(
            {
                "mirrorId": row.mirror_id,
                "host": row.host,
                "pid": row.pid,
                "alive": alive,
                "startedAt": row.started_at.isoformat(),
                "heartbeatAt": beat.isoformat(),
                "runsFollowed": len(runs),
                "runs": runs,
                "quarantined": list(state.get("quarantined") or []),
                "payloadCopies": state.get("payloadCopies"),
                "errors": list(state.get("errors") or []),
            }
        )
    open_runs = conn.execute(
        select(RunRow.run_id).where(
            RunRow.namespace == namespace,
            RunRow.final_status.in_(["running", "awaiting_approval", "paused"]),
        )
    ).scalars()
    cursors = conn.execute(
        select(
            JournalCursorRow.file, JournalCursorRow.lines_set_aside, JournalCursorRow.last_set_aside
        )
        .where(JournalCursorRow.lines_set_aside > 0)
        .order_by(JournalCursorRow.file)
    )
    files = [
        {"file": c.file, "linesSetAside": c.lines_set_aside, "lastProblem": c.last_set_aside}
        for c in cursors
    ]
    return {
        "namespace": namespace,
        "mirrors": mirrors,
        "openRunsNotFollowed": sorted(set(open_runs) - followed),
        "journal": {"linesSetAside": sum(f["linesSetAside"] for f in files), "files": files},
    }
