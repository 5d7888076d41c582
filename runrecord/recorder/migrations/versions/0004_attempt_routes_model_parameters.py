"""attempt routes, model call parameters, local tool calls"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._types import JSON

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("tool_call_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("route", sa.String(length=255), nullable=True))

    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "parameters",
                JSON,
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
