"""Agents for the mirror tests: steady streams of calls, an approval, an artifact, and a
chain of continue-as-new runs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import runrecord

_TIMEOUT = timedelta(seconds=30)


@runrecord.tool("read", idempotent=True)
@activity.defn
async def look(n: int) -> int:
    await asyncio.sleep(0.02)
    return n


@runrecord.tool("write")
@activity.defn
async def save_note(path: str, text: str) -> str:
    Path(path).write_text(text)
    runrecord.artifact(f"file://{path}", kind="file", content=text)
    return path


@runrecord.tool("deploy", approval=True)
@activity.defn
async def ship(target: str) -> str:
    return f"shipped {target}"


@runrecord.agent("streamer", version="1")
@workflow.defn
class Streamer:
    """``calls`` reads, a note written to ``note``, and, if ``ship``, a deploy that waits for a
    human approval."""

    @workflow.run
    async def run(self, calls: int, note: str, ship_it: bool) -> int:
        for n in range(calls):
            await workflow.execute_activity(look, n, start_to_close_timeout=_TIMEOUT)
        await workflow.execute_activity(
            save_note, args=[note, workflow.info().workflow_id], start_to_close_timeout=_TIMEOUT
        )
        if ship_it:
            await workflow.execute_activity(ship, note, start_to_close_timeout=_TIMEOUT)
        return calls


@runrecord.agent("looper", version="1")
@workflow.defn
class Looper:
    """Two reads per Temporal run, continuing as new until ``rounds`` runs are done."""

    @workflow.run
    async def run(self, rounds: int) -> int:
        for n in range(2):
            await workflow.execute_activity(look, n, start_to_close_timeout=_TIMEOUT)
        if rounds > 1:
            workflow.continue_as_new(rounds - 1)
        return rounds


@runrecord.agent("waiter", version="1")
@workflow.defn
class Waiter:
    """One read, then waits for a `go` signal, then one more read."""

    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self) -> str:
        await workflow.execute_activity(look, 1, start_to_close_timeout=_TIMEOUT)
        await workflow.wait_condition(lambda: self.go)
        await workflow.execute_activity(look, 2, start_to_close_timeout=_TIMEOUT)
        return "done"


WORKFLOWS = [Streamer, Looper, Waiter]
ACTIVITIES = [look, save_note, ship]
