"""the approvals inbox's decided history: on PostgreSQL, an index of the decided calls,
latest end first

The inbox reads the newest decided calls; without it PostgreSQL sorted every decided call
ever recorded on each visit.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"

_DECIDED = "approval_state IN ('approved', 'denied', 'expired')"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_tool_calls_decided",
            "tool_calls",
            [sa.text("ended_at DESC NULLS LAST")],
            unique=False,
            postgresql_where=sa.text(_DECIDED),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_tool_calls_decided", table_name="tool_calls")
