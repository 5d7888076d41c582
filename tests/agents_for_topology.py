"""An agent for the topology test: each call declares an artifact; one call may wait at a
gate (a file) while heartbeating, so the test can kill its worker mid-call."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import runrecord


@runrecord.tool("write")
@activity.defn
async def write_part(n: int, gate: str) -> str:
    info = activity.info()
    runrecord.artifact(f"part://{info.workflow_id}/{n}", kind="message", content=str(n))
    if gate:
        Path(f"{gate}.waiting").write_text(str(os.getpid()))
        while not Path(gate).exists():
            activity.heartbeat()
            await asyncio.sleep(0.1)
    return f"part {n}"


@runrecord.agent("spooler", version="1")
@workflow.defn
class Spooler:
    """``calls`` writes; the one numbered ``gated`` waits at ``gate`` (if one is given)."""

    @workflow.run
    async def run(self, calls: int, gate: str, gated: int) -> int:
        for n in range(calls):
            await workflow.execute_activity(
                write_part,
                args=[n, gate if n == gated else ""],
                start_to_close_timeout=timedelta(seconds=120),
                heartbeat_timeout=timedelta(seconds=2),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
            )
        return calls


WORKFLOWS = [Spooler]
ACTIVITIES = [write_part]
