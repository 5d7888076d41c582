"""The operator's questions, answered from the records: filtered runs, artifacts of a turn, cost.

Every value a user types reaches the database as a bound parameter, never as SQL text.
The same answers are available to SQL users as views (migration 0005); the tests check
that both agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field, TypeAdapter
from sqlalchemy import (
    ARRAY,
    Column,
    ColumnElement,
    Connection,
    Integer,
    String,
    Text,
    and_,
    any_,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB, array
from sqlalchemy.orm import Session
from sqlalchemy.sql.visitors import replacement_traverse

from runrecord._settings import RunRecordError
from runrecord.recorder._rows import artifact_of, from_row
from runrecord.recorder._tables import (
    ArtifactRow,
    ModelCallRow,
    RunRow,
    RunTotalRow,
    ToolCallRow,
)
from runrecord.records import Approval, ApprovalState, Artifact, Cost, CostDimension, Record

NOT_LET_RUN = (ApprovalState.REQUESTED, ApprovalState.DENIED, ApprovalState.EXPIRED)
"""A call with one of these approval states never ran: it does not count as a write, a tool
use or an MCP call (``--approval`` finds it)."""

_RELATIVE = re.compile(r"\s*(\d{1,9})\s*([smhdw])\s*", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, what: str = "time", now: datetime | None = None) -> datetime:
    """An ISO 8601 time (naive means UTC) or a time ago such as ``30m``, ``2h``, ``7d``."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.fullmatch(text)
    try:
        if relative:
            amount, unit = int(relative[1]), relative[2].lower()
            return now - timedelta(**{_UNITS[unit]: amount})
        when = datetime.fromisoformat(text.strip())
    except (ValueError, OverflowError):
        raise RunRecordError(
            f"{what}: cannot read {text!r}: use ISO 8601 (2026-11-24 or 2026-11-24T10:00:00Z) "
            "or a time ago such as 30m, 2h, 7d"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def check_text(value: str | None, what: str) -> None:
    if value is not None and "\x00" in value:
        raise RunRecordError(f"{what} must not contain NUL characters")


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list; every given filter must hold (they combine with AND)."""

    side_effect: str | None = None
    approval: str | None = None
    mcp_server: str | None = None
    mcp_available: str | None = None
    tool: str | None = None
    agent: str | None = None
    turn: str | None = None
    status: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    parent: str | None = None
    limit: int = 50
    before: tuple[datetime, str] | None = None
    """Keyset pagination: only runs listed after this (start time, run id) — older, or as
    old with a smaller run id, as the list orders them."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                check_text(value, f"--{f.name.replace('_', '-')}")
        if self.before is not None:
            check_text(self.before[1], "the run a page starts after")
        if self.since and self.until and self.since > self.until:
            raise RunRecordError("--since is later than --until")
        if self.limit < 1:
            raise RunRecordError("--limit must be at least 1")


# --- answers (camelCase JSON, like the records)


class RunSummary(Record):
    """One line of ``runrecord runs``."""

    run_id: str
    agent_id: str | None = None
    agent_version: str | None = None
    turn_id: str | None = None
    final_status: str
    model: str | None = None
    prompt_version: str | None = None
    parent_run_id: str | None = None
    root_run_id: str | None = None
    depth: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    tool_calls: int = 0
    cost: Cost = Field(default_factory=Cost)


class CallRef(Record):
    """A tool call, named by run and call id, with what decided it and how it ended."""

    run_id: str
    agent_id: str | None = None
    tool_call_id: str
    tool: str
    side_effect: str
    status: str
    approval_state: str
    approval: Approval | None = None
    attempts: int = 0
    mcp_server: str | None = None
    scheduled_at: datetime | None = None


class ArtifactOrigin(Record):
    """An artifact and the tool call that produced it."""

    artifact: Artifact
    produced_by: CallRef | None = None
    parent_run_id: str | None = None
    depth: int = 0


class CostLine(Record):
    """Spend for one agent, model, turn or tool.

    ``cost`` is what the key spent itself; ``total`` adds the sub-agent runs it started
    (they differ only ``--by agent``; the other dimensions already count every run).
    """

    by: str
    key: str | None = None
    runs: int = 0
    calls: int = 0
    cost: float = 0.0
    total: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None


# --- building blocks


def _let_run() -> ColumnElement[bool]:
    return ToolCallRow.approval_state.notin_([str(s) for s in NOT_LET_RUN])


def _registry_has_server(conn: Connection, server: str) -> ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        # The GIN index on runrecord_mcp_servers(tool_registry) (migration 0005) has element
        # statistics, so the planner knows how common the server is.
        servers = func.runrecord_mcp_servers(RunRow.tool_registry)
        wanted = cast(array([server]), ARRAY(Text))
        return servers.op("@>")(wanted)  # type: ignore[no-any-return]
    entry = func.json_each(RunRow.tool_registry).table_valued("value").alias("entry")
    return exists(
        select(1).select_from(entry).where(func.json_extract(entry.c.value, "$.server") == server)
    )


def _model_name() -> ColumnElement[Any]:
    return RunRow.model["name"].as_string()


@dataclass(frozen=True)
class _Probe:
    """A filter whose matches may be rare, or bunched in time: a condition to test one run,
    and (when the condition cannot be planned as a join) a SELECT of the runs that pass."""

    condition: ColumnElement[bool]
    runs: Any = None
    calls: tuple[ColumnElement[bool], ...] = ()
    """For a filter on calls: what picks the matching calls (their count tells how rare)."""


def _call_probe(*where: ColumnElement[bool]) -> _Probe:
    return _Probe(exists().where(ToolCallRow.run_id == RunRow.run_id, *where), calls=where)


def _calls_matching(conn: Connection, probe: _Probe) -> int:
    """How many calls match a filter on calls, counted from an index up to ``_DENSE``;
    ``_DENSE`` for a filter on something else (it is tested run by run)."""
    if not probe.calls:
        return _DENSE
    some = select(literal(1)).select_from(ToolCallRow).where(*probe.calls).limit(_DENSE)
    return int(conn.execute(select(func.count()).select_from(some.subquery())).scalar_one())


def _probes(conn: Connection, f: RunFilter) -> list[_Probe]:
    probes = []
    if f.side_effect:
        probes.append(_call_probe(ToolCallRow.side_effect == f.side_effect, _let_run()))
    if f.approval:
        probes.append(_call_probe(ToolCallRow.approval_state == f.approval))
    if f.mcp_server:
        probes.append(_call_probe(ToolCallRow.mcp_server == f.mcp_server, _let_run()))
    if f.tool:
        probes.append(_call_probe(ToolCallRow.tool == f.tool, _let_run()))
    if f.mcp_available:
        available = _registry_has_server(conn, f.mcp_available)
        probes.append(_Probe(available))
    if f.model:
        used = select(ModelCallRow.run_id).where(ModelCallRow.model == f.model)
        configured = select(RunRow.run_id).where(_model_name() == f.model)
        # A scalar subquery, not EXISTS: under OR, PostgreSQL would hash every call of the model.
        called = (
            select(ModelCallRow.tool_call_id)
            .where(ModelCallRow.run_id == RunRow.run_id, ModelCallRow.model == f.model)
            .limit(1)
            .scalar_subquery()
        )
        probes.append(
            _Probe(
                or_(_model_name() == f.model, called.is_not(None)),
                used.union(configured),  # type: ignore[arg-type]
            )
        )
    if f.prompt_version:
        # "supervisor@3" matches "supervisor@3:<hash>"; LIKE wildcards in the value are escaped.
        versions = or_(
            RunRow.prompt_version == f.prompt_version,
            RunRow.prompt_version.startswith(f.prompt_version + ":", autoescape=True),
        )
        probes.append(_Probe(versions))
    return probes


def _own_conditions(f: RunFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if f.agent:
        where.append(RunRow.agent_id == f.agent)
    if f.turn:
        where.append(RunRow.turn_id == f.turn)
    if f.status:
        where.append(RunRow.final_status == f.status)
    if f.since:
        where.append(RunRow.started_at >= f.since)
    if f.until:
        where.append(RunRow.started_at < f.until)
    if f.parent:
        where.append(RunRow.parent_run_id == f.parent)
    if f.before:
        at, run_id = f.before
        where.append(RunRow.started_at <= at)
        where.append(or_(RunRow.started_at < at, RunRow.run_id < run_id))
    return where


def run_conditions(conn: Connection, f: RunFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a run filter, with every value bound as a parameter."""
    return _own_conditions(f) + [p.condition for p in _probes(conn, f)]


_CHUNK = 5000  # ids per statement on SQLite: far below its limit on bound parameters
MAX_DEPTH = 64  # delegation deeper than this is a corrupt parent loop, not a real tree
CLOCK_SKEW = timedelta(hours=1)
"""How much earlier than the run that started it a sub-agent run may be stamped (clusters'
clocks apart) and still be counted with it in a report from a start time on."""


_LISTED = 64  # more ids than this go to PostgreSQL as one JSON text


def _among(conn: Connection, column: Any, ids: Sequence[str]) -> ColumnElement[bool]:
    if conn.dialect.name != "postgresql":
        return column.in_(list(ids))  # type: ignore[no-any-return]
    if len(ids) <= _LISTED:  # one array parameter instead of many
        return column == any_(literal(list(ids), ARRAY(String)))  # type: ignore[no-any-return]
    # Thousands of ids (a day's delegation trees): as an array, each would be adapted here
    # and estimated by the planner (milliseconds each way); as JSON text, neither.
    listed = func.jsonb_array_elements_text(cast(literal(json.dumps(list(ids)), Text), JSONB))
    return column.in_(select(listed))  # type: ignore[no-any-return]


def _chunks(ids: Sequence[str], conn: Connection) -> Iterator[Sequence[str]]:
    if conn.dialect.name == "postgresql":
        yield ids  # one array parameter, any length
        return
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def delegation(conn: Connection, runs: Mapping[str, str | None]) -> dict[str, str]:
    """child run id → parent run id, for every sub-agent run below ``runs`` (id → root id).

    Sub-agent runs share their root run id, so one indexed query reads every delegation
    tree the runs belong to; a run recorded without a root id has its sub-agents looked
    up level by level. A parent loop in corrupt data ends instead of repeating.
    """
    roots = sorted({root for root in runs.values() if root})
    children: dict[str, list[str]] = {}
    in_trees = {run for run, root in runs.items() if root}
    for chunk in _chunks(roots, conn):
        for child, parent in conn.execute(
            select(RunRow.run_id, RunRow.parent_run_id).where(
                _among(conn, RunRow.root_run_id, chunk), RunRow.parent_run_id.is_not(None)
            )
        ).all():
            if parent is not None:
                children.setdefault(parent, []).append(child)
                in_trees.add(child)
    parent_of: dict[str, str] = {}
    seen = set(runs)
    frontier = list(runs)
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        found: list[Any] = [(c, parent) for parent in frontier for c in children.get(parent, [])]
        outside = [run for run in frontier if run not in in_trees]
        for chunk in _chunks(outside, conn):
            found += conn.execute(
                select(RunRow.run_id, RunRow.parent_run_id).where(
                    _among(conn, RunRow.parent_run_id, chunk)
                )
            ).all()
        frontier = []
        for child, parent in found:
            parent_of.setdefault(child, parent)
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return parent_of


def _own_costs(conn: Connection, run_ids: Sequence[str] | None) -> dict[str, tuple[int, float]]:
    """Each run's own number of tool calls and their cost (runs with calls only), from the
    totals the writer keeps on the run's row."""
    query = select(RunRow.run_id, RunRow.tool_call_count, RunRow.own_cost).where(
        RunRow.tool_call_count > 0
    )
    if run_ids is None:
        return {r: (int(n), float(c)) for r, n, c in conn.execute(query).all()}
    own: dict[str, tuple[int, float]] = {}
    for chunk in _chunks(run_ids, conn):
        rows = conn.execute(query.where(_among(conn, RunRow.run_id, chunk))).all()
        own.update({r: (int(n), float(c)) for r, n, c in rows})
    return own


def rolled_up_costs(
    conn: Connection,
    runs: Mapping[str, str | None] | None,
    known: Mapping[str, tuple[int, float]] | None = None,
) -> dict[str, tuple[int, float, float]]:
    """For each run (run id → root run id; every run when None): its own number of tool
    calls, its own cost, and its cost with every sub-agent run below it. ``known``: own
    totals already read (runs with calls), not read again."""
    parent_of: dict[str, str]
    if runs is None:
        links = select(RunRow.run_id, RunRow.parent_run_id).where(RunRow.parent_run_id.is_not(None))
        parent_of = {run: parent for run, parent in conn.execute(links).all() if parent}
        own = _own_costs(conn, None)
        wanted: Iterable[str] = set(own) | set(parent_of)
        in_scope = None
    else:
        parent_of = delegation(conn, runs)
        in_scope = set(runs) | set(parent_of)
        known = known or {}
        own = {**known, **_own_costs(conn, [r for r in in_scope if r not in known])}
        wanted = runs
    total = _roll_up(own, parent_of, in_scope)
    nothing = (0, 0.0)
    return {run: (*own.get(run, nothing), total.get(run, 0.0)) for run in wanted}


def _roll_up(
    own: Mapping[str, tuple[int, float]],
    parent_of: Mapping[str, str],
    in_scope: set[str] | None,
) -> dict[str, float]:
    """Each run's own cost plus that of every run below it, up to the runs in scope."""
    total = {run: spent for run, (_, spent) in own.items()}
    for run, (_, spent) in own.items():
        parent = parent_of.get(run)
        if parent is None or not spent:
            continue
        seen = {run}
        while parent is not None and parent not in seen:
            if in_scope is not None and parent not in in_scope:
                break
            total[parent] = total.get(parent, 0.0) + spent
            seen.add(parent)
            parent = parent_of.get(parent)
    return total


# --- the questions


_RECENT = 2000  # runs tested one by one, newest first, before starting from the other side
_RARE = 5000  # matching calls below which a call filter starts from its calls
_DENSE = 9000  # matching calls from which the newest runs are tested one by one (where the two
# plans cross on benchmarks/queries.py's 100,000 runs: below, too few of the newest 2,000 match)


def _matching_rows(conn: Connection, f: RunFilter) -> list[Any]:
    """The newest runs that pass the filter, fast whether a filter is common or rare.

    Filters on the run's own row use the runs indexes. Filters on its calls (or registry)
    are tested run by run among the newest runs first; when those hold too few answers
    (a tool not used lately), or a filter matches few calls at all (a rare tool), the
    search starts from the matching calls.
    """
    query = (
        select(
            RunRow.run_id,
            RunRow.agent_id,
            RunRow.agent_version,
            RunRow.turn_id,
            RunRow.final_status,
            _model_name().label("model"),
            RunRow.prompt_version,
            RunRow.parent_run_id,
            RunRow.root_run_id,
            RunRow.depth,
            RunRow.started_at,
            RunRow.ended_at,
        )
        .where(*_own_conditions(f))
        .order_by(RunRow.started_at.desc(), RunRow.run_id.desc())
        .limit(f.limit)
    )
    probes = _probes(conn, f)
    if not probes:
        return list(conn.execute(query).all())
    counts = [_calls_matching(conn, p) for p in probes]
    if not any(n < _RARE for n in counts):
        # Common: among the newest runs. Tested run by run, newest first, where the calls
        # are dense; where they are not (one run in forty, say), that would test hundreds
        # of runs: the matching calls and the newest runs are joined instead.
        sparse = any(n < _DENSE for n in counts)
        rows = _among_recent(conn, f, query, probes, joined=sparse)
        if rows is not None:
            return rows
    # Rare, or too few among the newest: rank every match by start time first.
    return _ranked(conn, f, query, probes)


def _ranked(
    conn: Connection,
    f: RunFilter,
    query: Any,
    probes: list[_Probe],
    *,
    since: datetime | None = None,
) -> list[Any]:
    """The newest ``f.limit`` matches (started at or after ``since``, if given): every match
    ranked by start time first (two narrow columns, no LIMIT, so the planner starts from
    whichever side is smaller), then the rows of the newest few read."""
    ranked = select(RunRow.run_id, RunRow.started_at).where(*_own_conditions(f))
    if since is not None:
        ranked = ranked.where(RunRow.started_at >= since)
    for probe in probes:
        found = probe.condition if probe.runs is None else RunRow.run_id.in_(probe.runs)
        ranked = ranked.where(found)
    matches = _materialized(conn, ranked)
    newest = (
        select(matches.c.run_id)
        .order_by(matches.c.started_at.desc(), matches.c.run_id.desc())
        .limit(f.limit)
    )
    return list(conn.execute(query.where(RunRow.run_id.in_(newest))).all())


def _among_recent(
    conn: Connection, f: RunFilter, query: Any, probes: list[_Probe], *, joined: bool
) -> Any:
    """The answer if the newest runs hold enough of it (or are all there is), else None;
    ``joined``: ranked among them (``_ranked``) instead of tested one by one."""
    horizon = conn.execute(
        select(RunRow.started_at)
        .where(*_own_conditions(f))
        .order_by(RunRow.started_at.desc())
        .offset(_RECENT)
        .limit(1)
    ).scalar()
    if joined:
        rows = _ranked(conn, f, query, probes, since=horizon)
        return rows if horizon is None or len(rows) == f.limit else None
    recent = query.where(*(p.condition for p in probes))
    if horizon is None:
        return list(conn.execute(recent).all())
    rows = list(conn.execute(recent.where(RunRow.started_at >= horizon)).all())
    return rows if len(rows) == f.limit else None


def _materialized(conn: Connection, query: Any) -> Any:
    cte = query.cte("matches")
    if conn.dialect.name == "postgresql":  # computed once, so the plan starts from it
        cte = cte.prefix_with("MATERIALIZED")
    return cte


def find_runs(conn: Connection, f: RunFilter) -> list[RunSummary]:
    """Runs matching every filter, newest first, at most ``f.limit``."""
    rows = _matching_rows(conn, f)
    costs = rolled_up_costs(conn, {r.run_id: r.root_run_id for r in rows}) if rows else {}
    found = []
    for row in rows:
        calls, own, total = costs.get(row.run_id, (0, 0.0, 0.0))
        cost = Cost(own=round(own, 8), total=round(total, 8))
        started, ended = row.started_at, row.ended_at
        found.append(
            from_row(
                RunSummary,
                row,
                duration_ms=(
                    (ended - started) // timedelta(milliseconds=1) if started and ended else None
                ),
                tool_calls=calls,
                cost=cost,
            )
        )
    return found


def is_call(run_id: Any, tool_call_id: Any) -> ColumnElement[bool]:
    """Picks the tool call a row names: call ids are unique only within their run."""
    return and_(ToolCallRow.run_id == run_id, ToolCallRow.tool_call_id == tool_call_id)


def call_ref(row: Any, agent_id: str | None) -> CallRef:
    """A CallRef from a ``tool_calls`` row (ORM object or result row)."""
    return from_row(CallRef, row, agent_id=agent_id)


def turn_artifacts(conn: Connection, turn_id: str) -> list[ArtifactOrigin]:
    """Every artifact made during a user turn, by any agent the turn triggered, oldest first.

    An artifact carries the turn id of the call that made it, which every sub-agent
    inherits from the run that delegated to it.
    """
    check_text(turn_id, "--turn")
    rows = (
        Session(bind=conn)
        .execute(
            select(ArtifactRow, ToolCallRow, RunRow.agent_id, RunRow.parent_run_id, RunRow.depth)
            .outerjoin(ToolCallRow, is_call(ArtifactRow.run_id, ArtifactRow.tool_call_id))
            .outerjoin(RunRow, RunRow.run_id == ArtifactRow.run_id)
            .where(ArtifactRow.turn_id == turn_id)
            .order_by(ArtifactRow.created_at, ArtifactRow.artifact_id)
        )
        .all()
    )
    return [
        ArtifactOrigin(
            artifact=artifact_of(a),
            produced_by=call_ref(c, agent or a.agent_id) if c is not None else None,
            parent_run_id=parent,
            depth=depth or 0,
        )
        for a, c, agent, parent, depth in rows
    ]


def _picked_totals(conn: Connection, picked: Sequence[Any], below: list[str]) -> dict[str, float]:
    """Each picked run's (id, agent, parent, calls, own cost) cost with every sub-agent run
    below it, given the sub-agent runs ``below`` them that are not picked themselves."""
    parent_of = {row[0]: row[2] for row in picked if row[2]}
    own = {row[0]: (row[3], row[4]) for row in picked if row[3] > 0}
    for chunk in _chunks(below, conn):
        for run, parent, n, c in conn.execute(
            select(
                RunRow.run_id, RunRow.parent_run_id, RunRow.tool_call_count, RunRow.own_cost
            ).where(_among(conn, RunRow.run_id, chunk))
        ).all():
            if parent:
                parent_of[run] = parent
            if n > 0:
                own[run] = (int(n), float(c))
    return _roll_up(own, parent_of, {row[0] for row in picked} | set(below))


def cost_by(
    conn: Connection,
    by: CostDimension | str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    agent: str | None = None,
    turn: str | None = None,
    limit: int | None = None,
) -> list[CostLine]:
    """Spend grouped by agent, model, turn or tool, most expensive first; with ``limit``,
    only that many of the most expensive lines (the database sorts and cuts the report).

    The filters pick runs (by start time, agent, turn); their sub-agent runs are always
    counted with them, wherever and whenever they started.
    """
    dimension = CostDimension(by)
    where = run_conditions(conn, RunFilter(since=since, until=until, agent=agent, turn=turn))
    window = RunFilter(since=since, until=until) if agent is None and turn is None else None
    if dimension is CostDimension.AGENT:
        # The own totals and parents come with the runs (on PostgreSQL, from the started_at
        # index alone); the sub-agent runs outside the pick, if any, are read by id.
        picked = conn.execute(
            select(
                RunRow.run_id,
                RunRow.agent_id,
                RunRow.parent_run_id,
                RunRow.tool_call_count,
                RunRow.own_cost,
            ).where(*where)
        ).all()
        if where:
            totals = _picked_totals(conn, picked, _below(conn, where, window))
        else:
            totals = {run: t for run, (_, _, t) in rolled_up_costs(conn, None).items()}
        sums: dict[str | None, list[float]] = {}
        for run_id, agent_id, _, calls, own in picked:
            line = sums.setdefault(agent_id, [0, 0, 0.0, 0.0])
            line[0] += 1
            if calls > 0:
                line[1] += calls
                line[2] += own
            line[3] += totals.get(run_id, 0.0)
        answer = _lines(
            dict(
                by=str(dimension),
                key=agent_id,
                runs=int(runs),
                calls=int(calls),
                cost=round(own, 8),
                total=round(total, 8),
            )
            for agent_id, (runs, calls, own, total) in sums.items()
        )
    else:
        below = _below(conn, where, window) if where else []
        lines: list[dict[str, Any]] = []
        name = dimension.value
        query = _spend(conn, dimension, where, below)
        if limit is not None:
            key, spent = query.selected_columns[0], query.selected_columns[3]
            query = query.order_by(func.coalesce(spent, 0.0).desc(), func.coalesce(key, "")).limit(
                limit
            )
        for k, runs, calls, spent, tokens_in, tokens_out in conn.execute(query).all():
            cost = round(float(spent or 0.0), 8)
            lines.append(
                {
                    "by": name,
                    "key": k,
                    "runs": int(runs or 0),  # sums of integers may come as decimals
                    "calls": int(calls or 0),
                    "cost": cost,
                    "total": cost,
                    "input_tokens": None if tokens_in is None else int(tokens_in),
                    "output_tokens": None if tokens_out is None else int(tokens_out),
                }
            )
        answer = _lines(lines)
    return answer if limit is None else answer[:limit]


_COST_LINES: Any = None


def _lines(values: Iterable[dict[str, Any]]) -> list[CostLine]:
    """CostLines, most expensive first, validated in one call (a report by turn may have
    thousands of lines)."""
    global _COST_LINES
    if _COST_LINES is None:
        _COST_LINES = TypeAdapter(list[CostLine])
    ordered = sorted(values, key=lambda line: (-line["total"], line["key"] or ""))
    return _COST_LINES.validate_python(ordered)  # type: ignore[no-any-return]


def _rebound(condition: ColumnElement[bool], table: Any) -> Any:
    """A condition on columns of runs, on the same-named columns of ``table`` (an alias of
    runs, or run_totals with its copies of the run's start, agent and turn)."""
    runs = RunRow.__table__

    def swap(element: Any) -> Any:
        if isinstance(element, Column) and element.table is runs:
            return table.c[element.name]  # a column run_totals does not copy: KeyError
        return None

    return replacement_traverse(condition, {}, swap)  # type: ignore[call-overload]


def _below(
    conn: Connection, where: list[ColumnElement[bool]], window: RunFilter | None = None
) -> list[str]:
    """The sub-agent runs, at any depth, of the runs ``where`` picks that it does not pick
    itself (mostly none: sub-agents start with their parents).

    The first level in one statement, from the delegation trees of the picked runs (or,
    for a run recorded without a root id, from its id); deeper levels by parent id. When
    ``where`` is only the time ``window``, a run outside it is one that started outside
    it (or has no start): a short range of each tree in its (root, start) index. With no
    end to the window, only a run stamped just before it can have a picked parent, since
    a sub-agent run starts after the run that started it (Temporal stamps both): one short
    range of the start index, whatever the number of picked runs.
    """
    child = RunRow.__table__.alias("child")
    picked = select(RunRow.run_id).where(*where)
    outside: ColumnElement[bool] = child.c.run_id.not_in(picked)
    if window is not None and window.since is not None and window.until is None:
        started = child.c.started_at
        early = and_(started >= window.since - CLOCK_SKEW, started < window.since)
        first: Any = select(child.c.run_id).where(
            or_(started.is_(None), early), child.c.parent_run_id.in_(picked)
        )
        return _descendants(
            conn, child, list(dict.fromkeys(conn.execute(first).scalars())), outside
        )
    if window is not None:
        started = child.c.started_at
        outside = or_(
            started.is_(None),
            *([started < window.since] if window.since else []),
            *([started >= window.until] if window.until else []),
        )
    roots: Any = select(RunRow.root_run_id).where(*where)
    if conn.dialect.name == "postgresql":
        # One array of root ids: PostgreSQL then reads each tree from the index once,
        # instead of hashing the whole root index.
        listed = select(func.array_agg(RunRow.root_run_id)).where(*where).scalar_subquery()
        roots = any_(cast(listed, ARRAY(String)))
        in_trees = child.c.root_run_id == roots
    else:
        in_trees = child.c.root_run_id.in_(roots)
    rootless = picked.where(RunRow.root_run_id.is_(None))
    first = union_all(
        select(child.c.run_id).where(in_trees, child.c.parent_run_id.in_(picked), outside),
        select(child.c.run_id).where(child.c.parent_run_id.in_(rootless), outside),
    )
    return _descendants(conn, child, list(dict.fromkeys(conn.execute(first).scalars())), outside)


def _descendants(
    conn: Connection, child: Any, frontier: list[str], outside: ColumnElement[bool]
) -> list[str]:
    """``frontier`` and the runs below it (``child``: an alias of runs), level by level,
    that ``outside`` keeps."""
    below = set(frontier)
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        found: list[str] = []
        for chunk in _chunks(frontier, conn):
            found += conn.execute(
                select(child.c.run_id).where(_among(conn, child.c.parent_run_id, chunk), outside)
            ).scalars()
        frontier = [run for run in dict.fromkeys(found) if run not in below]
        below.update(frontier)
    return sorted(below)


def _spend(
    conn: Connection, dimension: CostDimension, where: list[ColumnElement[bool]], below: list[str]
) -> Any:
    """key, runs, calls, cost, input tokens, output tokens — for the runs ``where`` selects
    and their sub-agent runs ``below`` (a run counts once for each of its keys)."""
    if dimension is CostDimension.TURN:
        query = select(
            RunRow.turn_id,
            func.count(),
            func.sum(RunRow.tool_call_count),
            func.sum(RunRow.own_cost),
            cast(null(), Integer),
            cast(null(), Integer),
        ).group_by(RunRow.turn_id)
        if not where:
            return query
        picks = and_(*where)
        return query.where(or_(picks, _among(conn, RunRow.run_id, below)) if below else picks)
    # The run filter on the copies of the run's start, agent and turn the totals carry: one
    # index range of the totals; the sub-agent runs outside it are read by run id.
    t = RunTotalRow
    columns = (t.key, t.calls, t.cost, t.input_tokens, t.output_tokens)
    kind = t.kind == ("model" if dimension is CostDimension.MODEL else "tool")
    parts = [select(*columns).where(kind, *(_rebound(c, t.__table__) for c in where))]
    if below:
        parts.append(select(*columns).where(kind, _among(conn, t.run_id, below)))
    rows = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("totals")
    return select(
        rows.c.key,
        func.count(),
        func.sum(rows.c.calls),
        func.sum(rows.c.cost),
        func.sum(rows.c.input_tokens),
        func.sum(rows.c.output_tokens),
    ).group_by(rows.c.key)
