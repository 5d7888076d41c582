"""redacted payload copies in the records database: the `blobs` table, keyed by sha256
(`RUNRECORD_BLOBS=postgres`, the default on PostgreSQL)
"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._columns import BIGINT, ID, not_null
from runrecord.recorder.migrations._types import WHEN

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.PrimaryKeyConstraint("sha256"),
        not_null("sha256", ID),
        not_null("content", sa.LargeBinary()),
        not_null("size", BIGINT),
        not_null("created_at", WHEN),
        not_null("used_at", WHEN),
    )
    op.create_index("ix_blobs_used_at", "blobs", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_blobs_used_at", table_name="blobs")
    op.drop_table("blobs")
