"""An OpenAI Agents SDK agent on Temporal, answered by the SDK's offline test model."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from agents import Agent, Runner


@workflow.defn
class Concierge:
    @workflow.run
    async def run(self, question: str) -> str:
        agent = Agent(name="concierge", instructions="Answer briefly.")
        result = await Runner.run(agent, question)
        return str(result.final_output)
