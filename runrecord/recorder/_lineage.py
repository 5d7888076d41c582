"""Where an artifact came from and where it went: turn → agent → sub-agent → tool call → artifact.

The producing side comes from ``artifacts`` and the delegation links in ``runs``; the
consuming side from ``lineage_edges`` (an artifact passed into a later tool call, or to a
sub-agent run).
"""

from __future__ import annotations

from pydantic import Field
from sqlalchemy import Connection, or_, select, tuple_
from sqlalchemy.orm import Session

from runrecord.recorder._queries import MAX_DEPTH, CallRef, call_ref, check_text, is_call
from runrecord.recorder._rows import artifact_of
from runrecord.recorder._tables import ArtifactRow, LineageEdgeRow, RunRow, ToolCallRow
from runrecord.records import Artifact, Record


class ChainLink(Record):
    """One run on the way from the user turn down to the artifact."""

    run_id: str
    agent_id: str | None = None
    agent_version: str | None = None
    depth: int = 0
    final_status: str


class Consumer(Record):
    """A later tool call, or a sub-agent run, that received the artifact."""

    run_id: str
    agent_id: str | None = None
    call: CallRef | None = None  # None: the artifact was passed to the sub-agent run itself
    produced: list[str] = Field(default_factory=list)


class Lineage(Record):
    artifact: Artifact
    turn_id: str | None = None
    chain: list[ChainLink] = Field(default_factory=list)
    produced_by: CallRef | None = None
    consumed_by: list[Consumer] = Field(default_factory=list)


def _chain(conn: Connection, run_id: str) -> list[ChainLink]:
    links: list[ChainLink] = []
    seen: set[str] = set()
    current: str | None = run_id
    while current is not None and current not in seen and len(links) < MAX_DEPTH:
        seen.add(current)
        row = conn.execute(
            select(
                RunRow.run_id,
                RunRow.agent_id,
                RunRow.agent_version,
                RunRow.depth,
                RunRow.final_status,
                RunRow.parent_run_id,
            ).where(RunRow.run_id == current)
        ).first()
        if row is None:
            break  # the run is not mirrored (yet): the chain starts below it
        links.append(
            ChainLink(
                run_id=row.run_id,
                agent_id=row.agent_id,
                agent_version=row.agent_version,
                depth=row.depth,
                final_status=row.final_status,
            )
        )
        current = row.parent_run_id
    links.reverse()
    return links


def _consumers(conn: Connection, artifact_id: str) -> list[Consumer]:
    rows = (
        Session(bind=conn)
        .execute(
            select(LineageEdgeRow, ToolCallRow, RunRow.agent_id)
            .outerjoin(
                ToolCallRow,
                is_call(LineageEdgeRow.consumer_run_id, LineageEdgeRow.consumer_tool_call_id),
            )
            .outerjoin(RunRow, RunRow.run_id == LineageEdgeRow.consumer_run_id)
            .where(LineageEdgeRow.artifact_id == artifact_id)
        )
        .all()
    )
    if not rows:
        return []
    whole_runs = [e.consumer_run_id for e, _, _ in rows if not e.consumer_tool_call_id]
    calls = [
        (e.consumer_run_id, e.consumer_tool_call_id) for e, _, _ in rows if e.consumer_tool_call_id
    ]
    made = conn.execute(
        select(ArtifactRow.run_id, ArtifactRow.tool_call_id, ArtifactRow.artifact_id)
        .where(
            or_(
                ArtifactRow.run_id.in_(whole_runs),
                tuple_(ArtifactRow.run_id, ArtifactRow.tool_call_id).in_(calls),
            )
        )
        .order_by(ArtifactRow.created_at, ArtifactRow.artifact_id)
    ).all()
    consumers = []
    for edge, call, agent in rows:
        run_id, call_id = edge.consumer_run_id, edge.consumer_tool_call_id
        consumers.append(
            Consumer(
                run_id=run_id,
                agent_id=agent,
                call=call_ref(call, agent) if call is not None else None,
                produced=[
                    a
                    for r, c, a in made
                    if r == run_id and (not call_id or c == call_id) and a != artifact_id
                ],
            )
        )
    consumers.sort(
        key=lambda c: (
            (c.call.scheduled_at.isoformat() if c.call and c.call.scheduled_at else ""),
            c.run_id,
            c.call.tool_call_id if c.call else "",
        )
    )
    return consumers


def lineage(conn: Connection, artifact: str) -> list[Lineage]:
    """The lineage of an artifact, by id or by exact URI (newest first when a URI matches many)."""
    check_text(artifact, "ARTIFACT")
    session = Session(bind=conn)
    rows = (
        session.execute(select(ArtifactRow).where(ArtifactRow.artifact_id == artifact))
        .scalars()
        .all()
    )
    if not rows:
        rows = (
            session.execute(
                select(ArtifactRow)
                .where(ArtifactRow.uri == artifact)
                .order_by(ArtifactRow.created_at.desc(), ArtifactRow.artifact_id)
            )
            .scalars()
            .all()
        )
    found = []
    for row in rows:
        chain = _chain(conn, row.run_id)
        call = session.execute(
            select(ToolCallRow).where(is_call(row.run_id, row.tool_call_id))
        ).scalar()
        producer_agent = chain[-1].agent_id if chain else row.agent_id
        found.append(
            Lineage(
                artifact=artifact_of(row),
                turn_id=row.turn_id,
                chain=chain,
                produced_by=call_ref(call, producer_agent) if call is not None else None,
                consumed_by=_consumers(conn, row.artifact_id),
            )
        )
    return found
