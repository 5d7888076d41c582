"""lineage edges and mcp server"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._types import JSON

revision = "0002"
down_revision = "0001"


def upgrade() -> None:

    op.create_table(
        "lineage_edges",
        sa.Column("artifact_id", sa.String(length=64), nullable=False),
        sa.Column("consumer_run_id", sa.String(length=255), nullable=False),
        sa.Column("consumer_tool_call_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("artifact_id", "consumer_run_id", "consumer_tool_call_id"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "consumes",
                JSON,
                nullable=False,
                server_default="[]",
            )
        )

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mcp_server", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column(
                "consumes",
                JSON,
                nullable=False,
                server_default="[]",
            )
        )
        batch_op.create_index(batch_op.f("ix_tool_calls_mcp_server"), ["mcp_server"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_calls_mcp_server"))
        batch_op.drop_column("consumes")
        batch_op.drop_column("mcp_server")

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("consumes")

    op.drop_table("lineage_edges")
