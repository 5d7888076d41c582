"""No raw secret is ever written: not to the records database, the blob store or the journal."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from temporalio.client import Client
from temporalio.worker import Worker

from runrecord._redaction import MARK, PATTERNS_ENV, Redactor, default_redactor
from runrecord.recorder import BlobStore, Mirror, load_run
from runrecord.recorder._projection import canonical
from runrecord.worker import Journal, RunRecordPlugin
from tests import agents_for_calls as agents
from tests.redaction_corpus import (
    CONFIGURED_PATTERN,
    NAMED_FIELD_SECRET,
    SECRETS,
    all_secrets,
    leaked,
    leaks,
    secret_text,
)


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
    blobs = BlobStore(home / "blobs")
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
    blobs = BlobStore(home / "blobs")
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
        env=cli_env,
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
