"""A pydantic-ai agent whose tools are declared in the policy file, one declared nowhere,
and runrecord's denials returned to the model (``DenialsToModel``); and an agent whose tool
pydantic-ai itself wants approved (``requires_approval``), answered by runrecord's gate.

Its ``billing`` toolset's tools have no ``@runrecord.tool``; ``add_note`` is declared with
``@runrecord.tool`` below ``@agent.tool_plain``. Tools note each run in ``RAN``.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic_ai import (
        Agent,
        DeferredToolRequests,
        FunctionToolset,
        ModelMessage,
        ModelResponse,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
    )
    from pydantic_ai.durable_exec.temporal import PydanticAIWorkflow, TemporalDurability
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    import runrecord
    from runrecord.integrations.pydantic_ai import DenialsToModel, runrecord_decides

RAN: list[str] = []

POLICY = """
[tools.invoice_total]
side_effect = "read"

[tools."billing:void_invoice"]
side_effect = "payment"
approval = true
compensate = "reissue_invoice"

[[rule]]
name = "destructive"
side_effects = ["delete"]
action = "require"
approvers = ["ops"]
"""

STEPS = [
    ("invoice_total", {"invoice": "INV-7"}),
    ("add_note", {"text": "customer disputes INV-7"}),
    ("void_invoice", {"invoice": "INV-7"}),
    ("shred", {"invoice": "INV-7"}),
]

billing: FunctionToolset[None] = FunctionToolset(id="billing")


@billing.tool_plain
async def invoice_total(invoice: str) -> str:
    RAN.append(f"invoice_total {invoice}")
    return f"{invoice}: 120.00"


@billing.tool_plain
async def void_invoice(invoice: str) -> str:
    RAN.append(f"void_invoice {invoice}")
    return f"{invoice} voided"


@billing.tool_plain
async def shred(invoice: str) -> str:
    """Declared nowhere: nothing tells runrecord what it does."""
    RAN.append(f"shred {invoice}")
    return f"{invoice} shredded"


def _clerk(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call each step's tool in turn, then repeat what the tools answered."""
    returns = [
        str(part.content)
        for message in messages
        for part in getattr(message, "parts", [])
        if isinstance(part, ToolReturnPart)
    ]
    if len(returns) < len(STEPS):
        tool, args = STEPS[len(returns)]
        return ModelResponse(parts=[ToolCallPart(tool, args)])
    return ModelResponse(parts=[TextPart(" | ".join(returns))])


clerk = Agent(
    FunctionModel(_clerk, model_name="gpt-4o-mini"),
    name="billing-clerk",
    toolsets=[billing],
    metadata={"prompt_version": "clerk@3", "agent_version": "2.1"},
    capabilities=[TemporalDurability(), DenialsToModel()],
)


@clerk.tool_plain
@runrecord.tool("write", idempotent=True)
async def add_note(text: str) -> str:
    RAN.append(f"add_note {text}")
    return "noted"


@workflow.defn
class BillingDesk(PydanticAIWorkflow):
    __pydantic_ai_agents__ = [clerk]

    @workflow.run
    async def run(self, request: str) -> str:
        result = await clerk.run(request)
        return str(result.output)


WORKFLOWS = [BillingDesk]


def _closer_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    returns = [
        str(part.content)
        for message in messages
        for part in getattr(message, "parts", [])
        if isinstance(part, ToolReturnPart)
    ]
    if not returns:
        return ModelResponse(parts=[ToolCallPart("close_account", {"account": "ACC-9"})])
    return ModelResponse(parts=[TextPart(returns[0])])


closer = Agent(
    FunctionModel(_closer_model, model_name="gpt-4o-mini"),
    name="account-closer",
    output_type=[str, DeferredToolRequests],
    capabilities=[TemporalDurability()],
)


@closer.tool_plain(requires_approval=True)
async def close_account(account: str) -> str:
    """pydantic-ai asks for approval first; runrecord declares nothing of it."""
    RAN.append(f"close_account {account}")
    return f"{account} closed"


@workflow.defn
class AccountDesk(PydanticAIWorkflow):
    __pydantic_ai_agents__ = [closer]

    @workflow.run
    async def run(self, request: str) -> str:
        result = await closer.run(request)
        if isinstance(result.output, DeferredToolRequests):
            result = await closer.run(
                message_history=result.all_messages(),
                deferred_tool_results=runrecord_decides(result.output),
            )
        return str(result.output)


WORKFLOWS.append(AccountDesk)
