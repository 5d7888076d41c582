"""Every mirror shares one blob store: the records database, a folder, or S3-compatible storage.

The S3 tests run against a real S3-compatible server the test starts on this machine
(moto's ``moto_server``), with IAM authentication on: credentials come from the standard
AWS environment variables only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from temporalio.client import Client
from temporalio.worker import Worker

from runrecord._redaction import MARK
from runrecord._settings import Settings
from runrecord.recorder import (
    BlobStore,
    BlobStoreError,
    DatabaseBlobStore,
    FolderBlobStore,
    Mirror,
    S3BlobStore,
    _blobs,
    load_run,
    open_blob_store,
)
from runrecord.recorder._blobs import canonical_json
from runrecord.recorder._tables import BlobRow
from tests import agents_for_calls as agents
from tests.redaction_corpus import SECRETS

BUCKET = "runrecord-blobs"
AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    env: dict[str, str]
    """The standard AWS variables that reach the server with a valid IAM access key."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    """A local S3-compatible server with a bucket, an IAM user allowed s3:*, and auth on."""
    binary = Path(sys.prefix) / "bin" / "moto_server"
    if not binary.exists():
        pytest.fail("no moto_server: pip install -e '.[dev]' (moto[server])", pytrace=False)
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto_server did not start", pytrace=False)
                time.sleep(0.1)
        import boto3  # the server's own admin client, for setting up the account only

        setup = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "setup",
            "aws_secret_access_key": "setup",
        }
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="runrecord-mirror")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="runrecord-mirror", PolicyName="blobs", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="runrecord-mirror")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        # From now on every request must be signed by a known access key.
        urllib.request.urlopen(
            urllib.request.Request(
                f"{endpoint}/moto-api/reset-auth",
                data=b"0",
                method="POST",
                headers={"Content-Type": "text/plain"},
            ),
            timeout=5,
        ).close()
        yield S3Server(
            endpoint,
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            },
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def aws_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """This process speaks to the local S3 server through the standard AWS variables."""
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server


def _s3_url() -> str:
    return f"s3://{BUCKET}/test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["folder", "postgres", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "folder":
        return FolderBlobStore(tmp_path / "blobs")
    if request.param == "postgres":
        engine: Engine = request.getfixturevalue("engine")
        return DatabaseBlobStore(engine)
    request.getfixturevalue("aws_env")
    return S3BlobStore(_s3_url())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stored(store: BlobStore) -> list[str]:
    return sorted(entry.sha256 for entry in store._entries())


def test_each_backend_keeps_one_redacted_copy_per_payload_and_reads_it_back(
    store: BlobStore,
) -> None:
    store.check()
    token = SECRETS["github_fine_grained_token"][1]
    payload = canonical_json({"repo": "billing", "token": token, "note": "ünïcode\x00ctl"})
    sha = _sha(payload)

    assert store.keep(sha, payload, "application/json") is True
    # The same payload from a second run, or a second mirror: nothing new is written.
    assert store.keep(sha, payload, "application/json") is False
    assert store.keep_many({sha: (payload, "application/json")}) == 0
    copy = store.read(sha)
    assert copy is not None and token.encode() not in copy
    assert json.loads(copy) == {"repo": "billing", "token": MARK, "note": "ünïcode\x00ctl"}

    text = ("line with a secret " + token + " and 10 KB of text " + "x" * 10_000).encode()
    binary = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    written = store.keep_many(
        {_sha(text): (text, "text/plain"), _sha(binary): (binary, "application/octet-stream")}
    )
    assert written == 1  # binary payloads cannot be checked for secrets: never kept
    assert store.read(_sha(binary)) is None
    assert (store.read(_sha(text)) or b"").startswith(b"line with a secret " + MARK.encode())
    assert _stored(store) == sorted([sha, _sha(text)])
    assert store.read("0" * 64) is None and store.read("not-a-sha") is None


def test_gc_on_each_backend_drops_copies_unused_past_retention(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_blobs, "RENEW_AFTER", 0.5)
    old, used, fresh = (canonical_json(f"payload {n}") for n in range(3))
    store.keep_many({_sha(old): (old, "application/json"), _sha(used): (used, "application/json")})
    time.sleep(2.2)
    # Still in use: the copy's time is renewed (S3 writes it again), so retention restarts.
    assert store.keep(_sha(used), used, "application/json") is False
    assert store.keep(_sha(fresh), fresh, "application/json") is True

    seen: list[tuple[int, int]] = []
    dry = store.collect(timedelta(seconds=2), dry_run=True, progress=lambda *c: seen.append(c))
    assert (dry.removed, dry.kept) == (1, 2) and seen[-1] == (3, 1)
    assert len(_stored(store)) == 3

    done = store.collect(timedelta(seconds=2))
    assert (done.removed, done.removed_bytes, done.kept) == (1, len(old), 2)
    assert _stored(store) == sorted([_sha(used), _sha(fresh)])
    assert store.read(_sha(old)) is None and store.read(_sha(used)) == used

    # Copies no record refers to go too, once past the grace for mirrors mid-write.
    monkeypatch.setattr(_blobs, "UNREFERENCED_GRACE", timedelta(0))
    orphans = store.collect(None, referenced={_sha(used)})
    assert (orphans.removed, orphans.kept) == (1, 1)
    assert _stored(store) == [_sha(used)]


def test_postgres_store_is_one_row_per_sha_across_mirrors(engine: Engine) -> None:
    first, second = DatabaseBlobStore(engine), DatabaseBlobStore(engine)
    payload = canonical_json({"query": "x" * 5000})
    assert first.keep(_sha(payload), payload, "application/json") is True
    assert second.keep(_sha(payload), payload, "application/json") is False
    # Two mirrors that race on the same copy both succeed; one row stays.
    second._write({_sha(payload): payload})
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(BlobRow)).scalar_one() == 1
        size = conn.execute(select(BlobRow.size)).scalar_one()
    assert size == len(payload)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runrecord.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _plain_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("RUNRECORD_", "TEMPORAL_", "AWS_"))
    }
    env.update(RUNRECORD_HOME=str(home), **extra)
    return env


def test_the_default_store_is_the_records_database_on_postgresql_and_a_folder_on_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNRECORD_BLOBS", raising=False)
    monkeypatch.setenv("RUNRECORD_HOME", str(tmp_path))
    monkeypatch.setenv("RUNRECORD_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert Settings.from_env().blobs == "postgres"
    monkeypatch.delenv("RUNRECORD_DATABASE_URL")
    assert Settings.from_env().blobs == str(tmp_path / "blobs")
    assert isinstance(open_blob_store(Settings.from_env().blobs, engine=None), FolderBlobStore)
    monkeypatch.setenv("RUNRECORD_BLOBS", "s3://bucket/prefix")
    assert Settings.from_env().blobs == "s3://bucket/prefix"
    for spec, says in (
        ("gs://bucket/x", "unsupported store"),
        ("s3:///nobucket", "no bucket"),
        ("postgres", "needs the records database"),
    ):
        with pytest.raises(BlobStoreError, match=says):
            open_blob_store(spec, engine=None)


def test_a_broken_blob_store_is_one_line_never_a_traceback(
    s3_server: S3Server, tmp_path: Path
) -> None:
    sha = "ab" * 32
    secret = s3_server.env["AWS_SECRET_ACCESS_KEY"]
    cases = [
        (
            {**s3_server.env, "RUNRECORD_BLOBS": "s3://no-such-bucket/p"},
            "the bucket does not exist (NoSuchBucket)",
        ),
        (
            {**s3_server.env, "RUNRECORD_BLOBS": _s3_url(), "AWS_SECRET_ACCESS_KEY": "wrong"},
            "credentials are refused (AWS_SECRET_ACCESS_KEY)",
        ),
        (
            {
                **s3_server.env,
                "RUNRECORD_BLOBS": _s3_url(),
                "AWS_ACCESS_KEY_ID": "AKIAUNKNOWNUNKNOWN00",
            },
            "credentials are refused (AWS_ACCESS_KEY_ID)",
        ),
        (
            {
                **s3_server.env,
                "RUNRECORD_BLOBS": _s3_url(),
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
            },
            "unreachable: no answer from http://127.0.0.1:",
        ),
        ({"RUNRECORD_BLOBS": "ftp://host/x"}, "unsupported store"),
        (
            {
                "RUNRECORD_BLOBS": "postgres",
                "RUNRECORD_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/x",
            },
            "unreachable",
        ),
    ]
    # gc and blob both, for the first case; one of them for each other case.
    commands = [("gc", "--older-than", "30d", "--json"), ("blob", sha)]
    runs = [(cases[0], commands[1])] + [(case, commands[n % 2]) for n, case in enumerate(cases)]
    runs.append((({}, "is not a sha256"), ("blob", "../../etc/passwd")))

    def attempt(run: tuple[tuple[dict[str, str], str], tuple[str, ...]]) -> None:
        (extra, says), args = run
        proc = _cli(_plain_env(tmp_path / "home", **extra), *args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("runrecord: error: "), proc.stderr
        assert says in lines[0], (args, lines[0])
        assert secret not in proc.stderr and "Traceback" not in proc.stderr

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(attempt, runs))


async def _mixed_run(client: Client) -> str:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"blobs-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        await client.execute_workflow(agents.MixedAgent.run, id=run_id, task_queue=queue)
    return run_id


@pytest.mark.parametrize("backend", ["postgres", "s3"])
async def test_a_mirror_stores_copies_that_another_machine_reads(
    backend: str,
    client: Client,
    engine: Engine,
    database_url: str,
    cli_env: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Machine A mirrors a run; machine B (its own RUNRECORD_HOME, no shared disk) reads every
    payload copy, a second mirror on machine C adds none, and gc there keeps what records use."""
    env: dict[str, str] = {}
    if backend == "s3":
        s3 = request.getfixturevalue("aws_env")
        env = {**s3.env, "RUNRECORD_BLOBS": _s3_url()}
    store = open_blob_store(env.get("RUNRECORD_BLOBS", "postgres"), engine=engine)
    run_id = await _mixed_run(client)
    await Mirror(client, engine, blobs=store).sync_run(run_id)
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    refs = {r.sha256 for call in record.tool_calls for r in [*call.input_refs, *call.output_refs]}
    assert len(refs) >= 4 and set(_stored(store)) == refs

    machine_b = _plain_env(tmp_path / "machine-b", RUNRECORD_DATABASE_URL=database_url, **env)
    call = next(c for c in record.tool_calls if c.input_refs and c.output_refs)
    for sha in (call.input_refs[0].sha256, call.output_refs[0].sha256):
        proc = _cli(machine_b, "blob", sha, "--json")
        assert proc.returncode == 0, proc.stderr
        shown = json.loads(proc.stdout)
        assert shown["sha256"] == sha and shown["text"].encode() == store.read(sha)
    assert not (tmp_path / "machine-b" / "blobs").exists()

    machine_c = {**cli_env, "RUNRECORD_HOME": str(tmp_path / "machine-c"), **env}
    proc = _cli(machine_c, "mirror", "rebuild", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["copiesNotKept"] == 0
    assert set(_stored(store)) == refs
    if backend == "postgres":
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(BlobRow)).scalar_one()
        assert rows == len(refs)

    proc = _cli(machine_c, "gc", "--older-than", "30d", "--unreferenced", "--json")
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert (counts["removed"], counts["kept"]) == (0, len(refs))
    proc = _cli(machine_c, "gc", "--older-than", "0s")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"removed {len(refs)} blob copies")
    assert _stored(store) == []


async def test_records_do_not_wait_for_a_blob_store_that_is_out(
    client: Client,
    engine: Engine,
    aws_env: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The mirror writes the rows, holds the copies, says so (in its log and in `mirror
    status`), and stores them once the store answers again."""
    url = _s3_url()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    out = S3BlobStore(url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env.endpoint)
    back = S3BlobStore(url)

    run_id = await _mixed_run(client)
    mirror = Mirror(client, engine, blobs=out)
    with caplog.at_level(logging.WARNING, logger="runrecord.mirror"):
        await mirror.sync_run(run_id)
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None and record.final_status == "succeeded"
    refs = {r.sha256 for call in record.tool_calls for r in [*call.input_refs, *call.output_refs]}
    assert set(mirror.copies_held) == refs and _stored(back) == []
    assert "holding payload copies and retrying, records go on" in caplog.text
    assert "unreachable" in (mirror.blob_store_error or "")
    # Operators see the held copies in `runrecord mirror status`.
    from runrecord.cli import main
    from runrecord.recorder._membership import mirror_status

    secret = "sk-live-" + "9f3Kq7Lm2Xv8Rt4Wz6Yb1Nc5"
    mirror.blob_store_error = f"{mirror.blob_store_error} (api_key={secret})"
    mirror.errors.append(f"BlobStoreError: refused with token={secret}")
    mirror._heartbeat()
    with engine.connect() as conn:
        status = mirror_status(conn, "default")
    (mine,) = [m for m in status["mirrors"] if m["mirrorId"] == mirror.mirror_id]
    assert secret not in json.dumps(status)  # error texts are redacted before they are kept
    held = mine["payloadCopies"]
    assert (held["held"], held["dropped"]) == (len(refs), 0) and held["bytes"] > 0
    assert "unreachable" in held["error"]
    monkeypatch.setenv("RUNRECORD_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    capsys.readouterr()
    assert main(["mirror", "status"]) == 0
    assert f"payload copies: {len(refs)} held (" in capsys.readouterr().out

    mirror.blobs = back
    mirror.keep_copies({})
    assert mirror.copies_held == {} and mirror.blob_store_error is None
    assert set(_stored(back)) == refs
    mirror._heartbeat()
    with engine.connect() as conn:
        (mine,) = [
            m
            for m in mirror_status(conn, "default")["mirrors"]
            if m["mirrorId"] == mirror.mirror_id
        ]
    assert mine["payloadCopies"] is None
