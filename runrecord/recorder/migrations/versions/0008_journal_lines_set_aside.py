"""journal cursors count the lines set aside, with the last one's problem"""

from alembic import op

from runrecord.recorder.migrations._columns import BIGINT, TEXT, count, nullable

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("journal_cursors", schema=None) as batch_op:
        batch_op.add_column(count("lines_set_aside", BIGINT))
        batch_op.add_column(nullable("last_set_aside", TEXT))


def downgrade() -> None:
    with op.batch_alter_table("journal_cursors", schema=None) as batch_op:
        batch_op.drop_column("last_set_aside")
        batch_op.drop_column("lines_set_aside")
