"""Purpose-built agents and tools for the human-control tests: approvals, pause, rollback, reset.

Tools note each run in ``RAN`` (this process runs the activities), so a test can check that a
tool never ran without a valid approval.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    import runrecord

RAN: list[tuple[str, str, float]] = []
"""(tool, argument, time.time() when its activity started)"""


def ran(tool: str, argument: str | None = None) -> list[str]:
    return [a for t, a, _ in RAN if t == tool and (argument is None or a == argument)]


@runrecord.tool("delete")
@activity.defn
async def restore_file(path: str, content: str, previous: str | None) -> bool:
    RAN.append(("restore_file", path, time.time()))
    if previous is None:
        Path(path).unlink(missing_ok=True)
    else:
        Path(path).write_text(previous)
    return True


@runrecord.tool("write", compensate=restore_file)
@activity.defn
async def write_file(path: str, content: str) -> str | None:
    """Returns what the file held before, for the compensator."""
    RAN.append(("write_file", path, time.time()))
    target = Path(path)
    previous = target.read_text() if target.exists() else None
    target.write_text(content)
    return previous


@runrecord.tool("payment", approval=True, irreversible=True)
@activity.defn
async def charge(account: str, amount_cents: int) -> str:
    RAN.append(("charge", account, time.time()))
    return f"charged {account} {amount_cents}"


@runrecord.tool("deploy", approval=True)
@activity.defn
async def deploy(target: str) -> str:
    RAN.append(("deploy", target, time.time()))
    return f"deployed {target}"


@runrecord.tool("read", idempotent=True)
@activity.defn
async def tick(n: int) -> int:
    RAN.append(("tick", str(n), time.time()))
    return n


@runrecord.tool("exec")
@activity.defn
async def wait_for_file(path: str) -> str:
    """Heartbeats until ``path`` exists (an activity pause cancels it at a heartbeat). The
    first attempt fails, so an attempt is running whose number a reset can take back to 1."""
    RAN.append(("wait_for_file", path, time.time()))
    if activity.info().attempt == 1:
        raise ApplicationError("not ready yet")
    while not Path(path).exists():
        activity.heartbeat()
        await asyncio.sleep(0.2)
    return Path(path).read_text()


@runrecord.tool("delete")
@activity.defn
async def withdraw_release(target: str) -> bool:
    RAN.append(("withdraw_release", target, time.time()))
    return True


@runrecord.tool("deploy", compensate=withdraw_release)
@activity.defn
async def release(target: str) -> str:
    RAN.append(("release", target, time.time()))
    return f"released {target}"


@runrecord.tool("network", irreversible=True)
@activity.defn
async def announce(target: str) -> str:
    RAN.append(("announce", target, time.time()))
    return f"announced {target}"


_TIMEOUT = timedelta(seconds=20)


async def _write(path: str, content: str) -> str | None:
    return await workflow.execute_activity(
        write_file, args=[path, content], start_to_close_timeout=_TIMEOUT
    )


@runrecord.agent("deployer", version="1")
@workflow.defn
class Deployer:
    """Deploys each target in turn; a denial or expiry is not handled (the run escalates)."""

    @workflow.run
    async def run(self, targets: list[str]) -> list[str]:
        return [
            await workflow.execute_activity(deploy, t, start_to_close_timeout=_TIMEOUT)
            for t in targets
        ]


@runrecord.agent("careful-deployer", version="1")
@workflow.defn
class CarefulDeployer:
    """Handles denial and expiry itself, then deploys a fallback target."""

    @workflow.run
    async def run(self, target: str) -> str:
        try:
            first = await workflow.execute_activity(deploy, target, start_to_close_timeout=_TIMEOUT)
        except runrecord.ToolDenied as err:
            first = f"denied by {err.decided_by}"
        except runrecord.ApprovalExpired:
            first = "expired"
        fallback = await workflow.execute_activity(
            deploy, "fallback", start_to_close_timeout=_TIMEOUT
        )
        return f"{first}; {fallback}"


@runrecord.agent("bookkeeper", version="1")
@workflow.defn
class Bookkeeper:
    """Writes a file, charges a payment, then waits to deploy (where a rollback finds it)."""

    @workflow.run
    async def run(self, path: str) -> str:
        await _write(path, "new content")
        await workflow.execute_activity(
            charge, args=["acme", 1200], start_to_close_timeout=_TIMEOUT
        )
        return await workflow.execute_activity(deploy, "prod", start_to_close_timeout=_TIMEOUT)


@runrecord.agent("fragile-writer", version="1", rollback_on_failure=True)
@workflow.defn
class FragileWriter:
    """Writes a file and then fails: its rollback restores the file."""

    @workflow.run
    async def run(self, path: str) -> str:
        await _write(path, "half-done")
        raise ApplicationError("disk quota exceeded", non_retryable=True)


@runrecord.agent("ticker", version="1")
@workflow.defn
class Ticker:
    """Calls a tool every 200 ms, ``n`` times."""

    @workflow.run
    async def run(self, n: int) -> int:
        for i in range(n):
            await workflow.execute_activity(tick, i, start_to_close_timeout=_TIMEOUT)
            await workflow.sleep(0.2)
        return n


@runrecord.agent("sneaky", version="1")
@workflow.defn
class Sneaky:
    """Calls a gated tool every other way workflow code can: by name, as a local activity,
    with start_activity."""

    @workflow.run
    async def run(self, way: str) -> str:
        if way == "by-name":
            return await workflow.execute_activity("deploy", "x", start_to_close_timeout=_TIMEOUT)
        if way == "local":
            return await workflow.execute_local_activity(
                deploy, "x", start_to_close_timeout=_TIMEOUT
            )
        handle = workflow.start_activity(deploy, "x", start_to_close_timeout=_TIMEOUT)
        return await handle


@runrecord.agent("waiter", version="1")
@workflow.defn
class Waiter:
    """One long call: it waits for a file, so operators can act on it while it is pending."""

    @workflow.run
    async def run(self, path: str) -> str:
        return await workflow.execute_activity(
            wait_for_file,
            path,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
        )


@runrecord.agent("releaser", version="1")
@workflow.defn
class Releaser:
    """A sub-agent: releases a target (undoable), then announces it (irreversible)."""

    @workflow.run
    async def run(self, target: str) -> str:
        await workflow.execute_activity(release, target, start_to_close_timeout=_TIMEOUT)
        return await workflow.execute_activity(announce, target, start_to_close_timeout=_TIMEOUT)


@runrecord.agent("cautious-releaser", version="1")
@workflow.defn
class CautiousReleaser:
    """A sub-agent: releases a target, then waits for approval to deploy it to production."""

    @workflow.run
    async def run(self, target: str) -> str:
        await workflow.execute_activity(release, target, start_to_close_timeout=_TIMEOUT)
        return await workflow.execute_activity(deploy, "prod", start_to_close_timeout=_TIMEOUT)


@runrecord.agent("release-lead", version="1")
@workflow.defn
class ReleaseLead:
    """Writes release notes, delegates the release to a sub-agent, then waits to deploy
    (where a rollback finds it)."""

    @workflow.run
    async def run(self, path: str, cautious: bool = False) -> str:
        await _write(path, "release notes")
        sub_agent = CautiousReleaser.run if cautious else Releaser.run
        await workflow.execute_child_workflow(
            sub_agent, path, id=f"{workflow.info().workflow_id}.releaser"
        )
        return await workflow.execute_activity(deploy, "prod", start_to_close_timeout=_TIMEOUT)


@workflow.defn
class Unrecorded:
    """Run by a worker without runrecord: nothing gates its call."""

    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(deploy, "x", start_to_close_timeout=_TIMEOUT)


WORKFLOWS = [
    Deployer,
    CarefulDeployer,
    Bookkeeper,
    FragileWriter,
    Ticker,
    Sneaky,
    Waiter,
    Releaser,
    CautiousReleaser,
    ReleaseLead,
]
ACTIVITIES = [
    restore_file,
    write_file,
    charge,
    deploy,
    tick,
    wait_for_file,
    withdraw_release,
    release,
    announce,
]
