"""per-run call totals on runs: number of calls, own cost, and sums per tool and per model;
call filters' indexes lead to the run

Cost reports over many runs read one row per run instead of every call. The writer keeps
the totals equal to the run's tool_calls and model_calls rows (``update_run_totals``);
this migration fills them for the runs already recorded, with the writer's statements of
the time (0016 moved the sums per tool and per model to a table of their own).
"""

from alembic import op

from runrecord.recorder.migrations._columns import FLOAT, INT, count, json_map

revision = "0013"
down_revision = "0012"

# On PostgreSQL the reports over a time window read the totals from the index alone.
_STARTED = ["run_id", "agent_id", "root_run_id"]
_TOTALS = ["turn_id", "tool_call_count", "own_cost", "tool_totals", "model_totals"]


_CALL_FILTERS = ("tool", "side_effect", "approval_state", "mcp_server")

_FILL = (
    """UPDATE runs SET tool_call_count = a.calls, own_cost = a.cost, tool_totals = b.tools
    FROM (SELECT run_id, count(*) AS calls, coalesce(sum(cost), {zero}) AS cost
          FROM tool_calls GROUP BY run_id) AS a,
         (SELECT run_id, {object_agg}(tool, {array}(n, s)) AS tools
          FROM (SELECT run_id, tool, count(*) AS n, coalesce(sum(cost), {zero}) AS s
                FROM tool_calls GROUP BY run_id, tool) AS per_tool
          GROUP BY run_id) AS b
    WHERE runs.run_id = a.run_id AND runs.run_id = b.run_id""",
    """UPDATE runs SET model_totals = m.models
    FROM (SELECT run_id, {object_agg}(model, {array}(n, s, tin, tout)) AS models
          FROM (SELECT run_id, model, count(*) AS n, coalesce(sum(cost), {zero}) AS s,
                       coalesce(sum(input_tokens), 0) AS tin,
                       coalesce(sum(output_tokens), 0) AS tout
                FROM model_calls GROUP BY run_id, model) AS per_model
          GROUP BY run_id) AS m
    WHERE runs.run_id = m.run_id""",
)
_DIALECT = {
    "postgresql": {"object_agg": "jsonb_object_agg", "array": "jsonb_build_array", "zero": "0"},
    "sqlite": {"object_agg": "json_group_object", "array": "json_array", "zero": "0.0"},
}


def _started_index(include: list[str]) -> None:
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.create_index(
        "ix_runs_started_at", "runs", ["started_at"], unique=False, postgresql_include=include
    )


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(count("tool_call_count", INT))
        batch_op.add_column(count("own_cost", FLOAT))
        batch_op.add_column(json_map("tool_totals"))
        batch_op.add_column(json_map("model_totals"))
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _FILL:
        op.execute(statement.format(**_DIALECT["postgresql" if postgres else "sqlite"]))
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
