"""Agents for the tool-call recording tests: timeouts, crashes, outages, secrets, models.

Also a worker module: ``runrecord worker --module tests.agents_for_calls``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import runrecord
    from runrecord.activities import ModelRequest, Prompt, register_script
    from runrecord.records import ModelResult, ModelSpec

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0)


@runrecord.tool("exec")
@activity.defn
async def slow_step(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@runrecord.tool("write")
@activity.defn
async def long_step(marker: str) -> str:
    """First attempt: say so in ``marker`` and keep heartbeating (until the worker dies)."""
    info = activity.info()
    if info.attempt == 1:
        Path(marker).write_text(str(os.getpid()))
        for _ in range(600):
            activity.heartbeat()
            await asyncio.sleep(0.2)
    return f"done on attempt {info.attempt} by {os.getpid()}"


@runrecord.tool("write")
@activity.defn
async def gated_step(gate: str) -> str:
    """Fails once, then waits for ``gate`` to exist; declares an artifact when through."""
    info = activity.info()
    if info.attempt == 1:
        raise RuntimeError("gate not ready on attempt 1")
    Path(gate + ".waiting").write_text("waiting")
    while not Path(gate).exists():
        activity.heartbeat()
        await asyncio.sleep(0.1)
    runrecord.artifact(f"file://{gate}", kind="file", content="through")
    return "through"


class Credentials(BaseModel):
    service: str
    password: str
    client_secret: str
    notes: str


@runrecord.tool("network")
@activity.defn
async def echo_secrets(creds: Credentials) -> dict[str, Any]:
    runrecord.artifact(
        f"https://deploy:{creds.password}@artifacts.internal/build.tar", kind="url", content="x"
    )
    return {"echo": creds.notes, "apiKey": creds.client_secret, "service": creds.service}


@runrecord.tool("network")
@activity.defn
async def leaky_tool(text: str) -> str:
    if activity.info().attempt == 1:
        raise RuntimeError(f"upstream rejected request: {text}")
    return "accepted"


@runrecord.tool("network")
@activity.defn
async def doomed_tool(text: str) -> str:
    raise ApplicationError(f"refused for good: {text}", non_retryable=True)


@runrecord.tool("read", idempotent=True)
@activity.defn
async def local_lookup(key: str) -> str:
    return f"value of {key}"


@runrecord.tool("read")
@activity.defn
async def remote_lookup(key: str) -> str:
    return f"remote {key}"


@runrecord.agent("timeout-agent", version="1")
@workflow.defn
class TimeoutAgent:
    @workflow.run
    async def run(self, seconds: float) -> str:
        try:
            return await workflow.execute_activity(
                slow_step,
                seconds,
                start_to_close_timeout=timedelta(seconds=1),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError:
            return "timed out"


async def _retried_until_done(step: Any, arg: str, heartbeat_timeout: timedelta) -> str:
    """Runs ``step`` with retries and a heartbeat timeout, so a lost attempt is tried again."""
    return await workflow.execute_activity(
        step,
        arg,
        start_to_close_timeout=timedelta(seconds=120),
        heartbeat_timeout=heartbeat_timeout,
        retry_policy=FAST_RETRY,
    )


@runrecord.agent("crash-agent", version="1")
@workflow.defn
class CrashAgent:
    @workflow.run
    async def run(self, marker: str) -> str:
        return await _retried_until_done(long_step, marker, timedelta(seconds=2))


@runrecord.agent("outage-agent", version="1")
@workflow.defn
class OutageAgent:
    @workflow.run
    async def run(self, gate: str) -> str:
        return await _retried_until_done(gated_step, gate, timedelta(seconds=10))


PROMPT = Prompt(name="ops", version="3", template="You are the operations agent.")
SCRIPTED = ModelSpec(provider="scripted", name="scripted-1", parameters={"script": "ops"})
register_script("ops", [ModelResult(provider="scripted", model="scripted-1", content="ok")])


class SecretTask(BaseModel):
    creds: Credentials
    text: str


@runrecord.agent("secret-agent", version="1", model=SCRIPTED, prompt=PROMPT)
@workflow.defn
class SecretAgent:
    @workflow.run
    async def run(self, task: SecretTask) -> str:
        opts: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=10),
            "retry_policy": FAST_RETRY,
        }
        await workflow.execute_activity(echo_secrets, task.creds, **opts)
        await workflow.execute_activity(leaky_tool, task.text, **opts)
        try:
            await workflow.execute_activity(doomed_tool, task.text, **opts)
        except ActivityError:
            pass
        request = ModelRequest(
            agent_id="secret-agent", model=SCRIPTED, prompt=PROMPT, messages=[task.text]
        )
        await workflow.execute_activity(runrecord.call_model, request, **opts)
        return "done"


class ModelTask(BaseModel):
    model: ModelSpec
    messages: list[str]


@runrecord.agent("model-agent", version="1", prompt=PROMPT)
@workflow.defn
class ModelAgent:
    @workflow.run
    async def run(self, task: ModelTask) -> ModelResult:
        request = ModelRequest(
            agent_id="model-agent", model=task.model, prompt=PROMPT, messages=task.messages
        )
        return await workflow.execute_activity(
            runrecord.call_model,
            request,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=1.0,
                maximum_attempts=4,
            ),
        )


@runrecord.agent("planner", version="1", model=SCRIPTED, prompt=PROMPT)
@workflow.defn
class Planner:
    """Spends on a model, then delegates to a sub-agent that spends too."""

    @workflow.run
    async def run(self) -> str:
        request = ModelRequest(agent_id="planner", model=SCRIPTED, prompt=PROMPT, messages=["a"])
        await workflow.execute_activity(
            runrecord.call_model, request, start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.execute_child_workflow(
            Researcher.run, id=f"{workflow.info().workflow_id}.researcher"
        )
        return "planned"


@runrecord.agent("researcher", version="1", model=SCRIPTED, prompt=PROMPT)
@workflow.defn
class Researcher:
    @workflow.run
    async def run(self) -> str:
        request = ModelRequest(
            agent_id="researcher",
            model=SCRIPTED,
            prompt=PROMPT,
            messages=["find three sources on the topic please"],
        )
        await workflow.execute_activity(
            runrecord.call_model, request, start_to_close_timeout=timedelta(seconds=10)
        )
        return "researched"


@runrecord.agent("mixed-agent", version="1")
@workflow.defn
class MixedAgent:
    """Local and regular activities, some concurrent: each must become one tool call."""

    @workflow.run
    async def run(self) -> list[str]:
        timeout = timedelta(seconds=10)
        first = await workflow.execute_local_activity(
            local_lookup, "a", start_to_close_timeout=timeout
        )
        both = await asyncio.gather(
            workflow.execute_activity(remote_lookup, "b", start_to_close_timeout=timeout),
            workflow.execute_local_activity(local_lookup, "c", start_to_close_timeout=timeout),
            workflow.execute_activity(remote_lookup, "d", start_to_close_timeout=timeout),
        )
        return [first, *both]


@runrecord.agent("listener", version="1")
@workflow.defn
class Listener:
    def __init__(self) -> None:
        self.pinged = False

    @workflow.signal
    def ping(self) -> None:
        self.pinged = True

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.pinged)
        return "pinged"


@runrecord.agent("notifier", version="1")
@workflow.defn
class Notifier:
    @workflow.run
    async def run(self, listener_id: str) -> str:
        await workflow.get_external_workflow_handle(listener_id).signal(Listener.ping)
        return "sent"


WORKFLOWS = [
    Listener,
    Notifier,
    TimeoutAgent,
    CrashAgent,
    OutageAgent,
    SecretAgent,
    ModelAgent,
    Planner,
    Researcher,
    MixedAgent,
]
ACTIVITIES = [
    slow_step,
    long_step,
    gated_step,
    echo_secrets,
    leaky_tool,
    doomed_tool,
    local_lookup,
    remote_lookup,
    runrecord.call_model,
]
