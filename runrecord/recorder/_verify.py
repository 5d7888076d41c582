"""Verification: the records compared with a fresh projection of history.

``runrecord mirror verify`` projects a run from Temporal history alone and lists every row
the records lack or hold differently, every attempt history counts that the journal
lacks, and (with ``--all``) every agent run Temporal lists that the records lack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from runrecord.recorder._store import KEYS, Rows, run_rows, storable
from runrecord.recorder._tables import AttemptRow

if TYPE_CHECKING:
    from runrecord.recorder._mirror import Mirror


async def differences(mirror: Mirror, workflow_id: str) -> list[str]:
    """Every difference between the records and a fresh projection of the run's history."""
    chain = await mirror.project(workflow_id)
    if not chain.ordered():
        return []
    # Compared as the records hold them: with unstorable code points escaped.
    expected: Rows = storable(run_rows(chain, everything=True))
    present = {f.temporal_run_id or "" for f in chain.ordered()}

    def compare() -> list[str]:
        with mirror.engine.connect() as conn:
            stored_id = storable(workflow_id)
            return compare_rows(conn, mirror.namespace, stored_id, expected, present) + (
                compare_attempts(conn, stored_id, expected.get("tool_calls", []))
            )

    return await asyncio.to_thread(compare)


async def missing_from_records(mirror: Mirror, since: datetime) -> list[str]:
    """Agent runs Temporal has (started at or after ``since``) that the records lack."""
    recorded = set(await asyncio.to_thread(mirror.all_run_ids))
    return [r for r in await mirror.agent_run_ids(since) if storable(r) not in recorded]


_IGNORED = {"updated_at"}

# The column that names the run in each table, and whether the namespace scopes it too.
_RUN_COLUMN = {
    "runs": ("run_id", False),
    "temporal_runs": ("workflow_id", True),
    "tool_calls": ("run_id", False),
    "model_calls": ("run_id", False),
    "lineage_edges": ("consumer_run_id", False),
    "run_events": ("workflow_id", True),
}


def compare_rows(
    conn: Connection, namespace: str, workflow_id: str, expected: Rows, present: set[str]
) -> list[str]:
    """Differences between the stored rows of a run and the rows history gives, one per line."""
    differences: list[str] = []
    for name, (model, keys) in KEYS.items():
        table = model.__table__  # type: ignore[attr-defined]
        run_column, by_namespace = _RUN_COLUMN[name]
        scope = table.c[run_column] == workflow_id
        if by_namespace:
            scope &= table.c.namespace == namespace
        stored = {
            tuple(str(row[k]) for k in keys): dict(row)
            for row in conn.execute(select(*table.c).where(scope)).mappings()
        }
        wanted = {tuple(str(row[k]) for k in keys): row for row in expected.get(name, [])}
        for key, row in wanted.items():
            label = f"{workflow_id} {name}[{', '.join(key)}]"
            found = stored.get(key)
            if found is None:
                differences.append(f"{label}: missing from the records")
                continue
            for column, value in row.items():
                if column in _IGNORED:
                    continue
                if _norm(found.get(column)) != _norm(value):
                    differences.append(
                        f"{label}.{column}: records {_norm(found.get(column))!r}, "
                        f"history {_norm(value)!r}"
                    )
        for key, found in stored.items():
            if key in wanted:
                continue
            owner = found.get("temporal_run_id")
            if name in ("tool_calls", "temporal_runs", "run_events") and owner not in present:
                continue  # from a Temporal run whose history is gone: kept on purpose
            if name in ("model_calls", "lineage_edges"):
                continue  # follow their calls, checked above
            differences.append(f"{workflow_id} {name}[{', '.join(key)}]: not in history")
    return differences


# A call in one of these states ran, if it started: each of its attempts was journaled.
_RAN = {"succeeded", "failed", "timed_out", "cancelled", "compensated"}


def compare_attempts(
    conn: Connection, workflow_id: str, calls: Sequence[dict[str, Any]]
) -> list[str]:
    """Attempts history says a run's calls made that its journaled attempts lack.

    History holds each call's number of attempts; the journal holds one row per attempt.
    A run with no journaled attempt at all is not checked: its workers kept no journal.
    Local activities are not checked either: their markers may not line up with the
    attempts journaled (docs/architecture.md, limits)."""
    found = conn.execute(
        select(AttemptRow.tool_call_id, AttemptRow.attempt).where(
            AttemptRow.run_id == storable(workflow_id)
        )
    )
    stored = {(call, attempt) for call, attempt in found}
    if not stored:
        return []
    differences = []
    for call in calls:
        if str(call["status"]) not in _RAN or call["started_at"] is None or call["local"]:
            continue
        for attempt in range(1, int(call["attempts"] or 0) + 1):
            if (call["tool_call_id"], attempt) not in stored:
                differences.append(
                    f"{workflow_id} tool_call_attempts[{workflow_id}, {call['tool_call_id']}, "
                    f"{attempt}]: missing from the records"
                )
    return differences


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return round(value, 8)
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    if isinstance(value, str):
        return str(value)  # StrEnum members compare as their values
    return value
