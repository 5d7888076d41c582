"""mcp calls: network flag, MCP call details, schema drift, servers a run listed"""

from alembic import op

from runrecord.recorder.migrations._columns import flag, json_list, nullable
from runrecord.recorder.migrations._types import JSON

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(json_list("mcp_servers"))

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.add_column(flag("network"))
        batch_op.add_column(nullable("mcp", JSON))
        batch_op.add_column(flag("schema_drift"))
        batch_op.create_index(
            batch_op.f("ix_tool_calls_schema_drift"), ["schema_drift"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_calls_schema_drift"))
        batch_op.drop_column("schema_drift")
        batch_op.drop_column("mcp")
        batch_op.drop_column("network")

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("mcp_servers")
