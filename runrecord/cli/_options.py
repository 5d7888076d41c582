"""Options the query commands share, spelled once: ``--json``, and filters that are off
unless given."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from runrecord.cli._query import JSON_HELP

AsJson = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
"""``--json``: print JSON for scripts instead of a table."""


def filter_option(flag: str, help: str, **options: Any) -> Any:
    """A filter off unless given: ``--agent NAME`` keeps the runs of agent NAME."""
    return typer.Option(None, flag, help=help, **options)
