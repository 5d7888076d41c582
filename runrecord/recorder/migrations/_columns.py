"""Columns and column groups the migrations spell the same way. Each call makes new Column
objects (a Column belongs to one table). Applied migrations depend on these: change them only
by adding new ones."""

from typing import Any

import sqlalchemy as sa

from runrecord.recorder.migrations._types import JSON, WHEN

ID = sa.String(length=64)
"""A tool call id, a Temporal run id, a sha256 digest."""

NAME = sa.String(length=255)
"""A run (workflow) id, an agent id, a tool name, an identity, a host."""

WORD = sa.String(length=16)
"""One value of a short vocabulary: a side effect, an approval state, a status."""

LABEL = sa.String(length=32)
"""One value of a longer vocabulary: a final status, an event kind, an operation."""

TEXT = sa.Text()
INT = sa.Integer()
BIGINT = sa.BigInteger()
FLOAT = sa.Float()
BOOL = sa.Boolean()


def not_null(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=False)


def nullable(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=True)


def json_list(name: str) -> sa.Column[Any]:
    """A JSON list, empty unless given."""
    return sa.Column(name, JSON, nullable=False, server_default="[]")


def json_map(name: str) -> sa.Column[Any]:
    """A JSON object, empty unless given."""
    return sa.Column(name, JSON, nullable=False, server_default="{}")


def flag(name: str, default: bool = False) -> sa.Column[Any]:
    return sa.Column(
        name, BOOL, nullable=False, server_default=sa.true() if default else sa.false()
    )


def count(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    """A number, 0 unless given."""
    return sa.Column(name, type_, nullable=False, server_default="0")


CALL_KEY = ("run_id", "tool_call_id")
"""A tool call: the run (workflow id) and the call's id in it."""

TEMPORAL_RUN_KEY = ("namespace", "workflow_id", "temporal_run_id")
"""One Temporal run of a workflow id, in its namespace."""


def call_key() -> list[sa.Column[Any]]:
    """The columns of ``CALL_KEY``."""
    run_id, tool_call_id = CALL_KEY
    return [not_null(run_id, NAME), not_null(tool_call_id, ID)]


def temporal_run_key() -> list[sa.Column[Any]]:
    """The columns of ``TEMPORAL_RUN_KEY``."""
    namespace, workflow_id, temporal_run_id = TEMPORAL_RUN_KEY
    return [
        not_null(namespace, NAME),
        not_null(workflow_id, NAME),
        not_null(temporal_run_id, ID),
    ]


def span() -> list[sa.Column[Any]]:
    """When a run, call or attempt started and ended, if it did."""
    return [nullable("started_at", WHEN), nullable("ended_at", WHEN)]
