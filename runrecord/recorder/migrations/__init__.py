"""The records database's Alembic migrations (``versions/``) and what they share."""
