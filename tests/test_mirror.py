"""The mirror as an operator relies on it: live, idempotent, rebuildable, outage-proof.

Every test runs real Temporal (the dev server) and real PostgreSQL. Databases are compared
table by table with a fresh projection written to a database of its own.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from runrecord.cli._approvals import send_decision
from runrecord.recorder import Mirror, Shipper, load_run, open_engine, upgrade
from runrecord.records import RunRecord
from runrecord.worker import Journal
from tests import mirror_agents as agents
from tests._postgres import PrivateCluster, create_test_database, drop_test_database
from tests.test_approvals import waiting_for
from tests.test_cli import assert_one_line_error, runrecord

ROOT = Path(__file__).resolve().parents[1]
# What the mirror writes, and what the journal adds; cursors and heartbeats are its own.
TABLES = {  # table: (its run column, key order)
    "runs": ("run_id", "run_id"),
    "temporal_runs": ("workflow_id", "workflow_id, temporal_run_id"),
    "run_events": ("workflow_id", "workflow_id, temporal_run_id, event_id"),
    "tool_calls": ("run_id", "run_id, tool_call_id"),
    "model_calls": ("run_id", "run_id, tool_call_id"),
    "lineage_edges": (
        "consumer_run_id",
        "artifact_id, consumer_run_id, consumer_tool_call_id",
    ),
    "tool_call_attempts": ("run_id", "run_id, tool_call_id, attempt"),
    "artifacts": ("run_id", "artifact_id"),
}


def dump(engine: Engine, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of these runs in the record tables, in key order, without write times."""
    out = {}
    with engine.connect() as conn:
        for table, (column, order) in TABLES.items():
            rows = conn.execute(
                text(f"SELECT * FROM {table} WHERE {column} = ANY(:ids) ORDER BY {order}"),
                {"ids": run_ids},
            ).mappings()
            out[table] = [{k: v for k, v in r.items() if k != "updated_at"} for r in rows]
    return out


def assert_same(
    fresh: dict[str, list[dict[str, Any]]], kept: dict[str, list[dict[str, Any]]]
) -> None:
    """Table by table, row by row: the first differing row names its table and columns."""
    for table in TABLES:
        assert len(fresh[table]) == len(kept[table]), (table, fresh[table], kept[table])
        for a, b in zip(fresh[table], kept[table], strict=True):
            changed = {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}
            assert not changed, (table, changed)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def load(engine: Engine, run_id: str) -> RunRecord | None:
    with engine.connect() as conn:
        return load_run(conn, run_id)


@asynccontextmanager
async def following(
    client: Client, engine: Engine, journal: Journal, **options: Any
) -> AsyncIterator[Mirror]:
    mirror = Mirror(client, engine, journal_dir=journal.directory, poll_interval=0.2, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(mirror.run(stop))
    try:
        yield mirror
    finally:
        stop.set()
        await task


@asynccontextmanager
async def agents_worker(client: Client) -> AsyncIterator[str]:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        yield queue


@pytest.fixture
def second_db(pg_admin_url: str) -> Iterator[Engine]:
    """Another empty records database: where a fresh projection goes, for comparison."""
    name = f"rr_test_{uuid.uuid4().hex[:12]}"
    engine = open_engine(create_test_database(pg_admin_url, name))
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        drop_test_database(pg_admin_url, name)


async def fresh_projection(
    client: Client, engine: Engine, journal: Journal, run_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """The records one clean pass over history (and the journal) gives."""
    mirror = Mirror(client, engine, journal_dir=journal.directory)
    await asyncio.to_thread(mirror.drain_journal)
    for run_id in run_ids:
        await mirror.sync_run(run_id)
    return await asyncio.to_thread(dump, engine, run_ids)


async def start_streamers(
    client: Client, queue: str, tmp_path: Path, prefix: str, count: int, calls: int
) -> list[str]:
    ids = [f"{prefix}-{n}-{uuid.uuid4().hex[:6]}" for n in range(count)]
    for run_id in ids:
        await client.start_workflow(
            agents.Streamer.run,
            args=[calls, str(tmp_path / f"{run_id}.txt"), False],
            id=run_id,
            task_queue=queue,
        )
    return ids


async def all_finished(client: Client, run_ids: list[str]) -> None:
    for run_id in run_ids:
        await client.get_workflow_handle(run_id).result()


def caught_up(engine: Engine, run_ids: list[str], calls: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        records = [await asyncio.to_thread(load, engine, r) for r in run_ids]
        return all(
            r is not None
            and r.final_status == "succeeded"
            and len(r.tool_calls) == calls
            and r.artifacts
            and all(c.retry_state.history for c in r.tool_calls)
            for r in records
        )

    return check


# --- following live


async def test_a_run_is_recorded_as_it_happens_with_pause_and_signals(
    client: Client, journal: Journal, engine: Engine, cli_env: dict[str, str]
) -> None:
    async with agents_worker(client) as queue, following(client, engine, journal):
        run_id = f"waiter-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(agents.Waiter.run, id=run_id, task_queue=queue)

        async def first_call_done() -> bool:
            r = await asyncio.to_thread(load, engine, run_id)
            return r is not None and [c.status for c in r.tool_calls] == ["succeeded"]

        await until(first_call_done, "the first call in the records", timeout=10)

        paused = await asyncio.to_thread(
            runrecord, "pause", run_id, "--reason", "looking", "--as", "olga", env=cli_env
        )
        assert paused.returncode == 0, paused.stderr

        async def shows_pause() -> bool:
            r = await asyncio.to_thread(load, engine, run_id)
            return r is not None and r.final_status == "paused"

        await until(shows_pause, "the pause in the records", timeout=10)
        record = load(engine, run_id)
        assert record is not None and record.pause is not None
        assert (record.pause.paused_by, record.pause.reason) == ("olga", "looking")

        resumed = await asyncio.to_thread(runrecord, "resume", run_id, "--as", "olga", env=cli_env)
        assert resumed.returncode == 0, resumed.stderr
        await handle.signal(agents.Waiter.proceed)
        assert await handle.result() == "done"

        async def finished() -> bool:
            r = await asyncio.to_thread(load, engine, run_id)
            return r is not None and r.final_status == "succeeded" and len(r.tool_calls) == 2

        await until(finished, "the finished run in the records", timeout=10)

    with engine.connect() as conn:
        events = conn.execute(
            text(
                "SELECT kind, identity, detail FROM run_events WHERE workflow_id = :w "
                "ORDER BY event_id"
            ),
            {"w": run_id},
        ).all()
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "succeeded"
    assert ("paused", "olga") in [(e.kind, e.identity) for e in events]
    assert ("unpaused", "olga") in [(e.kind, e.identity) for e in events]
    (signal_event,) = [e for e in events if e.kind == "signaled"]
    assert signal_event.detail == {"signal": "proceed"}
    assert signal_event.identity == client.identity
    record = load(engine, run_id)
    assert record is not None and record.pause is None


async def test_continue_as_new_runs_make_one_record_with_every_call(
    client: Client, journal: Journal, engine: Engine, second_db: Engine
) -> None:
    run_id = f"looper-{uuid.uuid4().hex[:8]}"
    async with agents_worker(client) as queue, following(client, engine, journal):
        assert await client.execute_workflow(agents.Looper.run, 3, id=run_id, task_queue=queue)

        async def six_calls() -> bool:
            r = await asyncio.to_thread(load, engine, run_id)
            return r is not None and len(r.tool_calls) == 6 and len(r.temporal_runs) == 3

        await until(six_calls, "all three Temporal runs in the record", timeout=20)
    record = load(engine, run_id)
    assert record is not None
    first, second, third = record.temporal_runs
    assert first.continued_from is None
    assert (second.continued_from, third.continued_from) == (
        first.temporal_run_id,
        second.temporal_run_id,
    )
    assert record.final_status == "succeeded"
    ids = {c.tool_call_id for c in record.tool_calls}
    assert ids == {
        "1",
        "2",
        *(f"{run.temporal_run_id[:8]}.{n}" for run in (second, third) for n in (1, 2)),
    }
    assert record.temporal_run_ids == [r.temporal_run_id for r in record.temporal_runs]
    # Followed live or projected in one pass: the same rows.
    live = dump(engine, [run_id])
    assert_same(await fresh_projection(client, second_db, journal, [run_id]), live)


# --- idempotent and resumable


def start_mirror_process(env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runrecord.cli", "mirror", "run", "--poll-interval", "0.2"],
        cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Mirroring"):
        proc.kill()
        pytest.fail(f"mirror did not start: {line}{proc.stdout.read()[-2000:]}")
    return proc


async def test_a_mirror_killed_mid_stream_resumes_without_duplicate_or_gap(
    client: Client,
    journal: Journal,
    engine: Engine,
    second_db: Engine,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    calls = 60
    prefix = f"killed-{uuid.uuid4().hex[:6]}"

    def ours() -> int:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM tool_calls WHERE run_id LIKE :p")
            return int(conn.execute(query, {"p": f"{prefix}-%"}).scalar_one())

    # The worker in this process ships its journal, as `runrecord worker` does: the mirror
    # process writes only what history holds.
    shipper = Shipper(engine, journal.directory, journal=journal)
    shipper.start()
    async with agents_worker(client) as queue:
        mirror = start_mirror_process(cli_env)
        try:
            ids = await start_streamers(client, queue, tmp_path, prefix, 6, calls)

            async def some_rows() -> bool:
                return await asyncio.to_thread(ours) >= 10

            await until(some_rows, "the mirror's first rows", timeout=30)
            mirror.send_signal(signal.SIGKILL)
            mirror.wait()
            written = ours()
            assert 0 < written < 6 * (calls + 1), "the kill should land mid-stream"
            await asyncio.sleep(1.0)
            mirror = start_mirror_process(cli_env)
            await all_finished(client, ids)
            await until(caught_up(engine, ids, calls + 1), "the restarted mirror to catch up")
        finally:
            mirror.send_signal(signal.SIGINT)
            mirror.wait(timeout=30)
    await asyncio.to_thread(shipper.stop)

    assert_same(await fresh_projection(client, second_db, journal, ids), dump(engine, ids))
    # This test's runs only: runs other tests left going (a sub-agent started again, say)
    # are no business of this mirror's to have caught up with.
    verify = await asyncio.to_thread(runrecord, "mirror", "verify", *ids, env=cli_env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.strip().endswith("run(s) checked: no difference")


async def test_two_mirrors_share_the_runs_and_write_what_one_would(
    client: Client,
    journal: Journal,
    engine: Engine,
    second_db: Engine,
    tmp_path: Path,
) -> None:
    calls = 5
    async with (
        agents_worker(client) as queue,
        following(client, engine, journal, mirror_id="mirror-a") as a,
        following(client, engine, journal, mirror_id="mirror-b") as b,
    ):

        async def both_alive() -> bool:
            return a.membership.count == 2 and b.membership.count == 2

        await until(both_alive, "both mirrors to see each other", timeout=10)
        ids = await start_streamers(client, queue, tmp_path, "shared", 12, calls)
        await all_finished(client, ids)
        await until(caught_up(engine, ids, calls + 1), "both mirrors to catch up")
        owned_a = {r for r in ids if a.membership.owns(r)}
        owned_b = {r for r in ids if b.membership.owns(r)}
    assert owned_a.isdisjoint(owned_b) and owned_a | owned_b == set(ids)
    assert owned_a and owned_b, "twelve runs should not all hash to one mirror"
    assert a.runs_written & set(ids) == owned_a and b.runs_written & set(ids) == owned_b
    assert_same(await fresh_projection(client, second_db, journal, ids), dump(engine, ids))


# --- outages and retention


async def test_postgres_down_for_20_s_while_runs_go_on_loses_nothing(
    client: Client, journal: Journal, private_postgres: PrivateCluster, tmp_path: Path
) -> None:
    engine = open_engine(create_test_database(private_postgres.url, "records"))
    upgrade(engine)
    calls = 10
    try:
        async with agents_worker(client) as queue, following(client, engine, journal) as mirror:
            before = await start_streamers(client, queue, tmp_path, "before", 3, calls)
            await until(caught_up(engine, before[:1], calls + 1), "a first run in the records")
            await asyncio.to_thread(private_postgres.stop, "immediate")
            down_at = time.monotonic()
            # While the database is down: runs go on, new ones start, a person approves.
            during = [f"approved-{uuid.uuid4().hex[:8]}"]
            await client.start_workflow(
                agents.Streamer.run,
                args=[calls, str(tmp_path / "approved.txt"), True],
                id=during[0],
                task_queue=queue,
            )
            during += await start_streamers(client, queue, tmp_path, "during", 3, calls)
            await waiting_for(client, during[0], str(calls + 2))
            await send_decision(
                client, during[0], str(calls + 2), "approve", approver="ines", reason="ok"
            )
            await all_finished(client, before + during)
            assert mirror.errors, "the mirror should have failed to reach the database"
            await asyncio.sleep(max(0.0, 20.0 - (time.monotonic() - down_at)))
            await asyncio.to_thread(private_postgres.start)
            await until(caught_up(engine, before + during[1:], calls + 1), "catch-up", 90)
            await until(caught_up(engine, during[:1], calls + 2), "the approved run", 30)
            for run_id in before + during:
                assert await mirror.verify(run_id) == [], run_id
    finally:
        engine.dispose()

    approved = load(engine, during[0])
    assert approved is not None
    ship = approved.tool_calls[-1]
    assert (ship.tool, ship.status, ship.approval_state) == ("ship", "succeeded", "approved")
    assert ship.approval is not None and ship.approval.decided_by == "ines"
    assert ship.approval.signal_identity is not None
    for run_id in before + during:
        record = load(engine, run_id)
        assert record is not None
        assert [c.tool_call_id for c in record.tool_calls][: calls + 1] == [
            str(n) for n in range(1, calls + 2)
        ]
        assert all(len(c.retry_state.history) == 1 for c in record.tool_calls)
        assert [a.uri for a in record.artifacts] == [f"file://{tmp_path / (run_id + '.txt')}"] or (
            run_id == during[0]
        )


async def test_a_record_outlives_its_deleted_history(
    client: Client, journal: Journal, engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    async with agents_worker(client) as queue:
        (run_id,) = await start_streamers(client, queue, tmp_path, "retained", 1, 3)
        await all_finished(client, [run_id])
    mirror = Mirror(client, engine, journal_dir=journal.directory)
    mirror.drain_journal()
    await mirror.sync_run(run_id)
    before = dump(engine, [run_id])
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=run_id)
        )
    )

    async def history_gone() -> bool:
        try:
            await client.get_workflow_handle(run_id).describe()
        except RPCError as err:
            return err.status == RPCStatusCode.NOT_FOUND
        return False

    # The dev server deletes about half a minute after it is asked to.
    await until(history_gone, "Temporal to delete the history", timeout=120)
    rebuilt = await asyncio.to_thread(runrecord, "mirror", "rebuild", run_id, env=cli_env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"kept {run_id}: Temporal no longer has its history" in rebuilt.stdout
    verified = await asyncio.to_thread(runrecord, "mirror", "verify", run_id, env=cli_env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert dump(engine, [run_id]) == before
    shown = await asyncio.to_thread(runrecord, "show", run_id, "--json", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["finalStatus"] == "succeeded"


# --- verify, rebuild, status


async def test_verify_prints_every_difference_and_rebuild_repairs_it(
    client: Client, journal: Journal, engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    since = datetime.now(UTC).isoformat()  # verify --all: the agent runs of this test
    async with agents_worker(client) as queue:
        (run_id,) = await start_streamers(client, queue, tmp_path, "tampered", 1, 2)
        await all_finished(client, [run_id])
    await Mirror(client, engine).sync_run(run_id)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE tool_calls SET status = 'failed' WHERE run_id = :r AND tool_call_id = '1'"
            ),
            {"r": run_id},
        )
        conn.execute(
            text("DELETE FROM run_events WHERE workflow_id = :r AND kind = 'succeeded'"),
            {"r": run_id},
        )
    verified = await asyncio.to_thread(runrecord, "mirror", "verify", run_id, env=cli_env)
    assert verified.returncode == 1
    lines = verified.stdout.splitlines()
    assert (
        f"{run_id} tool_calls[{run_id}, 1].status: records 'failed', history 'succeeded'" in lines
    )
    assert any(
        line.startswith(f"{run_id} run_events[") and line.endswith("missing from the records")
        for line in lines
    )
    assert lines[-1] == "1 run(s) checked: 2 difference(s)"
    as_json = await asyncio.to_thread(runrecord, "mirror", "verify", run_id, "--json", env=cli_env)
    assert as_json.returncode == 1 and len(json.loads(as_json.stdout)["differences"]) == 2

    rebuilt = await asyncio.to_thread(runrecord, "mirror", "rebuild", "--all", env=cli_env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    again = await asyncio.to_thread(
        runrecord, "mirror", "verify", "--all", "--since", since, env=cli_env
    )
    assert again.returncode == 0, again.stdout
    bad = await asyncio.to_thread(runrecord, "mirror", "verify", env=cli_env)
    assert_one_line_error(bad, "mirror verify: give one or more run ids, or --all")
    unknown = await asyncio.to_thread(runrecord, "mirror", "rebuild", "no-such-run", env=cli_env)
    assert_one_line_error(unknown, "no run no-such-run in the records or in Temporal")


async def test_status_shows_followed_runs_with_their_lag(
    client: Client, journal: Journal, engine: Engine, cli_env: dict[str, str]
) -> None:
    async with agents_worker(client) as queue, following(client, engine, journal) as mirror:
        run_id = f"watched-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(agents.Waiter.run, id=run_id, task_queue=queue)

        async def reported() -> bool:
            shown = await asyncio.to_thread(runrecord, "mirror", "status", "--json", env=cli_env)
            assert shown.returncode == 0, shown.stderr
            status = json.loads(shown.stdout)
            mine = [m for m in status["mirrors"] if m["mirrorId"] == mirror.mirror_id]
            return bool(mine) and any(
                r["workflowId"] == run_id and r["lastEventId"] > 0 for r in mine[0]["runs"]
            )

        await until(reported, "the mirror to report the run", timeout=20)
        shown = await asyncio.to_thread(runrecord, "mirror", "status", env=cli_env)
        assert shown.returncode == 0, shown.stderr
        assert mirror.mirror_id in shown.stdout and run_id in shown.stdout
        status = json.loads(
            (await asyncio.to_thread(runrecord, "mirror", "status", "--json", env=cli_env)).stdout
        )
        (mine,) = [m for m in status["mirrors"] if m["mirrorId"] == mirror.mirror_id]
        (run,) = [r for r in mine["runs"] if r["workflowId"] == run_id]
        assert mine["alive"] is True
        assert 0 <= run["lagMs"] < 60_000
        assert datetime.fromisoformat(mine["heartbeatAt"]) <= datetime.now(UTC)
        await handle.signal(agents.Waiter.proceed)
        await handle.result()
    # A stopped mirror takes itself off the list.
    after = json.loads(
        (await asyncio.to_thread(runrecord, "mirror", "status", "--json", env=cli_env)).stdout
    )
    assert mirror.mirror_id not in [m["mirrorId"] for m in after["mirrors"]]
