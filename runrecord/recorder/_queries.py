"""The operator's questions, answered from the records: filtered runs, artifacts of a turn, cost.

Every value a user types reaches the database as a bound parameter, never as SQL text.
The same answers are available to SQL users as views (migration 0003); the tests check
that both agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import Field
from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    cast,
    distinct,
    exists,
    func,
    literal,
    null,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from runrecord._settings import RunRecordError
from runrecord.recorder._tables import ArtifactRow, ModelCallRow, RunRow, ToolCallRow
from runrecord.records import Approval, ApprovalState, Artifact, Cost, Record

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


def _check_text(value: str | None, what: str) -> None:
    if value is not None and "\x00" in value:
        raise RunRecordError(f"{what} must not contain NUL characters")


class CostDimension(StrEnum):
    AGENT = "agent"
    MODEL = "model"
    TURN = "turn"
    TOOL = "tool"


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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                _check_text(value, f"--{f.name.replace('_', '-')}")
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


def _let_run(call: type[ToolCallRow] = ToolCallRow) -> ColumnElement[bool]:
    return call.approval_state.notin_([str(s) for s in NOT_LET_RUN])


def _has_call(*where: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(ToolCallRow.run_id == RunRow.run_id, *where)


def _registry_has_server(conn: Connection, server: str) -> ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        # jsonb containment uses the GIN index on tool_registry; the value stays a parameter.
        wanted = cast(literal(json.dumps([{"server": server}])), JSONB)
        return RunRow.tool_registry.op("@>")(wanted)  # type: ignore[no-any-return]
    entry = func.json_each(RunRow.tool_registry).table_valued("value").alias("entry")
    return exists(
        select(1).select_from(entry).where(func.json_extract(entry.c.value, "$.server") == server)
    )


def _model_name() -> ColumnElement[Any]:
    return RunRow.model["name"].as_string()


def run_conditions(conn: Connection, f: RunFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a run filter, with every value bound as a parameter."""
    where: list[ColumnElement[bool]] = []
    if f.side_effect:
        where.append(_has_call(ToolCallRow.side_effect == f.side_effect, _let_run()))
    if f.approval:
        where.append(_has_call(ToolCallRow.approval_state == f.approval))
    if f.mcp_server:
        where.append(_has_call(ToolCallRow.mcp_server == f.mcp_server, _let_run()))
    if f.mcp_available:
        where.append(_registry_has_server(conn, f.mcp_available))
    if f.tool:
        where.append(_has_call(ToolCallRow.tool == f.tool, _let_run()))
    if f.agent:
        where.append(RunRow.agent_id == f.agent)
    if f.turn:
        where.append(RunRow.turn_id == f.turn)
    if f.status:
        where.append(RunRow.final_status == f.status)
    if f.model:
        used = select(ModelCallRow.run_id).where(ModelCallRow.model == f.model)
        where.append(or_(_model_name() == f.model, RunRow.run_id.in_(used)))
    if f.prompt_version:
        # "supervisor@3" matches "supervisor@3:<hash>"; LIKE wildcards in the value are escaped.
        where.append(
            or_(
                RunRow.prompt_version == f.prompt_version,
                RunRow.prompt_version.startswith(f.prompt_version + ":", autoescape=True),
            )
        )
    if f.since:
        where.append(RunRow.started_at >= f.since)
    if f.until:
        where.append(RunRow.started_at < f.until)
    if f.parent:
        where.append(RunRow.parent_run_id == f.parent)
    return where


def subtree(seed: Select[str, str], name: str = "subtree") -> CTE:
    """(top, run_id) for every run of ``seed`` and every sub-agent run below it.

    UNION (not UNION ALL) makes a corrupt parent cycle end instead of looping.
    """
    top = seed.cte(name, recursive=True)
    child = select(top.c.top, RunRow.run_id).join(top, RunRow.parent_run_id == top.c.run_id)
    return top.union(child)


def _seed(ids: Sequence[str] | None, where: Sequence[ColumnElement[bool]] = ()) -> Select[str, str]:
    seed = select(RunRow.run_id.label("top"), RunRow.run_id)
    if ids is not None:
        seed = seed.where(RunRow.run_id.in_(list(ids)))
    return seed.where(*where)


def rolled_up_costs(conn: Connection, run_ids: Sequence[str]) -> dict[str, tuple[int, Cost]]:
    """For each run: its own number of tool calls, and its own and rolled-up cost."""
    if not run_ids:
        return {}
    tree = subtree(_seed(run_ids))
    own = tree.c.run_id == tree.c.top
    rows = conn.execute(
        select(
            tree.c.top,
            func.count(case((own, ToolCallRow.tool_call_id))),
            func.coalesce(func.sum(case((own, ToolCallRow.cost), else_=0.0)), 0.0),
            func.coalesce(func.sum(ToolCallRow.cost), 0.0),
        )
        .select_from(tree)
        .outerjoin(ToolCallRow, ToolCallRow.run_id == tree.c.run_id)
        .group_by(tree.c.top)
    )
    return {
        top: (int(n), Cost(own=round(float(c_own), 8), total=round(float(c_all), 8)))
        for top, n, c_own, c_all in rows
    }


# --- the questions


def find_runs(conn: Connection, f: RunFilter) -> list[RunSummary]:
    """Runs matching every filter, newest first, at most ``f.limit``."""
    rows = conn.execute(
        select(
            RunRow.run_id,
            RunRow.agent_id,
            RunRow.agent_version,
            RunRow.turn_id,
            RunRow.final_status,
            _model_name(),
            RunRow.prompt_version,
            RunRow.parent_run_id,
            RunRow.root_run_id,
            RunRow.depth,
            RunRow.started_at,
            RunRow.ended_at,
        )
        .where(*run_conditions(conn, f))
        .order_by(RunRow.started_at.desc(), RunRow.run_id.desc())
        .limit(f.limit)
    ).all()
    costs = rolled_up_costs(conn, [r.run_id for r in rows])
    found = []
    for row in rows:
        calls, cost = costs.get(row.run_id, (0, Cost()))
        started, ended = row.started_at, row.ended_at
        found.append(
            RunSummary(
                run_id=row.run_id,
                agent_id=row.agent_id,
                agent_version=row.agent_version,
                turn_id=row.turn_id,
                final_status=row.final_status,
                model=row[5],
                prompt_version=row.prompt_version,
                parent_run_id=row.parent_run_id,
                root_run_id=row.root_run_id,
                depth=row.depth,
                started_at=started,
                ended_at=ended,
                duration_ms=(
                    (ended - started) // timedelta(milliseconds=1) if started and ended else None
                ),
                tool_calls=calls,
                cost=cost,
            )
        )
    return found


def call_ref(row: Any, agent_id: str | None) -> CallRef:
    """A CallRef from a ``tool_calls`` row (ORM object or result row)."""
    return CallRef(
        run_id=row.run_id,
        agent_id=agent_id,
        tool_call_id=row.tool_call_id,
        tool=row.tool,
        side_effect=row.side_effect,
        status=row.status,
        approval_state=row.approval_state,
        approval=Approval.model_validate(row.approval) if row.approval else None,
        attempts=row.attempts,
        mcp_server=row.mcp_server,
        scheduled_at=row.scheduled_at,
    )


def artifact_of(row: ArtifactRow) -> Artifact:
    return Artifact(
        artifact_id=row.artifact_id,
        kind=row.kind,
        uri=row.uri,
        sha256=row.sha256,
        size=row.size,
        tool_call_id=row.tool_call_id,
        attempt=row.attempt,
        run_id=row.run_id,
        agent_id=row.agent_id,
        turn_id=row.turn_id,
        created_at=row.created_at,
    )


def turn_artifacts(conn: Connection, turn_id: str) -> list[ArtifactOrigin]:
    """Every artifact made during a user turn, by any agent the turn triggered, oldest first.

    An artifact carries the turn id of the call that made it, which every sub-agent
    inherits from the run that delegated to it.
    """
    _check_text(turn_id, "--turn")
    rows = (
        Session(bind=conn)
        .execute(
            select(ArtifactRow, ToolCallRow, RunRow.agent_id, RunRow.parent_run_id, RunRow.depth)
            .outerjoin(
                ToolCallRow,
                and_(
                    ToolCallRow.run_id == ArtifactRow.run_id,
                    ToolCallRow.tool_call_id == ArtifactRow.tool_call_id,
                ),
            )
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


def cost_by(
    conn: Connection,
    by: CostDimension | str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    agent: str | None = None,
    turn: str | None = None,
) -> list[CostLine]:
    """Spend grouped by agent, model, turn or tool, most expensive first.

    The filters pick runs (by start time, agent, turn); their sub-agent runs are always
    counted with them, wherever they started.
    """
    dimension = CostDimension(by)
    where = run_conditions(conn, RunFilter(since=since, until=until, agent=agent, turn=turn))
    tree = subtree(_seed(None, where))
    # Unfiltered, every run is in scope already: skip walking the delegation trees.
    in_scope = select(tree.c.run_id) if where else None
    if dimension is CostDimension.AGENT:
        own = tree.c.run_id == tree.c.top
        per_run = (
            select(
                tree.c.top,
                func.count(case((own, ToolCallRow.tool_call_id))).label("calls"),
                func.coalesce(func.sum(case((own, ToolCallRow.cost), else_=0.0)), 0.0).label(
                    "cost"
                ),
                func.coalesce(func.sum(ToolCallRow.cost), 0.0).label("total"),
            )
            .select_from(tree)
            .outerjoin(ToolCallRow, ToolCallRow.run_id == tree.c.run_id)
            .group_by(tree.c.top)
            .subquery("per_run")
        )
        query = (
            select(
                RunRow.agent_id,
                func.count(),
                func.sum(per_run.c.calls),
                func.sum(per_run.c.cost),
                func.sum(per_run.c.total),
                null(),
                null(),
            )
            .join(per_run, per_run.c.top == RunRow.run_id)
            .group_by(RunRow.agent_id)
        )
    else:
        if dimension is CostDimension.MODEL:
            key: Any = ModelCallRow.model
            query = select(
                key,
                func.count(distinct(ModelCallRow.run_id)),
                func.count(),
                func.sum(ModelCallRow.cost),
                func.sum(ModelCallRow.cost),
                func.sum(ModelCallRow.input_tokens),
                func.sum(ModelCallRow.output_tokens),
            )
            if in_scope is not None:
                query = query.where(ModelCallRow.run_id.in_(in_scope))
        elif dimension is CostDimension.TOOL:
            key = ToolCallRow.tool
            query = select(
                key,
                func.count(distinct(ToolCallRow.run_id)),
                func.count(),
                func.sum(ToolCallRow.cost),
                func.sum(ToolCallRow.cost),
                null(),
                null(),
            )
            if in_scope is not None:
                query = query.where(ToolCallRow.run_id.in_(in_scope))
        else:
            key = RunRow.turn_id
            spent = func.coalesce(func.sum(ToolCallRow.cost), 0.0)
            query = select(
                key,
                func.count(distinct(RunRow.run_id)),
                func.count(ToolCallRow.tool_call_id),
                spent,
                spent,
                null(),
                null(),
            ).outerjoin(ToolCallRow, ToolCallRow.run_id == RunRow.run_id)
            if in_scope is not None:
                query = query.where(RunRow.run_id.in_(in_scope))
        query = query.group_by(key)
    lines = [
        CostLine(
            by=str(dimension),
            key=k,
            runs=int(runs or 0),
            calls=int(calls or 0),
            cost=round(float(cost or 0.0), 8),
            total=round(float(total or 0.0), 8),
            input_tokens=None if tin is None else int(tin),
            output_tokens=None if tout is None else int(tout),
        )
        for k, runs, calls, cost, total, tin, tout in conn.execute(query)
    ]
    lines.sort(key=lambda line: (-line.total, line.key or ""))
    return lines
