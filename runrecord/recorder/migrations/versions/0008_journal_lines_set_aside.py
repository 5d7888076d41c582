"""journal cursors count the lines set aside, with the last one's problem"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("journal_cursors", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lines_set_aside", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("last_set_aside", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("journal_cursors", schema=None) as batch_op:
        batch_op.drop_column("last_set_aside")
        batch_op.drop_column("lines_set_aside")
