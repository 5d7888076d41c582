"""Production topology: workers on two machines ship their own attempts and artifacts, one
`runrecord mirror run` on a third records every run, and nothing is lost to a killed
worker (restarted, then its disk deleted) or to a records database unreachable for 20 s.

Each "machine" is a process with a RUNRECORD_HOME of its own. A worker reaches PostgreSQL
through a TCP proxy this test controls (`tests._tcp_proxy`): cutting the proxy makes the
database unreachable for that worker alone, without stopping the server other tests use.
The mirror polls visibility once when it starts (before any run) and then only every
10 minutes, so it can find the runs only through the workers' NOTIFY.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url
from temporalio.client import Client

from runrecord._contract import JournalEntry
from runrecord.recorder import Mirror, Shipper
from runrecord.recorder._tables import ArtifactRow, AttemptRow, RunRow, ToolCallRow
from runrecord.records import Attempt
from runrecord.worker import Journal
from runrecord.worker import _journal as journal_module
from tests import agents_for_topology as agents
from tests._tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[1]
CALLS = 4


def _process(env: dict[str, str], args: list[str], ready: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runrecord.cli", *args],
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
        if line.startswith(ready):
            # Keep reading its output, so a full pipe never blocks it.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc
    proc.kill()
    pytest.fail(f"{' '.join(args)} did not start:\n" + "".join(seen[-20:]))


def _worker(env: dict[str, str], queue: str) -> subprocess.Popen[str]:
    args = ["worker", "--module", "tests.agents_for_topology", "--task-queue", queue]
    return _process(env, [*args, "--no-mirror"], "Worker on")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def proxies(database_url: str) -> Iterator[tuple[TcpProxy, TcpProxy]]:
    url = make_url(database_url)
    made = (TcpProxy(url.host or "127.0.0.1", url.port or 5432) for _ in range(2))
    a, b = made
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _through(database_url: str, proxy: TcpProxy) -> str:
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


def _attempts(engine: Engine, run_ids: list[str]) -> dict[tuple[str, str], list[tuple[int, str]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                AttemptRow.run_id, AttemptRow.tool_call_id, AttemptRow.attempt, AttemptRow.outcome
            )
            .where(AttemptRow.run_id.in_(run_ids))
            .order_by(AttemptRow.run_id, AttemptRow.tool_call_id, AttemptRow.attempt)
        ).all()
    found: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for run_id, call_id, attempt, outcome in rows:
        found.setdefault((run_id, call_id), []).append((int(attempt), str(outcome)))
    return found


def _artifacts(engine: Engine, run_ids: list[str]) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(ArtifactRow.run_id, ArtifactRow.uri).where(ArtifactRow.run_id.in_(run_ids))
        ).all()
    return {(r, u) for r, u in rows}


def _finished(engine: Engine, run_ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(RunRow.run_id).where(
                    RunRow.run_id.in_(run_ids), RunRow.final_status == "succeeded"
                )
            ).scalars()
        )


def _calls(engine: Engine, run_ids: list[str]) -> int:
    with engine.connect() as conn:
        return len(
            conn.execute(
                select(ToolCallRow.run_id).where(
                    ToolCallRow.run_id.in_(run_ids), ToolCallRow.status == "succeeded"
                )
            ).all()
        )


def _expected_artifacts(run_ids: list[str]) -> set[tuple[str, str]]:
    return {(r, f"part://{r}/{n}") for r in run_ids for n in range(CALLS)}


async def _until(check, what: str, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def _wait_file(path: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} never appeared")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    return path.read_text()


async def test_workers_on_two_machines_and_a_mirror_on_a_third_lose_nothing(
    client: Client,
    engine: Engine,
    cli_env: dict[str, str],
    database_url: str,
    proxies: tuple[TcpProxy, TcpProxy],
    tmp_path: Path,
) -> None:
    proxy_a, proxy_b = proxies
    homes = {name: tmp_path / f"machine-{name}" for name in ("a", "b", "m")}
    queues = {name: f"tq-{name}-{uuid.uuid4().hex[:6]}" for name in ("a", "b")}
    env_a = {**cli_env, "RUNRECORD_HOME": str(homes["a"])}
    env_a["RUNRECORD_DATABASE_URL"] = _through(database_url, proxy_a)
    env_b = {**cli_env, "RUNRECORD_HOME": str(homes["b"])}
    env_b["RUNRECORD_DATABASE_URL"] = _through(database_url, proxy_b)
    env_m = {**cli_env, "RUNRECORD_HOME": str(homes["m"])}
    prefix = f"topo-{uuid.uuid4().hex[:6]}"
    runs: list[str] = []

    async def start(queue: str, name: str, gate: str = "", gated: int = -1) -> object:
        run_id = f"{prefix}-{name}"
        runs.append(run_id)
        return await client.start_workflow(
            agents.Spooler.run, args=[CALLS, gate, gated], id=run_id, task_queue=queue
        )

    # The mirror first, with nothing to follow yet: every run below is found by NOTIFY.
    mirror = _process(env_m, ["mirror", "run", "--poll-interval", "600"], "Mirroring")
    worker_a = _worker(env_a, queues["a"])
    worker_b = _worker(env_b, queues["b"])
    try:
        # 1. Both machines at work.
        handles = [await start(queues[m], f"{m}{i}") for m in ("a", "b") for i in range(3)]
        await asyncio.gather(*(h.result() for h in handles))  # type: ignore[attr-defined]

        # 2. Machine A loses the database, is SIGKILLed mid-call with lines only in its
        # spool, is restarted (it ships what its predecessor left), and its disk deleted.
        proxy_a.cut()
        gate = tmp_path / "gate"
        killed = await start(queues["a"], "killed", str(gate), gated=2)
        assert int(await _wait_file(Path(f"{gate}.waiting"))) == worker_a.pid
        worker_a.send_signal(signal.SIGKILL)
        worker_a.wait(timeout=10)
        killed_id = runs[-1]
        assert _attempts(engine, [killed_id]) == {}, "shipped although the database was cut"
        spooled = sum(
            len(p.read_bytes().splitlines()) for p in (homes["a"] / "journal").glob("*.jsonl")
        )
        assert spooled >= 5  # calls 0 and 1 (start, end, artifact) and call 2's start
        gate.write_text("open")
        proxy_a.restore()
        worker_a = _worker(env_a, queues["a"])
        await killed.result()  # type: ignore[attr-defined]
        _stop(worker_a)
        shutil.rmtree(homes["a"])

        # 3. Machine B cannot reach the database for 20 s while its runs go on.
        proxy_b.cut()
        cut_at = time.monotonic()
        outage = [await start(queues["b"], f"outage{i}") for i in range(3)]
        await asyncio.gather(*(h.result() for h in outage))  # type: ignore[attr-defined]
        outage_ids = runs[-3:]
        assert _attempts(engine, outage_ids) == {}, "shipped although the database was cut"
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - cut_at)))
        proxy_b.restore()

        # Everything arrives: history-derived rows from the mirror, attempts and
        # artifacts from the workers' shippers.
        await _until(lambda: _finished(engine, runs) == set(runs), "every run to be mirrored")
        await _until(lambda: _calls(engine, runs) == CALLS * len(runs), "every call")
        await _until(
            lambda: _artifacts(engine, runs) == _expected_artifacts(runs), "every artifact"
        )
        expected = {
            (run_id, str(n + 1)): [(1, "succeeded")] for run_id in runs for n in range(CALLS)
        }
        # The killed attempt stays on record as started and never ended; its retry succeeded.
        expected[(killed_id, "3")] = [(1, "running"), (2, "succeeded")]
        await _until(lambda: _attempts(engine, runs) == expected, "every attempt")
    finally:
        for proc in (worker_a, worker_b, mirror):
            _stop(proc)

    # And the records agree with history, run by run (attempts included).
    checker = Mirror(client, engine)
    for run_id in runs:
        assert await checker.verify(run_id) == [], run_id


def test_journal_drain_ships_a_dead_workers_folder_once(
    engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "old-disk" / "journal"
    journal = Journal(folder)
    started = datetime.now(UTC)
    for n in range(3):
        attempt = Attempt(attempt=1, started_at=started, ended_at=started, outcome="succeeded")
        journal.record(
            JournalEntry(kind="attempt", run_id="gone-1", tool_call_id=str(n + 1), attempt=attempt)
        )
    journal.close()

    def drain(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runrecord.cli", "journal", "drain", *args],
            cwd=ROOT,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    first = drain(str(folder))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("shipped 3 journal line(s) from 1 file(s)")
    assert _attempts(engine, ["gone-1"]) == {
        ("gone-1", str(n + 1)): [(1, "succeeded")] for n in range(3)
    }
    assert not journal.path.exists(), "a shipped file whose writer is gone is removed"
    again = drain(str(folder), "--json")
    assert again.returncode == 0 and '"linesShipped": 0' in again.stdout
    missing = drain(str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [
        f"runrecord: error: no journal folder at {tmp_path / 'nowhere'}"
    ]


def _attempt_entry(run_id: str, n: int) -> JournalEntry:
    now = datetime.now(UTC)
    attempt = Attempt(attempt=1, started_at=now, ended_at=now, outcome="succeeded")
    return JournalEntry(kind="attempt", run_id=run_id, tool_call_id=str(n), attempt=attempt)


def test_a_shipped_journal_file_is_removed_only_once_its_writer_is_gone(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "journal"
    live = Journal(folder)
    run_id = f"live-{uuid.uuid4().hex[:6]}"
    for n in range(3):
        live.record(_attempt_entry(run_id, n + 1))
    # A dead writer's file with a torn last line (killed mid-write).
    torn = folder / f"gone-1-deadbeef{journal_module.SUFFIX}"
    torn_run = f"torn-{uuid.uuid4().hex[:6]}"
    whole = _attempt_entry(torn_run, 1).model_dump_json(by_alias=True, exclude_none=True)
    torn.write_bytes(whole.encode() + b"\n" + b'{"kind": "attem')
    # An older writer's file (no lock taken, another name): never removed.
    legacy = folder / "old-worker-1-cafe.jsonl"
    legacy.write_bytes(b"")

    shipper = Shipper(engine, folder)  # another process's shipper, say
    assert shipper.drain() == 4
    assert _attempts(engine, [run_id, torn_run]) == {
        **{(run_id, str(n + 1)): [(1, "succeeded")] for n in range(3)},
        (torn_run, "1"): [(1, "succeeded")],
    }
    assert live.path.exists(), "removed while its writer still holds it"
    assert not torn.exists() and legacy.exists()
    assert (folder / "set-aside" / torn.name).read_bytes() == b'{"kind": "attem'
    assert any("torn last line" in r.getMessage() for r in caplog.records)

    live.record(_attempt_entry(run_id, 4))
    live.close()
    assert shipper.drain() == 1
    assert not live.path.exists()
    assert len(_attempts(engine, [run_id])) == 4


def test_a_long_lived_worker_rotates_its_journal_and_keeps_only_what_is_unshipped(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "ROTATE_BYTES", 2_000)
    folder = tmp_path / "journal"
    journal = Journal(folder)
    shipper = Shipper(engine, folder, journal=journal)
    shipper.start()
    run_id = f"rotating-{uuid.uuid4().hex[:6]}"
    try:
        for n in range(60):  # about 250 bytes a line: a new file every 8 lines
            journal.record(_attempt_entry(run_id, n + 1))
        deadline = time.monotonic() + 30
        while len(_attempts(engine, [run_id])) < 60 or len(list(folder.glob("*.jsonl"))) > 1:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{len(_attempts(engine, [run_id]))} of 60 shipped, files left: "
                    f"{sorted(p.name for p in folder.glob('*.jsonl'))}"
                )
            time.sleep(0.05)
    finally:
        shipper.stop()
        journal.close()
    assert [p.name for p in folder.glob("*.jsonl")] == [journal.path.name]


def test_a_row_the_records_refuse_is_set_aside_and_the_running_shipper_goes_on(
    engine: Engine, tmp_path: Path
) -> None:
    # The lines of a shipment go in one statement; when the records refuse one row (here a
    # trigger does), the shipment is undone and shipped again line by line.
    refused = f"refused-{uuid.uuid4().hex[:6]}"
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_attempt() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF NEW.run_id = '{refused}' THEN "
                "RAISE EXCEPTION 'attempts refuse run %', NEW.run_id; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_attempt BEFORE INSERT OR UPDATE ON tool_call_attempts "
                "FOR EACH ROW EXECUTE FUNCTION refuse_attempt()"
            )
        )
    folder = tmp_path / "journal"
    journal = Journal(folder)
    shipper = Shipper(engine, folder, journal=journal)
    kept = f"kept-{uuid.uuid4().hex[:6]}"
    shipper.start()
    try:
        for entry in (_attempt_entry(kept, 1), _attempt_entry(refused, 1), _attempt_entry(kept, 2)):
            journal.record(entry)
        deadline = time.monotonic() + 30
        while len(_attempts(engine, [kept])) < 2:
            assert time.monotonic() < deadline, "the lines around the refused one not shipped"
            time.sleep(0.05)
        # The shipper's connection is still good after the refusal: later lines ship too.
        journal.record(_attempt_entry(kept, 3))
        while len(_attempts(engine, [kept])) < 3:
            assert time.monotonic() < deadline, "a line after the refusal not shipped"
            time.sleep(0.05)
    finally:
        shipper.stop()
        journal.close()
    assert _attempts(engine, [refused]) == {}
    aside = (folder / "set-aside" / journal.path.name).read_bytes().splitlines()
    assert len(aside) == 1 and refused.encode() in aside[0]
    with engine.connect() as conn:
        count, last = conn.execute(
            text("SELECT lines_set_aside, last_set_aside FROM journal_cursors WHERE file = :f"),
            {"f": journal.path.name},
        ).one()
    assert count == 1 and "attempts refuse run" in last
