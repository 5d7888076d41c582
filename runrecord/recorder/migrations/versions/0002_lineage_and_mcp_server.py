"""lineage edges and mcp server"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._columns import ID, NAME, json_list, not_null, nullable

revision = "0002"
down_revision = "0001"


def upgrade() -> None:

    op.create_table(
        "lineage_edges",
        sa.PrimaryKeyConstraint("artifact_id", "consumer_run_id", "consumer_tool_call_id"),
        not_null("artifact_id", ID),
        not_null("consumer_run_id", NAME),
        not_null("consumer_tool_call_id", ID),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(json_list("consumes"))

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.add_column(nullable("mcp_server", NAME))
        batch_op.add_column(json_list("consumes"))
        batch_op.create_index(batch_op.f("ix_tool_calls_mcp_server"), ["mcp_server"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_calls_mcp_server"))
        batch_op.drop_column("consumes")
        batch_op.drop_column("mcp_server")

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("consumes")

    op.drop_table("lineage_edges")
