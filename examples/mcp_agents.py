"""An agent that keeps a git repository's changelog, using two real MCP servers.

The servers are the MCP project's ``mcp-server-git`` and ``mcp-server-time`` from PyPI,
started over stdio by the worker (both work offline). The agent reaches them through
temporalio-mcp's ``TemporalMCPClient``; runrecord records every call with its server,
tool schema hash, arguments and result (as refs) and the side effect derived from the
tools' annotations: ``git_status`` reads, ``git_commit`` writes (and needs approval by
policy), ``git_reset`` deletes.

Run a worker for it with ``runrecord worker --agents mcp_agents`` (examples/ on
PYTHONPATH), then start ``ChangelogKeeper.run`` with a repository path.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from mcp.types import TextContent
    from temporalio.mcp import TemporalMCPClient

    import runrecord
    from runrecord import MCPServerSpec, MCPToolPolicy


class ChangelogTask(BaseModel):
    repo: str
    entry: str = "Faster sync"


@runrecord.tool("write", idempotent=True)
@activity.defn
async def append_changelog(repo: str, line: str) -> str:
    path = Path(repo) / "CHANGELOG.md"
    with path.open("a") as f:
        f.write(f"- {line}\n")
    runrecord.artifact(f"file://{path}", kind="file", content=path.read_text())
    return "CHANGELOG.md"


def _text(result: object) -> str:
    content = getattr(result, "content", [])
    return "\n".join(c.text for c in content if isinstance(c, TextContent))


@runrecord.agent("changelog-keeper", version="1.0", mcp=["git", "time"])
@workflow.defn
class ChangelogKeeper:
    @workflow.run
    async def run(self, task: ChangelogTask) -> str:
        git = TemporalMCPClient("git")
        clock = TemporalMCPClient("time")
        now = await clock.call_tool("get_current_time", {"timezone": "Etc/UTC"})
        await git.call_tool("git_status", {"repo_path": task.repo})
        stamp = (now.structured_content or {}).get("datetime", "")[:10]
        changed = await workflow.execute_activity(
            append_changelog,
            args=[task.repo, f"{stamp} {task.entry}"],
            start_to_close_timeout=timedelta(seconds=30),
        )
        await git.call_tool("git_add", {"repo_path": task.repo, "files": [changed]})
        commit = await git.call_tool(
            "git_commit", {"repo_path": task.repo, "message": f"changelog: {task.entry}"}
        )
        # A stray scratch file gets staged by mistake; unstage everything again.
        await workflow.execute_activity(
            append_changelog,
            args=[task.repo, "scratch"],
            start_to_close_timeout=timedelta(seconds=30),
        )
        await git.call_tool("git_add", {"repo_path": task.repo, "files": [changed]})
        await git.call_tool("git_reset", {"repo_path": task.repo})
        log = await git.call_tool("git_log", {"repo_path": task.repo, "max_count": 1})
        return f"{_text(commit)}\n{_text(log)}"


@runrecord.agent("clock-reader", version="1.0", mcp=["time"])
@workflow.defn
class ClockReader:
    """Uses only the time server: a run that never touched git."""

    @workflow.run
    async def run(self, timezone: str) -> str:
        now = await TemporalMCPClient("time").call_tool("get_current_time", {"timezone": timezone})
        return _text(now)


def _module(name: str) -> tuple[str, ...]:
    # `python -m` from this interpreter: no reliance on PATH holding the venv's scripts.
    return (sys.executable, "-m", name)


MCP_SERVERS = [
    MCPServerSpec(
        "git",
        command=_module("mcp_server_git"),
        # The MCP project's reference server: its annotations are believed.
        trusted=True,
        tools={"git_commit": MCPToolPolicy(approval=True)},
    ),
    MCPServerSpec("time", command=_module("mcp_server_time"), trusted=True),
]
WORKFLOWS = [ChangelogKeeper, ClockReader]
ACTIVITIES = [append_changelog]
