"""What the query commands share: a read-only connection, time options, JSON and table output."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from runrecord._settings import RunRecordError, Settings
from runrecord.records import Record, to_json_list

if TYPE_CHECKING:
    from rich.table import Table
    from sqlalchemy import Connection

JSON_HELP = "Print JSON for scripts instead of a table."
TIME_HELP = (
    "ISO 8601 (2026-11-24, 2026-11-24T10:00:00Z; no zone means UTC) or a time ago: 30m, 2h, 7d."
)


@contextmanager
def records() -> Iterator[Connection]:
    """A connection to the records database; database errors become one line."""
    from sqlalchemy.exc import SQLAlchemyError

    from runrecord.recorder import open_engine, require_current

    engine = open_engine(Settings.from_env().database_url)
    try:
        require_current(engine)
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as err:
        detail = str(getattr(err, "orig", None) or err).strip().splitlines()
        raise RunRecordError(
            f"records database query failed: {detail[0] if detail else type(err).__name__}"
        ) from None
    finally:
        engine.dispose()


def when(value: str | None, option: str) -> datetime | None:
    from runrecord.recorder import parse_when

    return parse_when(value, what=option) if value is not None else None


def echo_json(items: Sequence[Record] | Record) -> None:
    if isinstance(items, Record):
        typer.echo(json.dumps(items.to_json_dict(), indent=2))
    else:
        typer.echo(json.dumps(to_json_list(items), indent=2))


def answered(found: Sequence[Record], as_json: bool, nothing: str) -> bool:
    """Print ``found`` as JSON, or ``nothing`` when nothing was found; False when the table
    is still to print."""
    if as_json:
        echo_json(found)
    elif not found:
        typer.echo(nothing)
    return as_json or not found


def table(*columns: str) -> Table:
    from rich.table import Table

    t = Table(show_edge=False, header_style="bold")
    for name in columns:
        t.add_column(name, overflow="fold")
    return t


def add_row(t: Table, *cells: str) -> None:
    """Cells as plain text: recorded values are never read as rich markup."""
    from rich.text import Text

    t.add_row(*(Text(cell) for cell in cells))


def show_table(t: Table) -> None:
    from rich.console import Console

    Console().print(t)


def stamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def money(value: float) -> str:
    return f"${value:.6f}"


def millis(value: int | None) -> str:
    if value is None:
        return ""
    return f"{value} ms" if value < 10_000 else f"{value / 1000:.1f} s"
