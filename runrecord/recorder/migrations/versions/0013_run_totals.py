"""per-run call totals on runs: number of calls, own cost, and sums per tool and per model;
call filters' indexes lead to the run

Cost reports over many runs read one row per run instead of every call. The writer keeps
the totals equal to the run's tool_calls and model_calls rows (``update_run_totals``);
this migration fills them for the runs already recorded, with the same statements.
"""

from alembic import op

from runrecord.recorder.migrations._columns import FLOAT, INT, count, json_map

revision = "0013"
down_revision = "0012"

# On PostgreSQL the reports over a time window read the totals from the index alone.
_STARTED = ["run_id", "agent_id", "root_run_id"]
_TOTALS = ["turn_id", "tool_call_count", "own_cost", "tool_totals", "model_totals"]


_CALL_FILTERS = ("tool", "side_effect", "approval_state", "mcp_server")


def _started_index(include: list[str]) -> None:
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.create_index(
        "ix_runs_started_at", "runs", ["started_at"], unique=False, postgresql_include=include
    )


def upgrade() -> None:
    # Imported here: the statements are the writer's own, so the backfill cannot differ.
    from runrecord.recorder._store import update_run_totals

    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(count("tool_call_count", INT))
        batch_op.add_column(count("own_cost", FLOAT))
        batch_op.add_column(json_map("tool_totals"))
        batch_op.add_column(json_map("model_totals"))
    update_run_totals(op.get_bind(), None)
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        _started_index(_STARTED + _TOTALS)
    with op.batch_alter_table("tool_calls") as batch_op:
        for column in _CALL_FILTERS:
            batch_op.drop_index(f"ix_tool_calls_{column}")
            batch_op.create_index(
                f"ix_tool_calls_{column}",
                [column, "run_id"],
                unique=False,
                postgresql_include=["approval_state"] if column != "approval_state" else [],
            )
    with op.batch_alter_table("runs") as batch_op:
        batch_op.create_index("ix_runs_run_started", ["run_id", "started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_index("ix_runs_run_started")
    with op.batch_alter_table("tool_calls") as batch_op:
        for column in _CALL_FILTERS:
            batch_op.drop_index(f"ix_tool_calls_{column}")
            batch_op.create_index(f"ix_tool_calls_{column}", [column], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        _started_index(_STARTED)
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("model_totals")
        batch_op.drop_column("tool_totals")
        batch_op.drop_column("own_cost")
        batch_op.drop_column("tool_call_count")
