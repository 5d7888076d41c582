"""Every `runrecord` command ends with its own status and at most one line on stderr: with paused
runs, with a configuration that cannot work, with a reader that goes away, and whatever the
Temporal client's threads do at exit."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from temporalio.client import WorkflowFailureError

from runrecord.worker import Journal
from tests import control_agents as agents
from tests.test_approvals import record, waiting_for, worker
from tests.test_cli import RUNRECORD, assert_one_line_error, runrecord


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(runrecord, *args, env=env)


async def test_approvals_lists_paused_runs_and_their_decisions_apply_on_resume(
    cli_env: dict[str, str], temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        tag = uuid.uuid4().hex[:8]
        approved, denied = f"paused-a-{tag}", f"paused-d-{tag}"
        handles = {
            run_id: await client.start_workflow(
                agents.Deployer.run, [f"{run_id}-target"], id=run_id, task_queue=queue
            )
            for run_id in (approved, denied)
        }
        for run_id in handles:
            await waiting_for(client, run_id, "1")
            paused = await _cli("pause", run_id, "--reason", "checking", env=cli_env)
            assert paused.returncode == 0, paused.stderr

        listed = await _cli("approvals", "--json", env=cli_env)
        assert listed.returncode == 0, listed.stderr
        waiting = {(r["runId"], r["toolCallId"], r["tool"]) for r in json.loads(listed.stdout)}
        assert {(approved, "1", "deploy"), (denied, "1", "deploy")} <= waiting
        table = await _cli("approvals", env=cli_env)
        assert table.returncode == 0, table.stderr
        assert approved in table.stdout and denied in table.stdout

        for decision, run_id in (("approve", approved), ("deny", denied)):
            sent = await _cli(
                decision, run_id, "1", "--reason", "decided while paused", "--as", "alice",
                env=cli_env,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stderr
            noun = "approval" if decision == "approve" else "denial"
            assert sent.stdout.strip() == (
                f"run {run_id} is paused: the {noun} of call 1 was delivered and is applied "
                "when the run resumes"
            )
        assert agents.ran("deploy", f"{approved}-target") == []

        for run_id in handles:
            resumed = await _cli("resume", run_id, env=cli_env)
            assert resumed.returncode == 0, resumed.stderr
        assert await asyncio.wait_for(handles[approved].result(), 30) == [
            f"deployed {approved}-target"
        ]
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handles[denied].result(), 30)

    for run_id, state in ((approved, "approved"), (denied, "denied")):
        call = (await record(client, engine, run_id)).tool_calls[0]
        assert call.approval_state == state
        assert call.approval is not None and call.approval.decided_by == "alice"
    assert agents.ran("deploy", f"{denied}-target") == []


def _each(
    env: dict[str, str], commands: list[tuple[str, ...]]
) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda args: runrecord(*args, env=env, timeout=60), commands))


# Commands that read the records database first, and commands that talk to Temporal.
RECORDS_COMMANDS = [
    ("runs",),
    ("show", "some-run"),
    ("mirror", "status"),
    ("mirror", "verify", "some-run"),
    ("worker", "--no-mirror"),
]
TEMPORAL_COMMANDS = [
    ("approvals",),
    ("approve", "some-run", "1", "--reason", "ok"),
    ("pause", "some-run", "--reason", "checking"),
    ("mirror", "verify", "some-run"),
    ("worker", "--no-mirror"),
]


def test_a_records_folder_that_cannot_be_created_is_one_line(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "RUNRECORD_DATABASE_URL": "sqlite:////proc/runrecord/records.sqlite3"}
    for proc in _each(env, RECORDS_COMMANDS):
        assert_one_line_error(proc, "cannot create the folder /proc/runrecord")


@pytest.mark.parametrize(
    "address", ["not a host", "127.0.0.1:99999", "temporal:", "a:b:c", "x" * 10_000]
)
def test_a_temporal_address_that_is_not_host_port_is_one_line(
    cli_env: dict[str, str], engine: Engine, address: str
) -> None:
    env = {**cli_env, "TEMPORAL_ADDRESS": address}
    for proc in _each(env, TEMPORAL_COMMANDS):
        assert_one_line_error(proc, "TEMPORAL_ADDRESS", "is not host:port")
        assert len(proc.stderr) < 400


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (the kernel's backlog does) and never
    says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield int(server.getsockname()[1])


def test_a_temporal_port_that_never_answers_is_one_line_within_10_s(
    cli_env: dict[str, str], engine: Engine, silent_port: int
) -> None:
    env = {**cli_env, "TEMPORAL_ADDRESS": f"127.0.0.1:{silent_port}"}
    for args in TEMPORAL_COMMANDS:
        started = time.monotonic()
        proc = runrecord(*args, env=env, timeout=60)
        took = time.monotonic() - started
        assert_one_line_error(proc, f"cannot reach Temporal at 127.0.0.1:{silent_port}")
        assert took < 10, f"{args}: {took:.1f} s"


def test_every_temporal_command_exits_with_its_own_status(
    cli_env: dict[str, str], temporal_address: str
) -> None:
    """The Temporal client's threads can abort a finalizing interpreter (temporalio sdk-python
    issue 300; about 1 in 3 plain client processes here): no command may ever end that way,
    whether it succeeds, fails, or finds its reader gone."""

    def listed() -> tuple[int, str]:
        proc = runrecord("approvals", "--json", env=cli_env, timeout=60)
        assert isinstance(json.loads(proc.stdout), list), proc.stdout
        return proc.returncode, proc.stderr

    def refused() -> tuple[int, str]:
        proc = runrecord("pause", "no-such-run", "--reason", "x", env=cli_env, timeout=60)
        assert "runrecord: error: no run 'no-such-run'" in proc.stderr
        return proc.returncode, proc.stderr

    def reader_gone() -> tuple[int, str]:
        # The reader (`runrecord approvals | head -0`) has left before anything is written.
        proc = subprocess.Popen(
            [*RUNRECORD, "approvals", "--json"],
            env=cli_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.close()
        _, stderr = proc.communicate(timeout=60)
        return proc.returncode, stderr

    # The reader-gone path reached interpreter teardown before: it gets the most tries.
    kinds = {listed: 0, refused: 1, reader_gone: 1}
    runs = [listed] * 8 + [refused] * 8 + [reader_gone] * 20
    with ThreadPoolExecutor(2) as pool:
        ended = list(pool.map(lambda kind: (kind, *kind()), runs))
    wrong = [
        f"{kind.__name__}: exit {code}: {stderr.strip()[:200]}"
        for kind, code, stderr in ended
        if code != kinds[kind] or (kind is reader_gone and stderr) or "Traceback" in stderr
    ]
    assert wrong == [], f"{len(wrong)} of {len(ended)} processes:\n" + "\n".join(wrong)
