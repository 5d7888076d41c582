"""The ``Ticker`` agent after an incompatible change, to show replay catching it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tests.control_agents import tick


@workflow.defn(name="Ticker")
class Ticker:
    @workflow.run
    async def run(self, n: int) -> int:
        # Changed: a timer first, where the recorded history has the first tool call.
        await workflow.sleep(1)
        for i in range(n):
            await workflow.execute_activity(tick, i, start_to_close_timeout=timedelta(seconds=20))
        return n


WORKFLOWS = [Ticker]
ACTIVITIES = [tick]
