"""human control: refused approval attempts, rollback report, rerun link, compensation link"""

from alembic import op

from runrecord.recorder.migrations._columns import ID, NAME, json_list, nullable
from runrecord.recorder.migrations._types import JSON

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(nullable("rerun_of", NAME))
        batch_op.add_column(json_list("approval_rejections"))
        batch_op.add_column(nullable("rollback", JSON))
        batch_op.create_index(batch_op.f("ix_runs_rerun_of"), ["rerun_of"], unique=False)

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.add_column(nullable("compensates", ID))


def downgrade() -> None:
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_column("compensates")

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_rerun_of"))
        batch_op.drop_column("rollback")
        batch_op.drop_column("approval_rejections")
        batch_op.drop_column("rerun_of")
