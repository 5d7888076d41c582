"""Alembic environment: runrecord passes its own connection in ``config.attributes``."""

from alembic import context

from runrecord.recorder._tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `runrecord db upgrade`")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
