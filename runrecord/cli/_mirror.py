"""``runrecord mirror``: project Temporal history into the records database."""

from __future__ import annotations

import asyncio

import typer

from runrecord._settings import Settings
from runrecord.cli._run import _until_signalled
from runrecord.cli._stack import check_redaction, connect, records_engine, temporal_cluster
from runrecord.recorder import BlobStore, Mirror, upgrade

mirror_app = typer.Typer(help="Mirror Temporal history into the records.", no_args_is_help=True)


@mirror_app.command("run")
def mirror_run(
    poll_interval: float = typer.Option(1.0, help="Seconds between checks for new history."),
) -> None:
    """Follow agent runs and keep their records current, until Ctrl-C."""
    settings = Settings.from_env()
    check_redaction()

    async def main() -> None:
        engine = records_engine(settings)
        async with temporal_cluster(settings, start_if_missing=False) as temporal:
            client = await connect(temporal.address, settings.namespace)
            await asyncio.to_thread(upgrade, engine)
            mirror = Mirror(
                client,
                engine,
                journal_dir=settings.journal_dir,
                blobs=BlobStore(settings.blobs_dir),
                poll_interval=poll_interval,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(mirror.run(stop))
            typer.echo(f"Mirroring {temporal.address} namespace {settings.namespace}.")
            await _until_signalled()
            stop.set()
            await task

    asyncio.run(main())
