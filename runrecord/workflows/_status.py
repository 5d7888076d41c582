"""What a run publishes about itself while it runs: the memo and the search attributes.

Everything here runs in the workflow and writes only through memo and search-attribute
upserts, so each change is a command in history (the mirror reads it back) and replay
publishes nothing twice. The memo carries the run's identity and tool registry
(``runrecord``), the last approval or rollback event (``runrecord.event``) and the
requests still waiting (``runrecord.pending``); the search attributes let operators list
runs by agent, turn and status without reading histories.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import temporalio.workflow as workflow
from temporalio.common import SearchAttributeUpdate

from runrecord._contract import (
    AGENT_ATTR,
    AWAITING_ATTR,
    EVENT_MEMO_KEY,
    MEMO_KEY,
    PENDING_MEMO_KEY,
    STATUS_ATTR,
    TURN_ATTR,
    ApprovalRequest,
    ControlEvent,
    RunContext,
    RunMemo,
)
from runrecord.activities._tool import ToolSpec
from runrecord.records import (
    ModelSpec,
)
from runrecord.workflows._agent import AgentSpec
from runrecord.workflows._approvals import redact
from runrecord.workflows._mcp import MCPSnapshot


class RunStatus:
    """One run's published state: its memo, its approval events and its status attributes."""

    def __init__(self, mcp: MCPSnapshot) -> None:
        self.mcp = mcp
        self.memo = RunMemo()
        self.agent_id: str | None = None
        self.turn_id: str | None = None
        self._awaiting = False

    def start(
        self,
        agent_id: str,
        spec: AgentSpec | None,
        context: RunContext,
        tools: Iterable[ToolSpec],
    ) -> None:
        """The memo a run starts with: who runs, on which model, with which tools."""
        self.agent_id, self.turn_id = agent_id, context.turn_id
        self.memo = RunMemo(
            agent_id=agent_id,
            agent_version=spec.version if spec else None,
            turn_id=context.turn_id,
            model=_redacted_model(spec.model) if spec else None,
            prompt_version=spec.prompt.prompt_version if spec and spec.prompt else None,
            tool_registry=[t.registry_entry() for t in sorted(tools, key=lambda t: t.name)],
            parent_run_id=context.parent_run_id,
            root_run_id=context.root_run_id,
            depth=context.depth,
        )
        self._upsert_memo()

    def identify(self, agent_id: str, version: str | None) -> None:
        """The run turned out to be a framework's agent: its name is the run's agent id."""
        self.agent_id = agent_id
        self.memo = self.memo.model_copy(
            update={"agent_id": agent_id, "agent_version": version or self.memo.agent_version}
        )
        self._upsert_memo()
        try:
            workflow.upsert_search_attributes([AGENT_ATTR.value_set(agent_id)])
        except Exception:
            workflow.logger.warning("runrecord search attributes not registered")

    def publish(self, event: ControlEvent, pending: list[ApprovalRequest]) -> None:
        """An approval or rollback event, and the requests still waiting after it."""
        workflow.upsert_memo(
            {
                # Defaults left out: memo size is limited (the dev server warns above 2 KB).
                EVENT_MEMO_KEY: event.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                PENDING_MEMO_KEY: [
                    p.model_dump(mode="json", by_alias=True, exclude_defaults=True) for p in pending
                ],
            }
        )
        awaiting = bool(pending)
        if awaiting != self._awaiting:
            self._awaiting = awaiting
            self.set("awaiting_approval" if awaiting else "running")

    def set(self, status: str, *, first: bool = False) -> None:
        pairs: list[SearchAttributeUpdate[Any]] = [
            STATUS_ATTR.value_set(status),
            AWAITING_ATTR.value_set(self._awaiting and status == "awaiting_approval"),
        ]
        if first:
            pairs += [
                AGENT_ATTR.value_set(self.agent_id or ""),
                TURN_ATTR.value_set(self.turn_id or ""),
            ]
        try:
            workflow.upsert_search_attributes(pairs)
        except Exception:
            # An unregistered attribute must not break the agent; the memo still records it.
            workflow.logger.warning("runrecord search attributes not registered")

    def mcp_listed(self, server: str, listing: asyncio.Task[Any]) -> None:
        """A tools listing finished: the first one per server goes into the registry snapshot."""
        if self.mcp.listed(server, listing):
            declared = [t for t in self.memo.tool_registry if t.server is None]
            self.memo = self.memo.model_copy(
                update={
                    "tool_registry": declared + self.mcp.registry(),
                    "mcp_servers": self.mcp.server_infos(),
                }
            )
            self._upsert_memo()

    def _upsert_memo(self) -> None:
        value = self.memo.model_dump(mode="json", by_alias=True, exclude_none=True)
        workflow.upsert_memo({MEMO_KEY: value})


def _redacted_model(model: ModelSpec | None) -> ModelSpec | None:
    """The agent's model as the memo may hold it: its parameters can carry keys and headers."""
    if model is None:
        return None
    return ModelSpec.model_validate(redact(model.model_dump(mode="json", by_alias=True)))
