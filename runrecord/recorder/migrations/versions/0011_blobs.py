"""redacted payload copies in the records database (the `blobs` table, keyed by sha256)

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("used_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index("ix_blobs_used_at", "blobs", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_blobs_used_at", table_name="blobs")
    op.drop_table("blobs")
