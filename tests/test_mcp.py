"""MCP tool calls reach the run record: which server, which schema, which arguments, which
side effect. Against the real ``mcp-server-git`` and ``mcp-server-time`` from PyPI, and the
project's misbehaving test server, all over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Replayer, Worker

from runrecord import MCPServerSpec, MCPToolPolicy
from runrecord._settings import RunRecordError
from runrecord.activities._mcp import tool_definition
from runrecord.cli._approvals import pending_approvals, send_decision
from runrecord.recorder import Mirror, load_run
from runrecord.recorder._tables import ToolCallRow
from runrecord.records import RunRecord, ToolCall
from runrecord.worker import Journal, RunRecordPlugin, free_port, port_open
from tests import mcp_agents_for_tests as agents
from tests.mcp_agents_for_tests import Step, misbehaving_server

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import mcp_agents  # noqa: E402

RUNRECORD = [sys.executable, "-m", "runrecord.cli"]


def runrecord_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNRECORD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    for args in (
        ["init", "-q"],
        ["config", "user.email", "keeper@example.invalid"],
        ["config", "user.name", "Changelog Keeper"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True)
    (path / "CHANGELOG.md").write_text("# Changelog\n")
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "start"], cwd=path, check=True)
    return path


class Session:
    """A recording client and worker for some MCP servers, and the records they leave."""

    def __init__(
        self, temporal_address: str, engine: Engine, journal: Journal, servers: Sequence[Any]
    ) -> None:
        self.address, self.engine, self.journal = temporal_address, engine, journal
        self.servers = list(servers)
        self.queue = f"tq-{uuid.uuid4().hex[:8]}"
        self.client: Client | None = None

    async def run(self, workflow: Any, arg: Any, *, fails: bool = False) -> tuple[Any, RunRecord]:
        if self.client is None:
            self.client = await Client.connect(
                self.address, plugins=[RunRecordPlugin(self.journal, mcp_servers=self.servers)]
            )
        run_id = f"mcp-{uuid.uuid4().hex[:10]}"
        result: Any = None
        async with Worker(
            self.client,
            task_queue=self.queue,
            workflows=[*mcp_agents.WORKFLOWS, *agents.WORKFLOWS],
            activities=mcp_agents.ACTIVITIES,
        ):
            handle = await self.client.start_workflow(
                workflow, arg, id=run_id, task_queue=self.queue
            )
            operator = asyncio.create_task(_approve_everything(self.client, run_id))
            try:
                result = await handle.result()
            except WorkflowFailureError as err:
                if not fails:
                    raise
                result = err
            else:
                assert not fails, f"the run was expected to fail, it returned {result!r}"
            finally:
                operator.cancel()
        mirror = Mirror(self.client, self.engine, journal_dir=self.journal.directory)
        mirror.drain_journal()
        await mirror.sync_run(run_id)
        with self.engine.connect() as conn:
            record = load_run(conn, run_id)
        assert record is not None
        return result, record


OPERATOR = "mcp-test-operator"


async def _approve_everything(client: Client, run_id: str) -> None:
    """Approve, as an operator would, every call the run asks approval for (git_commit)."""
    while True:
        try:
            waiting = await pending_approvals(client, run_id)
        except RunRecordError:
            waiting = []
        for request in waiting:
            await send_decision(
                client, run_id, request.tool_call_id, "approve", approver=OPERATOR, reason="ok"
            )
        await asyncio.sleep(0.05)


def _call(record: RunRecord, tool: str, nth: int = 0) -> ToolCall:
    return [c for c in record.tool_calls if c.tool == tool][nth]


def _errors(call: ToolCall) -> list[str | None]:
    return [a.error for a in call.retry_state.history]


# --- the real third-party servers


async def test_git_and_time_calls_record_server_schema_arguments_and_side_effect(
    temporal_address: str, engine: Engine, journal: Journal, repo: Path
) -> None:
    session = Session(temporal_address, engine, journal, mcp_agents.MCP_SERVERS)
    result, record = await session.run(
        mcp_agents.ChangelogKeeper.run, mcp_agents.ChangelogTask(repo=str(repo))
    )

    # The calls really reached git: the commit is in the repository.
    assert "Changes committed successfully" in result
    log = subprocess.run(["git", "log", "-1", "--format=%s"], cwd=repo, capture_output=True)
    assert log.stdout.decode().strip() == "changelog: Faster sync"

    # The registry snapshot: both servers, their versions, every tool with its hashes.
    servers = {s.name: s for s in record.mcp_servers}
    assert set(servers) == {"git", "time"}
    assert servers["git"].server_name == "mcp-git"
    assert servers["git"].server_version == metadata.version("mcp-server-git")
    assert servers["time"].server_version == metadata.version("mcp-server-time")
    for server in servers.values():
        assert (server.transport, server.trusted, server.error) == ("stdio", True, None)
        assert server.protocol_version
        assert server.target == f"{Path(sys.executable).name} -m mcp_server_{server.name}"
    registry = {(t.server, t.name): t for t in record.tool_registry if t.server}
    assert servers["git"].tools == len([k for k in registry if k[0] == "git"]) >= 12
    assert {("time", "get_current_time"), ("time", "convert_time")} <= set(registry)
    for entry in registry.values():
        assert entry.schema_hash and len(entry.schema_hash) == 64
        assert entry.input_schema_hash and entry.annotations is not None
    assert registry[("time", "get_current_time")].output_schema_hash  # it declares one
    assert [t.name for t in record.tool_registry if t.server is None] == ["append_changelog"]

    # Every MCP call: server, tool, the active schema hash, arguments and result as refs.
    mcp_calls = [c for c in record.tool_calls if c.mcp_server]
    assert [(c.mcp_server, c.tool) for c in mcp_calls] == [
        ("git", "list-tools"),
        ("time", "list-tools"),
        ("time", "get_current_time"),
        ("git", "git_status"),
        ("git", "git_add"),
        ("git", "git_commit"),
        ("git", "git_add"),
        ("git", "git_reset"),
        ("git", "git_log"),
    ]
    for call in mcp_calls:
        assert call.status == "succeeded" and call.mcp is not None
        assert call.mcp.host == "changelog-keeper@1.0"
        assert call.mcp.client.startswith("runrecord/") and "temporalio-mcp" in call.mcp.client
        assert call.input_refs and call.output_refs and call.worker_identity
        if call.mcp.operation == "call-tool":
            assert call.schema_hash == registry[(call.mcp_server, call.tool)].schema_hash
            assert call.mcp.is_error is False and call.mcp.drift is None
    # Different arguments, different input refs; the same tool, the same schema hash.
    adds = [c for c in mcp_calls if c.tool == "git_add"]
    assert adds[0].schema_hash == adds[1].schema_hash
    assert _call(record, "git_status").input_refs != _call(record, "git_log").input_refs

    # Side effects derived from the annotations.
    status, commit, reset = (_call(record, t) for t in ("git_status", "git_commit", "git_reset"))
    assert (status.side_effect, status.network, status.approval_state) == (
        "read",
        False,
        "not_required",
    )
    assert (commit.side_effect, commit.approval_state) == ("write", "approved")
    assert registry[("git", "git_commit")].approval is True
    # git_commit needs approval: it ran once the operator's approval signal arrived.
    assert commit.approval is not None and commit.approval.decided_by == OPERATOR
    assert (reset.side_effect, reset.network) == ("delete", False)
    assert _call(record, "get_current_time").side_effect == "read"
    assert _call(record, "list-tools").side_effect == "read"


async def test_runs_are_found_by_the_mcp_server_they_called(
    temporal_address: str, engine: Engine, journal: Journal, repo: Path
) -> None:
    session = Session(temporal_address, engine, journal, mcp_agents.MCP_SERVERS)
    _, keeper = await session.run(
        mcp_agents.ChangelogKeeper.run, mcp_agents.ChangelogTask(repo=str(repo))
    )
    _, clock = await session.run(mcp_agents.ClockReader.run, "Europe/Paris")
    url = engine.url.render_as_string(hide_password=False)

    def runs_cli(*args: str) -> set[str]:
        env = {**os.environ, "RUNRECORD_DATABASE_URL": url}
        proc = subprocess.run(
            [sys.executable, "-m", "runrecord.cli", "runs", *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return {run["runId"] for run in json.loads(proc.stdout)}

    assert runs_cli("--mcp-server", "git") == {keeper.run_id}
    assert runs_cli("--mcp-server", "time") == {keeper.run_id, clock.run_id}
    assert runs_cli("--mcp-available", "git") == {keeper.run_id}
    assert runs_cli("--mcp-available", "time") == {keeper.run_id, clock.run_id}
    # The CLI answers exactly what the recorded calls say.
    with engine.connect() as conn:
        called_git = set(
            conn.execute(
                select(ToolCallRow.run_id).where(ToolCallRow.mcp_server == "git").distinct()
            ).scalars()
        )
    assert called_git == {keeper.run_id}


async def test_untrusted_server_gets_worst_case_side_effects_unless_policy_says_otherwise(
    temporal_address: str, engine: Engine, journal: Journal, repo: Path
) -> None:
    git = MCPServerSpec(
        "git",
        command=(sys.executable, "-m", "mcp_server_git"),
        tools={"git_log": MCPToolPolicy(side_effect="read", network=False)},
    )
    steps = [
        Step(server="git", tool="git_status", arguments={"repo_path": str(repo)}),
        Step(server="git", tool="git_log", arguments={"repo_path": str(repo)}),
    ]
    session = Session(temporal_address, engine, journal, [git])
    _, record = await session.run(agents.GitProber.run, steps)

    status, log = _call(record, "git_status"), _call(record, "git_log")
    # The server says git_status is read-only; an untrusted server is not believed.
    assert status.mcp is not None and status.mcp.annotations is not None
    assert status.mcp.annotations.read_only_hint is True and status.mcp.trusted is False
    assert (status.side_effect, status.network) == ("delete", True)
    assert (log.side_effect, log.network) == ("read", False)
    assert record.mcp_servers[0].trusted is False
    untrusted = {t.side_effect for t in record.tool_registry if t.server and t.name != "git_log"}
    assert untrusted == {"delete"}


async def test_the_recorded_history_replays(
    temporal_address: str, engine: Engine, journal: Journal, repo: Path
) -> None:
    session = Session(temporal_address, engine, journal, mcp_agents.MCP_SERVERS)
    _, record = await session.run(
        mcp_agents.ChangelogKeeper.run, mcp_agents.ChangelogTask(repo=str(repo))
    )
    assert session.client is not None
    history = await session.client.get_workflow_handle(record.run_id).fetch_history()
    replayer = Replayer(
        workflows=mcp_agents.WORKFLOWS,
        plugins=[RunRecordPlugin(mcp_servers=mcp_agents.MCP_SERVERS)],
    )
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None


async def test_a_streamable_http_server_is_recorded_like_a_stdio_one(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(agents.TEST_SERVER), "--http", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if port_open("127.0.0.1", port):
                break
            await asyncio.sleep(0.1)
        spec = MCPServerSpec.http("flaky", f"http://127.0.0.1:{port}/mcp", trusted=True)
        session = Session(temporal_address, engine, journal, [spec])
        result, record = await session.run(
            agents.Prober.run, [Step(server="flaky", tool="echo", arguments={"text": "web"})]
        )
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert result == ["echo: ok web"]
    (info,) = record.mcp_servers
    assert (info.transport, info.target) == ("streamable-http", f"http://127.0.0.1:{port}/mcp")
    assert (info.server_name, info.server_version) == ("runrecord-test-server", "1.2.3")
    echo = _call(record, "echo")
    assert (echo.mcp_server, echo.side_effect, echo.status) == ("flaky", "read", "succeeded")
    assert echo.schema_hash == next(t.schema_hash for t in record.tool_registry if t.name == "echo")


# --- bad input, with the project's misbehaving server


async def test_a_required_server_that_fails_to_start_stops_the_run(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    servers = [misbehaving_server("flaky"), misbehaving_server("broken", "--fail-at-start")]
    session = Session(temporal_address, engine, journal, servers)
    failure, record = await session.run(agents.TwoServerProber.run, [], fails=True)

    assert record.final_status == "failed"
    assert record.failure is not None
    assert "MCP server 'broken' is unavailable, so the run stops" in record.failure
    broken = next(s for s in record.mcp_servers if s.name == "broken")
    assert broken.error is not None and "failed to start" in broken.error
    assert "cannot open the test database: permission denied" in broken.error
    flaky = next(s for s in record.mcp_servers if s.name == "flaky")
    assert (flaky.error, flaky.server_version) == (None, "1.2.3")
    listing = next(c for c in record.tool_calls if c.mcp_server == "broken")
    assert listing.status == "failed" and listing.retry_state.attempts == 2
    assert all("failed to start" in (e or "") for e in _errors(listing))


async def test_an_optional_server_that_fails_to_start_is_recorded_and_the_run_goes_on(
    temporal_address: str, engine: Engine, journal: Journal, tmp_path: Path
) -> None:
    missing = MCPServerSpec("broken", command=(str(tmp_path / "no-such-server"),), required=False)
    session = Session(temporal_address, engine, journal, [misbehaving_server("flaky"), missing])
    result, record = await session.run(
        agents.TwoServerProber.run,
        [Step(server="flaky", tool="echo", arguments={"text": "still here"})],
    )

    assert result == ["echo: ok still here"]
    assert record.final_status == "succeeded"
    broken = next(s for s in record.mcp_servers if s.name == "broken")
    assert broken.error is not None and "FileNotFoundError" in broken.error
    listing = next(c for c in record.tool_calls if c.mcp_server == "broken")
    # A missing command stays missing: one attempt, no retries.
    assert listing.status == "failed" and listing.retry_state.attempts == 1
    assert not any(t.server == "broken" for t in record.tool_registry)


async def test_a_server_crashing_mid_call_fails_the_call_and_every_attempt_is_kept(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    session = Session(temporal_address, engine, journal, [misbehaving_server("flaky")])
    result, record = await session.run(
        agents.Prober.run,
        [
            Step(server="flaky", tool="crash", catch=True),
            Step(server="flaky", tool="echo", arguments={"text": "after the crash"}),
        ],
    )

    assert result == ["crash: failed (MCPProtocolError)", "echo: ok after the crash"]
    crash = _call(record, "crash")
    assert crash.status == "failed" and crash.side_effect == "write"
    assert [a.outcome for a in crash.retry_state.history] == ["failed", "failed"]
    for error in _errors(crash):
        assert error is not None
        assert "MCP server 'flaky' closed the connection during tools/call 'crash'" in error
        assert "crashing on purpose" in error
    assert _call(record, "echo").status == "succeeded"
    assert record.final_status == "succeeded"


async def test_a_hanging_server_times_out_and_the_run_goes_on(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    session = Session(temporal_address, engine, journal, [misbehaving_server("flaky", timeout=1.0)])
    result, record = await session.run(
        agents.Prober.run,
        [
            Step(server="flaky", tool="hang", catch=True),
            Step(server="flaky", tool="echo", arguments={"text": "awake"}),
        ],
    )

    assert result == ["hang: failed (MCPProtocolError)", "echo: ok awake"]
    hang = _call(record, "hang")
    assert hang.status == "failed" and hang.retry_state.attempts == 2
    for error in _errors(hang):
        assert error is not None
        assert "MCP server 'flaky' did not answer tools/call 'hang' within 1.0s" in error
    assert _call(record, "echo").status == "succeeded"


async def test_a_tool_error_result_is_a_recorded_failure(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    session = Session(temporal_address, engine, journal, [misbehaving_server("flaky")])
    result, record = await session.run(
        agents.Prober.run,
        [
            Step(server="flaky", tool="fail", arguments={"reason": "disk full"}),
            Step(server="flaky", tool="echo", arguments={"text": "next"}),
        ],
    )

    assert result == ["fail: error Error executing tool fail: disk full", "echo: ok next"]
    fail = _call(record, "fail")
    assert fail.mcp is not None and fail.mcp.is_error is True
    assert fail.status == "failed" and fail.retry_state.attempts == 1
    assert fail.retry_state.last_failure == "MCP tool error: Error executing tool fail: disk full"
    assert fail.output_refs  # what the tool returned is kept, as a ref
    echo = _call(record, "echo")
    assert echo.mcp is not None and echo.mcp.is_error is False and echo.status == "succeeded"


async def test_invalid_schemas_are_recorded_and_calls_to_them_refused(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    session = Session(
        temporal_address, engine, journal, [misbehaving_server("flaky", "--invalid-schema")]
    )
    result, record = await session.run(
        agents.Prober.run,
        [
            Step(server="flaky", tool="broken", arguments={"n": 1}, catch=True),
            Step(server="flaky", tool="bad_output", catch=True),
            Step(server="flaky", tool="echo", arguments={"text": "fine"}),
        ],
    )

    assert result == [
        "broken: failed (MCPInvalidSchema)",
        "bad_output: failed (MCPInvalidResult)",
        "echo: ok fine",
    ]
    entry = next(t for t in record.tool_registry if t.name == "broken")
    assert entry.schema_error == (
        "inputSchema is not a valid JSON Schema: 'zero' is not of type 'number' "
        "at properties/n/minimum"
    )
    broken, bad = _call(record, "broken"), _call(record, "bad_output")
    # Neither retries: the server would answer the same way again.
    assert (broken.status, broken.retry_state.attempts) == ("failed", 1)
    assert broken.retry_state.last_failure is not None
    assert "lists tool 'broken' with an invalid schema" in broken.retry_state.last_failure
    assert (bad.status, bad.retry_state.attempts) == ("failed", 1)
    assert bad.retry_state.last_failure is not None
    assert "Invalid structured content returned by tool bad_output" in (
        bad.retry_state.last_failure
    )


async def test_a_schema_changed_mid_run_is_refused_by_default_and_stops_the_run(
    temporal_address: str, engine: Engine, journal: Journal, tmp_path: Path
) -> None:
    server = misbehaving_server("flaky", "--state", str(tmp_path / "state"))
    session = Session(temporal_address, engine, journal, [server])
    _, record = await session.run(
        agents.Prober.run,
        [
            Step(server="flaky", tool="echo", arguments={"text": "before"}),
            Step(server="flaky", tool="redefine"),
            Step(server="flaky", tool="echo", arguments={"text": "after"}),
        ],
        fails=True,
    )

    assert record.final_status == "failed"
    assert record.failure is not None and "changed since the run listed it" in record.failure
    first, second = _call(record, "echo", 0), _call(record, "echo", 1)
    assert first.status == "succeeded" and first.mcp is not None and first.mcp.drift is None
    assert second.status == "failed" and second.retry_state.attempts == 1
    assert second.mcp is not None and second.mcp.drift is not None
    drift = second.mcp.drift
    assert drift.registry_hash == second.schema_hash == first.schema_hash
    assert drift.current_hash and drift.current_hash != drift.registry_hash
    assert drift.changed == ["inputSchema", "outputSchema", "annotations"]
    assert drift.refused is True
    with engine.connect() as conn:
        drifted = conn.execute(
            select(ToolCallRow.tool_call_id).where(ToolCallRow.schema_drift.is_(True))
        ).scalars()
        assert list(drifted) == [second.tool_call_id]


async def test_a_schema_change_the_policy_allows_is_recorded_and_the_run_goes_on(
    temporal_address: str, engine: Engine, journal: Journal, tmp_path: Path
) -> None:
    server = misbehaving_server(
        "flaky",
        "--state",
        str(tmp_path / "state"),
        tools={"echo": MCPToolPolicy(on_drift="allow")},
    )
    session = Session(temporal_address, engine, journal, [server])
    result, record = await session.run(
        agents.Prober.run,
        [
            Step(server="flaky", tool="echo", arguments={"text": "before"}),
            Step(server="flaky", tool="redefine"),
            Step(server="flaky", tool="echo", arguments={"text": "after", "loud": True}),
        ],
    )

    assert result == ["echo: ok before", "redefine: ok echo redefined", "echo: ok AFTER"]
    second = _call(record, "echo", 1)
    assert second.status == "succeeded"
    assert second.mcp is not None and second.mcp.drift is not None
    assert second.mcp.drift.refused is False
    assert "annotations" in second.mcp.drift.changed
    # The recorded side effect is the snapshot's (read); the drift says it no longer holds.
    assert second.side_effect == "read"


async def test_a_tool_missing_from_the_snapshot_is_refused(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    session = Session(temporal_address, engine, journal, [misbehaving_server("flaky")])
    result, record = await session.run(
        agents.UndeclaredProber.run,
        [Step(server="flaky", tool="echo", arguments={"text": "hi"}, catch=True)],
    )

    assert result == ["echo: failed (MCPSchemaDrift)"]
    echo = _call(record, "echo")
    assert (echo.side_effect, echo.network, echo.schema_hash) == ("unknown", True, None)
    assert echo.mcp is not None and echo.mcp.drift is not None
    assert echo.mcp.drift.registry_hash is None and echo.mcp.drift.current_hash
    assert record.mcp_servers == []


async def test_an_agent_using_an_unregistered_server_fails_with_a_clear_reason(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    session = Session(temporal_address, engine, journal, [misbehaving_server("other")])
    _, record = await session.run(agents.Prober.run, [], fails=True)

    assert record.failure is not None
    assert "uses MCP server 'flaky', which is not registered on this worker" in record.failure


def test_a_server_registration_keeps_secrets_out_of_its_target() -> None:
    http = MCPServerSpec.http("api", "https://user:token@mcp.example.invalid:8443/mcp?key=abc")
    assert (http.transport, http.target) == (
        "streamable-http",
        "https://mcp.example.invalid:8443/mcp",
    )
    stdio = MCPServerSpec.stdio("git", "/opt/bin/mcp-server-git", "--token", "s3cret")
    assert (stdio.transport, stdio.target) == ("stdio", "mcp-server-git")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"command": ["x"], "url": "http://127.0.0.1/mcp"}, "either command (stdio) or url"),
        ({}, "either command (stdio) or url"),
        ({"command": ["x"], "timeout": 0}, "timeout must be positive"),
        ({"command": ["x"], "max_attempts": 0}, "max_attempts must be at least 1"),
    ],
)
def test_a_bad_server_registration_says_what_is_wrong(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MCPServerSpec("srv", **options)


def test_a_bad_server_name_or_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="must be letters, digits"):
        MCPServerSpec("my server", command=["x"])
    with pytest.raises(ValueError, match="on_drift must be 'refuse' or 'allow'"):
        MCPToolPolicy(on_drift="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        RunRecordPlugin(mcp_servers=[MCPServerSpec("a", command=["x"])] * 2)


# --- the command line


async def test_runrecord_worker_runs_an_agent_modules_mcp_servers(
    cli_env: dict[str, str], client: Client
) -> None:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    env = {**cli_env, "PYTHONPATH": str(EXAMPLES)}
    worker = subprocess.Popen(
        [*RUNRECORD, "worker", "--module", "mcp_agents", "--task-queue", queue],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert "Worker on" in worker.stdout.readline()
        run_id = f"clock-{uuid.uuid4().hex[:8]}"
        answer = await client.execute_workflow(
            "ClockReader", "Etc/UTC", id=run_id, task_queue=queue
        )
        assert '"timezone": "Etc/UTC"' in answer
        shown: list[dict[str, Any]] = []
        for _ in range(60):  # the worker's mirror follows the run
            proc = runrecord_cli("show", run_id, "--json", env=env)
            if proc.returncode == 0:
                shown = json.loads(proc.stdout)
                if shown[0]["finalStatus"] == "succeeded":
                    break
            await asyncio.sleep(0.5)
        assert shown and shown[0]["finalStatus"] == "succeeded"
        (server,) = shown[0]["mcpServers"]
        assert (server["name"], server["serverName"]) == ("time", "mcp-time")
        calls = [(c["mcpServer"], c["tool"], c["sideEffect"]) for c in shown[0]["toolCalls"]]
        assert calls == [("time", "list-tools", "read"), ("time", "get_current_time", "read")]
        tree = runrecord_cli("show", run_id, env=env)
        assert "mcp time mcp-time" in tree.stdout and "time/get_current_time" in tree.stdout
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_runrecord_worker_refuses_bad_mcp_servers_in_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "bad_agents.py").write_text(
        "WORKFLOWS = []\nACTIVITIES = []\nMCP_SERVERS = ['mcp-server-git']\n"
    )
    proc = runrecord_cli(
        "worker", "--module", "bad_agents", env={**cli_env, "PYTHONPATH": str(tmp_path)}
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "runrecord: error: agent module 'bad_agents': MCP_SERVERS must be a list of MCPServerSpec"
    ]


@pytest.mark.parametrize(
    ("hints", "trusted", "expected"),
    [
        # (side effect, network flag, idempotent) as the MCP spec's hints mean them ...
        ({"readOnlyHint": True, "openWorldHint": False}, True, ("read", False, False)),
        ({"destructiveHint": False, "openWorldHint": False}, True, ("write", False, False)),
        (
            {"destructiveHint": True, "idempotentHint": True, "openWorldHint": False},
            True,
            ("delete", False, True),
        ),
        ({"readOnlyHint": True}, True, ("read", True, False)),  # openWorldHint defaults true
        ({}, True, ("delete", True, False)),  # absent hints take the spec's defaults
        (None, True, ("delete", True, False)),
        # ... and an untrusted server's hints are not believed at all.
        ({"readOnlyHint": True, "openWorldHint": False}, False, ("delete", True, False)),
    ],
)
def test_side_effect_is_derived_from_annotations_and_trust(
    hints: dict[str, bool] | None, trusted: bool, expected: tuple[str, bool, bool]
) -> None:
    spec = MCPServerSpec("srv", command=["x"], trusted=trusted)
    tool = {"name": "t", "inputSchema": {"type": "object"}, "annotations": hints}
    entry = spec.registry_entry(tool_definition(tool))
    assert (entry.side_effect, entry.network, entry.idempotent) == expected
    assert (entry.server, entry.trusted, entry.approval) == ("srv", trusted, False)


def test_policy_overrides_per_server_then_per_tool() -> None:
    spec = MCPServerSpec(
        "srv",
        command=["x"],
        trusted=True,
        defaults=MCPToolPolicy(approval=True, on_drift="allow"),
        tools={"wipe": MCPToolPolicy(side_effect="deploy", network=False, on_drift="refuse")},
    )
    read_only = {"readOnlyHint": True, "openWorldHint": True}
    look = spec.registry_entry(
        tool_definition(
            {"name": "look", "inputSchema": {"type": "object"}, "annotations": read_only}
        )
    )
    wipe = spec.registry_entry(
        tool_definition(
            {"name": "wipe", "inputSchema": {"type": "object"}, "annotations": read_only}
        )
    )
    assert (look.side_effect, look.network, look.approval) == ("read", True, True)
    assert (wipe.side_effect, wipe.network, wipe.approval) == ("deploy", False, True)
    assert (spec.on_drift("look"), spec.on_drift("wipe")) == ("allow", "refuse")


def test_the_schema_hash_covers_the_whole_definition_and_nothing_else() -> None:
    base = {
        "name": "t",
        "description": "Look at a thing",
        "inputSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
        "annotations": {"readOnlyHint": True},
    }
    same = tool_definition({**base, "_meta": {"seen": 1}, "icons": []})
    assert same.schema_hash == tool_definition(base).schema_hash
    # Key order does not matter; every part of the definition does.
    reordered = {**base, "inputSchema": {"properties": {"a": {"type": "string"}}, "type": "object"}}
    assert tool_definition(reordered).schema_hash == same.schema_hash
    for change in (
        {"description": "Delete a thing"},
        {"inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        {"outputSchema": {"type": "object"}},
        {"annotations": {"readOnlyHint": False}},
        {"title": "Looker"},
    ):
        assert tool_definition({**base, **change}).schema_hash != same.schema_hash, change
