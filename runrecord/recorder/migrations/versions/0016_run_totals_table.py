"""run_totals: a run's calls summed per tool and per model, one row each, with the run's
start, agent and turn; the JSON sums on runs (0013) leave the started_at index

A cost report by tool or model over a time window reads one index range of these rows
instead of unpacking the JSON sums of every run in it, and a totals update writes a few
short rows instead of a new JSON value into the runs' covering index. The writer keeps the
rows equal to the calls (``update_run_totals``); this migration fills them for the runs
already recorded, with the writer's statements. The JSON sums stay on runs, no longer
written: the runs rows attested before hash them.
"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._columns import (
    BIGINT,
    FLOAT,
    INT,
    NAME,
    WORD,
    not_null,
    nullable,
)
from runrecord.recorder.migrations._types import WHEN

revision = "0016"
down_revision = "0015"

_STARTED = ["run_id", "agent_id", "root_run_id", "turn_id", "tool_call_count", "own_cost"]
_TOTALS_0013 = ["tool_totals", "model_totals"]

_JSON = """UPDATE runs SET {column} = t.totals
FROM (SELECT run_id, {object_agg}(key, {array}) AS totals
      FROM run_totals WHERE kind = '{kind}' GROUP BY run_id) AS t
WHERE runs.run_id = t.run_id"""
_DIALECT = {
    "postgresql": {"object_agg": "jsonb_object_agg", "array": "jsonb_build_array"},
    "sqlite": {"object_agg": "json_group_object", "array": "json_array"},
}


def _started_index(include: list[str]) -> None:
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.create_index(
        "ix_runs_started_at", "runs", ["started_at"], unique=False, postgresql_include=include
    )


def upgrade() -> None:
    # Imported here: the statements are the writer's own, so the backfill cannot differ.
    from runrecord.recorder._store import update_run_totals

    op.create_table(
        "run_totals",
        sa.Column("run_id", NAME, primary_key=True),
        sa.Column("kind", WORD, primary_key=True),
        sa.Column("key", NAME, primary_key=True),
        nullable("started_at", WHEN),
        nullable("agent_id", NAME),
        nullable("turn_id", NAME),
        not_null("calls", INT),
        not_null("cost", FLOAT),
        nullable("input_tokens", BIGINT),
        nullable("output_tokens", BIGINT),
    )
    update_run_totals(op.get_bind(), None)
    op.create_index(
        "ix_run_totals_started",
        "run_totals",
        ["kind", "started_at"],
        unique=False,
        postgresql_include=["key", "calls", "cost", "input_tokens", "output_tokens", "agent_id"],
    )
    op.create_index("ix_run_totals_turn_id", "run_totals", ["turn_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        _started_index([*_STARTED, "parent_run_id"])


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # 0015 reads the JSON sums again: bring them up to date from the rows.
    agg = _DIALECT["postgresql" if postgres else "sqlite"]
    for column, kind, items in (
        ("tool_totals", "tool", "calls, cost"),
        ("model_totals", "model", "calls, cost, input_tokens, output_tokens"),
    ):
        array = f"{agg['array']}({items})"
        op.execute(
            _JSON.format(column=column, kind=kind, object_agg=agg["object_agg"], array=array)
        )
    if postgres:
        _started_index(_STARTED + _TOTALS_0013)
    op.drop_table("run_totals")
