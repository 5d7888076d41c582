"""human control: refused approval attempts, rollback report, rerun link, compensation link

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerun_of", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("approval_rejections", _JSON, nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("rollback", _JSON, nullable=True))
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
