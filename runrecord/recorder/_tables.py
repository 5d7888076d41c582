"""The records database schema, read in one file; changed only by migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Json = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    """One agent run (a workflow id), as projected from Temporal history."""

    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255), default="default")
    workflow_type: Mapped[str] = mapped_column(String(255))
    task_queue: Mapped[str | None] = mapped_column(String(255))
    agent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    agent_version: Mapped[str | None] = mapped_column(String(255))
    turn_id: Mapped[str | None] = mapped_column(String(255), index=True)
    model: Mapped[dict[str, Any] | None] = mapped_column(Json)
    prompt_version: Mapped[str | None] = mapped_column(String(255))
    tool_registry: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    mcp_servers: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    final_status: Mapped[str] = mapped_column(String(32), index=True)
    failure: Mapped[str | None] = mapped_column(Text)
    parent_run_id: Mapped[str | None] = mapped_column(String(255), index=True)
    root_run_id: Mapped[str | None] = mapped_column(String(255))
    depth: Mapped[int] = mapped_column(Integer, default=0)
    temporal_run_ids: Mapped[list[str]] = mapped_column(Json, default=list)
    child_run_ids: Mapped[list[str]] = mapped_column(Json, default=list)
    consumes: Mapped[list[str]] = mapped_column(Json, default=list)
    rerun_of: Mapped[str | None] = mapped_column(String(255), index=True)
    approval_rejections: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    rollback: Mapped[dict[str, Any] | None] = mapped_column(Json)
    pause: Mapped[dict[str, Any] | None] = mapped_column(Json)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The run's own calls summed (migration 0013), kept equal to its tool_calls rows by the
    # writer (``update_run_totals``): cost reports read these; per tool and model: RunTotalRow.
    tool_call_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    own_cost: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # 0013's sums per tool and per model, no longer written since 0016 (RunTotalRow has
    # them): kept because the runs rows attested before hash them; read nowhere.
    tool_totals: Mapped[dict[str, Any]] = mapped_column(Json, default=dict, server_default="{}")
    model_totals: Mapped[dict[str, Any]] = mapped_column(Json, default=dict, server_default="{}")


class RunTotalRow(Base):
    """A run's own calls summed per tool (``kind`` tool) or per model (``kind`` model), kept
    equal to its tool_calls and model_calls rows by the writer (``update_run_totals``), with
    the run's start, agent and turn copied so that a cost report over a time window is one
    index range (migration 0016)."""

    __tablename__ = "run_totals"

    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    agent_id: Mapped[str | None] = mapped_column(String(255))
    turn_id: Mapped[str | None] = mapped_column(String(255), index=True)
    calls: Mapped[int] = mapped_column(Integer)
    cost: Mapped[float] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(BigInteger)
    """None for a tool"""
    output_tokens: Mapped[int | None] = mapped_column(BigInteger)


class ToolCallRow(Base):
    """One scheduled activity of a run, as projected from history."""

    __tablename__ = "tool_calls"

    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tool_call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    temporal_run_id: Mapped[str | None] = mapped_column(String(64))
    activity_id: Mapped[str | None] = mapped_column(String(255))
    scheduled_event_id: Mapped[int] = mapped_column(BigInteger)
    tool: Mapped[str] = mapped_column(String(255))
    side_effect: Mapped[str] = mapped_column(String(16))
    idempotent: Mapped[bool] = mapped_column(default=False)
    irreversible: Mapped[bool] = mapped_column(default=False)
    compensator: Mapped[str | None] = mapped_column(String(255))
    schema_hash: Mapped[str | None] = mapped_column(String(64))
    approval_state: Mapped[str] = mapped_column(String(16))
    approval: Mapped[dict[str, Any] | None] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(16))
    input_refs: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    output_refs: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    timeouts: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    retry_policy: Mapped[dict[str, Any] | None] = mapped_column(Json)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_failure: Mapped[str | None] = mapped_column(Text)
    timeout_type: Mapped[str | None] = mapped_column(String(32))
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    worker_identity: Mapped[str | None] = mapped_column(String(255))
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    mcp_server: Mapped[str | None] = mapped_column(String(255))
    network: Mapped[bool] = mapped_column(default=False)
    mcp: Mapped[dict[str, Any] | None] = mapped_column(Json)
    schema_drift: Mapped[bool] = mapped_column(default=False, index=True)
    consumes: Mapped[list[str]] = mapped_column(Json, default=list)
    local: Mapped[bool] = mapped_column(default=False)
    # A sub-agent's call is named `<sub-agent run id>/<call id>`.
    compensates: Mapped[str | None] = mapped_column(String(1024))
    agent_id: Mapped[str | None] = mapped_column(String(255))
    framework: Mapped[str | None] = mapped_column(String(64))
    activity_type: Mapped[str | None] = mapped_column(String(255))
    toolset: Mapped[str | None] = mapped_column(String(255))
    trace_id: Mapped[str | None] = mapped_column(String(64))
    span_id: Mapped[str | None] = mapped_column(String(64))


class AttemptRow(Base):
    """One attempt of a tool call, from the activity-side journal (history keeps only the last)."""

    __tablename__ = "tool_call_attempts"

    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tool_call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The Temporal run whose worker ran the attempt ('' when not journaled): every Temporal
    # run of a workflow id numbers its calls and attempts from 1.
    temporal_run_id: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    worker_identity: Mapped[str | None] = mapped_column(String(255))
    route: Mapped[str | None] = mapped_column(String(255))


class ActivityOperationRow(Base):
    """An operator's action on a pending call that history does not hold (activity pause,
    unpause, reset, options update), as the mirror saw it in the pending activity's info."""

    __tablename__ = "activity_operations"

    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tool_call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    operation: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    identity: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class ModelCallRow(Base):
    """A tool call with side effect ``model``: provider, model, prompt version, tokens, cost."""

    __tablename__ = "model_calls"

    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tool_call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255), index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    prompt_version: Mapped[str | None] = mapped_column(String(255))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str | None] = mapped_column(String(64))
    tools_offered: Mapped[list[str]] = mapped_column(Json, default=list)
    priced: Mapped[bool] = mapped_column(default=True)


class ArtifactRow(Base):
    """Something a tool call produced, declared with ``runrecord.artifact``."""

    __tablename__ = "artifacts"

    artifact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(255), index=True)
    tool_call_id: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(BigInteger)
    agent_id: Mapped[str | None] = mapped_column(String(255))
    turn_id: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    temporal_run_id: Mapped[str | None] = mapped_column(String(64))


class LineageEdgeRow(Base):
    """An artifact passed into a later tool call, or to a sub-agent run (tool_call_id '')."""

    __tablename__ = "lineage_edges"

    artifact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    consumer_run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    consumer_tool_call_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class JournalCursorRow(Base):
    """How far each journal file has been applied; moved in the same transaction as its rows."""

    __tablename__ = "journal_cursors"

    file: Mapped[str] = mapped_column(String(512), primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Lines of the file passed over because they could not be applied (migration 0008).
    lines_set_aside: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_set_aside: Mapped[str | None] = mapped_column(Text)


class TemporalRunRow(Base):
    """One Temporal run of a run record, with the mirror's cursor: its last projected event."""

    __tablename__ = "temporal_runs"

    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    temporal_run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    began_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(32))
    continued_from: Mapped[str | None] = mapped_column(String(64))
    reset_from: Mapped[str | None] = mapped_column(String(64))
    reset_reason: Mapped[str | None] = mapped_column(Text)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    last_event_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunEventRow(Base):
    """A workflow-level history event: start, close, signal (with its sender), pause, reset,
    child run, marker, search-attribute change. Calls are in tool_calls."""

    __tablename__ = "run_events"

    namespace: Mapped[str] = mapped_column(String(255), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)
    temporal_run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    event_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    identity: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class MirrorRow(Base):
    """A running mirror's heartbeat: live mirrors split the runs between them."""

    __tablename__ = "mirrors"

    mirror_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


# Migration 0005: indexes for the operator's questions (docs/records.md, "SQL tables").
# ix_tool_calls_run_event, ix_runs_started_at and ix_runs_root_run_id (0017: ix_runs_root_started)
# come from 0001; on
# PostgreSQL 0005 gives them INCLUDE columns, so the run filters' per-run checks, time
# windows, delegation trees and cost roll-ups are read from the index alone.
Index(
    "ix_tool_calls_run_event",
    ToolCallRow.run_id,
    ToolCallRow.scheduled_event_id,
    postgresql_include=["tool", "side_effect", "approval_state", "mcp_server", "cost"],
)
Index(
    "ix_runs_started_at",
    RunRow.started_at,
    postgresql_include=[
        "run_id",
        "agent_id",
        "root_run_id",
        # 0013: a cost report over a time window reads every run's totals from here.
        "turn_id",
        "tool_call_count",
        "own_cost",
        # 0016: a cost report by agent rolls sub-agents up from here.
        "parent_run_id",
    ],
)
Index(
    "ix_run_totals_started",
    RunTotalRow.kind,
    RunTotalRow.started_at,
    postgresql_include=["key", "calls", "cost", "input_tokens", "output_tokens", "agent_id"],
)
# 0017: a tree's runs in start order (sub-agents outside a cost report's time window).
Index(
    "ix_runs_root_started",
    RunRow.root_run_id,
    RunRow.started_at,
    postgresql_include=["run_id", "parent_run_id"],
)
# 0013: the runs a call filter matches, from the index alone (a rare tool or side effect
# is answered from its calls: their runs, then those runs' start times).
for _column in ("tool", "side_effect", "approval_state", "mcp_server"):
    Index(
        f"ix_tool_calls_{_column}",
        getattr(ToolCallRow, _column),
        ToolCallRow.run_id,
        postgresql_include=["approval_state"] if _column != "approval_state" else [],
    )
Index("ix_runs_run_started", RunRow.run_id, RunRow.started_at)
Index("ix_runs_agent_started", RunRow.agent_id, RunRow.started_at)
Index("ix_runs_status_started", RunRow.final_status, RunRow.started_at)
Index(
    "ix_runs_prompt_version",
    RunRow.prompt_version,
    postgresql_ops={"prompt_version": "varchar_pattern_ops"},
)
Index("ix_artifacts_run_call", ArtifactRow.run_id, ArtifactRow.tool_call_id)
Index("ix_artifacts_uri", ArtifactRow.uri, postgresql_using="hash")

# PostgreSQL only (0005), like the function runrecord_mcp_servers(jsonb) and the SQL views
# the same migration creates there (run_summary, executed_calls, approvals, mcp_usage, ...).
Index("ix_runs_model_started", RunRow.model["name"].as_string(), RunRow.started_at)
Index(
    "ix_model_calls_run_cost",
    ModelCallRow.run_id,
    postgresql_include=["model", "cost", "input_tokens", "output_tokens"],
)
Index(
    "ix_runs_mcp_servers",
    func.runrecord_mcp_servers(RunRow.tool_registry),
    postgresql_using="gin",
)
# 0015: the approvals inbox's history, the latest decided calls first.
Index(
    "ix_tool_calls_decided",
    ToolCallRow.ended_at.desc().nulls_last(),
    postgresql_where=ToolCallRow.approval_state.in_(("approved", "denied", "expired")),
)


class BlobRow(Base):
    """A redacted payload copy, when the blob store is the records database
    (``RUNRECORD_BLOBS=postgres``, the default on PostgreSQL). Keyed by the ref's sha256."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class MirrorKeyRow(Base):
    """A public key that signs attestations (migration 0014); append-only."""

    __tablename__ = "mirror_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AttestationRow(Base):
    """A signed digest of one run's rows, chained to its key's previous attestation
    (migration 0014); append-only."""

    __tablename__ = "attestations"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    key_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(255))
    namespace: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64))
    row_count: Mapped[int] = mapped_column(Integer)
    leaves: Mapped[list[Any]] = mapped_column(Json)
    previous: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


Index("ix_attestations_run_seq", AttestationRow.run_id, AttestationRow.seq)
Index("ix_attestations_key_seq", AttestationRow.key_id, AttestationRow.seq)
