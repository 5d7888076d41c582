"""A run's view of its MCP servers: the registry snapshot, and how each MCP call is recorded.

Runs inside the workflow (driven by the recording interceptor): it decides only from the
worker's registrations and what temporalio-mcp's activities returned, so replay decides
the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import temporalio.workflow as workflow
from mcp.types import ListToolsResult
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.mcp import TemporalMCPClient

from runrecord._contract import ErrorType
from runrecord.activities._mcp import (
    CLIENT_IDENTITY,
    MCPServerSpec,
    MCPToolPolicy,
    registry_entry,
    server_info,
    tool_definition,
)
from runrecord.activities._tool import ToolSpec
from runrecord.records import MCPCall, MCPServerInfo, SideEffect, ToolRegistryEntry
from runrecord.workflows._approvals import redact_text


def activity_failure(err: BaseException) -> str:
    """What an activity failure says, without Temporal's wrapping."""
    cause = err.cause if isinstance(err, ActivityError) and err.cause is not None else err
    if isinstance(cause, ApplicationError) and cause.type:
        return redact_text(f"{cause.type}: {cause.message}", 2000)
    return redact_text(str(cause), 2000)


class MCPSnapshot:
    """The first tools listing of each MCP server in a run, and what follows from it."""

    def __init__(self, servers: Mapping[str, MCPServerSpec]) -> None:
        self.servers = servers
        self.tools: dict[str, dict[str, ToolRegistryEntry]] = {}
        self.infos: dict[str, MCPServerInfo] = {}

    def registry(self) -> list[ToolRegistryEntry]:
        return [
            entry for name in sorted(self.tools) for _, entry in sorted(self.tools[name].items())
        ]

    def server_infos(self) -> list[MCPServerInfo]:
        return [self.infos[name] for name in sorted(self.infos)]

    async def list_at_start(self, server: str, agent_id: str | None) -> None:
        """List a server the agent declared; a ``required`` one that fails stops the run."""
        registration = self.servers.get(server)
        if registration is None:
            raise ApplicationError(
                f"agent {agent_id!r} uses MCP server {server!r}, which is not registered "
                f"on this worker: pass MCPServerSpec({server!r}, ...) to "
                "RunRecordPlugin(mcp_servers=[...])",
                type=ErrorType.MCP_SERVER_NOT_REGISTERED,
                non_retryable=True,
            )
        try:
            await TemporalMCPClient(server).list_tools()
        except ActivityError as err:
            if registration.required:
                raise ApplicationError(
                    f"MCP server {server!r} is unavailable, so the run stops: "
                    f"{activity_failure(err)}",
                    type=ErrorType.MCP_SERVER_UNAVAILABLE,
                    non_retryable=True,
                ) from None
            workflow.logger.warning(
                "MCP server %r is unavailable; the run goes on without it", server
            )

    def listed(self, server: str, listing: asyncio.Task[Any]) -> bool:
        """Take a finished tools listing in; True if it changed the run's snapshot."""
        if listing.cancelled() or server in self.tools:
            return False
        registration = self.servers.get(server)
        error = listing.exception()
        result: ListToolsResult | None = None
        try:
            result = ListToolsResult.model_validate(listing.result()) if error is None else None
        except ValueError as err:
            error = err
        if result is None:
            known = self.infos.get(server) or (
                registration.info()
                if registration
                else MCPServerInfo(name=server, transport="unknown", target="")
            )
            self.infos[server] = known.model_copy(
                update={"error": activity_failure(error) if error else "no tools listing"}
            )
            return True
        self.infos[server] = server_info(registration, server, result)
        self.tools[server] = {
            tool.name: registry_entry(
                server,
                tool_definition(tool),
                trusted=registration.trusted if registration else False,
                policy=registration.policy(tool.name) if registration else MCPToolPolicy(),
            )
            for tool in result.tools
        }
        return True

    def call(
        self, server: str, operation: str, args: Sequence[Any], host: str | None
    ) -> tuple[ToolSpec, MCPCall]:
        """How a temporalio-mcp activity is recorded: the MCP tool and its derived side effect."""
        registration = self.servers.get(server)
        trusted = registration.trusted if registration else False
        mcp = MCPCall(operation=operation, host=host, client=CLIENT_IDENTITY, trusted=trusted)
        if operation != "call-tool":
            # Listing tools, prompts or resources and reading them change nothing.
            return ToolSpec(name=operation, side_effect=SideEffect.READ, idempotent=True), mcp
        request = args[0] if args and isinstance(args[0], Mapping) else {}
        tool = str(request.get("name") or "")
        entry = self.tools.get(server, {}).get(tool)
        policy = registration.policy(tool) if registration else MCPToolPolicy()
        mcp.on_drift = policy.on_drift or "refuse"
        if entry is None:
            # Not in the snapshot: nothing vouches for what it does.
            spec = ToolSpec(
                name=tool,
                side_effect=SideEffect(policy.side_effect or SideEffect.UNKNOWN),
                approval=bool(policy.approval),
                network=True if policy.network is None else policy.network,
            )
            return spec, mcp
        mcp.annotations = entry.annotations
        mcp.input_schema_hash = entry.input_schema_hash
        mcp.output_schema_hash = entry.output_schema_hash
        return ToolSpec(**entry.traits(), name=tool, approval=entry.approval), mcp
