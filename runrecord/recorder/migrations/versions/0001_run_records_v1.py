"""run records v1"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._types import JSON, WHEN

revision = "0001"
down_revision = None


def upgrade() -> None:

    op.create_table(
        "artifacts",
        sa.Column("artifact_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("tool_call_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("agent_id", sa.String(length=255), nullable=True),
        sa.Column("turn_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("artifact_id"),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_turn_id"), ["turn_id"], unique=False)

    op.create_table(
        "journal_cursors",
        sa.Column("file", sa.String(length=512), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("file"),
    )
    op.create_table(
        "model_calls",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("tool_call_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("prompt_version", sa.String(length=255), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "tool_call_id"),
    )
    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_calls_model"), ["model"], unique=False)

    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("workflow_type", sa.String(length=255), nullable=False),
        sa.Column("task_queue", sa.String(length=255), nullable=True),
        sa.Column("agent_id", sa.String(length=255), nullable=True),
        sa.Column("agent_version", sa.String(length=255), nullable=True),
        sa.Column("turn_id", sa.String(length=255), nullable=True),
        sa.Column(
            "model",
            JSON,
            nullable=True,
        ),
        sa.Column("prompt_version", sa.String(length=255), nullable=True),
        sa.Column(
            "tool_registry",
            JSON,
            nullable=False,
        ),
        sa.Column("final_status", sa.String(length=32), nullable=False),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("parent_run_id", sa.String(length=255), nullable=True),
        sa.Column("root_run_id", sa.String(length=255), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column(
            "temporal_run_ids",
            JSON,
            nullable=False,
        ),
        sa.Column(
            "child_run_ids",
            JSON,
            nullable=False,
        ),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_final_status"), ["final_status"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_parent_run_id"), ["parent_run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_root_run_id"), ["root_run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_started_at"), ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_runs_turn_id"), ["turn_id"], unique=False)

    op.create_table(
        "tool_call_attempts",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("tool_call_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker_identity", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "tool_call_id", "attempt"),
    )
    op.create_table(
        "tool_calls",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("tool_call_id", sa.String(length=64), nullable=False),
        sa.Column("temporal_run_id", sa.String(length=64), nullable=True),
        sa.Column("activity_id", sa.String(length=255), nullable=True),
        sa.Column("scheduled_event_id", sa.BigInteger(), nullable=False),
        sa.Column("tool", sa.String(length=255), nullable=False),
        sa.Column("side_effect", sa.String(length=16), nullable=False),
        sa.Column("idempotent", sa.Boolean(), nullable=False),
        sa.Column("irreversible", sa.Boolean(), nullable=False),
        sa.Column("compensator", sa.String(length=255), nullable=True),
        sa.Column("schema_hash", sa.String(length=64), nullable=True),
        sa.Column("approval_state", sa.String(length=16), nullable=False),
        sa.Column(
            "approval",
            JSON,
            nullable=True,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "input_refs",
            JSON,
            nullable=False,
        ),
        sa.Column(
            "output_refs",
            JSON,
            nullable=False,
        ),
        sa.Column(
            "timeouts",
            JSON,
            nullable=False,
        ),
        sa.Column(
            "retry_policy",
            JSON,
            nullable=True,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_failure", sa.Text(), nullable=True),
        sa.Column("timeout_type", sa.String(length=32), nullable=True),
        sa.Column("scheduled_at", WHEN, nullable=True),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("worker_identity", sa.String(length=255), nullable=True),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "tool_call_id"),
    )
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tool_calls_approval_state"), ["approval_state"], unique=False
        )
        batch_op.create_index(
            "ix_tool_calls_run_event", ["run_id", "scheduled_event_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_tool_calls_side_effect"), ["side_effect"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_tool_calls_tool"), ["tool"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_calls_tool"))
        batch_op.drop_index(batch_op.f("ix_tool_calls_side_effect"))
        batch_op.drop_index("ix_tool_calls_run_event")
        batch_op.drop_index(batch_op.f("ix_tool_calls_approval_state"))

    op.drop_table("tool_calls")
    op.drop_table("tool_call_attempts")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_turn_id"))
        batch_op.drop_index(batch_op.f("ix_runs_started_at"))
        batch_op.drop_index(batch_op.f("ix_runs_root_run_id"))
        batch_op.drop_index(batch_op.f("ix_runs_parent_run_id"))
        batch_op.drop_index(batch_op.f("ix_runs_final_status"))
        batch_op.drop_index(batch_op.f("ix_runs_agent_id"))

    op.drop_table("runs")
    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_calls_model"))

    op.drop_table("model_calls")
    op.drop_table("journal_cursors")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_turn_id"))
        batch_op.drop_index(batch_op.f("ix_artifacts_run_id"))

    op.drop_table("artifacts")
