"""attempt routes, model call parameters, local tool calls

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 20:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tool_call_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("route", sa.String(length=255), nullable=True))

    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "parameters",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="{}",
            )
        )

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("local", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_column("local")

    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.drop_column("parameters")

    with op.batch_alter_table("tool_call_attempts", schema=None) as batch_op:
        batch_op.drop_column("route")
