"""redacted payload copies in the records database: the `blobs` table, keyed by sha256
(`RUNRECORD_BLOBS=postgres`, the default on PostgreSQL)
"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._types import WHEN

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("used_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index("ix_blobs_used_at", "blobs", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_blobs_used_at", table_name="blobs")
    op.drop_table("blobs")
