"""What recording MCP calls costs, against the real mcp-server-git over stdio.

    python benchmarks/mcp_calls.py [--calls N] [--workflow-calls M]

1. Client only (no Temporal): ``git_status`` through a plain ``mcp.Client`` and through
   runrecord's client, which lists the server's tools before each call to detect schema drift.
2. End to end on a Temporal dev server: one workflow making M ``git_status`` calls through
   ``TemporalMCPClient``, with temporalio-mcp's ``MCPPlugin`` alone and with ``RunRecordPlugin``.
3. The size of the run's memo, which carries the registry snapshot of both example servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from mcp import Client as MCPClient
    from mcp import StdioServerParameters
    from temporalio.mcp import MCPPlugin, TemporalMCPClient

    import runrecord
    from runrecord import MCPServerSpec
    from runrecord._contract import CallHeader
    from runrecord.activities import CurrentCall, current_call
    from runrecord.records import MCPCall, SideEffect
    from runrecord.worker import SEARCH_ATTRIBUTES, RunRecordPlugin, temporal_binary
    from runrecord.worker._devserver import DEV_SERVER_FLAGS

GIT = (sys.executable, "-m", "mcp_server_git")


def _repo() -> Path:
    path = Path(tempfile.mkdtemp(prefix="rr-bench-")) / "repo"
    path.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "b@x"], ["config", "user.name", "b"]):
        subprocess.run(["git", *args], cwd=path, check=True)
    (path / "a.txt").write_text("a\n")
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "a"], cwd=path, check=True)
    return path


def _figures(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return (
        f"{label}: {len(ms)} calls, mean {statistics.mean(ms):.2f} ms, "
        f"p50 {statistics.median(ms):.2f} ms, p95 {p95:.2f} ms"
    )


async def _timed_calls(client: Any, repo: Path, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await client.call_tool("git_status", {"repo_path": str(repo)})
        times.append(time.perf_counter() - start)
    return times


async def client_only(repo: Path, n: int) -> None:
    params = StdioServerParameters(command=GIT[0], args=list(GIT[1:]))
    async with MCPClient(params) as plain:
        await _timed_calls(plain, repo, 5)
        plain_times = await _timed_calls(plain, repo, n)
    spec = MCPServerSpec("git", command=GIT, trusted=True)
    async with spec.client() as recording:
        listing = await recording.list_tools()
        tool = next(t for t in listing.tools if t.name == "git_status")
        from runrecord.activities._mcp import tool_definition

        header = CallHeader(
            tool_call_id="1",
            tool="git_status",
            side_effect=SideEffect.READ,
            schema_hash=tool_definition(tool).schema_hash,
            run_id="bench",
            mcp_server="git",
            mcp=MCPCall(operation="call-tool", client="bench", trusted=True),
        )
        token = current_call.set(CurrentCall(header, 1, lambda entry: None))
        try:
            await _timed_calls(recording, repo, 5)
            recorded_times = await _timed_calls(recording, repo, n)
        finally:
            current_call.reset(token)
    print(_figures("client only, plain mcp.Client", plain_times))
    print(_figures("client only, runrecord client (drift check on)", recorded_times))
    overhead = statistics.mean(recorded_times) - statistics.mean(plain_times)
    print(f"client only, drift check overhead: {overhead * 1000:.2f} ms per call")


@runrecord.agent("bench-git", mcp=["git"])
@workflow.defn
class GitStatusLoop:
    @workflow.run
    async def run(self, repo: str, calls: int) -> int:
        git = TemporalMCPClient("git")
        for _ in range(calls):
            await git.call_tool("git_status", {"repo_path": repo})
        return calls


@workflow.defn
class PlainGitStatusLoop:
    @workflow.run
    async def run(self, repo: str, calls: int) -> int:
        git = TemporalMCPClient("git")
        await git.list_tools()
        for _ in range(calls):
            await git.call_tool("git_status", {"repo_path": repo})
        return calls


async def end_to_end(repo: Path, calls: int) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(DEV_SERVER_FLAGS),
    )
    try:
        address = env.client.service_client.config.target_host
        spec = MCPServerSpec("git", command=GIT, trusted=True)
        plain = await Client.connect(address, data_converter=pydantic_data_converter)
        recorded = await Client.connect(address, plugins=[RunRecordPlugin(mcp_servers=[spec])])
        runs = [
            ("temporalio-mcp alone", plain, PlainGitStatusLoop, [MCPPlugin({"git": spec.client})]),
            ("with RunRecordPlugin", recorded, GitStatusLoop, []),
        ]
        for label, client, wf, plugins in runs:
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            async with Worker(client, task_queue=queue, workflows=[wf], plugins=plugins):
                # One warm-up run starts the server process; the timed run reuses it.
                await client.execute_workflow(
                    wf.run, args=[str(repo), 2], id=f"warm-{queue}", task_queue=queue
                )
                start = time.perf_counter()
                run_id = f"bench-{queue}"
                await client.execute_workflow(
                    wf.run, args=[str(repo), calls], id=run_id, task_queue=queue
                )
                elapsed = time.perf_counter() - start
            print(
                f"end to end, {label}: {calls} git_status calls in {elapsed:.2f} s, "
                f"{elapsed / calls * 1000:.1f} ms per call"
            )
            if wf is GitStatusLoop:
                desc = await client.get_workflow_handle(run_id).describe()
                memo = await desc.memo_value("runrecord")
                print(
                    f"memo with the registry snapshot of mcp-server-git "
                    f"({len(memo['toolRegistry'])} tools): {len(json.dumps(memo))} bytes"
                )
    finally:
        await env.shutdown()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--workflow-calls", type=int, default=50)
    args = parser.parse_args()
    repo = _repo()
    await client_only(repo, args.calls)
    await end_to_end(repo, args.workflow_calls)


if __name__ == "__main__":
    asyncio.run(main())
