"""A small MCP server (stdio) that misbehaves on request, for the MCP recording tests.

    python tests/mcp_test_server.py [--fail-at-start] [--invalid-schema] [--state FILE]
                                    [--http PORT]

Tools: ``echo`` (read-only), ``redefine`` (changes ``echo``'s definition: new argument,
now destructive), ``crash`` (the process exits mid-call), ``hang`` (never answers),
``fail`` (answers with ``isError``), ``bad_output`` (breaks its own output schema) and,
with ``--invalid-schema``, ``broken`` (listed with an input schema that is not JSON Schema).
``--state FILE`` keeps ``redefine``'s change across restarts of the process. ``--http PORT``
serves streamable HTTP on 127.0.0.1 instead of stdio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ADDITIVE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)


class Reading(BaseModel):
    value: int


def build(state: Path | None, invalid_schema: bool) -> MCPServer:
    async def misbehave(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method == "tools/list" and invalid_schema:
            listing = result.model_dump(by_alias=True) if isinstance(result, BaseModel) else result
            for tool in listing["tools"] if isinstance(listing, dict) else []:
                if tool["name"] == "broken":
                    tool["inputSchema"] = {
                        "type": "object",
                        "properties": {"n": {"type": "integer", "minimum": "zero"}},
                    }
            return listing
        if ctx.method == "tools/call" and (ctx.params or {}).get("name") == "bad_output":
            answer = result.model_dump(by_alias=True) if isinstance(result, BaseModel) else result
            if isinstance(answer, dict):
                answer["structuredContent"] = {"value": "not a number"}
            return answer
        return result

    server = MCPServer("runrecord-test-server", version="1.2.3", middleware=[misbehave])

    def echo_v1(text: str) -> str:
        return text

    def echo_v2(text: str, loud: bool = False) -> str:
        return text.upper() if loud else text

    def define_echo(changed: bool) -> None:
        if changed:
            server.add_tool(echo_v2, name="echo", description="Echo", annotations=DESTRUCTIVE)
        else:
            server.add_tool(echo_v1, name="echo", description="Echo", annotations=READ_ONLY)

    define_echo(state is not None and state.exists())

    @server.tool(annotations=ADDITIVE)
    def redefine() -> str:
        """Change echo's definition from now on."""
        if state is not None:
            state.write_text("changed")
        server.remove_tool("echo")
        define_echo(True)
        return "echo redefined"

    @server.tool(annotations=ADDITIVE)
    def crash() -> str:
        """Exit the process in the middle of the call."""
        print("crashing on purpose", file=sys.stderr, flush=True)
        os._exit(3)

    @server.tool(annotations=READ_ONLY)
    async def hang() -> str:
        """Never answer."""
        await asyncio.sleep(3600)
        return "too late"

    @server.tool(annotations=READ_ONLY)
    def fail(reason: str) -> str:
        """Answer with a tool error."""
        raise ToolError(reason)

    @server.tool(annotations=READ_ONLY)
    def bad_output() -> Reading:
        """Return structured content that breaks the declared output schema."""
        return Reading(value=1)

    if invalid_schema:

        @server.tool(annotations=READ_ONLY)
        def broken(n: int) -> str:
            """Listed with an input schema that is not JSON Schema."""
            return str(n)

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail-at-start", action="store_true")
    parser.add_argument("--invalid-schema", action="store_true")
    parser.add_argument("--state", type=Path)
    parser.add_argument("--http", type=int, metavar="PORT")
    args = parser.parse_args()
    if args.fail_at_start:
        print("cannot open the test database: permission denied", file=sys.stderr, flush=True)
        sys.exit(3)
    server = build(args.state, args.invalid_schema)
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
