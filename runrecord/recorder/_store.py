"""Writing projections and journal entries to the records database, and reading run records.

Every write is an upsert keyed by the record's natural key, so applying the same
projection or journal line twice leaves the database as applying it once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from runrecord.recorder._projection import RunChain, kept_id
from runrecord.recorder._tables import (
    ActivityOperationRow,
    ArtifactRow,
    AttemptRow,
    JournalCursorRow,
    LineageEdgeRow,
    ModelCallRow,
    RunEventRow,
    RunRow,
    TemporalRunRow,
    ToolCallRow,
)
from runrecord.records import (
    ActivityOperation,
    ApprovalRejection,
    Artifact,
    Attempt,
    AttemptOutcome,
    Cost,
    FinalStatus,
    JournalEntry,
    MCPCall,
    MCPServerInfo,
    ModelCall,
    ModelSpec,
    Pause,
    Ref,
    RetryPolicy,
    RetryState,
    Rollback,
    RunRecord,
    TemporalRun,
    Timeouts,
    ToolCall,
    ToolCallStatus,
    ToolRegistryEntry,
)

_TERMINAL_CALL = {
    ToolCallStatus.SUCCEEDED: AttemptOutcome.SUCCEEDED,
    ToolCallStatus.FAILED: AttemptOutcome.FAILED,
    ToolCallStatus.TIMED_OUT: AttemptOutcome.TIMED_OUT,
    ToolCallStatus.CANCELLED: AttemptOutcome.CANCELLED,
}


def _table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined, no-any-return]


# What PostgreSQL cannot store: NUL (text and JSONB refuse it) and lone surrogates (not UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_PLAIN = (int, float, datetime, type(None))


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def storable(value: Any) -> Any:
    """``value`` with every unstorable code point in its strings, keys of JSON objects included,
    written as its six-character JSON escape (NUL becomes ``\\u0000``): visible, never dropped."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(_escape, value) if _UNSTORABLE.search(value) else value
    if isinstance(value, _PLAIN):  # most values: answered before the container checks
        return value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


def upsert(
    conn: Connection,
    model: type,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    *,
    update: bool = True,
) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE (or NOTHING), on PostgreSQL and SQLite alike.

    Every row value goes through ``storable`` here, the one way into the records."""
    if not rows:
        return
    rows = [storable(row) for row in rows]
    columns = tuple(c for c in rows[0] if c not in keys) if update else ()
    shape = (model, conn.dialect.name, tuple(keys), columns, update)
    stmt = _upserts.get(shape)
    if stmt is None:
        stmt = _upserts[shape] = _upsert_statement(model, conn.dialect.name, keys, columns, update)
    # Rows go as parameters, so a statement is built and compiled once per shape and
    # every later sync reuses it; one row needs no executemany round.
    conn.execute(stmt, rows[0] if len(rows) == 1 else list(rows))


_upserts: dict[tuple[Any, ...], Any] = {}


def _upsert_statement(
    model: type, dialect_name: str, keys: Sequence[str], columns: Sequence[str], update: bool
) -> Any:
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    stmt = dialect.insert(_table(model))
    if update:
        return stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns}
        )
    return stmt.on_conflict_do_nothing(index_elements=list(keys))


Rows = dict[str, list[dict[str, Any]]]
"""Rows by table name: what a run chain writes, and what ``verify`` expects to find."""

# Each table's natural key, in the order rows are sorted before writing (one lock order).
KEYS: dict[str, tuple[type, tuple[str, ...]]] = {
    "runs": (RunRow, ("run_id",)),
    "temporal_runs": (TemporalRunRow, ("namespace", "workflow_id", "temporal_run_id")),
    "tool_calls": (ToolCallRow, ("run_id", "tool_call_id")),
    "model_calls": (ModelCallRow, ("run_id", "tool_call_id")),
    "lineage_edges": (
        LineageEdgeRow,
        ("artifact_id", "consumer_run_id", "consumer_tool_call_id"),
    ),
    "run_events": (RunEventRow, ("namespace", "workflow_id", "temporal_run_id", "event_id")),
}
# Written once and never changed: the first writer wins.
_INSERT_ONLY = {"lineage_edges", "run_events"}
# Not a table: calls of an earlier Temporal run kept as ``<id>~<run>``, whose journaled
# attempts and artifacts (journaled under the plain id) move to that id.
MOVES = "journal_moves"


def run_rows(chain: RunChain, *, everything: bool) -> Rows:
    """The rows for a chain's changes since its last save, or for everything it holds."""
    record = chain.record(calls=False)
    now = datetime.now(UTC)
    rows: Rows = {name: [] for name in [*KEYS, MOVES]}
    rows["runs"].append(
        {
            "run_id": record.run_id,
            "namespace": record.namespace,
            "workflow_type": record.workflow_type,
            "task_queue": record.task_queue,
            "agent_id": record.agent_id,
            "agent_version": record.agent_version,
            "turn_id": record.turn_id,
            "model": record.model.to_json_dict() if record.model else None,
            "prompt_version": record.prompt_version,
            "tool_registry": [t.to_json_dict() for t in record.tool_registry],
            "mcp_servers": [m.to_json_dict() for m in record.mcp_servers],
            "final_status": record.final_status,
            "failure": record.failure,
            "parent_run_id": record.parent_run_id,
            "root_run_id": record.root_run_id,
            "depth": record.depth,
            "temporal_run_ids": record.temporal_run_ids,
            "child_run_ids": record.child_run_ids,
            "consumes": record.consumes,
            "rerun_of": record.rerun_of,
            "approval_rejections": [r.to_json_dict() for r in record.approval_rejections],
            "rollback": record.rollback.to_json_dict() if record.rollback else None,
            "pause": record.pause.to_json_dict() if record.pause else None,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "last_event_id": chain.last_event_id,
            "updated_at": now,
        }
    )
    for fold in chain.ordered():
        run = fold.temporal_run()
        rows["temporal_runs"].append(
            {
                "namespace": chain.namespace,
                "workflow_id": chain.run_id,
                "temporal_run_id": run.temporal_run_id,
                "began_at": run.began_at,
                "status": run.status,
                "continued_from": run.continued_from,
                "reset_from": run.reset_from,
                "reset_reason": run.reset_reason,
                "last_event_id": run.last_event_id,
                "last_event_time": fold.last_event_time,
                "updated_at": now,
            }
        )
        rows["run_events"].extend(fold.events)
    rows["lineage_edges"].extend(
        {"artifact_id": a, "consumer_run_id": record.run_id, "consumer_tool_call_id": ""}
        for a in record.consumes
    )
    for call, first_event, model in chain.call_versions(everything=everything):
        rows["tool_calls"].append(_call_row(record.run_id, call, first_event))
        if (ran_in := chain.ran_in(call)) is not None:
            rows[MOVES].append(
                {
                    "run_id": record.run_id,
                    "from": ran_in[0],
                    "to": call.tool_call_id,
                    "temporal_run_ids": ran_in[1],
                }
            )
        if model is not None:
            rows["model_calls"].append(
                {
                    "run_id": record.run_id,
                    **model.model_dump(mode="json", exclude={"tool_call_id"}),
                    "tool_call_id": model.tool_call_id,
                }
            )
        rows["lineage_edges"].extend(
            {
                "artifact_id": a,
                "consumer_run_id": record.run_id,
                "consumer_tool_call_id": call.tool_call_id,
            }
            for a in call.consumes
        )
    return rows


def stored_cursors(
    conn: Connection, namespace: str, workflow_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """How far each Temporal run of these runs has been projected into the records."""
    stored_ids = {storable(w): w for w in workflow_ids}  # Temporal takes a NUL in an id
    found = conn.execute(
        select(
            TemporalRunRow.workflow_id, TemporalRunRow.temporal_run_id, TemporalRunRow.last_event_id
        ).where(TemporalRunRow.namespace == namespace, TemporalRunRow.workflow_id.in_(stored_ids))
    )
    cursors: dict[str, dict[str, int]] = {}
    for stored_id, run_id, last in found:
        cursors.setdefault(stored_ids.get(stored_id, stored_id), {})[run_id] = int(last)
    return cursors


def lock_runs(conn: Connection, namespace: str, workflow_ids: Sequence[str]) -> None:
    """Writers of one run take turns: transaction-scoped advisory locks on PostgreSQL, taken
    in one order (SQLite lets one writer in at a time anyway)."""
    if conn.dialect.name != "postgresql" or not workflow_ids:
        return
    conn.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) "
            "FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS ordered"
        ),
        {"keys": sorted(storable(f"runrecord:{namespace}:{w}") for w in workflow_ids)},
    )


def write_rows(conn: Connection, rows: Rows) -> None:
    for name, (model, keys) in KEYS.items():
        ordered = sorted(rows.get(name, []), key=lambda r: tuple(str(r[k]) for k in keys))
        upsert(conn, model, ordered, keys, update=name not in _INSERT_ONLY)
    for move in storable(rows.get(MOVES, [])):
        for model in (AttemptRow, ArtifactRow):
            conn.execute(
                update(model)
                .where(
                    model.run_id == move["run_id"],
                    model.tool_call_id == move["from"],
                    model.temporal_run_id.in_(move["temporal_run_ids"]),
                )
                .values(tool_call_id=move["to"])
            )


def _kept_as(conn: Connection, entries: list[JournalEntry]) -> dict[tuple[str, str, str], str]:
    """Journaled calls the records keep under ``<id>~<run>`` (their Temporal run was followed
    by another of the same workflow id): (run, call, Temporal run) -> the id kept."""
    wanted = {
        (e.run_id, e.tool_call_id, e.temporal_run_id): kept_id(e.tool_call_id, e.temporal_run_id)
        for e in entries
        if e.temporal_run_id
    }
    if not wanted:
        return {}
    found = conn.execute(
        select(ToolCallRow.run_id, ToolCallRow.tool_call_id).where(
            tuple_(ToolCallRow.run_id, ToolCallRow.tool_call_id).in_(
                sorted({(storable(run), storable(call)) for (run, _, _), call in wanted.items()})
            )
        )
    )
    kept = {(run, call) for run, call in found}
    return {key: call for key, call in wanted.items() if (storable(key[0]), storable(call)) in kept}


def save_projection(conn: Connection, chain: RunChain) -> None:
    """Write everything a chain holds, whatever the records already have (tests, overlays)."""
    write_rows(conn, run_rows(chain, everything=True))


def _call_row(run_id: str, c: ToolCall, scheduled_event_id: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "tool_call_id": c.tool_call_id,
        "temporal_run_id": c.temporal_run_id,
        "activity_id": c.activity_id,
        "scheduled_event_id": scheduled_event_id,
        "tool": c.tool,
        "side_effect": c.side_effect,
        "idempotent": c.idempotent,
        "irreversible": c.irreversible,
        "compensator": c.compensator,
        "schema_hash": c.schema_hash,
        "approval_state": c.approval_state,
        "approval": c.approval.to_json_dict() if c.approval else None,
        "status": c.status,
        "input_refs": [r.to_json_dict() for r in c.input_refs],
        "output_refs": [r.to_json_dict() for r in c.output_refs],
        "timeouts": c.timeouts.to_json_dict(),
        "retry_policy": c.retry_policy.to_json_dict() if c.retry_policy else None,
        "local": c.local,
        "attempts": c.retry_state.attempts,
        "last_failure": c.retry_state.last_failure,
        "timeout_type": c.retry_state.timeout_type,
        "scheduled_at": c.scheduled_at,
        "started_at": c.started_at,
        "ended_at": c.ended_at,
        "duration_ms": c.duration_ms,
        "worker_identity": c.worker_identity,
        "cost": c.cost,
        "mcp_server": c.mcp_server,
        "network": c.network,
        "mcp": c.mcp.to_json_dict() if c.mcp else None,
        "schema_drift": c.mcp is not None and c.mcp.drift is not None,
        "consumes": list(c.consumes),
        "compensates": c.compensates,
    }


def apply_journal(conn: Connection, entries: Iterable[JournalEntry]) -> int:
    """Apply journal entries; a running-attempt line never overwrites a finished one.

    Rows are written in three statements whatever the number of lines: start lines
    (DO NOTHING), then end lines (DO UPDATE, the last line per attempt wins), then
    artifacts (DO NOTHING, the first report wins).
    """
    count = 0
    keys = ("run_id", "tool_call_id", "temporal_run_id", "attempt")
    started: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    finished: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    artifacts: dict[str, dict[str, Any]] = {}
    entries = list(entries)
    kept_as = _kept_as(conn, entries)
    for entry in entries:
        count += 1
        made_in = entry.temporal_run_id or ""
        call_id = kept_as.get((entry.run_id, entry.tool_call_id, made_in), entry.tool_call_id)
        if entry.attempt is not None:
            a = entry.attempt
            row = {
                "run_id": entry.run_id,
                "tool_call_id": call_id,
                "temporal_run_id": made_in,
                "attempt": a.attempt,
                "started_at": a.started_at,
                "ended_at": a.ended_at,
                "outcome": a.outcome,
                "error": a.error,
                "worker_identity": a.worker_identity,
                "route": a.route,
            }
            key = (entry.run_id, call_id, made_in, a.attempt)
            if a.outcome == AttemptOutcome.RUNNING:
                started.setdefault(key, row)
            else:
                finished[key] = row
        if entry.artifact is not None:
            made = {**entry.artifact.model_dump(), "tool_call_id": call_id}
            artifacts.setdefault(entry.artifact.artifact_id, made)
    upsert(conn, AttemptRow, list(started.values()), keys, update=False)
    upsert(conn, AttemptRow, list(finished.values()), keys, update=True)
    upsert(conn, ArtifactRow, list(artifacts.values()), ["artifact_id"], update=False)
    return count


def journal_cursor(conn: Connection, file: str) -> tuple[int, int]:
    """How far a journal file has been applied (a byte offset), and how many of its lines
    were set aside on the way."""
    row = conn.execute(
        select(JournalCursorRow.offset, JournalCursorRow.lines_set_aside).where(
            JournalCursorRow.file == file
        )
    ).first()
    return (int(row.offset), int(row.lines_set_aside or 0)) if row is not None else (0, 0)


def set_journal_cursor(
    conn: Connection,
    file: str,
    offset: int,
    *,
    lines_set_aside: int,
    last_set_aside: str | None = None,
) -> None:
    """Move a journal file's cursor, with its count of lines set aside (and, when one more
    was, the last one's problem), in the transaction that applied the lines."""
    row: dict[str, Any] = {
        "file": file,
        "offset": offset,
        "lines_set_aside": lines_set_aside,
        "updated_at": datetime.now(UTC),
    }
    if last_set_aside is not None:
        row["last_set_aside"] = last_set_aside
    upsert(conn, JournalCursorRow, [row], ["file"])


# --- reading


def _attempts(call: ToolCall, journaled: list[Any]) -> RetryState:
    """Merge the journal's attempts with what history says of the final one."""
    state = call.retry_state  # freshly built by load_run: no copy needed
    # A call still pending at a reset may run again in the new Temporal run: that run's
    # row of an attempt number wins.
    mine = sorted(journaled, key=lambda a: a.temporal_run_id == call.temporal_run_id)
    by_number = {a.attempt: a for a in mine}
    last = max([*by_number, state.attempts, 0])
    history: list[Attempt] = []
    for n in range(1, last + 1):
        row = by_number.get(n)
        if row is None:
            if n == last and call.status in _TERMINAL_CALL:
                outcome = _TERMINAL_CALL[ToolCallStatus(call.status)]
                history.append(
                    Attempt(
                        attempt=n,
                        started_at=call.started_at,
                        ended_at=call.ended_at,
                        outcome=outcome,
                        error=state.last_failure if outcome != AttemptOutcome.SUCCEEDED else None,
                        worker_identity=call.worker_identity,
                    )
                )
            continue
        outcome = AttemptOutcome(row.outcome)
        error = row.error
        if outcome == AttemptOutcome.RUNNING and n < last:
            outcome = AttemptOutcome.LOST  # a later attempt started: this one never reported
        elif outcome == AttemptOutcome.SUCCEEDED and n < last:
            # The server retried, so it never took this result: it had timed the attempt out.
            outcome = AttemptOutcome.TIMED_OUT
            error = "TimeoutError: the result arrived after the server timed the attempt out"
        elif n == last and call.status in _TERMINAL_CALL:
            # The server decides how the final attempt ended: a worker may still report
            # success, or cancel on shutdown, after the server has timed the attempt out.
            final = _TERMINAL_CALL[ToolCallStatus(call.status)]
            if outcome != final:
                outcome = final
                error = None if final == AttemptOutcome.SUCCEEDED else state.last_failure
        history.append(
            Attempt(
                attempt=n,
                started_at=row.started_at,
                ended_at=row.ended_at,
                outcome=outcome,
                error=error,
                worker_identity=row.worker_identity,
                route=row.route,
            )
        )
    state.history = history
    state.attempts = max(state.attempts, last)
    return state


def load_run(conn: Connection, run_id: str) -> RunRecord | None:
    session = Session(bind=conn)
    run = session.execute(select(RunRow).where(RunRow.run_id == run_id)).scalars().first()
    if run is None:
        return None
    # Plain rows, not ORM objects: a run may have thousands of calls.
    calls = conn.execute(
        select(*_table(ToolCallRow).c)
        .where(ToolCallRow.run_id == run_id)
        .order_by(ToolCallRow.scheduled_event_id)
    ).all()
    attempts: dict[str, list[Any]] = {}
    journaled = select(*_table(AttemptRow).c).where(AttemptRow.run_id == run_id)
    for a in conn.execute(journaled).all():  # one fetch, not a round of fetchone per row
        attempts.setdefault(a.tool_call_id, []).append(a)
    operations: dict[str, list[ActivityOperation]] = {}
    operated = (
        select(*_table(ActivityOperationRow).c)
        .where(ActivityOperationRow.run_id == run_id)
        .order_by(ActivityOperationRow.at)
    )
    for o in conn.execute(operated).all():
        operations.setdefault(o.tool_call_id, []).append(
            ActivityOperation(
                operation=o.operation,
                by=o.identity,
                reason=o.reason,
                at=o.at,
                attempt=o.attempt,
                detail=o.detail or {},
            )
        )
    models = (
        session.execute(select(ModelCallRow).where(ModelCallRow.run_id == run_id)).scalars().all()
    )
    artifacts = (
        session.execute(
            select(ArtifactRow)
            .where(ArtifactRow.run_id == run_id)
            .order_by(ArtifactRow.created_at, ArtifactRow.artifact_id)
        )
        .scalars()
        .all()
    )
    temporal_runs = (
        session.execute(
            select(TemporalRunRow)
            .where(TemporalRunRow.namespace == run.namespace, TemporalRunRow.workflow_id == run_id)
            .order_by(TemporalRunRow.began_at, TemporalRunRow.temporal_run_id)
        )
        .scalars()
        .all()
    )
    tool_calls = []
    for row in calls:
        call = ToolCall(
            tool_call_id=row.tool_call_id,
            tool=row.tool,
            side_effect=row.side_effect,  # type: ignore[arg-type]
            idempotent=row.idempotent,
            irreversible=row.irreversible,
            compensator=row.compensator,
            schema_hash=row.schema_hash,
            approval_state=row.approval_state,  # type: ignore[arg-type]
            approval=row.approval,  # type: ignore[arg-type]
            input_refs=[Ref.model_validate(r) for r in row.input_refs],
            output_refs=[Ref.model_validate(r) for r in row.output_refs],
            status=row.status,  # type: ignore[arg-type]
            retry_state=RetryState(
                attempts=row.attempts,
                last_failure=row.last_failure,
                timeout_type=row.timeout_type,
                maximum_attempts=(row.retry_policy or {}).get("maximumAttempts"),
            ),
            retry_policy=RetryPolicy.model_validate(row.retry_policy) if row.retry_policy else None,
            local=row.local,
            timeouts=Timeouts.model_validate(row.timeouts or {}),
            activity_id=row.activity_id,
            temporal_run_id=row.temporal_run_id,
            scheduled_at=row.scheduled_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            duration_ms=row.duration_ms,
            worker_identity=row.worker_identity,
            cost=row.cost,
            mcp_server=row.mcp_server,
            network=row.network,
            mcp=MCPCall.model_validate(row.mcp) if row.mcp else None,
            consumes=list(row.consumes or []),
            compensates=row.compensates,
            operations=operations.get(row.tool_call_id, []),
        )
        call.retry_state = _attempts(call, attempts.get(row.tool_call_id, []))
        tool_calls.append(call)
    own = round(sum(c.cost for c in tool_calls), 8)
    return RunRecord(
        run_id=run.run_id,
        temporal_run_ids=list(run.temporal_run_ids or []),
        namespace=run.namespace,
        workflow_type=run.workflow_type,
        task_queue=run.task_queue,
        turn_id=run.turn_id,
        agent_id=run.agent_id,
        agent_version=run.agent_version,
        model=ModelSpec.model_validate(run.model) if run.model else None,
        prompt_version=run.prompt_version,
        tool_registry=[ToolRegistryEntry.model_validate(t) for t in run.tool_registry or []],
        mcp_servers=[MCPServerInfo.model_validate(m) for m in run.mcp_servers or []],
        tool_calls=tool_calls,
        model_calls=[
            ModelCall(
                tool_call_id=m.tool_call_id,
                provider=m.provider,
                model=m.model,
                parameters=dict(m.parameters or {}),
                prompt_version=m.prompt_version,
                input_tokens=m.input_tokens,
                output_tokens=m.output_tokens,
                cost=m.cost,
                latency_ms=m.latency_ms,
            )
            for m in models
        ],
        artifacts=[
            Artifact(
                artifact_id=a.artifact_id,
                kind=a.kind,
                uri=a.uri,
                sha256=a.sha256,
                size=a.size,
                tool_call_id=a.tool_call_id,
                attempt=a.attempt,
                run_id=a.run_id,
                agent_id=a.agent_id,
                turn_id=a.turn_id,
                created_at=a.created_at,
                temporal_run_id=a.temporal_run_id,
            )
            for a in artifacts
        ],
        final_status=FinalStatus(run.final_status),
        failure=run.failure,
        parent_run_id=run.parent_run_id,
        root_run_id=run.root_run_id,
        depth=run.depth,
        child_run_ids=list(run.child_run_ids or []),
        consumes=list(run.consumes or []),
        rerun_of=run.rerun_of,
        approval_rejections=[
            ApprovalRejection.model_validate(r) for r in run.approval_rejections or []
        ],
        rollback=Rollback.model_validate(run.rollback) if run.rollback else None,
        pause=Pause.model_validate(run.pause) if run.pause else None,
        temporal_runs=[
            TemporalRun(
                temporal_run_id=t.temporal_run_id,
                began_at=t.began_at,
                status=FinalStatus(t.status),
                continued_from=t.continued_from,
                reset_from=t.reset_from,
                reset_reason=t.reset_reason,
                last_event_id=t.last_event_id,
            )
            for t in temporal_runs
        ],
        started_at=run.started_at,
        ended_at=run.ended_at,
        cost=Cost(own=own, total=own),
    )


def load_tree(conn: Connection, run_id: str) -> list[RunRecord]:
    """The run and every sub-agent run under it, root first, with costs rolled up."""
    root = load_run(conn, run_id)
    if root is None:
        return []
    ordered = [root]
    i = 0
    while i < len(ordered):
        for child_id in ordered[i].child_run_ids:
            child = load_run(conn, child_id)
            if child is not None:
                ordered.append(child)
        i += 1
    by_id = {r.run_id: r for r in ordered}
    for record in reversed(ordered):
        children = [by_id[c] for c in record.child_run_ids if c in by_id]
        by_agent: dict[str, float] = {}
        if record.cost.own:
            by_agent[record.agent_id or record.workflow_type] = record.cost.own
        for child in children:
            for agent, spent in child.cost.by_agent.items():
                by_agent[agent] = by_agent.get(agent, 0.0) + spent
        total = record.cost.own + sum(child.cost.total for child in children)
        record.cost = Cost(
            own=record.cost.own,
            total=round(total, 8),
            by_agent={agent: round(spent, 8) for agent, spent in sorted(by_agent.items())},
        )
    return ordered
