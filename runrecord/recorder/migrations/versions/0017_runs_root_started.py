"""the delegation-tree index also orders each tree's runs by start time

A cost report over a time window counts the sub-agent runs of the runs it picks that
started outside the window; with the start time in the tree index those are a short range
of each tree's entries, not every run of every tree.
"""

from alembic import op

revision = "0017"
down_revision = "0016"

_INCLUDE = ["run_id", "parent_run_id"]


def upgrade() -> None:
    op.drop_index("ix_runs_root_run_id", table_name="runs")
    op.create_index(
        "ix_runs_root_started",
        "runs",
        ["root_run_id", "started_at"],
        unique=False,
        postgresql_include=_INCLUDE,
    )


def downgrade() -> None:
    op.drop_index("ix_runs_root_started", table_name="runs")
    op.create_index(
        "ix_runs_root_run_id", "runs", ["root_run_id"], unique=False, postgresql_include=_INCLUDE
    )
