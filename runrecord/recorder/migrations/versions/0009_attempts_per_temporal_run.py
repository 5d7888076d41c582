"""attempts and artifacts know the Temporal run whose worker made them


Every Temporal run of a workflow id numbers its calls and attempts from 1 (a reset's new
run, a sub-agent run again under the same id), so an attempt's key includes its Temporal run.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    # SQLite's key has no name: the table is copied with the new key.
    named = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("tool_call_attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("temporal_run_id", sa.String(length=64), nullable=False, server_default="")
        )
        if named:
            batch_op.drop_constraint("tool_call_attempts_pkey", type_="primary")
        batch_op.create_primary_key(
            "tool_call_attempts_pkey", ["run_id", "tool_call_id", "temporal_run_id", "attempt"]
        )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("temporal_run_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("temporal_run_id")
    # The old key holds one attempt per number: later Temporal runs' attempts go.
    op.execute(
        "DELETE FROM tool_call_attempts WHERE temporal_run_id <> '' AND temporal_run_id NOT IN "
        "(SELECT min(temporal_run_id) FROM tool_call_attempts GROUP BY run_id, tool_call_id)"
    )
    named = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("tool_call_attempts", schema=None, recreate="always") as batch_op:
        if named:
            batch_op.drop_constraint("tool_call_attempts_pkey", type_="primary")
        batch_op.drop_column("temporal_run_id")
        batch_op.create_primary_key(
            "tool_call_attempts_pkey", ["run_id", "tool_call_id", "attempt"]
        )
