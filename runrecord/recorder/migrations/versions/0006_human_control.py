"""human control: refused approval attempts, rollback report, rerun link, compensation link"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._types import JSON

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerun_of", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("approval_rejections", JSON, nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("rollback", JSON, nullable=True))
        batch_op.create_index(batch_op.f("ix_runs_rerun_of"), ["rerun_of"], unique=False)

    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("compensates", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tool_calls", schema=None) as batch_op:
        batch_op.drop_column("compensates")

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_rerun_of"))
        batch_op.drop_column("rollback")
        batch_op.drop_column("approval_rejections")
        batch_op.drop_column("rerun_of")
