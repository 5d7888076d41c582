"""runrecord for pydantic-ai agents on Temporal (``pip install 'runrecord[pydantic-ai]'``).

Nothing is needed to record a durable pydantic-ai agent but ``RunRecordPlugin`` next to
``PydanticAIPlugin``; declare its tools with ``@runrecord.tool`` (above or below
``@agent.tool_plain``) or in the policy file's ``[tools]``.

A tool runrecord gates waits in the workflow for one ``runrecord approve``; a
``runrecord deny`` raises runrecord's ``ToolDenied`` out of ``agent.run`` and, unhandled,
the run ends ``escalated``. Give the agent ``DenialsToModel()`` to answer the model as
pydantic-ai answers a denied deferred tool call instead: the model reads the denial and
the run goes on.

Tools declared with pydantic-ai's own ``requires_approval=True`` are gated by runrecord
too: answer the run's ``DeferredToolRequests`` with ``runrecord_decides(...)`` and the
person decides once, through ``runrecord approve`` / ``deny``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_ai import (
    DeferredToolRequests,
    DeferredToolResults,
    RunContext,
    ToolCallPart,
    ToolDefinition,
)
from pydantic_ai.capabilities import AbstractCapability

from runrecord.integrations._pydantic_ai import INTEGRATION
from runrecord.workflows._approvals import ApprovalExpired, ToolDenied

__all__ = ["INTEGRATION", "DenialsToModel", "runrecord_decides"]


def runrecord_decides(requests: DeferredToolRequests) -> DeferredToolResults:
    """Hand pydantic-ai's approval requests (tools declared ``requires_approval=True``) to
    runrecord's gate: pass the result to the next ``agent.run(deferred_tool_results=...)``,
    and each call then waits for one ``runrecord approve`` / ``deny`` before it runs.

    Nothing is approved here: a call pydantic-ai asked about is always gated by runrecord,
    so answering pydantic-ai "go ahead" leaves the decision to the person runrecord asks.
    """
    return DeferredToolResults(approvals={call.tool_call_id: True for call in requests.approvals})


@dataclass
class DenialsToModel(AbstractCapability[Any]):
    """Return a runrecord denial (or an expired approval) to the model as the tool's result,
    the way pydantic-ai returns a ``ToolDenied`` of deferred tool results."""

    message: str = "The tool call was denied."

    async def on_tool_execute_error(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
        error: Exception,
    ) -> Any:
        if isinstance(error, ToolDenied):
            return f"{self.message} {error.reason}".strip()
        if isinstance(error, ApprovalExpired):
            return f"{self.message} Nobody approved it in time."
        raise error

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None
