"""run records v1"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._columns import (
    BIGINT,
    BOOL,
    CALL_KEY,
    FLOAT,
    ID,
    INT,
    LABEL,
    NAME,
    TEXT,
    WORD,
    call_key,
    not_null,
    nullable,
    span,
)
from runrecord.recorder.migrations._types import JSON, WHEN

revision = "0001"
down_revision = None

_TABLES = (
    "artifacts",
    "journal_cursors",
    "model_calls",
    "runs",
    "tool_call_attempts",
    "tool_calls",
)


def upgrade() -> None:

    op.create_table(
        "artifacts",
        sa.PrimaryKeyConstraint("artifact_id"),
        not_null("artifact_id", ID),
        *call_key(),
        not_null("attempt", INT),
        not_null("kind", LABEL),
        not_null("uri", TEXT),
        nullable("sha256", ID),
        nullable("size", BIGINT),
        nullable("agent_id", NAME),
        nullable("turn_id", NAME),
        nullable("created_at", WHEN),
    )
    _indexed("artifacts", "run_id", "turn_id")

    op.create_table(
        "journal_cursors",
        sa.PrimaryKeyConstraint("file"),
        not_null("file", sa.String(length=512)),
        not_null("offset", BIGINT),
        not_null("updated_at", WHEN),
    )
    op.create_table(
        "model_calls",
        sa.PrimaryKeyConstraint(*CALL_KEY),
        *call_key(),
        not_null("provider", ID),
        not_null("model", NAME),
        nullable("prompt_version", NAME),
        not_null("input_tokens", INT),
        not_null("output_tokens", INT),
        not_null("cost", FLOAT),
        nullable("latency_ms", INT),
    )
    _indexed("model_calls", "model")

    op.create_table(
        "runs",
        sa.PrimaryKeyConstraint("run_id"),
        not_null("run_id", NAME),
        not_null("namespace", NAME),
        not_null("workflow_type", NAME),
        nullable("task_queue", NAME),
        nullable("agent_id", NAME),
        nullable("agent_version", NAME),
        nullable("turn_id", NAME),
        nullable("model", JSON),
        nullable("prompt_version", NAME),
        not_null("tool_registry", JSON),
        not_null("final_status", LABEL),
        nullable("failure", TEXT),
        nullable("parent_run_id", NAME),
        nullable("root_run_id", NAME),
        not_null("depth", INT),
        not_null("temporal_run_ids", JSON),
        not_null("child_run_ids", JSON),
        *span(),
        not_null("last_event_id", BIGINT),
        not_null("updated_at", WHEN),
    )
    _indexed(
        "runs", "agent_id", "final_status", "parent_run_id", "root_run_id", "started_at", "turn_id"
    )

    op.create_table(
        "tool_call_attempts",
        sa.PrimaryKeyConstraint(*CALL_KEY, "attempt"),
        *call_key(),
        not_null("attempt", INT),
        *span(),
        not_null("outcome", WORD),
        nullable("error", TEXT),
        nullable("worker_identity", NAME),
    )
    op.create_table(
        "tool_calls",
        sa.PrimaryKeyConstraint(*CALL_KEY),
        *call_key(),
        nullable("temporal_run_id", ID),
        nullable("activity_id", NAME),
        not_null("scheduled_event_id", BIGINT),
        not_null("tool", NAME),
        not_null("side_effect", WORD),
        not_null("idempotent", BOOL),
        not_null("irreversible", BOOL),
        nullable("compensator", NAME),
        nullable("schema_hash", ID),
        not_null("approval_state", WORD),
        nullable("approval", JSON),
        not_null("status", WORD),
        not_null("input_refs", JSON),
        not_null("output_refs", JSON),
        not_null("timeouts", JSON),
        nullable("retry_policy", JSON),
        not_null("attempts", INT),
        nullable("last_failure", TEXT),
        nullable("timeout_type", LABEL),
        nullable("scheduled_at", WHEN),
        *span(),
        nullable("duration_ms", BIGINT),
        nullable("worker_identity", NAME),
        not_null("cost", FLOAT),
    )
    _indexed("tool_calls", "approval_state", "side_effect", "tool")
    op.create_index("ix_tool_calls_run_event", "tool_calls", ["run_id", "scheduled_event_id"])


def downgrade() -> None:
    # A table's indexes go with it.
    for table in _TABLES[::-1]:
        op.drop_table(table)


def _indexed(table: str, *columns: str) -> None:
    """An index on each of ``columns``, named as _tables.py names it."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in columns:
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)
