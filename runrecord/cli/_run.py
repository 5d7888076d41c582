"""``runrecord dev``, ``demo`` and ``worker``: run agents with recording on."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import TYPE_CHECKING, Any

import typer

from runrecord._settings import RunRecordError, Settings
from runrecord.cli._approvals import pending_approvals, send_decision
from runrecord.cli._cluster import TemporalProfile, temporal_cluster
from runrecord.cli._ui import DEFAULT_HOST, DEFAULT_PORT, serve_console

if TYPE_CHECKING:
    from temporalio.client import Client

# Apart from $RUNRECORD_TASK_QUEUE: tasks of a user's agents there must never reach a worker
# that does not have their workflows.
EXAMPLES_TASK_QUEUE = "runrecord-examples"
DEMO_OPERATOR = "demo-operator"
# What the demo's operator decides, per tool: the same signal `runrecord approve`/`deny` sends.
DEMO_DECISIONS = {
    "deploy": ("approve", "staging deploy of a tested build"),
    "charge_invoice": ("deny", "no release fee for staging"),
}


async def _operate(client: Client, run_ids: list[str], finished: asyncio.Future[Any]) -> int:
    """Decide, as the demo operator, every call the demo's runs ask approval for."""
    decided: set[tuple[str, str]] = set()
    while not finished.done():
        for run_id in run_ids:
            try:
                waiting = await pending_approvals(client, run_id)
            except RunRecordError:
                continue  # the sub-agent has not started yet
            for request in waiting:
                if (run_id, request.tool_call_id) in decided:
                    continue
                decision, reason = DEMO_DECISIONS.get(request.tool, ("deny", "not in the demo"))
                await send_decision(
                    client,
                    run_id,
                    request.tool_call_id,
                    decision,
                    approver=DEMO_OPERATOR,
                    reason=reason,
                )
                decided.add((run_id, request.tool_call_id))
        await asyncio.sleep(0.1)
    return len(decided)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def dev(
    port: int = typer.Option(
        None, "--port", min=1, max=65535, help="gRPC port of the dev server (default 7233)."
    ),
    ui_port: int = typer.Option(
        None, "--ui-port", min=1, max=65535, help="Port of its Web UI (default 8233)."
    ),
    console_port: int = typer.Option(
        DEFAULT_PORT, "--console-port", min=1, max=65535, help="Port of runrecord's console."
    ),
) -> None:
    """Run the embedded stack in the foreground: Temporal dev server, worker, mirror.

    The dev server keeps its state in $RUNRECORD_HOME/temporal.sqlite3 (default
    ~/.runrecord); a server already listening on the port is used instead. With a
    cluster configured (TEMPORAL_ADDRESS, or a temporal.toml profile), that cluster is
    used. The example agents run on their own task queue, so a `runrecord worker` on
    $RUNRECORD_TASK_QUEUE gets its runs alone.
    Ctrl-C stops everything.
    """
    from runrecord.cli._stack import load_agents, recording_worker, records_engine

    settings = Settings.from_env()
    profile = TemporalProfile.load()
    if profile.address and (port or ui_port):
        raise RunRecordError(
            "--port and --ui-port are for the embedded dev server: a cluster is configured "
            f"({profile.source})"
        )

    async def main() -> None:
        engine = records_engine(settings)
        agents = load_agents(None)
        async with temporal_cluster(
            settings, start_if_missing=True, port=port, ui_port=ui_port, profile=profile
        ) as temporal:
            async with recording_worker(
                settings, temporal, agents, task_queue=EXAMPLES_TASK_QUEUE, engine=engine
            ) as (_, follower):
                typer.echo(f"Temporal gRPC:    {temporal.address}")
                typer.echo(f"Temporal UI:      {temporal.ui_url or '(see your cluster)'}")
                typer.echo(f"Records database: {engine.url.render_as_string(hide_password=True)}")
                if follower.blobs is not None:
                    typer.echo(f"Blob store:       {follower.blobs.where}")
                typer.echo(f"Task queue:       {EXAMPLES_TASK_QUEUE} (the example agents)")
                if port:
                    typer.echo(f"Other commands:   export TEMPORAL_ADDRESS={temporal.address}")
                os.environ.setdefault("TEMPORAL_ADDRESS", temporal.address)
                console = asyncio.create_task(
                    serve_console(
                        settings, host=DEFAULT_HOST, port=console_port, trusted_user_header=None
                    )
                )
                typer.echo(f"Console:          http://{DEFAULT_HOST}:{console_port}/")
                typer.echo("Worker and mirror running. Press Ctrl-C to stop.")
                await _until_signalled()
                typer.echo("Stopping ...")
                console.cancel()

    asyncio.run(main())


def demo(
    as_json: bool = typer.Option(
        False, "--json", help="Print the finished RunRecords as a JSON array, root run first."
    ),
) -> None:
    """Run the example scenario end to end and show its run record.

    Starts the embedded stack if none is running (and stops what it started),
    runs the release supervisor agent, which delegates to a deployer sub-agent,
    then prints the run as a tree with the Temporal UI link. The deployer's two
    gated calls are decided as `demo-operator` through approval signals: the
    staging deploy is approved, the release fee charge is denied.
    """
    from rich.console import Console

    from runrecord.cli._show import print_records
    from runrecord.cli._stack import load_agents, recording_worker, records_engine
    from runrecord.recorder import load_tree, ship_journal

    settings = Settings.from_env()
    err = Console(stderr=True)

    async def main() -> None:
        engine = records_engine(settings)
        agents = load_agents(None)
        with err.status("Starting the embedded stack ...") as status:
            async with temporal_cluster(settings, start_if_missing=True) as temporal:
                queue = f"runrecord-demo-{uuid.uuid4().hex[:8]}"
                async with recording_worker(
                    settings,
                    temporal,
                    agents,
                    task_queue=queue,
                    mirror=False,
                    engine=engine,
                    copies=True,
                ) as (client, mirror):
                    run_id = f"release-{uuid.uuid4().hex[:8]}"
                    workspace = agents.prepare_workspace(settings.home / "demo-workspace" / run_id)
                    status.update(f"Running agent run {run_id} ...")
                    handle = await client.start_workflow(
                        agents.ReleaseSupervisor.run,
                        agents.ReleaseTask(workspace=str(workspace)),
                        id=run_id,
                        task_queue=queue,
                    )
                    result = asyncio.ensure_future(handle.result())
                    operator = asyncio.create_task(
                        _operate(client, [run_id, f"{run_id}.release-deployer"], result)
                    )
                    try:
                        await asyncio.wait_for(asyncio.shield(result), timeout=120)
                    except TimeoutError:
                        raise RunRecordError(f"run {run_id} did not finish within 120 s") from None
                    finally:
                        result.cancel()
                        await operator
                    status.update("Mirroring history into the records database ...")
                    await asyncio.to_thread(ship_journal, engine, settings.journal_dir)
                    await mirror.sync_tree(run_id)
                ui_url = temporal.ui_url
        with engine.connect() as conn:
            records = load_tree(conn, run_id)
        print_records(records, as_json=as_json, ui_url=ui_url)

    asyncio.run(main())


def worker(
    module: str = typer.Option(
        None,
        "--module",
        "-m",
        help=(
            "Python module with WORKFLOWS and ACTIVITIES lists, and MCP_SERVERS (a list of "
            "runrecord.MCPServerSpec) if its agents use MCP servers (default: the example agents)."
        ),
    ),
    task_queue: str = typer.Option(
        None, "--task-queue", help="Task queue to poll (default $RUNRECORD_TASK_QUEUE)."
    ),
    mirror: bool = typer.Option(True, "--mirror/--no-mirror", help="Also run the mirror."),
) -> None:
    """Run a recording worker (and the mirror) on the configured cluster until Ctrl-C.

    The cluster is Temporal's client configuration: a temporal.toml profile
    (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE) and the TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
    TEMPORAL_API_KEY and TEMPORAL_TLS_* variables, as Temporal's own CLI reads them.
    """
    from runrecord.cli._stack import load_agents, recording_worker, records_engine

    settings = Settings.from_env()

    async def main() -> None:
        engine = records_engine(settings)
        agents = load_agents(module)
        async with temporal_cluster(settings, start_if_missing=False) as temporal:
            async with recording_worker(
                settings,
                temporal,
                agents,
                task_queue=task_queue,
                mirror=mirror,
                engine=engine,
            ):
                typer.echo(
                    f"Worker on {temporal.address}, task queue "
                    f"{task_queue or settings.task_queue}; mirror {'on' if mirror else 'off'}."
                )
                await _until_signalled()

    asyncio.run(main())
