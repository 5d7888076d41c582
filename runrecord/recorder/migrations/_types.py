"""Column types every migration spells the same way. Applied migrations depend on these:
change them only by adding new ones."""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
"""JSON everywhere, JSONB on PostgreSQL."""

WHEN = sa.DateTime(timezone=True)
"""A point in time, with its time zone."""
