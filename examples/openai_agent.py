"""An OpenAI Agents SDK agent on Temporal, recorded by runrecord as it is.

A triage agent hands the customer off to a refunds agent, which looks the order up (a read
tool) and refunds it (a write tool that needs a person's approval). Both tools are Temporal
activities offered to the agent with ``activity_as_tool`` and declared with
``@runrecord.tool``; the agents ask for ``gpt-4o-mini``, and the worker answers with the
plugin's offline test model, so the example runs without a network or a key::

    runrecord worker -m examples.openai_agent
    temporal workflow start --type SupportDesk --task-queue runrecord-agents --input '"A-1"'
    runrecord approvals                  # the refund waits: run id and call id
    runrecord approve RUN CALL --as alice --reason "refund checked"
    runrecord show RUN

``PLUGINS`` holds the OpenAI Agents plugin: ``runrecord worker -m`` and ``runrecord replay
-m`` install it next to RunRecordPlugin.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from agents import Agent, ModelResponse, ModelSettings, Runner, Usage
    from agents.usage import InputTokensDetails, OutputTokensDetails
    from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin
    from temporalio.openai_agents.testing import ResponseBuilders, TestModel, TestModelProvider
    from temporalio.openai_agents.workflow import activity_as_tool

    import runrecord

MODEL = "gpt-4o-mini"
USAGE = {
    "input_tokens": 120,
    "cached_tokens": 20,
    "cache_write_tokens": 10,
    "output_tokens": 30,
    "reasoning_tokens": 5,
}
"""What the test model reports for every request (the record's tokens must say the same)."""


@runrecord.tool("read", idempotent=True)
@activity.defn
async def lookup_order(order_id: str) -> str:
    """Look an order up by its id."""
    return f"order {order_id}: 2 items, 40.00 EUR, delivered"


@runrecord.tool("write", approval=True)
@activity.defn
async def refund_order(order_id: str, amount: str) -> str:
    """Refund an order (a person approves each refund)."""
    return f"refunded {amount} EUR on {order_id}"


def _usage() -> Usage:
    return Usage(
        requests=1,
        input_tokens=USAGE["input_tokens"],
        input_tokens_details=InputTokensDetails(
            cached_tokens=USAGE["cached_tokens"], cache_write_tokens=USAGE["cache_write_tokens"]
        ),
        output_tokens=USAGE["output_tokens"],
        output_tokens_details=OutputTokensDetails(reasoning_tokens=USAGE["reasoning_tokens"]),
        total_tokens=USAGE["input_tokens"] + USAGE["output_tokens"],
    )


class ScriptedModel(TestModel):
    """The plugin's test model, answering each request by how far the conversation got:
    hand off to refunds, look the order up, refund it, then say so."""

    def __init__(self) -> None:
        super().__init__(lambda: ResponseBuilders.output_message(""))

    async def get_response(self, system_instructions: Any, input: Any, *a: Any, **kw: Any) -> Any:
        done = [i for i in input if isinstance(i, dict) and i.get("type") == "function_call_output"]
        order = "A-1"
        steps = [
            ResponseBuilders.tool_call("{}", "transfer_to_refunds", call_id="c1"),
            ResponseBuilders.tool_call(f'{{"order_id": "{order}"}}', "lookup_order", call_id="c2"),
            ResponseBuilders.tool_call(
                f'{{"order_id": "{order}", "amount": "40.00"}}', "refund_order", call_id="c3"
            ),
            ResponseBuilders.output_message(f"Order {order} is refunded."),
        ]
        step = steps[min(len(done), len(steps) - 1)]
        return ModelResponse(output=step.output, usage=_usage(), response_id=None)


def _tools() -> list[Any]:
    timeout = timedelta(seconds=30)
    return [
        activity_as_tool(lookup_order, start_to_close_timeout=timeout),
        activity_as_tool(refund_order, start_to_close_timeout=timeout),
    ]


@workflow.defn
class SupportDesk:
    @workflow.run
    async def run(self, order_id: str) -> str:
        refunds = Agent(
            name="refunds",
            instructions="Refund delivered orders after looking them up.",
            model=MODEL,
            model_settings=ModelSettings(temperature=0.2, max_tokens=400),
            tools=_tools(),
        )
        triage = Agent(
            name="support-triage",
            instructions="Hand refund requests to the refunds agent.",
            model=MODEL,
            handoffs=[refunds],
        )
        result = await Runner.run(triage, f"Please refund order {order_id}.")
        return str(result.final_output)


def openai_plugin() -> OpenAIAgentsPlugin:
    """The OpenAI Agents plugin, answering every model request with the test model."""
    return OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(start_to_close_timeout=timedelta(seconds=30)),
        model_provider=TestModelProvider(ScriptedModel()),
    )


WORKFLOWS = [SupportDesk]
ACTIVITIES = [lookup_order, refund_order]
PLUGINS = [openai_plugin()]
