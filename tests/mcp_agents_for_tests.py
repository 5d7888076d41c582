"""Purpose-built agents for the MCP recording tests: each runs a list of MCP tool calls."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from mcp.types import TextContent
    from temporalio.mcp import TemporalMCPClient

    import runrecord
    from runrecord import MCPServerSpec

TEST_SERVER = Path(__file__).with_name("mcp_test_server.py")


def misbehaving_server(name: str, *flags: str, **options: Any) -> MCPServerSpec:
    """The project's misbehaving test server, registered as ``name``."""
    options.setdefault("trusted", True)
    options.setdefault("timeout", 2.0)
    options.setdefault("max_attempts", 2)
    return MCPServerSpec(name, command=(sys.executable, str(TEST_SERVER), *flags), **options)


class Step(BaseModel):
    server: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    catch: bool = False


async def _run_steps(steps: list[Step]) -> list[str]:
    """Call each tool in turn; a failed call stops the run unless its step catches it."""
    outcomes: list[str] = []
    for step in steps:
        try:
            result = await TemporalMCPClient(step.server).call_tool(step.tool, step.arguments)
        except ActivityError as err:
            if not step.catch:
                raise
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
            outcomes.append(f"{step.tool}: failed ({kind})")
            continue
        text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
        outcomes.append(f"{step.tool}: {'error' if result.is_error else 'ok'} {text}".strip())
    return outcomes


@runrecord.agent("mcp-prober", version="0.1", mcp=["flaky"])
@workflow.defn
class Prober:
    @workflow.run
    async def run(self, steps: list[Step]) -> list[str]:
        return await _run_steps(steps)


@runrecord.agent("mcp-two-servers", version="0.1", mcp=["flaky", "broken"])
@workflow.defn
class TwoServerProber:
    @workflow.run
    async def run(self, steps: list[Step]) -> list[str]:
        return await _run_steps(steps)


@runrecord.agent("git-prober", version="0.1", mcp=["git"])
@workflow.defn
class GitProber:
    @workflow.run
    async def run(self, steps: list[Step]) -> list[str]:
        return await _run_steps(steps)


@runrecord.agent("mcp-undeclared", version="0.1")
@workflow.defn
class UndeclaredProber:
    """Uses an MCP server without declaring it: nothing was listed when the run started."""

    @workflow.run
    async def run(self, steps: list[Step]) -> list[str]:
        return await _run_steps(steps)


WORKFLOWS = [Prober, TwoServerProber, GitProber, UndeclaredProber]
