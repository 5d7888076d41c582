"""``runrecord journal``: ship a worker's spool to the records database by hand."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from runrecord._settings import RunRecordError, Settings

journal_app = typer.Typer(
    help="The workers' journal: the local spool of attempts and artifacts.", no_args_is_help=True
)


@journal_app.command("drain")
def journal_drain(
    directory: Path = typer.Argument(
        ...,
        help="A journal folder ($RUNRECORD_HOME/journal of a worker), e.g. from a dead "
        "worker's disk.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Ship every attempt and artifact line a journal folder holds that the records lack.

    A worker ships its own journal as it goes, and what earlier workers left in its
    folder when it starts. Use this for a folder no worker will start on again (a
    replaced machine's disk). Lines already shipped are skipped (each file's cursor is
    in the records database), so running it twice, or beside a live worker, is safe.

    \b
    Example:
      runrecord journal drain /mnt/old-worker/runrecord/journal
    """
    from runrecord.cli._stack import records_engine
    from runrecord.recorder import Shipper
    from runrecord.recorder._database import is_outage
    from runrecord.worker import journal_files

    if not directory.is_dir():
        raise RunRecordError(f"no journal folder at {directory}")
    files = journal_files(directory)
    engine = records_engine(Settings.from_env())
    shipper = Shipper(engine, directory)
    try:
        shipped = shipper.drain()
    except Exception as err:
        if not is_outage(err):
            raise
        raise RunRecordError(
            f"cannot reach the records database: {str(err).strip().splitlines()[0]}; "
            "nothing was lost, run it again"
        ) from None
    if as_json:
        typer.echo(json.dumps({"files": len(files), "linesShipped": shipped}))
    else:
        typer.echo(f"shipped {shipped} journal line(s) from {len(files)} file(s) in {directory}")
