"""mirror: Temporal runs with their cursors, the workflow-level timeline, mirror heartbeats"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._types import JSON, WHEN

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "temporal_runs",
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("temporal_run_id", sa.String(length=64), nullable=False),
        sa.Column("began_at", WHEN, nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("continued_from", sa.String(length=64), nullable=True),
        sa.Column("reset_from", sa.String(length=64), nullable=True),
        sa.Column("reset_reason", sa.Text(), nullable=True),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("last_event_time", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("namespace", "workflow_id", "temporal_run_id"),
    )
    op.create_index("ix_temporal_runs_workflow_id", "temporal_runs", ["workflow_id"])
    op.create_table(
        "run_events",
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("temporal_run_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("event_time", WHEN, nullable=True),
        sa.Column("identity", sa.String(length=255), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("namespace", "workflow_id", "temporal_run_id", "event_id"),
    )
    op.create_index("ix_run_events_workflow_id", "run_events", ["workflow_id"])
    op.create_index("ix_run_events_kind", "run_events", ["kind"])
    op.create_table(
        "mirrors",
        sa.Column("mirror_id", sa.String(length=64), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("heartbeat_at", WHEN, nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.PrimaryKeyConstraint("mirror_id"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pause", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("pause")
    op.drop_table("mirrors")
    op.drop_index("ix_run_events_kind", table_name="run_events")
    op.drop_index("ix_run_events_workflow_id", table_name="run_events")
    op.drop_table("run_events")
    op.drop_index("ix_temporal_runs_workflow_id", table_name="temporal_runs")
    op.drop_table("temporal_runs")
