"""``runrecord db`` and ``runrecord schema``: the records database and the record contract."""

from __future__ import annotations

import json

import typer

from runrecord._settings import Settings

db_app = typer.Typer(help="Manage the records database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations to RUNRECORD_DATABASE_URL."""
    from runrecord.recorder import open_engine, upgrade

    engine = open_engine(Settings.from_env().database_url)
    before, after = upgrade(engine)
    if before == after:
        typer.echo(f"records database already at revision {after}")
    else:
        typer.echo(f"records database upgraded: {before or 'empty'} -> {after}")


@db_app.command("current")
def db_current(
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Show the records database's schema revision and this code's."""
    from runrecord.recorder import current_revision, head_revision, open_engine

    engine = open_engine(Settings.from_env().database_url)
    current, head = current_revision(engine), head_revision()
    if as_json:
        typer.echo(json.dumps({"current": current, "head": head, "upToDate": current == head}))
    else:
        typer.echo(f"current: {current or 'empty'}  head: {head}")


def schema() -> None:
    """Print the JSON Schema of a RunRecord."""
    from runrecord.records import run_record_json_schema

    typer.echo(json.dumps(run_record_json_schema(), indent=2))
