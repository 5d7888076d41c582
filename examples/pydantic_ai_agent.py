"""A pydantic-ai agent on Temporal, recorded by runrecord.

The agent is an ordinary pydantic-ai ``Agent`` made durable by pydantic-ai's
``TemporalDurability``: its model requests and tools run as pydantic-ai's own activities
(``agent__support__model_request``, ``agent__support__toolset__<id>__call_tool``), which
runrecord recognises as the model calls and the tools they really are. The tools are
declared with ``@runrecord.tool`` on pydantic-ai's tool functions: ``order_status`` reads,
``refund`` writes and waits for one person's ``runrecord approve``.

The agent asks for ``openai:gpt-4o-mini``; offline, the worker answers that model id with
pydantic-ai's ``FunctionModel`` (the ``ResolveModelId`` capability below), so it runs with
no network and no key. Drop that capability to talk to OpenAI.

Run a worker with ``runrecord worker -m pydantic_ai_agent`` (examples/ on PYTHONPATH), then
start ``SupportDesk.run`` with a request such as ``"refund order 1042"``.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic_ai import Agent, ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.capabilities import ResolveModelId
    from pydantic_ai.durable_exec.temporal import (
        PydanticAIPlugin,
        PydanticAIWorkflow,
        TemporalDurability,
    )
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    import runrecord

MODEL = "openai:gpt-4o-mini"


def _support_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """What the offline model answers: look the order up, refund it, then say so."""
    done = {
        part.tool_name
        for message in messages
        for part in getattr(message, "parts", [])
        if isinstance(part, ToolReturnPart)
    }
    if "order_status" not in done:
        return ModelResponse(parts=[ToolCallPart("order_status", {"order_id": "1042"})])
    if "refund" not in done:
        return ModelResponse(parts=[ToolCallPart("refund", {"order_id": "1042", "amount": 25.0})])
    return ModelResponse(parts=[TextPart("Order 1042 was refunded 25.00.")])


def _offline(_: object, model_id: str) -> FunctionModel | None:
    if model_id != MODEL:
        return None
    return FunctionModel(_support_model, model_name=model_id.partition(":")[2])


agent = Agent(
    MODEL,
    name="support",
    instructions="You resolve customer orders. Check an order before refunding it.",
    capabilities=[TemporalDurability(), ResolveModelId(_offline)],
)


@runrecord.tool("read")
@agent.tool_plain
async def order_status(order_id: str) -> str:
    """The status of an order."""
    return f"order {order_id}: delivered, 25.00 paid"


@runrecord.tool("write", approval=True)
@agent.tool_plain
async def refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    return f"refunded {amount:.2f} on order {order_id}"


class Reply(BaseModel):
    text: str
    tokens: list[list[int]]


@workflow.defn
class SupportDesk(PydanticAIWorkflow):
    __pydantic_ai_agents__ = [agent]

    @workflow.run
    async def run(self, request: str) -> Reply:
        result = await agent.run(request)
        tokens = [
            [m.usage.input_tokens, m.usage.output_tokens]
            for m in result.all_messages()
            if isinstance(m, ModelResponse)
        ]
        return Reply(text=str(result.output), tokens=tokens)


WORKFLOWS = [SupportDesk]
ACTIVITIES: list[object] = []  # pydantic-ai's plugin registers the agent's activities
PLUGINS = [PydanticAIPlugin()]
