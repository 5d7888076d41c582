"""One bad value never stops recording: a NUL in any text is stored as a visible escape, a run
the database refuses is quarantined while the others are written, and a bad journal line is set
aside while the lines after it are drained.

Real Temporal (the dev server) and real PostgreSQL throughout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from runrecord._contract import JournalEntry
from runrecord.cli._approvals import send_decision
from runrecord.recorder import DatabaseBlobStore, Mirror
from runrecord.recorder._store import storable
from runrecord.records import Attempt, AttemptOutcome
from runrecord.worker import Journal
from tests import agents_for_bad_values as bad
from tests import mirror_agents
from tests.test_approvals import waiting_for
from tests.test_cli import runrecord
from tests.test_mirror import all_finished, caught_up, following, load, start_streamers, until

ESCAPED = "\\u0000"  # the six characters a NUL is stored as


@asynccontextmanager
async def agents_worker(client: Client) -> AsyncIterator[str]:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[*bad.WORKFLOWS, *mirror_agents.WORKFLOWS],
        activities=[*bad.ACTIVITIES, *mirror_agents.ACTIVITIES],
    ):
        yield queue


async def status(cli_env: dict[str, str]) -> dict[str, Any]:
    shown = await asyncio.to_thread(runrecord, "mirror", "status", "--json", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def quarantined(report: dict[str, Any]) -> dict[str, str]:
    return {q["runId"]: q["error"] for m in report["mirrors"] for q in m["quarantined"]}


async def test_a_nul_in_every_recorded_text_is_escaped_and_the_next_run_is_recorded_too(
    client: Client, journal: Journal, engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = str(tmp_path / "notes.txt")
    nul_run = f"nul-{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC).isoformat()  # verify --all: the agent runs of this test
    async with agents_worker(client) as queue, following(client, engine, journal):
        handle = await client.start_workflow(bad.NulAgent.run, path, id=nul_run, task_queue=queue)
        await waiting_for(client, nul_run, "4")
        await send_decision(client, nul_run, "4", "approve", approver="ines", reason="fine\x00ok")
        await waiting_for(client, nul_run, "5")
        await send_decision(client, nul_run, "5", "deny", approver="ines", reason="not\x00now")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        # An ordinary run after it: the bad values of the first must not hold it back.
        (ordinary,) = await start_streamers(client, queue, tmp_path, "ordinary", 1, 2)
        await all_finished(client, [ordinary])
        await until(caught_up(engine, [ordinary], 3), "the ordinary run in the records")

        async def nul_run_recorded() -> bool:
            r = await asyncio.to_thread(load, engine, nul_run)
            return (
                r is not None
                and r.final_status == "escalated"
                and len(r.tool_calls) == 5
                and bool(r.artifacts)
                and bool(r.tool_calls[0].retry_state.history)
            )

        await until(nul_run_recorded, "the run with NULs in the records")

    record = load(engine, nul_run)
    assert record is not None
    crashed, saved, model, approved, denied = record.tool_calls
    assert crashed.retry_state.last_failure is not None
    assert f"notes.txt{ESCAPED}: binary garbage" in crashed.retry_state.last_failure
    (attempt,) = crashed.retry_state.history
    assert attempt.error is not None and f"notes.txt{ESCAPED}: binary garbage" in attempt.error
    (artifact,) = record.artifacts
    assert artifact.uri == f"file://{path}{ESCAPED}.bak"
    (model_call,) = record.model_calls
    assert model_call.model == f"scripted{ESCAPED}1"
    assert model_call.parameters[f"stop{ESCAPED}key"] == f"end{ESCAPED}value"
    assert approved.approval is not None and approved.approval.reason == f"fine{ESCAPED}ok"
    assert denied.approval is not None and denied.approval.reason == f"not{ESCAPED}now"
    assert record.failure is not None and f"not{ESCAPED}now" in record.failure
    assert saved.status == "succeeded" and model.status == "succeeded"

    verified = await asyncio.to_thread(
        runrecord, "mirror", "verify", nul_run, ordinary, env=cli_env
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().endswith("2 run(s) checked: no difference")
    # --all also asks Temporal for agent runs the records lack: none of this test's.
    everything = await asyncio.to_thread(
        runrecord, "mirror", "verify", "--all", "--since", started, env=cli_env
    )
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert everything.stdout.strip().endswith("checked: no difference")


async def test_a_nul_in_a_run_id_holds_no_other_run_back(
    client: Client, journal: Journal, engine: Engine, tmp_path: Path
) -> None:
    odd = f"odd\x00{uuid.uuid4().hex[:8]}"  # Temporal takes it
    async with agents_worker(client) as queue, following(client, engine, journal):
        await client.execute_workflow(
            mirror_agents.Streamer.run,
            args=[2, str(tmp_path / "odd.txt"), False],
            id=odd,
            task_queue=queue,
        )
        (ordinary,) = await start_streamers(client, queue, tmp_path, "ordinary", 1, 2)
        await all_finished(client, [ordinary])
        await until(caught_up(engine, [ordinary, storable(odd)], 3), "both runs in the records")
    record = load(engine, storable(odd))
    assert record is not None and record.run_id == odd.replace("\x00", ESCAPED)


def _copies(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM blobs")).scalar_one())


async def test_a_run_the_database_refuses_is_quarantined_while_the_others_land(
    client: Client, journal: Journal, engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    prefix = f"refused-{uuid.uuid4().hex[:6]}"
    refused = f"{prefix}-1"
    # Whatever escaping does, a database can still refuse a run's rows: here a trigger does.
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_one_run() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF NEW.run_id = '{refused}' THEN "
                "RAISE EXCEPTION 'tool_calls refuses run %', NEW.run_id; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_one_run BEFORE INSERT OR UPDATE ON tool_calls "
                "FOR EACH ROW EXECUTE FUNCTION refuse_one_run()"
            )
        )
    # Payload copies in the records database go in the rows' own transaction.
    blobs = DatabaseBlobStore(engine)
    async with agents_worker(client) as queue, following(client, engine, journal, blobs=blobs):
        ids = [f"{prefix}-{n}" for n in range(4)]
        for run_id in ids:
            await client.start_workflow(
                mirror_agents.Streamer.run,
                args=[2, str(tmp_path / f"{run_id}.txt"), False],
                id=run_id,
                task_queue=queue,
            )
        await all_finished(client, ids)
        others = [r for r in ids if r != refused]
        await until(caught_up(engine, others, 3), "the other runs in the records")
        held = load(engine, refused)
        assert held is None or not held.tool_calls

        async def named_in_status() -> bool:
            return refused in quarantined(await status(cli_env))

        await until(named_in_status, "mirror status to name the quarantined run")
        error = quarantined(await status(cli_env))[refused]
        assert "tool_calls refuses run" in error and "\n" not in error
        assert list(quarantined(await status(cli_env))) == [refused]
        shown = await asyncio.to_thread(runrecord, "mirror", "status", env=cli_env)
        assert shown.returncode == 0, shown.stderr
        assert f"quarantined {refused}: " in shown.stdout

        copies_while_refused = _copies(engine)

        # Retried with backoff: once the database takes the rows, the run lands and leaves
        # the quarantine.
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_one_run ON tool_calls"))
        await until(caught_up(engine, [refused], 3), "the refused run, retried", timeout=90)
        # Its payload copies (its inputs name its own file) were undone with its refused
        # rows, and land with them.
        assert _copies(engine) > copies_while_refused

        async def released() -> bool:
            return refused not in quarantined(await status(cli_env))

        await until(released, "the quarantine to clear")
    verified = await asyncio.to_thread(runrecord, "mirror", "verify", *ids, env=cli_env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_bad_journal_line_is_set_aside_and_the_lines_after_it_are_drained(
    client: Client,
    journal: Journal,
    engine: Engine,
    cli_env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with agents_worker(client) as queue:
        (before,) = await start_streamers(client, queue, tmp_path, "before", 1, 2)
        await all_finished(client, [before])
        # Invalid UTF-8, invalid JSON, JSON that is no journal entry, and an entry whose row
        # the database cannot hold (a run id longer than its column).
        with open(journal.path, "ab") as f:
            f.write(b'{"kind": "attempt", "runId": "\xff\xfe", "toolCallId": "1"}\n')
            f.write(b"{not json at all\n")
            f.write(b'{"kind": "attempt"}\n')
        journal.record(
            JournalEntry(
                kind="attempt",
                run_id="r" * 300,
                tool_call_id="1",
                attempt=Attempt(attempt=1, outcome=AttemptOutcome.FAILED, error="x"),
            )
        )
        (after,) = await start_streamers(client, queue, tmp_path, "after", 1, 2)
        await all_finished(client, [after])

    mirror = Mirror(client, engine, journal_dir=journal.directory)
    with caplog.at_level(logging.WARNING, logger="runrecord.mirror"):
        await asyncio.to_thread(mirror.drain_journal)
    for run_id in (before, after):
        await mirror.sync_run(run_id)
    assert await caught_up(engine, [before, after], 3)()

    set_aside = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(set_aside) == 4, set_aside
    assert all(journal.path.name in line for line in set_aside)
    aside = journal.directory / "set-aside" / journal.path.name
    assert len(aside.read_bytes().splitlines()) == 4

    # Counted where an operator looks, once: draining again sets nothing more aside.
    await asyncio.to_thread(mirror.drain_journal)
    report = await status(cli_env)
    assert report["journal"]["linesSetAside"] == 4
    (counted,) = report["journal"]["files"]
    assert counted["file"] == journal.path.name and counted["linesSetAside"] == 4
    assert "value too long" in counted["lastProblem"]
    shown = await asyncio.to_thread(runrecord, "mirror", "status", env=cli_env)
    assert "4 journal line(s) set aside" in shown.stdout


async def test_every_unstorable_code_point_reaches_the_records_as_a_visible_escape(
    client: Client, journal: Journal, engine: Engine
) -> None:
    hostile = "a\x00b\ud800c\udfffd"
    assert storable(hostile) == "a\\u0000b\\ud800c\\udfffd"
    assert storable({"k\x00": [hostile, 1, None]}) == {"k\\u0000": [storable(hostile), 1, None]}
    assert storable("plain ✓") == "plain ✓"
    # A lone surrogate (an undecodable file name, say) cannot even be a journal line as it is.
    journal.record(
        JournalEntry(
            kind="attempt",
            run_id="surrogates",
            tool_call_id="1",
            attempt=Attempt(attempt=1, outcome=AttemptOutcome.FAILED, error=hostile),
        )
    )
    await asyncio.to_thread(Mirror(client, engine, journal_dir=journal.directory).drain_journal)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT error FROM tool_call_attempts")).scalar_one()
    assert stored == "a\\u0000b\\ud800c\\udfffd"
