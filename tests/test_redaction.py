"""No raw secret is ever written: not to the records database, the blob store or the journal."""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, text
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Replayer, Worker

from runrecord._contract import (
    APPROVE_SIGNAL,
    DENY_SIGNAL,
    EVENT_MEMO_KEY,
    CallHeader,
    ControlEvent,
)
from runrecord._redaction import MARK, PATTERNS_ENV, Redactor, default_redactor
from runrecord.cli._approvals import pending_approvals
from runrecord.recorder import FolderBlobStore, Mirror, load_run, open_engine
from runrecord.recorder._projection import RunProjection, canonical
from runrecord.records import Approval, ApprovalRejection, NotUndone, Rollback, RunRecord
from runrecord.worker import Journal, RunRecordPlugin
from tests import agents_for_calls as agents
from tests import control_agents as control
from tests import corpus_agents as corpus
from tests.corpus_agents import SECRET_TEXT
from tests.redaction_corpus import (
    CONFIGURED_PATTERN,
    NAMED_FIELD_SECRET,
    SECRETS,
    all_secrets,
    leaked,
    leaks,
    secret_text,
)
from tests.test_approvals import record
from tests.test_approvals import worker as approval_worker


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_each_kind_of_secret_is_redacted_from_text(name: str) -> None:
    text_with_secret, secret = SECRETS[name]
    redacted = Redactor([CONFIGURED_PATTERN]).text(text_with_secret)
    assert not leaks(secret, redacted), redacted
    assert MARK in redacted


def test_redaction_keeps_what_is_not_secret() -> None:
    redactor = Redactor([CONFIGURED_PATTERN])
    value = {
        "sha256": hashlib.sha256(b"evidence").hexdigest(),
        "message": "deployed release 1.4.0 to staging",
        "author": "alice-smith",
        "inputTokens": 12,
        "url": "https://example.com/releases/1.4.0",
    }
    assert redactor.value(value) == value


def test_secret_named_fields_are_redacted_by_name() -> None:
    redactor = Redactor()
    redacted = redactor.value(
        {
            "password": "short",
            "db": {"clientSecret": NAMED_FIELD_SECRET, "client_id": "billing-service"},
            "tokens": [{"access_token": NAMED_FIELD_SECRET}],
        }
    )
    assert redacted == {
        "password": MARK,
        "db": {"clientSecret": MARK, "client_id": "billing-service"},
        "tokens": [{"access_token": MARK}],
    }


def test_all_secrets_in_one_text_are_redacted() -> None:
    redacted = Redactor([CONFIGURED_PATTERN]).text(secret_text())
    for secret in all_secrets()[:-1]:
        assert secret not in redacted


def test_a_bad_configured_pattern_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNRECORD_", "TEMPORAL_"))}
    env.update(RUNRECORD_HOME=str(tmp_path), **{PATTERNS_ENV: "ACME-(["})
    proc = subprocess.run(
        [sys.executable, "-m", "runrecord.cli", "mirror", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"runrecord: error: {PATTERNS_ENV}: invalid redaction pattern 'ACME-([': "
        "unterminated character set at position 6"
    ]


@pytest.fixture
def configured_redaction(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """RUNRECORD_REDACT_PATTERNS set as an operator would, for this test only."""
    monkeypatch.setenv(PATTERNS_ENV, CONFIGURED_PATTERN)
    default_redactor.cache_clear()
    yield
    monkeypatch.delenv(PATTERNS_ENV)
    default_redactor.cache_clear()


def _dump_database(engine: Engine) -> str:
    with engine.connect() as conn:
        tables = conn.execute(
            text("select tablename from pg_tables where schemaname = 'public'")
        ).scalars()
        return "\n".join(
            row
            for table in list(tables)
            for row in conn.execute(text(f'select t::text from "{table}" t')).scalars()
        )


def _dump_files(*folders: Path) -> str:
    return "\n".join(
        path.read_text(errors="replace")
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    )


async def test_secrets_in_arguments_results_errors_and_prompts_are_written_nowhere(
    configured_redaction: None,
    temporal_address: str,
    engine: Engine,
    home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    journal = Journal(home / "journal")
    blobs = FolderBlobStore(home / "blobs")
    client = await Client.connect(temporal_address, plugins=[RunRecordPlugin(journal)])
    password = SECRETS["password_field"][1]
    task = agents.SecretTask(
        creds=agents.Credentials(
            service="billing",
            password=password,
            client_secret=NAMED_FIELD_SECRET,
            notes=secret_text(),
        ),
        text=secret_text(),
    )
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"secrets-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        assert await client.execute_workflow(
            agents.SecretAgent.run, task, id=run_id, task_queue=queue
        ) == ("done")
    journal.close()
    mirror = Mirror(client, engine, journal_dir=journal.directory, blobs=blobs)
    mirror.drain_journal()
    await mirror.sync_run(run_id)

    # The secrets did flow: through arguments, results and failures in Temporal history.
    events = (await client.get_workflow_handle(run_id).fetch_history()).events
    history = "\n".join(str(event) for event in events)  # payload bytes as escaped text
    for secret in all_secrets():
        assert secret in history

    written = _dump_database(engine) + _dump_files(home / "blobs", home / "journal")
    leaked = [secret for secret in all_secrets() if secret in written]
    assert leaked == []
    # Temporal logged the failed activities, with their errors, redacted.
    assert "Completing activity as failed" in caplog.text and MARK in caplog.text
    assert [secret for secret in all_secrets() if secret in caplog.text] == []

    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    echo, leaky, doomed, model = record.tool_calls
    # Errors and failures are kept, redacted.
    assert leaky.retry_state.history[0].error == (
        "RuntimeError: upstream rejected request: " + Redactor().text(secret_text())
    ).replace(SECRETS["configured_pattern"][1], MARK)
    assert doomed.status == "failed" and doomed.retry_state.last_failure
    assert doomed.retry_state.last_failure.startswith("refused for good: ")
    assert MARK in doomed.retry_state.last_failure
    assert record.artifacts[0].uri == f"https://deploy:{MARK}@artifacts.internal/build.tar"
    # Every payload has a redacted copy under the hash of the unredacted payload.
    copy = json.loads(blobs.read(echo.input_refs[0].sha256) or b"null")
    assert copy["service"] == "billing" and copy["password"] == MARK
    assert copy["client_secret"] == MARK
    assert MARK in copy["notes"] and "operations agent" not in copy["notes"]
    prompt = json.loads(blobs.read(model.input_refs[0].sha256) or b"null")
    assert prompt["prompt"]["template"] == "You are the operations agent."
    assert MARK in prompt["messages"][0]
    for call in record.tool_calls:
        for ref in [*call.input_refs, *call.output_refs]:
            assert blobs.read(ref.sha256) is not None


async def test_gc_drops_old_copies_and_records_stay_verifiable(
    client: Client, engine: Engine, journal: Journal, home: Path, cli_env: dict[str, str]
) -> None:
    blobs = FolderBlobStore(home / "blobs")
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"gc-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        await client.execute_workflow(agents.MixedAgent.run, id=run_id, task_queue=queue)
    await Mirror(client, engine, journal_dir=journal.directory, blobs=blobs).sync_run(run_id)
    copies = sorted(p for p in (home / "blobs").rglob("*") if p.is_file())
    assert copies
    old, fresh = copies[:-1], copies[-1]
    forty_days_ago = time.time() - 40 * 86400
    for path in old:
        os.utime(path, (forty_days_ago, forty_days_ago))

    proc = subprocess.run(
        [sys.executable, "-m", "runrecord.cli", "gc", "--older-than", "30d", "--json"],
        env={**cli_env, "RUNRECORD_BLOBS": str(home / "blobs")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert (counts["removed"], counts["kept"]) == (len(old), 1)
    assert [p for p in copies if p.exists()] == [fresh]

    # The record still says exactly which payloads the calls saw.
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    history = await client.get_workflow_handle(run_id).fetch_history()
    scheduled = [
        e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
    ]
    remote = [c for c in record.tool_calls if not c.local]
    for call, event in zip(remote, scheduled, strict=True):
        (payload,) = event.activity_task_scheduled_event_attributes.input.payloads
        data, media_type = canonical(payload)
        assert call.input_refs[0].sha256 == hashlib.sha256(data).hexdigest()
        assert (call.input_refs[0].size, call.input_refs[0].media_type) == (len(data), media_type)


def test_secrets_used_as_keys_are_redacted_and_no_entry_is_lost() -> None:
    github = SECRETS["github_fine_grained_token"][1]
    stripe = SECRETS["stripe_long_live_key"][1]
    value = {
        github: "ops-bot",
        "tokens": {stripe: 1, SECRETS["npm_token"][1]: 2, "count": 3},
        MARK: "a key that was already redacted",
    }
    redacted = Redactor().value(value)
    assert leaked(json.dumps(redacted)) == []
    assert sorted(redacted) == [MARK, f"{MARK}#2", "tokens"]
    assert sorted(redacted.values(), key=str) == sorted(
        ["ops-bot", "a key that was already redacted", redacted["tokens"]], key=str
    )
    assert sorted(redacted["tokens"]) == [MARK, f"{MARK}#2", "count"]
    assert sorted(redacted["tokens"].values()) == [1, 2, 3]


def test_an_environment_list_names_its_secret_values() -> None:
    aws = SECRETS["aws_secret_key_env"][1]
    env = [
        {"name": "AWS_SECRET_ACCESS_KEY", "value": aws},
        {"Name": "DB_PASSWORD", "Value": "hunter2"},
        {"name": "REGION", "value": "eu-west-1"},
    ]
    assert Redactor().value({"environment": env}) == {
        "environment": [
            {"name": "AWS_SECRET_ACCESS_KEY", "value": MARK},
            {"Name": "DB_PASSWORD", "Value": MARK},
            {"name": "REGION", "value": "eu-west-1"},
        ]
    }


@pytest.mark.parametrize("name", ["github_fine_grained_token", "aws_secret_key_env", "jwt"])
def test_a_text_is_redacted_whole_then_cut(name: str) -> None:
    """A secret straddling the cut must not leave its first half behind."""
    text_with_secret, secret = SECRETS[name]
    start = text_with_secret.index(secret)
    filler = "x" * (1990 - start - len(secret) // 2)
    long_text = filler + text_with_secret + " and more" * 50
    cut = Redactor().text(long_text, limit=2000)
    assert len(cut) <= 2000 and cut.endswith("...")
    assert not leaks(secret, cut), cut[-80:]


# --- the whole corpus, through every door, on the real stack

ROOT = Path(__file__).resolve().parents[1]


def _pg_dump(database_url: str) -> str:
    """The scratch database as ``pg_dump`` writes it (the newest client on this machine)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_dump")
    binary = max(found, key=lambda p: int(Path(p).parts[-3])) if found else shutil.which("pg_dump")
    if binary is None:
        pytest.fail("no pg_dump: install the PostgreSQL client (postgresql-client)", pytrace=False)
    url = make_url(database_url).set(drivername="postgresql")
    proc = subprocess.run(
        [binary, "--no-owner", url.render_as_string(hide_password=False)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _start_corpus_worker(env: dict[str, str], queue: str, log: Path) -> subprocess.Popen[bytes]:
    """`runrecord worker` (with its mirror) for the corpus agents, its output kept in ``log``."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runrecord.cli",
                "worker",
                "--module",
                "tests.corpus_agents",
                "--task-queue",
                queue,
            ],
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 60
    while "Worker on" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("worker did not start:\n" + log.read_text(errors="replace")[-2000:])
        time.sleep(0.1)
    return proc


def _written_by_runrecord(events: Iterable[HistoryEvent], *, signals: bool = True) -> str:
    """What runrecord (its interceptor and its CLI) wrote into a run's history: memo, headers,
    search attributes, its signals, pause and reset reasons, the failures it raised. The
    agent's own activity arguments, results and errors are the user's, and left out."""
    parts: list[bytes | str] = []

    def payloads(fields: Iterable[Payload]) -> None:
        parts.extend(p.data for p in fields)

    for e in events:
        if e.HasField("workflow_execution_started_event_attributes"):
            a = e.workflow_execution_started_event_attributes
            payloads(a.header.fields.values())
            payloads(a.memo.fields.values())
            payloads(a.search_attributes.indexed_fields.values())
        elif e.HasField("workflow_properties_modified_event_attributes"):
            payloads(e.workflow_properties_modified_event_attributes.upserted_memo.fields.values())
        elif e.HasField("upsert_workflow_search_attributes_event_attributes"):
            attrs = e.upsert_workflow_search_attributes_event_attributes
            payloads(attrs.search_attributes.indexed_fields.values())
        elif e.HasField("activity_task_scheduled_event_attributes"):
            payloads(e.activity_task_scheduled_event_attributes.header.fields.values())
        elif e.HasField("workflow_execution_signaled_event_attributes"):
            signal = e.workflow_execution_signaled_event_attributes
            if signals and signal.signal_name.startswith("runrecord."):
                payloads(signal.input.payloads)
            payloads(signal.header.fields.values())
        elif e.HasField("workflow_execution_paused_event_attributes"):
            parts.append(e.workflow_execution_paused_event_attributes.reason)
        elif e.HasField("workflow_execution_unpaused_event_attributes"):
            parts.append(e.workflow_execution_unpaused_event_attributes.reason)
        elif e.HasField("workflow_task_failed_event_attributes"):
            parts.append(e.workflow_task_failed_event_attributes.failure.message)
        elif e.HasField("workflow_execution_failed_event_attributes"):
            failure = e.workflow_execution_failed_event_attributes.failure  # not its cause
            parts.append(failure.message)
            payloads(failure.application_failure_info.details.payloads)
    return "\n".join(p.decode(errors="replace") if isinstance(p, bytes) else p for p in parts)


def _few_secrets(part: int, parts: int = 6) -> str:
    """Every ``parts``-th corpus text: short enough for a Temporal pause reason."""
    return "\n".join([text for text, _ in SECRETS.values()][part::parts])


async def waiting_for(client: Client, run_id: str, call: str) -> None:
    """Until ``call`` of ``run_id`` waits for a decision (generous: the machine may be busy)."""
    deadline = time.monotonic() + 60
    while not any(r.tool_call_id == call for r in await pending_approvals(client, run_id)):
        if time.monotonic() > deadline:
            pytest.fail(f"call {call} of {run_id} never asked for approval")
        await asyncio.sleep(0.1)


async def _until_recorded(
    engine: Engine, run_id: str, done: Callable[[RunRecord], bool]
) -> RunRecord:
    deadline = time.monotonic() + 90
    while True:
        with engine.connect() as conn:
            found = load_run(conn, run_id)
        if found is not None and done(found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} never reached the expected record: {found}")
        await asyncio.sleep(0.25)


async def test_no_secret_of_the_corpus_leaves_through_any_door(
    configured_redaction: None,
    temporal_address: str,
    engine: Engine,
    database_url: str,
    home: Path,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {**cli_env, PATTERNS_ENV: CONFIGURED_PATTERN}
    outputs: dict[str, str] = {}

    async def cli(*args: str, stdin: str | None = None, ok: bool = True) -> str:
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "runrecord.cli", *args],
            env=env,
            cwd=ROOT,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert (proc.returncode == 0) == ok, f"{args[:2]}: {proc.stderr[-3000:]}"
        outputs[" ".join(a[:40] for a in args)] = proc.stdout + proc.stderr
        return proc.stdout

    queue = f"tq-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = _start_corpus_worker(env, queue, log)
    try:
        client = await Client.connect(temporal_address, plugins=[RunRecordPlugin()])
        a, b = f"corpus-{uuid.uuid4().hex[:8]}", f"waiter-{uuid.uuid4().hex[:8]}"
        task = corpus.CorpusTask(text=SECRET_TEXT, keyed=corpus.KEYED)
        run_a = await client.start_workflow(corpus.CorpusAgent.run, task, id=a, task_queue=queue)
        await client.start_workflow(corpus.CorpusWaiter.run, SECRET_TEXT, id=b, task_queue=queue)
        await waiting_for(client, a, "3")
        await waiting_for(client, b, "2")
        await cli("approvals")
        await cli("approvals", "--json")

        # Reasons from standard input, a file and the command line.
        await cli("approve", a, "3", "--as", "alice", "--reason-file", "-", stdin=SECRET_TEXT)
        await waiting_for(client, a, "4")
        await cli("deny", a, "4", "--as", "bob", "--reason", SECRET_TEXT)
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(run_a.result(), 90)

        # Temporal refuses long pause reasons: these carry a few secrets each.
        reason_file = tmp_path / "reason.txt"
        reason_file.write_text(_few_secrets(0))
        await cli("pause", b, "--as", "olga", "--reason-file", str(reason_file))
        await cli("resume", b, "--as", "olga", "--reason", _few_secrets(1))
        await cli("reset", b, "--to-call", "2", "--reason-file", "-", stdin=SECRET_TEXT)
        await waiting_for(client, b, "2")
        await cli("rollback", b, "--as", "fay", "--reason", SECRET_TEXT, ok=False)

        record_a = await _until_recorded(
            engine,
            a,
            lambda r: (
                r.final_status == "rollback_incomplete"
                and len(r.tool_calls[1].retry_state.history) == 2
                and bool(r.artifacts)
            ),
        )
        record_b = await _until_recorded(
            engine,
            b,
            lambda r: r.final_status == "rollback_incomplete" and len(r.temporal_runs) == 2,
        )
        for run_id in (a, b):
            await cli("show", run_id)
            await cli("show", run_id, "--json")
        await cli("runs")
        await cli("runs", "--json")
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()

    # The secrets did flow: the agent's own payloads in history carry every one of them.
    history_a = await client.get_workflow_handle(a).fetch_history()
    assert leaked(str(history_a.events)) == all_secrets()

    # What was recorded is there, redacted.
    calls = {c.tool_call_id: c for c in record_a.tool_calls}
    approved, denied = calls["3"].approval, calls["4"].approval
    assert (
        approved is not None and approved.decided_by == "alice" and MARK in (approved.reason or "")
    )
    assert denied is not None and denied.decided_by == "bob" and MARK in (denied.reason or "")
    error = calls["2"].retry_state.history[0].error or ""
    assert error.startswith("RuntimeError: xxx") and MARK in error and len(error) <= 2000
    assert record_a.rollback is not None and record_a.rollback.reason is not None
    assert record_a.rollback.reason.startswith("ApplicationError: xxx")
    assert MARK in record_a.rollback.reason and len(record_a.rollback.reason) <= 500
    missed = next(n for n in record_a.rollback.not_undone if n.tool == "keep_note")
    assert missed.why.startswith("compensator forget_note failed: ApplicationError: xxx")
    assert MARK in missed.why and len(missed.why) <= 500
    assert MARK in record_a.artifacts[0].uri
    assert record_b.rollback is not None and MARK in (record_b.rollback.reason or "")
    assert MARK in (record_b.temporal_runs[1].reset_reason or "")

    with open_engine(database_url).connect() as conn:
        copies = [bytes(c) for c in conn.execute(text("select content from blobs")).scalars()]
    # The copies are in the records database by default, where pg_dump shows them as hex.
    assert any(MARK.encode() in copy for copy in copies)
    written = {
        "pg_dump": _pg_dump(database_url),
        "blob copies in the records database": b"\n".join(copies).decode(errors="replace"),
        "blob store, journal and home": _dump_files(home),
        "worker and mirror log": log.read_text(errors="replace"),
        **{f"runrecord {command}": text for command, text in outputs.items()},
    }
    for run_id, recorded in ((a, record_a), (b, record_b)):
        for temporal_run in recorded.temporal_run_ids:
            history = await client.get_workflow_handle(run_id, run_id=temporal_run).fetch_history()
            written[f"history of {run_id}/{temporal_run}"] = _written_by_runrecord(history.events)
    assert (
        MARK in written["pg_dump"]
        and "Completing activity as failed" in written["worker and mirror log"]
    )
    leaks_by_door = {door: leaked(text) for door, text in written.items()}
    assert {door: found for door, found in leaks_by_door.items() if found} == {}


async def test_reasons_signalled_around_the_cli_are_redacted_by_the_run(
    configured_redaction: None, temporal_address: str, journal: Journal, engine: Engine
) -> None:
    """A decision can come from the Temporal UI or raw gRPC, unredacted: the run redacts what it
    records (memo, the ToolDenied it raises), replays the same, and the records hold no secret."""
    async with approval_worker(temporal_address, journal) as (client, queue):
        run_id = f"deploy-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            control.Deployer.run, ["prod-a", "prod-b"], id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "1")
        decision = {"toolCallId": "1", "approver": "alice", "reason": SECRET_TEXT}
        await handle.signal(APPROVE_SIGNAL, {**decision, "runId": SECRET_TEXT})  # refused
        await handle.signal(APPROVE_SIGNAL, decision)
        await waiting_for(client, run_id, "2")
        await handle.signal(DENY_SIGNAL, {**decision, "toolCallId": "2", "approver": "bob"})
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), 60)
    history = await client.get_workflow_handle(run_id).fetch_history()
    assert leaked(_written_by_runrecord(history.events, signals=False)) == []
    replayer = Replayer(workflows=control.WORKFLOWS, plugins=[RunRecordPlugin()])
    assert (
        await replayer.replay_workflow(history, raise_on_replay_failure=False)
    ).replay_failure is None

    done = await record(client, engine, run_id)
    assert done.final_status == "escalated"
    approved, denied = (c.approval for c in done.tool_calls)
    assert approved is not None and (approved.state, approved.decided_by) == ("approved", "alice")
    assert denied is not None and (denied.state, denied.decided_by) == ("denied", "bob")
    assert MARK in (approved.reason or "") and MARK in (denied.reason or "")
    (refused,) = done.approval_rejections
    assert refused.reason.startswith("the decision names run ") and MARK in refused.reason
    assert MARK in (done.failure or "")
    assert leaked(done.model_dump_json()) == []


def test_the_projection_redacts_reasons_a_run_recorded_unredacted(
    configured_redaction: None,
) -> None:
    """Defence in depth: a memo written by older code, or by anything else, is redacted when
    it becomes a record."""
    header = CallHeader(
        tool_call_id="1",
        tool="deploy",
        side_effect="deploy",
        run_id="r",
        approval=Approval(state="denied", decided_by="bob", reason=SECRET_TEXT),
    )
    rollback = Rollback(
        requested_by="fay",
        reason=SECRET_TEXT,
        not_undone=[NotUndone(tool_call_id="1", tool="deploy", why=SECRET_TEXT)],
        outcome="rollback_incomplete",
    )
    rejection = ApprovalRejection(decision="approve", approver="eve", reason=SECRET_TEXT)
    events = [HistoryEvent(event_id=1, event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)]
    for event in (
        ControlEvent(kind="decided", call=header),
        ControlEvent(kind="rejected", rejection=rejection),
        ControlEvent(kind="rollback", rollback=rollback),
    ):
        modified = HistoryEvent(
            event_id=len(events) + 1,
            event_type=EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
        )
        memo = modified.workflow_properties_modified_event_attributes.upserted_memo
        memo.fields[EVENT_MEMO_KEY].metadata["encoding"] = b"json/plain"
        memo.fields[EVENT_MEMO_KEY].data = event.model_dump_json(by_alias=True).encode()
        events.append(modified)
    projection = RunProjection("r")
    projection.apply_all(events)
    done = projection.record()
    assert leaked(done.model_dump_json()) == []
    assert done.tool_calls[0].approval is not None
    assert MARK in (done.tool_calls[0].approval.reason or "")
    assert MARK in done.approval_rejections[0].reason
    assert done.rollback is not None and MARK in (done.rollback.reason or "")
    assert MARK in done.rollback.not_undone[0].why


def test_a_reason_comes_from_one_place_or_one_clear_line_says_why(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-reason.txt"
    for args, needle in (
        (("pause", "r", "--reason", "x", "--reason-file", "-"), "not both"),
        (("approve", "r", "1", "--reason-file", str(missing)), "cannot read --reason-file"),
        (("pause", "r", "--reason-file", "-"), "give a reason with --reason or --reason-file"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "runrecord.cli", *args],
            env=cli_env,
            input="",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stdout
        assert proc.stderr.startswith("runrecord: error: ") and needle in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
