"""Every attempt reaches the record: through a worker SIGKILLed mid-call and a database outage."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from runrecord.recorder import Mirror, load_run, open_engine, upgrade
from runrecord.worker import Journal
from tests import agents_for_calls as agents
from tests._postgres import PrivateCluster, create_test_database

ROOT = Path(__file__).resolve().parents[1]


def _start_worker(env: dict[str, str], queue: str) -> subprocess.Popen[str]:
    """`runrecord worker` for the test agents, as an operator runs it; returns once it polls."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runrecord.cli",
            "worker",
            "--module",
            "tests.agents_for_calls",
            "--task-queue",
            queue,
            "--no-mirror",
        ],
        cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if line.startswith("Worker on"):
            return proc
    proc.kill()
    pytest.fail("worker did not start:\n" + "".join(seen[-20:]))


async def _wait_for(path: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} never appeared")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    return path.read_text()


async def test_a_worker_killed_mid_call_leaves_a_lost_attempt_and_the_retry(
    client: Client, engine: Engine, cli_env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"crash-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "attempt-1-started"

    first = _start_worker(cli_env, queue)
    try:
        handle = await client.start_workflow(
            agents.CrashAgent.run, str(marker), id=run_id, task_queue=queue
        )
        first_pid = int(await _wait_for(marker))
        assert first_pid == first.pid
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    second = _start_worker(cli_env, queue)
    try:
        result = await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(timeout=30)
    assert result == f"done on attempt 2 by {second.pid}"

    mirror = Mirror(client, engine, journal_dir=home / "journal")
    mirror.drain_journal()
    await mirror.sync_run(run_id)
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    (call,) = record.tool_calls
    assert call.status == "succeeded" and call.retry_state.attempts == 2
    lost, retried = call.retry_state.history
    assert (lost.attempt, lost.outcome, lost.ended_at) == (1, "lost", None)
    assert lost.worker_identity is not None and lost.worker_identity.startswith(f"{first.pid}@")
    assert (retried.attempt, retried.outcome) == (2, "succeeded")
    assert retried.worker_identity is not None
    assert retried.worker_identity.startswith(f"{second.pid}@")
    # History knows why attempt 1 ended: its heartbeat timed out.
    assert call.retry_state.last_failure and "eartbeat" in call.retry_state.last_failure


async def test_postgres_stopped_during_a_call_loses_nothing_once_it_is_back(
    client: Client, journal: Journal, private_postgres: PrivateCluster, tmp_path: Path
) -> None:
    url = create_test_database(private_postgres.url, "records")
    engine = open_engine(url)
    upgrade(engine)
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"outage-{uuid.uuid4().hex[:8]}"
    gate = tmp_path / "gate"
    mirror = Mirror(client, engine, journal_dir=journal.directory, poll_interval=0.2)
    stop = asyncio.Event()
    try:
        async with Worker(
            client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
        ):
            following = asyncio.create_task(mirror.run(stop))
            handle = await client.start_workflow(
                agents.OutageAgent.run, str(gate), id=run_id, task_queue=queue
            )
            # Attempt 1 failed, attempt 2 is running: now the database goes away.
            await _wait_for(Path(str(gate) + ".waiting"))
            await asyncio.to_thread(private_postgres.stop, "immediate")
            gate.write_text("open")
            assert await handle.result() == "through"
            # Everything the call did happened while the database was down.
            await asyncio.sleep(1.0)
            assert mirror.errors, "the mirror should have failed to reach the database"
            lines = journal.path.read_text().splitlines()
            assert len(lines) == 5  # two attempts (start + end each) and one artifact

            await asyncio.to_thread(private_postgres.start)
            deadline = time.monotonic() + 60
            while True:
                with engine.connect() as conn:
                    record = load_run(conn, run_id)
                if record is not None and record.final_status == "succeeded":
                    call = record.tool_calls[0]
                    if len(call.retry_state.history) == 2 and record.artifacts:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(f"mirror did not catch up after the outage: {mirror.errors[-3:]}")
                await asyncio.sleep(0.2)
    finally:
        stop.set()
        if "following" in locals():
            await following
        engine.dispose()

    (call,) = record.tool_calls
    assert [(a.attempt, a.outcome) for a in call.retry_state.history] == [
        (1, "failed"),
        (2, "succeeded"),
    ]
    assert call.retry_state.history[0].error == "RuntimeError: gate not ready on attempt 1"
    assert [(a.kind, a.uri, a.attempt) for a in record.artifacts] == [("file", f"file://{gate}", 2)]
