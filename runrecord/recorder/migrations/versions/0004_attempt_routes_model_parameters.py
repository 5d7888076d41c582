"""attempt routes, model call parameters, local tool calls"""

from alembic import op

from runrecord.recorder.migrations._columns import NAME, flag, json_map, nullable

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("tool_call_attempts", schema=None) as batch_op:
        batch_op.add_column(nullable("route", NAME))

    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.add_column(json_map("parameters"))

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.add_column(flag("local"))


def downgrade() -> None:
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_column("local")

    with op.batch_alter_table("model_calls", schema=None) as batch_op:
        batch_op.drop_column("parameters")

    with op.batch_alter_table("tool_call_attempts", schema=None) as batch_op:
        batch_op.drop_column("route")
