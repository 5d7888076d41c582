"""mirror: Temporal runs with their cursors, the workflow-level timeline, mirror heartbeats"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._columns import (
    BIGINT,
    ID,
    INT,
    LABEL,
    NAME,
    TEMPORAL_RUN_KEY,
    TEXT,
    not_null,
    nullable,
    temporal_run_key,
)
from runrecord.recorder.migrations._types import JSON, WHEN

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "temporal_runs",
        sa.PrimaryKeyConstraint(*TEMPORAL_RUN_KEY),
        *temporal_run_key(),
        nullable("began_at", WHEN),
        not_null("status", LABEL),
        nullable("continued_from", ID),
        nullable("reset_from", ID),
        nullable("reset_reason", TEXT),
        not_null("last_event_id", BIGINT),
        nullable("last_event_time", WHEN),
        not_null("updated_at", WHEN),
    )
    op.create_index("ix_temporal_runs_workflow_id", "temporal_runs", ["workflow_id"])
    op.create_table(
        "run_events",
        sa.PrimaryKeyConstraint(*TEMPORAL_RUN_KEY, "event_id"),
        *temporal_run_key(),
        not_null("event_id", BIGINT),
        not_null("kind", LABEL),
        nullable("event_time", WHEN),
        nullable("identity", NAME),
        not_null("detail", JSON),
    )
    op.create_index("ix_run_events_workflow_id", "run_events", ["workflow_id"])
    op.create_index("ix_run_events_kind", "run_events", ["kind"])
    op.create_table(
        "mirrors",
        sa.PrimaryKeyConstraint("mirror_id"),
        not_null("mirror_id", ID),
        not_null("namespace", NAME),
        not_null("host", NAME),
        not_null("pid", INT),
        not_null("started_at", WHEN),
        not_null("heartbeat_at", WHEN),
        not_null("state", JSON),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(nullable("pause", JSON))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("pause")
    op.drop_table("mirrors")
    op.drop_index("ix_run_events_kind", table_name="run_events")
    op.drop_index("ix_run_events_workflow_id", table_name="run_events")
    op.drop_table("run_events")
    op.drop_index("ix_temporal_runs_workflow_id", table_name="temporal_runs")
    op.drop_table("temporal_runs")
