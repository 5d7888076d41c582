"""operators' actions on pending calls (activity pause, unpause, reset, options), and
compensations of a sub-agent's calls (`compensates` names the sub-agent run too)
"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._types import JSON, WHEN

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "activity_operations",
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("tool_call_id", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("identity", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "tool_call_id", "operation", "at"),
    )
    with op.batch_alter_table("tool_calls") as batch_op:
        batch_op.alter_column(
            "compensates",
            existing_type=sa.String(length=64),
            type_=sa.String(length=1024),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("tool_calls") as batch_op:
        batch_op.alter_column(
            "compensates",
            existing_type=sa.String(length=1024),
            type_=sa.String(length=64),
            existing_nullable=True,
        )
    op.drop_table("activity_operations")
