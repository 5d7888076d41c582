"""How current and how fast the mirror is, on one dev server and one records database.

    python benchmarks/mirror.py [--runs 50] [--calls 10] [--rebuild-runs 200] [--rounds 3]
        [--concurrency 4] [--no-lag]

(a) Lag: ``--runs`` agent runs at once, each making ``--calls`` tool calls, on a worker
    in this process whose shipper writes attempts to the records (and NOTIFYs mirrors of
    new runs), with ``runrecord mirror run`` following them in a process of its own
    (``--in-process``: the mirror in the worker's process). Each activity notes when it
    returned; a reader (a process of its own) polls the records every 5 ms and notes when
    the call's row first says ``succeeded``, and when its attempt row does. Lag is the
    difference: activity completion to a queryable row. The attempt rows' lag is the
    shipper's: what a machine that disappears with its disk loses is what was spooled
    within that time.
(b) Rebuild: ``--rebuild-runs`` finished runs are re-projected from history and every row
    rewritten (``Mirror.rebuild`` with ``--concurrency``, as ``runrecord mirror rebuild``),
    and, side by side in the same process, the raw baseline: the same histories fetched
    all at once with ``fetch_history`` by run id (no visibility lookup, no projection, no
    write). Raw fetch and rebuild alternate for ``--rounds`` rounds; the medians are
    compared.

The records database is RUNRECORD_DATABASE_URL if set (PostgreSQL in production),
else an SQLite file in a temporary folder. Lines printed last:
``lag p50: <n> ms``, ``lag p99: <n> ms``, ``raw fetch_history: <n> events/s``,
``rebuild: <n> events/s`` and ``ratio rebuild/raw: <percent>`` (target 40 %, goal 65 %).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# Workflow code runs in Temporal's sandbox, which re-imports the workflow's module for every
# run: everything but temporalio itself is passed through, or each run re-imports it.
with workflow.unsafe.imports_passed_through():
    from sqlalchemy import bindparam, text

    import runrecord
    from runrecord.recorder import Mirror, Shipper, open_engine, upgrade
    from runrecord.worker import SEARCH_ATTRIBUTES, Journal, RunRecordPlugin, temporal_binary
    from runrecord.worker._devserver import DEV_SERVER_FLAGS

DONE: dict[tuple[str, str], float] = {}
"""(workflow id, activity id) -> time.time() when the activity returned"""


@runrecord.tool("read", idempotent=True)
@activity.defn
async def fetch_page(step: int) -> str:
    await asyncio.sleep(0.05)
    info = activity.info()
    DONE[(info.workflow_id, info.activity_id)] = time.time()
    return f"page {step} " + "x" * 200


@runrecord.agent("mirror-bench", version="1")
@workflow.defn
class MirrorBench:
    @workflow.run
    async def run(self, calls: int) -> int:
        for step in range(calls):
            await workflow.execute_activity(
                fetch_page, step, start_to_close_timeout=timedelta(seconds=30)
            )
        return calls


"""CPU seconds of the reader thread, left out of the worker process's figure."""


def load() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def watch_rows(url: str, ids: list[str], calls: int, stop: Event, out: Connection) -> None:
    """In a process of its own (so that it takes nothing from the worker's interpreter):
    poll the records every 5 ms; a run's calls run one after another, so when its count of
    succeeded calls (or succeeded attempts) grows from k to k + 1, call k + 1 has just become
    queryable. Ends when every call's rows are seen (or when told); sends back
    {(run, call): time} for call rows and for attempt rows."""
    engine = open_engine(url)
    queries = [
        text(
            f"SELECT run_id, count(*) FROM {table} WHERE {column} = 'succeeded' "
            "AND run_id IN :ids GROUP BY run_id"
        ).bindparams(bindparam("ids", expanding=True))
        for table, column in (("tool_calls", "status"), ("tool_call_attempts", "outcome"))
    ]
    found: list[dict[tuple[str, str], float]] = [{}, {}]
    counts: dict[tuple[int, str], int] = {}
    with engine.connect() as conn:
        conn.execute(queries[0], {"ids": ids}).all()
        conn.commit()
        out.send("ready")
        while not stop.is_set() and min(map(len, found)) < len(ids) * calls:
            for kind, query in enumerate(queries):
                rows = conn.execute(query, {"ids": ids}).all()
                conn.commit()
                now = time.time()
                for run_id, count in rows:
                    for n in range(counts.get((kind, run_id), 0) + 1, int(count) + 1):
                        found[kind].setdefault((run_id, str(n)), now)
                    counts[(kind, run_id)] = int(count)
            time.sleep(0.005)
    engine.dispose()
    out.send(found)


def start_mirror_process(url: str, address: str, home: Path) -> subprocess.Popen[str]:
    """``runrecord mirror run``, as an operator runs it beside the workers."""
    env = {
        **os.environ,
        "RUNRECORD_DATABASE_URL": url,
        "TEMPORAL_ADDRESS": address,
        "RUNRECORD_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "runrecord.cli", "mirror", "run", "--poll-interval", "0.5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Mirroring"):
        proc.kill()
        raise SystemExit(f"mirror did not start: {line}{proc.stdout.read()[-2000:]}")
    return proc


async def measure_lag(
    client: Client, url: str, journal: Journal, runs: int, calls: int, separate: bool
):
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    prefix = f"lag-{uuid.uuid4().hex[:6]}-"
    engine = open_engine(url)
    mirror = Mirror(client, engine, poll_interval=0.5)
    process = (
        start_mirror_process(
            url, client.service_client.config.target_host, journal.directory.parent
        )
        if separate
        else None
    )
    ids = [f"{prefix}{n}" for n in range(runs)]
    spawn = multiprocessing.get_context("spawn")
    stop_watch = spawn.Event()
    results, sent = spawn.Pipe(duplex=False)
    watcher = spawn.Process(
        target=watch_rows, args=(url, ids, calls, stop_watch, sent), daemon=True
    )
    watcher.start()
    if not results.poll(120) or results.recv() != "ready":  # its imports take a while
        raise SystemExit("the records reader did not start")
    stop = asyncio.Event()
    cpu = time.process_time()
    mirror_cpu = process_cpu(process.pid) if process is not None else 0.0
    async with Worker(
        client,
        task_queue=queue,
        workflows=[MirrorBench],
        activities=[fetch_page],
        max_concurrent_activities=runs,
    ):
        following = None if process else asyncio.create_task(mirror.run(stop))
        await asyncio.gather(
            *(client.execute_workflow(MirrorBench.run, calls, id=i, task_queue=queue) for i in ids)
        )
        if await asyncio.to_thread(results.poll, 30) is False:
            stop_watch.set()  # 30 s after the last run ended: what is not seen is missing
        seen, shipped = await asyncio.to_thread(results.recv)
        stop.set()
        if following is not None:
            await following
    watcher.join()
    cpu = time.process_time() - cpu
    if process is not None:
        mirror_cpu = process_cpu(process.pid) - mirror_cpu
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    print(
        f"CPU per tool call: worker process {cpu / (runs * calls) * 1e6:.0f} µs (its shipper "
        f"and the client included, the reader left out)"
        + (f", mirror process {mirror_cpu / (runs * calls) * 1e6:.0f} µs" if process else ""),
        file=sys.stderr,
    )
    engine.dispose()
    lags = {
        key: (seen[key] - done) * 1000
        for key, done in DONE.items()
        if key[0].startswith(prefix) and key in seen
    }
    ship_lags = [
        (shipped[key] - done) * 1000
        for key, done in DONE.items()
        if key[0].startswith(prefix) and key in shipped
    ]
    missing = runs * calls - len(lags)
    return lags, ship_lags, missing


async def fetch_raw(client: Client, run_ids: list[str]) -> int:
    """The physical limit: every history fetched at once with ``fetch_history``, as a
    program that knows each run's id reads it (no visibility lookup, no projection)."""

    async def one(workflow_id: str) -> int:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        return len(history.events)

    return sum(await asyncio.gather(*(one(w) for w in run_ids)))


async def measure_rebuild(
    client: Client, url: str, journal: Journal, runs: int, calls: int, rounds: int, concurrency: int
) -> tuple[float, float, int]:
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    prefix = f"rebuild-{uuid.uuid4().hex[:6]}-"
    ids = [f"{prefix}{n}" for n in range(runs)]
    async with Worker(
        client,
        task_queue=queue,
        workflows=[MirrorBench],
        activities=[fetch_page],
        max_concurrent_activities=100,
    ):
        gate = asyncio.Semaphore(50)

        async def one(run_id: str) -> None:
            async with gate:
                await client.execute_workflow(MirrorBench.run, calls, id=run_id, task_queue=queue)

        print(f"starting {runs} runs of {calls} calls for the rebuild ...", file=sys.stderr)
        await asyncio.gather(*(one(i) for i in ids))
    engine = open_engine(url)
    mirror = Mirror(client, engine)
    fetch_times: list[float] = []
    rebuild_times: list[float] = []
    events = 0
    await fetch_raw(client, ids[:10])  # warm-up
    await mirror.rebuild(ids[:10], concurrency=concurrency)
    for n in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        events = await fetch_raw(client, ids)
        fetch_times.append(time.perf_counter() - started)
        fetch_cpu = time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        report = await mirror.rebuild(ids, concurrency=concurrency)
        rebuild_times.append(time.perf_counter() - started)
        rebuild_cpu = time.process_time() - cpu
        assert report.events == events, (report.events, events)
        assert report.runs == len(ids) and not report.refused, report
        print(
            f"round {n + 1}: fetch {fetch_times[-1]:.2f} s (CPU {fetch_cpu:.2f} s), rebuild "
            f"{rebuild_times[-1]:.2f} s (CPU {rebuild_cpu:.2f} s; {events} events, load {load()})",
            file=sys.stderr,
        )
    engine.dispose()
    return statistics.median(fetch_times), statistics.median(rebuild_times), events


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="concurrent runs for the lag")
    parser.add_argument("--calls", type=int, default=10, help="tool calls per run")
    parser.add_argument(
        "--rebuild-runs", type=int, default=200, help="runs to rebuild (0: lag only)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="fetch/rebuild rounds")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="runs the rebuild fetches at once"
    )
    parser.add_argument("--no-lag", action="store_true", help="measure the rebuild only")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="follow with the mirror inside the worker's process (as `runrecord worker` "
        "does) instead of `runrecord mirror run` beside it",
    )
    args = parser.parse_args()
    # Temporal's sandbox imports the workflows' module (this file) again for every run: as
    # from an installed package, from bytecode, not compiled from source each time (a
    # checkout run with PYTHONDONTWRITEBYTECODE would, on both sides, hiding the ratio).
    compileall.compile_file(__file__, quiet=1)

    workdir = Path(tempfile.mkdtemp(prefix="runrecord-mirror-bench-"))
    url = os.environ.get("RUNRECORD_DATABASE_URL") or f"sqlite:///{workdir / 'records.db'}"
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    journal = Journal(workdir / "journal")
    shipper_engine = open_engine(url)
    shipper = Shipper(shipper_engine, journal.directory, journal=journal)
    shipper.start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(DEV_SERVER_FLAGS),
    )
    try:
        address = env.client.service_client.config.target_host
        client = await Client.connect(address, plugins=[RunRecordPlugin(journal)])
        print(f"records: {url.split('@')[-1]}", file=sys.stderr)
        lags, ship_lags, missing = (
            await measure_lag(client, url, journal, args.runs, args.calls, not args.in_process)
            if not args.no_lag
            else ({}, [], 0)
        )
        if args.rebuild_runs:
            fetch_s, rebuild_s, events = await measure_rebuild(
                client, url, journal, args.rebuild_runs, args.calls, args.rounds, args.concurrency
            )
    finally:
        journal.close()
        shipper.stop()
        shipper_engine.dispose()
        await env.shutdown()
    print(f"machine load (1, 5, 15 min): {load()} on {os.cpu_count()} cores")
    if lags:
        print(f"lag: {len(lags)} calls of {args.runs} concurrent runs ({missing} not seen)")
        first = [lag for (_, call), lag in lags.items() if call == "1"]
        later = [lag for (_, call), lag in lags.items() if call != "1"]
        layout = (
            "mirror in the worker's process" if args.in_process else "mirror in its own process"
        )
        print(f"layout: {layout}; records {'PostgreSQL' if url.startswith('postgresql') else url}")
        for name, part in (
            ("first calls (run found by NOTIFY, a nudge or visibility)", first),
            ("later calls (run already followed)", later),
        ):
            print(
                f"{name}: p50 {percentile(part, 0.50):.0f} ms, p99 {percentile(part, 0.99):.0f} ms"
            )
        if ship_lags:
            print(
                f"attempt rows (the shipper; spooled, not yet shipped): p50 "
                f"{percentile(ship_lags, 0.50):.0f} ms, p99 {percentile(ship_lags, 0.99):.0f} ms, "
                f"max {max(ship_lags):.0f} ms"
            )
        print(f"lag p50: {percentile(list(lags.values()), 0.50):.0f} ms")
        print(f"lag p99: {percentile(list(lags.values()), 0.99):.0f} ms")
    if args.rebuild_runs:
        print(
            f"raw fetch_history, {args.rebuild_runs} runs at once: {events / fetch_s:.0f} events/s "
            f"(median of {args.rounds})"
        )
        print(
            f"rebuild: {events / rebuild_s:.0f} events/s "
            f"(mirror rebuild, concurrency {args.concurrency}, median of {args.rounds})"
        )
        print(f"ratio rebuild/raw: {fetch_s / rebuild_s:.0%}")


if __name__ == "__main__":
    asyncio.run(main())
