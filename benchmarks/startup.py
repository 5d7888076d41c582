"""How fast the `runrecord` command starts: help, a query, and an approval's round trip.

    python benchmarks/startup.py [--repeat 15] [--runs 2000] [--calls 20000]
        [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Each figure is the median of ``--repeat`` fresh processes, printed next to baselines
measured in the same run: the Python interpreter doing nothing (the floor for any Python
CLI), Temporal's own CLI (`temporal --version`, a Go binary), and importing nothing but the
libraries a command cannot do without (the floor for that command in Python). Besides the
wall clock it prints the process's CPU time, since on a shared machine the wall clock
includes waiting for a core; the load average is printed with the figures.

- `runrecord --help`
- `runrecord runs --json` and `runrecord show RUN --json` on a PostgreSQL records database
  of its own, loaded with synthetic records by benchmarks/queries.py's generator (dropped
  afterwards)
- `runrecord approvals --json` against a Temporal dev server with a call waiting
- `runrecord approve` round trip: a run waits for approval on a Temporal dev server; the
  time from launching `runrecord approve` to the approved tool's activity starting. The
  same decision sent from a running process (``send_decision``) is printed too: what is
  left when start-up costs nothing.

runrecord's modules are compiled to bytecode first, as installing a wheel does: a source
checkout run with PYTHONDONTWRITEBYTECODE would otherwise compile them in every process.

Targets: query commands < 300 ms; the approve round trip < 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from queries import DEFAULT_ADMIN, Generator, Loader, libpq  # noqa: E402

with workflow.unsafe.imports_passed_through():
    from runrecord.cli._approvals import pending_approvals, send_decision
    from runrecord.recorder import open_engine, upgrade
    from runrecord.worker import SEARCH_ATTRIBUTES, RunRecordPlugin, temporal_binary
    from runrecord.worker._devserver import DEV_SERVER_FLAGS

# The gated agent and the time each approved step started: the approvals benchmark's own.
from approvals import STARTED, ApprovalBench, gated_step  # noqa: E402

RUNRECORD = [sys.executable, "-m", "runrecord.cli"]
QUERY_TARGET = 0.300
APPROVE_TARGET = 0.500
# What a query command and `approve` cannot start without: their floor in Python.
QUERY_LIBRARIES = "typer, pydantic, sqlalchemy.orm, sqlalchemy.dialects.postgresql.psycopg, psycopg"
APPROVE_LIBRARIES = "typer, pydantic, temporalio.client, detect_secrets"
# As `runrecord` runs these commands: without garbage collection.
NO_GC = "import gc; gc.disable(); "


def _run(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """One process to its end: wall-clock and CPU seconds (user + system)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=False
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        detail = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise SystemExit(f"{' '.join(argv[-3:])} failed: {detail.strip()[:300]}")
    return wall, usage.ru_utime + usage.ru_stime


def _line(
    label: str, walls: list[float], cpus: list[float] | None = None, target: float | None = None
) -> str:
    wall = statistics.median(walls)
    text = f"  {label:<58} {wall * 1000:7.0f} ms"
    text += f"   cpu {statistics.median(cpus) * 1000:6.0f} ms" if cpus else " " * 16
    text += f"   (n={len(walls)}, min {min(walls) * 1000:4.0f} ms)"
    if target is not None:
        verdict = "met" if wall < target else "MISSED"
        text += f"   target < {target * 1000:.0f} ms: {verdict}"
    return text


def _times(argv: Sequence[str], env: dict[str, str], repeat: int) -> tuple[list[float], ...]:
    _run(argv, env)  # warm the page cache and .pyc files
    walls, cpus = zip(*(_run(argv, env) for _ in range(repeat)), strict=True)
    return list(walls), list(cpus)


def _records_database(admin_url: str, runs: int, calls: int) -> str:
    name = f"runrecord_startup_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = open_engine(url)
    upgrade(engine)
    engine.dispose()
    with Loader(url) as load:
        Generator(runs, calls).load(load)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return url


def _drop(admin_url: str, url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


async def _waiting(client: Client, run_id: str, call: str) -> None:
    while not any(r.tool_call_id == call for r in await pending_approvals(client, run_id)):
        await asyncio.sleep(0.01)


async def _started(n: int) -> float:
    while n not in STARTED:
        await asyncio.sleep(0.001)
    return STARTED[n]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _approvals(
    repeat: int, base_env: dict[str, str]
) -> tuple[tuple[list[float], list[float]], list[float], list[float], list[float]]:
    """`runrecord approvals --json` (wall and CPU) with a call waiting; round trips of
    `runrecord approve` processes (and their CPU time), and of send_decision in this
    process."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(DEV_SERVER_FLAGS),
    )
    try:
        address = env.client.service_client.config.target_host
        client = await Client.connect(address, plugins=[RunRecordPlugin()])
        queue = f"startup-{uuid.uuid4().hex[:8]}"
        run_id = f"startup-bench-{uuid.uuid4().hex[:8]}"
        by_command: list[float] = []
        command_cpu: list[float] = []
        in_process: list[float] = []
        total = 2 * repeat + 1
        async with Worker(
            client, task_queue=queue, workflows=[ApprovalBench], activities=[gated_step]
        ):
            handle = await client.start_workflow(
                ApprovalBench.run, total, id=run_id, task_queue=queue
            )
            proc_env = {**base_env, "TEMPORAL_ADDRESS": address}
            await _waiting(client, run_id, "1")
            listing = await asyncio.to_thread(
                _times, [*RUNRECORD, "approvals", "--json"], proc_env, repeat
            )
            for n in range(1, total + 1):
                await _waiting(client, run_id, str(n))
                sent = time.perf_counter()
                if n % 2 == 0:
                    await send_decision(
                        client, run_id, str(n), "approve", approver="bench", reason="benchmark"
                    )
                    in_process.append(await _started(n) - sent)
                    continue
                cpu_before = _children_cpu()  # the dev server is not reaped until the end
                proc = await asyncio.create_subprocess_exec(
                    *RUNRECORD,
                    "approve",
                    run_id,
                    str(n),
                    "--reason",
                    "benchmark",
                    "--as",
                    "bench",
                    env=proc_env,
                    stdout=subprocess.DEVNULL,
                )
                started = await _started(n)
                if await proc.wait() != 0:
                    raise SystemExit(f"runrecord approve failed for call {n}")
                if n > 1:  # the first one warms the .pyc files
                    by_command.append(started - sent)
                    command_cpu.append(_children_cpu() - cpu_before)
            await handle.result()
        return listing, by_command, command_cpu, in_process
    finally:
        await env.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument(
        "--admin-url", default=os.environ.get("RUNRECORD_BENCH_ADMIN_URL", DEFAULT_ADMIN)
    )
    args = parser.parse_args()

    base = {k: v for k, v in os.environ.items() if not k.startswith(("RUNRECORD_", "TEMPORAL_"))}
    compileall.compile_dir(Path(__file__).resolve().parents[1] / "runrecord", quiet=1)
    url = _records_database(args.admin_url, args.runs, args.calls)
    python = [sys.executable, "-c"]
    try:
        query_env = {**base, "RUNRECORD_DATABASE_URL": url}
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(f"medians of {args.repeat} processes:")
        print(_line("baseline: python -c pass", *_times([*python, "pass"], base, args.repeat)))
        print(
            _line(
                "baseline: temporal --version",
                *_times([temporal_binary(), "--version"], base, args.repeat),
            )
        )
        print(
            _line(
                "floor: import what a query command needs",
                *_times([*python, f"{NO_GC}import {QUERY_LIBRARIES}"], base, args.repeat),
            )
        )
        print(
            _line(
                "floor: import what approve needs",
                *_times([*python, f"{NO_GC}import {APPROVE_LIBRARIES}"], base, args.repeat),
            )
        )
        print(
            _line(
                "python -c 'import runrecord'",
                *_times([*python, "import runrecord"], base, args.repeat),
            )
        )
        print(_line("runrecord --help", *_times([*RUNRECORD, "--help"], base, args.repeat)))
        print(
            _line(
                f"runrecord runs --json ({args.runs:,} runs)",
                *_times([*RUNRECORD, "runs", "--json"], query_env, args.repeat),
                target=QUERY_TARGET,
            )
        )
        with psycopg.connect(libpq(url)) as conn:
            row = conn.execute("select run_id from runs where depth = 0 limit 1").fetchone()
        assert row is not None
        print(
            _line(
                "runrecord show RUN --json",
                *_times([*RUNRECORD, "show", row[0], "--json"], query_env, args.repeat),
                target=QUERY_TARGET,
            )
        )
    finally:
        _drop(args.admin_url, url)
    listing, by_command, command_cpu, in_process = asyncio.run(_approvals(args.repeat, base))
    print(_line("runrecord approvals --json (a call waiting)", *listing, target=QUERY_TARGET))
    print(
        _line(
            "runrecord approve: process start -> activity starts",
            by_command,
            command_cpu,
            target=APPROVE_TARGET,
        )
    )
    print(_line("send_decision in a running process -> activity starts", in_process))
    print(f"load average {os.getloadavg()[0]:.2f} after the run")


if __name__ == "__main__":
    main()
