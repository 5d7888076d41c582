"""Writing projections and journal entries to the records database, and reading run records.

Every write is an upsert keyed by the record's natural key, so applying the same
projection or journal line twice leaves the database as applying it once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Float,
    Integer,
    Row,
    String,
    Table,
    bindparam,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from runrecord.recorder._rows import (
    activity_operation_of,
    artifact_of,
    artifact_row,
    attempt_row,
    call_row,
    from_row,
    model_call_of,
    model_call_row,
    run_row,
    temporal_run_of,
    temporal_run_row,
    tool_call_of,
)
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
from runrecord.records import ActivityOperation, AttemptOutcome, Cost, RunRecord

if TYPE_CHECKING:
    # The writers' types: reading a run record (`runrecord show`) loads neither temporalio
    # nor the projection.
    from runrecord._contract import JournalEntry
    from runrecord.recorder._projection import RunChain


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
    if len(rows) > 1 and conn.dialect.name == "postgresql":
        document = _document(rows, keys, update)
        if document is not None:
            conn.execute(_statement(model, conn, keys, tuple(rows[0]), update), {"rows": document})
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


# Many rows on PostgreSQL: one statement reads them all from one JSON document (one
# round trip, one plan, parsed in C) instead of one INSERT per row.
_AS_SQL = {Integer: "bigint", Float: "double precision", Boolean: "boolean"}


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _document(rows: Sequence[dict[str, Any]], keys: Sequence[str], update: bool) -> str | None:
    """The rows as one JSON array, each key once (the last row of a key wins an update, the
    first a DO NOTHING, as row-by-row statements would have it); None for a value JSON
    cannot carry exactly (NaN, a type of its own), which goes row by row instead."""
    values = _unique(rows, keys, update)
    try:
        document = json.dumps(values, default=_json_default, allow_nan=False)
        # JSON escapes NUL and surrogates, and only those (and astral characters) as
        # \u0000 / \udxxx: without either, ``storable`` would change nothing.
        if "\\u0000" in document or "\\ud" in document:
            values = _unique(storable(values), keys, update)
            document = json.dumps(values, default=_json_default, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return document


def _unique(
    rows: Sequence[dict[str, Any]], keys: Sequence[str], update: bool
) -> list[dict[str, Any]]:
    unique: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys)
        if update or key not in unique:
            unique[key] = row
    return list(unique.values())


def _statement(
    model: type, conn: Connection, keys: Sequence[str], names: tuple[str, ...], update: bool
) -> Any:
    shape = (model, "document", tuple(keys), names, update)
    stmt = _upserts.get(shape)
    if stmt is None:
        stmt = _upserts[shape] = text(_document_sql(model, conn, keys, names, update, "rows"))
    return stmt


def _document_sql(
    model: type,
    conn: Connection,
    keys: Sequence[str],
    names: tuple[str, ...],
    update: bool,
    parameter: str,
) -> str:
    """The upsert of ``model`` rows read from the JSON document bound to ``parameter``."""
    table = _table(model)
    quote = conn.dialect.identifier_preparer.quote
    values = []
    for name in names:
        column = table.c[name]
        field = f"r.v -> {_literal(name)}"
        if isinstance(column.type, JSON):
            values.append(field)  # a JSON null stays JSON null, as SQLAlchemy writes None
            continue
        as_text = f"(r.v ->> {_literal(name)})"
        kind = next((sql for t, sql in _AS_SQL.items() if isinstance(column.type, t)), None)
        if isinstance(column.type, DateTime):
            kind = "timestamptz" if column.type.timezone else "timestamp"
        elif kind is None and not isinstance(column.type, String):
            raise TypeError(f"{table.name}.{name}: no JSON reading for {column.type}")
        # Text is not cast: the column's own type checks it (a too long value is refused).
        values.append(f"CAST({as_text} AS {kind})" if kind else as_text)
    columns = ", ".join(quote(n) for n in names)
    sql = (
        f"INSERT INTO {quote(table.name)} ({columns}) SELECT {', '.join(values)} "
        f"FROM jsonb_array_elements(CAST(:{parameter} AS jsonb)) AS r(v) "
        f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) DO "
    )
    updated = [n for n in names if n not in keys]
    if update and updated:
        sql += "UPDATE SET " + ", ".join(f"{quote(n)} = excluded.{quote(n)}" for n in updated)
    else:
        sql += "NOTHING"
    return sql


Upsert = tuple[type, Sequence[str], list[dict[str, Any]], bool]
"""A table's rows to upsert: model, key columns, rows, and whether a row updates one there
(or leaves it alone)."""


def upsert_many(conn: Connection, upserts: list[Upsert]) -> None:
    """``upsert`` for several tables (each table's rows with keys none of the others have),
    on PostgreSQL in one statement: one INSERT per table, each in a WITH clause, so a change
    set costs one round trip, not one per table."""
    upserts = [u for u in upserts if u[2]]
    if conn.dialect.name == "postgresql":
        upserts = _upsert_documents(conn, upserts)
    for model, keys, rows, updates in upserts:
        upsert(conn, model, rows, keys, update=updates)


def _upsert_documents(conn: Connection, upserts: list[Upsert]) -> list[Upsert]:
    """The upserts whose rows JSON carries exactly, done in one statement; returns the
    others, for ``upsert`` row by row."""
    parts: list[tuple[type, tuple[str, ...], tuple[str, ...], bool]] = []
    documents: dict[str, str] = {}
    left = []
    for model, keys, rows, updates in upserts:
        document = _document(rows, keys, updates)
        if document is None:
            left.append((model, keys, rows, updates))
            continue
        documents[f"rows{len(parts)}"] = document
        parts.append((model, tuple(keys), tuple(rows[0]), updates))
    if not parts:
        return left
    shape = ("documents", *parts)
    stmt = _upserts.get(shape)
    if stmt is None:
        inserts = [
            _document_sql(model, conn, keys, names, update, f"rows{i}")
            for i, (model, keys, names, update) in enumerate(parts)
        ]
        sql = (
            inserts[0]
            if len(inserts) == 1
            else "WITH " + ", ".join(f"w{i} AS ({q})" for i, q in enumerate(inserts)) + " SELECT 1"
        )
        stmt = _upserts[shape] = text(sql)
    conn.execute(stmt, documents)
    return left


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


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
    rows["runs"].append(run_row(record, last_event_id=chain.last_event_id, now=now))
    for fold in chain.ordered():
        rows["temporal_runs"].append(temporal_run_row(chain, fold, now))
        rows["run_events"].extend(fold.events)
    rows["lineage_edges"].extend(
        {"artifact_id": a, "consumer_run_id": record.run_id, "consumer_tool_call_id": ""}
        for a in record.consumes
    )
    for call, first_event, model in chain.call_versions(everything=everything):
        rows["tool_calls"].append(call_row(record.run_id, call, first_event))
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
            rows["model_calls"].append(model_call_row(record.run_id, model))
        rows["lineage_edges"].extend(
            {
                "artifact_id": a,
                "consumer_run_id": record.run_id,
                "consumer_tool_call_id": call.tool_call_id,
            }
            for a in call.consumes
        )
    return rows


_STORED_CURSORS = text(
    "SELECT workflow_id, temporal_run_id, last_event_id FROM temporal_runs "
    "WHERE namespace = :namespace AND workflow_id = ANY(CAST(:ids AS text[]))"
)


def stored_cursors(
    conn: Connection, namespace: str, workflow_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """How far each Temporal run of these runs has been projected into the records."""
    stored_ids = {storable(w): w for w in workflow_ids}  # Temporal takes a NUL in an id
    found: Iterable[Any]
    if conn.dialect.name == "postgresql":  # a statement built once: every write asks this
        found = conn.execute(_STORED_CURSORS, {"namespace": namespace, "ids": sorted(stored_ids)})
    else:
        found = conn.execute(
            select(
                TemporalRunRow.workflow_id,
                TemporalRunRow.temporal_run_id,
                TemporalRunRow.last_event_id,
            ).where(
                TemporalRunRow.namespace == namespace, TemporalRunRow.workflow_id.in_(stored_ids)
            )
        )
    cursors: dict[str, dict[str, int]] = {}
    for stored_id, run_id, last in found:
        workflow_id = stored_ids[stored_id] if stored_id in stored_ids else stored_id
        cursors.setdefault(workflow_id, {})[run_id] = int(last)
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
    upsert_many(
        conn,
        [
            (
                model,
                keys,
                sorted(rows.get(name, []), key=lambda r: tuple(str(r[k]) for k in keys)),
                name not in _INSERT_ONLY,
            )
            for name, (model, keys) in KEYS.items()
        ],
    )
    # Model totals come from model_calls alone: runs whose write has none keep theirs.
    changed = {r["run_id"] for name in ("tool_calls", "model_calls") for r in rows.get(name, [])}
    with_models = {r["run_id"] for r in rows.get("model_calls", [])}
    update_run_totals(
        conn,
        sorted(storable(run_id) for run_id in changed),
        models=sorted(storable(run_id) for run_id in with_models),
    )
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


# A run's totals from its calls, in the same transaction as the calls: its number of calls
# and own cost on its row, and one run_totals row per tool and per model it used (with its
# start, agent and turn, which cost reports filter on). A call row is never deleted.
_COUNTS = """UPDATE runs SET tool_call_count = a.calls, own_cost = a.cost
    FROM (SELECT run_id, count(*) AS calls, coalesce(sum(cost), 0.0) AS cost
          FROM tool_calls {where} GROUP BY run_id) AS a
    WHERE runs.run_id = a.run_id"""
_PER_KEY = {
    "tool": ("tool_calls", "tool", "NULL, NULL"),
    "model": (
        "model_calls",
        "model",
        "coalesce(sum(c.input_tokens), 0), coalesce(sum(c.output_tokens), 0)",
    ),
}
_CLEAR = "DELETE FROM run_totals WHERE kind = '{kind}' {also}"
_SUM = """INSERT INTO run_totals (run_id, kind, key, started_at, agent_id, turn_id,
                        calls, cost, input_tokens, output_tokens)
    SELECT c.run_id, '{kind}', c.{key}, r.started_at, r.agent_id, r.turn_id,
           count(*), coalesce(sum(c.cost), 0.0), {tokens}
    FROM {calls} AS c JOIN runs AS r ON r.run_id = c.run_id {where}
    GROUP BY c.run_id, c.{key}, r.started_at, r.agent_id, r.turn_id"""


def _run_total_statements(kind: str, ids: bool) -> list[Any]:
    calls, key, tokens = _PER_KEY[kind]
    # Both sides by id: else PostgreSQL hashes every run to join a few.
    where = "WHERE c.run_id IN :ids AND r.run_id IN :ids" if ids else ""
    return [
        text(_CLEAR.format(kind=kind, also="AND run_id IN :ids" if ids else "")),
        text(_SUM.format(kind=kind, key=key, tokens=tokens, calls=calls, where=where)),
    ]


# The same for given runs on PostgreSQL, in one statement (one round trip in every write,
# not five): the totals of keys still there are upserted, those of keys gone deleted.
_TOTALS_OF_RUNS = """WITH counts AS (
    UPDATE runs SET tool_call_count = a.calls, own_cost = a.cost
    FROM (SELECT run_id, count(*) AS calls, coalesce(sum(cost), 0.0) AS cost
          FROM tool_calls WHERE run_id = ANY(CAST(:ids AS text[])) GROUP BY run_id) AS a
    WHERE runs.run_id = a.run_id),
  fresh AS (
    SELECT c.run_id, 'tool' AS kind, c.tool AS key, r.started_at, r.agent_id, r.turn_id,
           count(*) AS calls, coalesce(sum(c.cost), 0.0) AS cost,
           CAST(NULL AS bigint) AS input_tokens, CAST(NULL AS bigint) AS output_tokens
    FROM tool_calls AS c JOIN runs AS r ON r.run_id = c.run_id
    WHERE c.run_id = ANY(CAST(:ids AS text[])) AND r.run_id = ANY(CAST(:ids AS text[]))
    GROUP BY c.run_id, c.tool, r.started_at, r.agent_id, r.turn_id
    UNION ALL
    SELECT c.run_id, 'model', c.model, r.started_at, r.agent_id, r.turn_id,
           count(*), coalesce(sum(c.cost), 0.0),
           coalesce(sum(c.input_tokens), 0), coalesce(sum(c.output_tokens), 0)
    FROM model_calls AS c JOIN runs AS r ON r.run_id = c.run_id
    WHERE c.run_id = ANY(CAST(:models AS text[])) AND r.run_id = ANY(CAST(:models AS text[]))
    GROUP BY c.run_id, c.model, r.started_at, r.agent_id, r.turn_id),
  kept AS (
    INSERT INTO run_totals (run_id, kind, key, started_at, agent_id, turn_id,
                            calls, cost, input_tokens, output_tokens)
    SELECT * FROM fresh
    ON CONFLICT (run_id, kind, key) DO UPDATE SET
        started_at = excluded.started_at, agent_id = excluded.agent_id,
        turn_id = excluded.turn_id, calls = excluded.calls, cost = excluded.cost,
        input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens)
DELETE FROM run_totals AS t
WHERE ((t.kind = 'tool' AND t.run_id = ANY(CAST(:ids AS text[])))
       OR (t.kind = 'model' AND t.run_id = ANY(CAST(:models AS text[]))))
  AND NOT EXISTS (SELECT 1 FROM fresh AS f
                  WHERE f.run_id = t.run_id AND f.kind = t.kind AND f.key = t.key)"""


def update_run_totals(
    conn: Connection, run_ids: Sequence[str] | None, *, models: Sequence[str] | None = None
) -> None:
    """Set the call totals of the runs (every run's when ``run_ids`` is None) from their
    tool_calls and model_calls rows; the model totals only of ``models`` if given (the
    runs whose model_calls rows changed)."""
    model_ids = run_ids if models is None else models
    if run_ids is not None and conn.dialect.name == "postgresql":
        if run_ids or model_ids:
            conn.execute(
                text(_TOTALS_OF_RUNS), {"ids": list(run_ids), "models": list(model_ids or [])}
            )
        return
    counts = text(_COUNTS.format(where="" if run_ids is None else "WHERE run_id IN :ids"))
    for statements, ids in (
        ([counts, *_run_total_statements("tool", run_ids is not None)], run_ids),
        (_run_total_statements("model", model_ids is not None), model_ids),
    ):
        if ids is None:
            for stmt in statements:
                conn.execute(stmt)
            continue
        for start in range(0, len(ids), 5000):
            chunk = {"ids": list(ids[start : start + 5000])}
            for stmt in statements:
                conn.execute(stmt.bindparams(bindparam("ids", expanding=True)), chunk)


# What a shipment looks up before it writes, in one round trip on PostgreSQL: which of the
# `<id>~<run>` ids asked for are calls the records keep, and which runs are closed and
# attested (``attest_late``). Ids as stored.
_JOURNAL_LOOKUPS = text(
    "SELECT t.run_id, t.tool_call_id FROM tool_calls AS t "
    "JOIN unnest(CAST(:runs AS text[]), CAST(:calls AS text[])) AS w(run_id, tool_call_id) "
    "ON t.run_id = w.run_id AND t.tool_call_id = w.tool_call_id "
    "UNION ALL "
    "SELECT r.run_id, NULL FROM runs AS r WHERE r.run_id = ANY(CAST(:run_ids AS text[])) "
    "AND r.final_status <> ALL(CAST(:open AS text[])) "
    "AND EXISTS (SELECT 1 FROM attestations AS a WHERE a.run_id = r.run_id)"
)


def _journal_lookups(
    conn: Connection, entries: list[JournalEntry]
) -> tuple[dict[tuple[str, str, str], str], list[str] | None]:
    """Journaled calls the records keep under ``<id>~<run>`` (their Temporal run was followed
    by another of the same workflow id): (run, call, Temporal run) -> the id kept; and on
    PostgreSQL, the entries' runs that are closed and attested (else None: ``attest_late``
    looks them up)."""
    from runrecord.recorder._attest import OPEN_STATUSES
    from runrecord.recorder._projection import kept_id

    wanted = {
        (e.run_id, e.tool_call_id, e.temporal_run_id): kept_id(e.tool_call_id, e.temporal_run_id)
        for e in entries
        if e.temporal_run_id
    }
    pairs = sorted({(storable(run), storable(call)) for (run, _, _), call in wanted.items()})
    closed: list[str] | None = None
    if conn.dialect.name == "postgresql":
        found = conn.execute(
            _JOURNAL_LOOKUPS,
            {
                "runs": [run for run, _ in pairs],
                "calls": [call for _, call in pairs],
                "run_ids": sorted({storable(e.run_id) for e in entries}),
                "open": sorted(OPEN_STATUSES),
            },
        ).all()
        kept = {(run, call) for run, call in found if call is not None}
        closed = sorted(run for run, call in found if call is None)
    elif pairs:
        found = conn.execute(
            select(ToolCallRow.run_id, ToolCallRow.tool_call_id).where(
                tuple_(ToolCallRow.run_id, ToolCallRow.tool_call_id).in_(pairs)
            )
        ).all()
        kept = {(run, call) for run, call in found}
    else:
        kept = set()
    moved = {k: call for k, call in wanted.items() if (storable(k[0]), storable(call)) in kept}
    return moved, closed


def save_projection(conn: Connection, chain: RunChain) -> None:
    """Write everything a chain holds, whatever the records already have (tests, overlays)."""
    write_rows(conn, run_rows(chain, everything=True))


def apply_journal(conn: Connection, entries: Iterable[JournalEntry]) -> int:
    """Apply journal entries; a running-attempt line never overwrites a finished one.

    Rows are written in three upserts whatever the number of lines (one statement on
    PostgreSQL): start lines (DO NOTHING) of attempts whose end is not among them, end
    lines (DO UPDATE, the last line per attempt wins), and artifacts (DO NOTHING, the
    first report wins).
    """
    from runrecord.recorder._attest import attest_late

    count = 0
    keys = ("run_id", "tool_call_id", "temporal_run_id", "attempt")
    started: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    finished: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    artifacts: dict[str, dict[str, Any]] = {}
    entries = list(entries)
    kept_as, closed = _journal_lookups(conn, entries)
    for entry in entries:
        count += 1
        made_in = entry.temporal_run_id or ""
        call_id = kept_as.get((entry.run_id, entry.tool_call_id, made_in), entry.tool_call_id)
        if entry.attempt is not None:
            a = entry.attempt
            row = attempt_row(entry.run_id, call_id, made_in, a)
            key = (entry.run_id, call_id, made_in, a.attempt)
            if a.outcome == AttemptOutcome.RUNNING:
                started.setdefault(key, row)
            else:
                finished[key] = row
        if entry.artifact is not None:
            made = artifact_row(entry.artifact, call_id)
            artifacts.setdefault(entry.artifact.artifact_id, made)
    # A start line whose end is here too adds nothing: the end line's row is the whole row.
    started = {key: row for key, row in started.items() if key not in finished}
    upsert_many(
        conn,
        [
            (AttemptRow, keys, list(started.values()), False),
            (AttemptRow, keys, list(finished.values()), True),
            (ArtifactRow, ("artifact_id",), list(artifacts.values()), False),
        ],
    )
    attest_late(conn, {e.run_id for e in entries}, closed=closed)
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


def load_run(conn: Connection, run_id: str) -> RunRecord | None:
    """A run's record as the records hold it (sub-agents' costs not rolled up: ``load_tree``)."""
    run = conn.execute(select(*_table(RunRow).c).where(RunRow.run_id == run_id)).first()
    if run is None:
        return None
    # Plain rows, not ORM objects, each table in one fetch: a run may have thousands of calls.
    attempts: dict[str, list[Any]] = {}
    for a in _rows(conn, AttemptRow, run_id):
        attempts.setdefault(a.tool_call_id, []).append(a._asdict())
    operations: dict[str, list[ActivityOperation]] = {}
    for o in _rows(conn, ActivityOperationRow, run_id, ActivityOperationRow.at):
        operations.setdefault(o.tool_call_id, []).append(activity_operation_of(o))
    calls = _rows(conn, ToolCallRow, run_id, ToolCallRow.scheduled_event_id)
    tool_calls = [
        tool_call_of(c, attempts.get(c.tool_call_id, []), operations.get(c.tool_call_id, []))
        for c in calls
    ]
    made = _rows(conn, ArtifactRow, run_id, ArtifactRow.created_at, ArtifactRow.artifact_id)
    temporal_runs = conn.execute(
        select(*_table(TemporalRunRow).c)
        .where(TemporalRunRow.namespace == run.namespace, TemporalRunRow.workflow_id == run_id)
        .order_by(TemporalRunRow.began_at, TemporalRunRow.temporal_run_id)
    ).all()
    own = round(sum(c.cost for c in tool_calls), 8)
    return from_row(
        RunRecord,
        run,
        tool_calls=tool_calls,
        model_calls=[model_call_of(m) for m in _rows(conn, ModelCallRow, run_id)],
        artifacts=[artifact_of(a) for a in made],
        temporal_runs=[temporal_run_of(t) for t in temporal_runs],
        cost=Cost(own=own, total=own),
    )


def _rows(conn: Connection, table: type, run_id: str, *order_by: Any) -> Sequence[Row[Any]]:
    """A table's rows of one run, as plain rows in one fetch."""
    columns = _table(table).c
    return conn.execute(select(*columns).where(columns.run_id == run_id).order_by(*order_by)).all()


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
    roll_up_costs(ordered)
    return ordered


def roll_up_costs(ordered: list[RunRecord]) -> None:
    """Give each run of a tree (root first, parents before children, each with its own cost)
    its total and its cost per agent, sub-agent runs included."""
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
