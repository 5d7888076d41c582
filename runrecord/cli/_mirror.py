"""``runrecord mirror``: project Temporal history into the records database, and check it."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer

from runrecord._settings import RunRecordError, Settings
from runrecord.cli._query import (
    JSON_HELP,
    TIME_HELP,
    add_row,
    records,
    show_table,
    table,
)
from runrecord.cli._run import _until_signalled

if TYPE_CHECKING:
    from runrecord.recorder import Mirror

mirror_app = typer.Typer(
    help="Mirror Temporal history into the records, rebuild them from it, and check them.",
    no_args_is_help=True,
)
T = TypeVar("T")


def _with_mirror(job: Callable[[Mirror], Awaitable[T]], *, write: bool) -> T:
    """Run ``job`` with a mirror on the configured Temporal and records database."""
    from runrecord.cli._cluster import connect, temporal_cluster
    from runrecord.cli._stack import blob_store, check_redaction, records_engine
    from runrecord.recorder import Mirror, upgrade

    settings = Settings.from_env()
    check_redaction()

    async def main() -> T:
        engine = records_engine(settings)
        async with temporal_cluster(settings, start_if_missing=False) as temporal:
            client = await connect(temporal, payload_codec=settings.payload_codec)
            if write:
                await asyncio.to_thread(upgrade, engine)
            # No journal: the workers' shippers write attempts and artifacts.
            mirror = Mirror(client, engine, blobs=blob_store(settings, engine) if write else None)
            return await job(mirror)

    return asyncio.run(main())


def _check_targets(run_ids: list[str], every: bool, command: str) -> None:
    if every and run_ids:
        raise RunRecordError(f"mirror {command}: give run ids or --all, not both")
    if not every and not run_ids:
        raise RunRecordError(f"mirror {command}: give one or more run ids, or --all")


def _targets(mirror: Mirror, run_ids: list[str], every: bool) -> list[str]:
    return mirror.all_run_ids() if every else run_ids


async def _known(mirror: Mirror, run_ids: list[str]) -> None:
    """Refuse run ids that neither the records nor Temporal know (a typo, most likely)."""
    recorded = set(await asyncio.to_thread(mirror.all_run_ids))
    for run_id in run_ids:
        if run_id not in recorded and not await mirror.temporal_run_ids(run_id):
            raise RunRecordError(f"no run {run_id} in the records or in Temporal")


@mirror_app.command("run")
def mirror_run(
    poll_interval: float = typer.Option(
        1.0, min=0.05, help="Seconds between visibility checks for runs to follow."
    ),
) -> None:
    """Follow agent runs and keep their records current, until Ctrl-C.

    Each run's history is followed with long polls, so a finished call is in the
    records within a second. On PostgreSQL the mirror hears from workers anywhere
    (LISTEN/NOTIFY) when a run starts, so it follows it at once. It needs no local
    state: attempts and artifacts come from the workers' shippers. Start several on
    the same records database to share the runs: they split them by heartbeats (see
    `runrecord mirror status`).
    """

    async def follow(mirror: Mirror) -> None:
        mirror.poll_interval = poll_interval
        stop = asyncio.Event()
        task = asyncio.create_task(mirror.run(stop))
        typer.echo(f"Mirroring namespace {mirror.namespace} as {mirror.mirror_id}.")
        await _until_signalled()
        stop.set()
        await task

    _with_mirror(follow, write=True)


@mirror_app.command("rebuild")
def mirror_rebuild(
    run_ids: list[str] = typer.Argument(None, help="Run ids (workflow ids) to rebuild."),
    every: bool = typer.Option(False, "--all", help="Every run in the records."),
    concurrency: int = typer.Option(4, min=1, max=64, help="Runs fetched at once."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Re-project runs from Temporal history and rewrite their rows.

    A run whose history Temporal no longer has is left as the records hold it. A run
    whose rows the records database refuses is named, the others are written, and the
    exit status is 1.

    \b
    Examples:
      runrecord mirror rebuild release-42
      runrecord mirror rebuild --all
    """

    _check_targets(run_ids or [], every, "rebuild")

    async def rebuild(mirror: Mirror) -> None:
        await _known(mirror, run_ids or [])
        targets = await asyncio.to_thread(_targets, mirror, run_ids or [], every)
        done = 0
        kept: list[str] = []
        refused: dict[str, str] = {}
        events = 0
        step = max(1, min(100, len(targets) // 20 or 1))
        for start in range(0, len(targets), step):
            report = await mirror.rebuild(targets[start : start + step], concurrency=concurrency)
            done += report.runs
            events += report.events
            kept.extend(report.kept)
            refused.update(report.refused)
            if len(targets) > step and not as_json:
                print(
                    f"rebuilt {done + len(kept)}/{len(targets)} runs ({events} events)",
                    file=sys.stderr,
                )
        if mirror.copies_held:  # the blob store is out: one last try
            await asyncio.to_thread(mirror.keep_copies, {})
        missed = len(mirror.copies_held) + mirror.copies_dropped
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "rebuilt": done,
                        "events": events,
                        "historyGone": kept,
                        "refused": refused,
                        "copiesNotKept": missed,
                    }
                )
            )
        else:
            typer.echo(f"rebuilt {done} run(s) from {events} history events")
            for run_id in kept:
                typer.echo(f"kept {run_id}: Temporal no longer has its history")
            for run_id, error in refused.items():
                typer.echo(f"not written {run_id}: the records refused it: {error}")
        if missed:
            print(
                f"runrecord: {missed} payload copies not kept ({mirror.blob_store_error}); "
                "the records are written: rebuild again when the blob store is back",
                file=sys.stderr,
            )
        if refused or missed:
            raise typer.Exit(1)

    _with_mirror(rebuild, write=True)


@mirror_app.command("verify")
def mirror_verify(
    run_ids: list[str] = typer.Argument(None, help="Run ids (workflow ids) to check."),
    every: bool = typer.Option(
        False, "--all", help="Every run in the records, and every agent run Temporal has."
    ),
    since: str = typer.Option(
        None,
        "--since",
        help=f"With --all: Temporal's agent runs started at or after (default 7d). {TIME_HELP}",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Compare the records with a fresh projection of history; exit 1 on any difference.

    Every difference is printed, one per line: a call, approval, attempt or event the
    records lack or hold differently. With --all, every agent run Temporal lists on the
    namespace (started within --since) that the records lack is one too. Rows of
    Temporal runs whose history is gone (retention) are not differences: the records
    keep them on purpose.
    """

    from runrecord.recorder import parse_when

    _check_targets(run_ids or [], every, "verify")
    if since is not None and not every:
        raise RunRecordError("mirror verify: --since goes with --all")
    window = parse_when(since or "7d", what="--since")
    missing: list[str] = []

    async def verify(mirror: Mirror) -> dict[str, list[str]]:
        await _known(mirror, run_ids or [])
        if every:
            missing.extend(await mirror.missing_run_ids(window))
        targets = await asyncio.to_thread(_targets, mirror, run_ids or [], every)
        found: dict[str, list[str]] = {}
        for n, run_id in enumerate(targets, 1):
            found[run_id] = await mirror.verify(run_id)
            if len(targets) >= 50 and n % 50 == 0 and not as_json:
                print(f"checked {n}/{len(targets)} runs", file=sys.stderr)
        return found

    found = _with_mirror(verify, write=False)
    differences = [f"{run_id}: in Temporal, missing from the records" for run_id in missing]
    differences += [line for lines in found.values() for line in lines]
    if as_json:
        typer.echo(
            json.dumps(
                {"checked": len(found), "missing": missing, "differences": differences}, indent=2
            )
        )
    else:
        for line in differences:
            typer.echo(line)
        typer.echo(
            f"{len(found)} run(s) checked: "
            + (f"{len(differences)} difference(s)" if differences else "no difference")
        )
    if differences:
        raise typer.Exit(1)


@mirror_app.command("status")
def mirror_status_command(
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show the running mirrors, the runs each follows with its lag, the runs each holds in
    quarantine, the payload copies each holds while the blob store is out, recent errors,
    and the journal lines set aside.

    Lag is now minus the time of the last event projected for the run. A quarantined run
    is one whose rows the records database refuses; it is retried with backoff and
    leaves the quarantine once written.
    """
    from runrecord.cli._cluster import TemporalProfile
    from runrecord.recorder._membership import mirror_status

    namespace = TemporalProfile.load().namespace
    with records() as conn:
        status = mirror_status(conn, namespace)
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    if not status["mirrors"]:
        typer.echo(f"no mirror has reported on namespace {status['namespace']}")
    for m in status["mirrors"]:
        state = "alive" if m["alive"] else "silent"
        typer.echo(
            f"{m['mirrorId']} ({state}, heartbeat {m['heartbeatAt']}): "
            f"{m['runsFollowed']} run(s) followed"
        )
        if m["runs"]:
            t = table("run", "temporal run", "last event", "lag", "error")
            for r in m["runs"]:
                lag = "" if r["lagMs"] is None else f"{r['lagMs']} ms"
                add_row(
                    t,
                    r["workflowId"],
                    r["temporalRunId"],
                    str(r["lastEventId"]),
                    lag,
                    r.get("error") or "",
                )
            show_table(t)
        for q in m["quarantined"]:
            typer.echo(
                f"  quarantined {q['runId']}: {q['error']} "
                f"(since {q['since']}, {q['attempts']} tries; retried with backoff)"
            )
        copies = m.get("payloadCopies")
        if copies:
            line = f"  payload copies: {copies['held']} held ({copies['bytes']} bytes)"
            if copies.get("error"):
                line += f" while the blob store is out: {copies['error']}"
            if copies["dropped"]:
                line += (
                    f"; {copies['dropped']} dropped (`runrecord mirror rebuild` writes them "
                    "again while Temporal keeps the history)"
                )
            typer.echo(line)
        for error in m["errors"][-5:]:
            typer.echo(f"  error: {error}")
    if status["openRunsNotFollowed"]:
        typer.echo(
            f"{len(status['openRunsNotFollowed'])} open run(s) in the records "
            "followed by no live mirror"
        )
    journal = status["journal"]
    if journal["linesSetAside"]:
        typer.echo(
            f"{journal['linesSetAside']} journal line(s) set aside "
            "(copied to set-aside/ in the journal folder):"
        )
        for f in journal["files"]:
            typer.echo(f"  {f['file']}: {f['linesSetAside']}, last at {f['lastProblem']}")
