"""attestations: signed, chained digests of each run's rows, and the mirrors' public keys;
on PostgreSQL a trigger refuses UPDATE and DELETE of both (append-only)
"""

import sqlalchemy as sa
from alembic import op

from runrecord.recorder.migrations._columns import ID, INT, NAME, WORD, not_null, nullable
from runrecord.recorder.migrations._types import JSON, WHEN

revision = "0014"
down_revision = "0013"

_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION runrecord_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'runrecord: % is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "mirror_keys",
        sa.Column("key_id", sa.String(length=64), primary_key=True),
        not_null("public_key", ID),
        nullable("host", NAME),
        not_null("created_at", WHEN),
    )
    op.create_table(
        "attestations",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        not_null("key_id", ID),
        not_null("run_id", NAME),
        not_null("namespace", NAME),
        not_null("reason", WORD),
        not_null("digest", ID),
        not_null("row_count", INT),
        not_null("leaves", JSON),
        not_null("previous", ID),
        not_null("entry_hash", ID),
        not_null("signature", sa.String(length=128)),
        not_null("created_at", WHEN),
    )
    op.create_index("ix_attestations_run_seq", "attestations", ["run_id", "seq"])
    op.create_index("ix_attestations_key_seq", "attestations", ["key_id", "seq"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND_ONLY)
        for table in ("attestations", "mirror_keys"):
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION runrecord_append_only()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("attestations", "mirror_keys"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS runrecord_append_only()")
    op.drop_table("attestations")
    op.drop_table("mirror_keys")
