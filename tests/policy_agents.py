"""Purpose-built agents for the policy tests: same-named MCP tools on a trusted and an untrusted
server, and a tool declared nowhere (side effect ``unknown``).

Tools note each run in ``RAN`` (this process runs the activities), so a test can check that a
gated tool never ran.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from mcp.types import TextContent
    from temporalio.mcp import TemporalMCPClient

    import runrecord
    from tests.mcp_agents_for_tests import Step, misbehaving_server

RAN: list[str] = []

MCP_SERVERS = [
    misbehaving_server("trusted", trusted=True),
    misbehaving_server("stranger", trusted=False),
]
"""The project's test server twice: both offer ``echo``; only one is trusted."""


@activity.defn
async def purge_cache(path: str) -> str:
    """Declared nowhere: nothing tells runrecord what it does."""
    RAN.append(path)
    return f"purged {path}"


@runrecord.agent("mcp-pair", version="0.1", mcp=["trusted", "stranger"])
@workflow.defn
class PairProber:
    """Calls each step's tool; a call the policy denies is noted and the next step runs."""

    @workflow.run
    async def run(self, steps: list[Step]) -> list[str]:
        outcomes: list[str] = []
        for step in steps:
            where = f"{step.server}/{step.tool}"
            try:
                result = await TemporalMCPClient(step.server).call_tool(step.tool, step.arguments)
            except runrecord.ToolDenied as err:
                outcomes.append(f"{where}: denied by {err.decided_by}")
                continue
            text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
            outcomes.append(f"{where}: ok {text}")
        return outcomes


@runrecord.agent("cache-purger", version="0.1")
@workflow.defn
class CachePurger:
    @workflow.run
    async def run(self, path: str) -> str:
        return await workflow.execute_activity(
            purge_cache, path, start_to_close_timeout=timedelta(seconds=20)
        )


@workflow.defn
class UnrecordedPurger:
    """Run by a worker without runrecord: nothing on the workflow side gates its call."""

    @workflow.run
    async def run(self, path: str) -> str:
        try:
            return await workflow.execute_activity(
                purge_cache, path, start_to_close_timeout=timedelta(seconds=20)
            )
        except ActivityError as err:
            return f"refused: {err.cause}"
