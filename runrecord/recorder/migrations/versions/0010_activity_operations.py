"""operators' actions on pending calls (activity pause, unpause, reset, options), and
compensations of a sub-agent's calls (`compensates` names the sub-agent run too)
"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._columns import (
    CALL_KEY,
    INT,
    LABEL,
    NAME,
    TEXT,
    call_key,
    not_null,
    nullable,
)
from runrecord.recorder.migrations._types import JSON, WHEN

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "activity_operations",
        sa.PrimaryKeyConstraint(*CALL_KEY, "operation", "at"),
        *call_key(),
        not_null("operation", LABEL),
        not_null("at", WHEN),
        nullable("identity", NAME),
        nullable("reason", TEXT),
        nullable("attempt", INT),
        not_null("detail", JSON),
    )
    _compensates_length(64, 1024)


def downgrade() -> None:
    _compensates_length(1024, 64)
    op.drop_table("activity_operations")


def _compensates_length(old: int, new: int) -> None:
    with op.batch_alter_table("tool_calls") as batch_op:
        batch_op.alter_column(
            "compensates",
            existing_type=sa.String(length=old),
            type_=sa.String(length=new),
            existing_nullable=True,
        )
