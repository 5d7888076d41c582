"""What recording costs an agent framework's agents: the same agent with and without runrecord.

The framework case of ``benchmarks/overhead.py`` (which measures the production layout: a
worker with its shipper, the mirror in a process of its own). Here the mirror follows in
the worker's process, as ``runrecord worker`` runs it, and the cases run side by side.

    python benchmarks/overhead_frameworks.py [--runs 200] [--calls 10] [--concurrency 20]
        [--case all]

Bare: a plain temporalio client and worker. Recorded: the worker as ``runrecord
worker`` runs it (RunRecordPlugin with its interceptor and journal, the mirror
following runs into the records database, blob copies on). Same dev server, same
worker settings, one process. Each side first runs a short warm-up; then bare and
recorded batches alternate (the mirror follows only during recorded batches, and its
final drain is counted), so load from other processes on the machine hits both sides
alike. Each case ends with a line ``ratio recorded/bare: <number>``.

Cases: ``plain`` is a workflow that calls its tools itself; ``openai-agents`` is an OpenAI
Agents SDK agent (Temporal's OpenAI Agents plugin on both sides, its offline test model
asking for the tool ``--calls`` times, so each run makes ``calls + 1`` model calls too).

The records database is RUNRECORD_DATABASE_URL if set (PostgreSQL in production),
else an SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# Workflow code runs in Temporal's sandbox, which re-imports the workflow's module for every
# run: everything but temporalio itself is passed through, or each run re-imports it.
with workflow.unsafe.imports_passed_through():
    from agents import Agent, ModelResponse, Runner, Usage
    from sqlalchemy import func, select
    from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin
    from temporalio.openai_agents.testing import ResponseBuilders, TestModel, TestModelProvider
    from temporalio.openai_agents.workflow import activity_as_tool

    import runrecord
    from runrecord._settings import Settings
    from runrecord.cli._stack import recording_worker
    from runrecord.recorder import Mirror
    from runrecord.recorder._tables import RunRow
    from runrecord.worker import SEARCH_ATTRIBUTES, temporal_binary
    from runrecord.worker._devserver import DEV_SERVER_FLAGS


@runrecord.tool("read", idempotent=True)
@activity.defn
async def lookup(step: int) -> str:
    return f"result {step}"


@runrecord.agent("bench-agent", version="1")
@workflow.defn
class BenchAgent:
    @workflow.run
    async def run(self, calls: int) -> int:
        for step in range(calls):
            await workflow.execute_activity(
                lookup, step, start_to_close_timeout=timedelta(seconds=30)
            )
        return calls


WORKFLOWS = [BenchAgent]
ACTIVITIES = [lookup]


class ToolLoopModel(TestModel):
    """The OpenAI Agents plugin's test model: asks for ``lookup`` until it has the number of
    results the user asked for, then answers with that number."""

    def __init__(self) -> None:
        super().__init__(lambda: ResponseBuilders.output_message(""))

    async def get_response(self, system_instructions: Any, input: Any, *a: Any, **kw: Any) -> Any:
        wanted = int(str(input[0]["content"]))
        done = sum(
            1 for i in input if isinstance(i, dict) and i.get("type") == "function_call_output"
        )
        if done < wanted:
            step = ResponseBuilders.tool_call(f'{{"step": {done}}}', "lookup", call_id=f"c{done}")
        else:
            step = ResponseBuilders.output_message(str(wanted))
        usage = Usage(requests=1, input_tokens=50, output_tokens=10, total_tokens=60)
        return ModelResponse(output=step.output, usage=usage, response_id=None)


@workflow.defn
class BenchOpenAIAgent:
    @workflow.run
    async def run(self, calls: int) -> int:
        agent = Agent(
            name="bench-agent",
            instructions="Look up each step.",
            model="gpt-4o-mini",
            tools=[activity_as_tool(lookup, start_to_close_timeout=timedelta(seconds=30))],
        )
        result = await Runner.run(agent, str(calls))
        return int(str(result.final_output))


def _openai_plugin() -> OpenAIAgentsPlugin:
    return OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(start_to_close_timeout=timedelta(seconds=30)),
        model_provider=TestModelProvider(ToolLoopModel()),
    )


@dataclass
class Case:
    """What one comparison runs: a workflow, and the plugins both sides run it with."""

    name: str
    workflow: Callable[..., Any]
    workflows: list[type]
    plugins: Callable[[], list[Any]] = field(default=list)

    def module(self) -> ModuleType:
        """The case as an agent module, the way ``runrecord worker -m`` loads one."""
        module = ModuleType(f"bench_{self.name}")
        module.WORKFLOWS = self.workflows  # type: ignore[attr-defined]
        module.ACTIVITIES = ACTIVITIES  # type: ignore[attr-defined]
        module.PLUGINS = self.plugins()  # type: ignore[attr-defined]
        return module


CASES = {
    "plain": Case("plain", BenchAgent.run, [BenchAgent]),
    "openai-agents": Case(
        "openai-agents", BenchOpenAIAgent.run, [BenchOpenAIAgent], lambda: [_openai_plugin()]
    ),
}


async def _run_all(
    client: Client, queue: str, runs: int, calls: int, concurrency: int, case: Case
) -> float:
    gate = asyncio.Semaphore(concurrency)
    prefix = uuid.uuid4().hex[:8]

    async def one(i: int) -> None:
        async with gate:
            result = await client.execute_workflow(
                case.workflow, calls, id=f"bench-{prefix}-{i}", task_queue=queue
            )
            assert result == calls

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    return time.perf_counter() - started


async def _recorded_batch(
    client: Client, queue: str, mirror: Mirror, runs: int, args: argparse.Namespace, case: Case
) -> float:
    """One batch with the mirror following, as in ``runrecord worker``; its last drain counts."""
    stop = asyncio.Event()
    started = time.perf_counter()
    if args.no_mirror:
        await _run_all(client, queue, runs, args.calls, args.concurrency, case)
        return time.perf_counter() - started
    following = asyncio.create_task(mirror.run(stop))
    await _run_all(client, queue, runs, args.calls, args.concurrency, case)
    stop.set()
    await following
    return time.perf_counter() - started


async def _mirrored_runs(mirror: Mirror) -> int:
    def count() -> int:
        with mirror.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(RunRow)
                    .where(RunRow.agent_id == "bench-agent", RunRow.final_status == "succeeded")
                ).scalar_one()
            )

    return await asyncio.to_thread(count)


async def compare(
    address: str, args: argparse.Namespace, home: Path, case: Case
) -> tuple[float, float, float]:
    """Bare and recorded batches, alternating, so load from elsewhere hits both sides alike."""
    settings = Settings(
        home=home,
        database_url=os.environ.get("RUNRECORD_DATABASE_URL")
        or f"sqlite:///{home / 'records.sqlite3'}",
        temporal_address=address,
        namespace="default",
        task_queue=f"bench-rec-{uuid.uuid4().hex[:6]}",
        ui_url=None,
    )
    bare_client = await Client.connect(address, plugins=case.plugins())
    bare_queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
    module = case.module()
    bare = recorded = 0.0
    async with (
        Worker(bare_client, task_queue=bare_queue, workflows=case.workflows, activities=ACTIVITIES),
        recording_worker(settings, address, module, mirror=False) as (client, mirror),
    ):
        queue = settings.task_queue
        # Runs of earlier cases share the records database.
        expected = await _mirrored_runs(mirror)
        await _run_all(bare_client, bare_queue, args.warmup, args.calls, args.concurrency, case)
        await _recorded_batch(client, queue, mirror, args.warmup, args, case)
        left, batch = args.runs, 0
        while left > 0:
            size = min(args.batch, left)
            sides = ["bare", "recorded"] if batch % 2 == 0 else ["recorded", "bare"]
            for side in sides:
                if side == "bare":
                    bare += await _run_all(
                        bare_client, bare_queue, size, args.calls, args.concurrency, case
                    )
                else:
                    recorded += await _recorded_batch(client, queue, mirror, size, args, case)
            left -= size
            batch += 1
        # The mirror's lag: how long until every recorded run is in the records database.
        done = time.perf_counter()
        stop = asyncio.Event()
        following = asyncio.create_task(mirror.run(stop))
        while await _mirrored_runs(mirror) < expected + args.warmup + args.runs:
            if time.perf_counter() - done > 120:
                break
            await asyncio.sleep(0.1)
        lag = time.perf_counter() - done
        stop.set()
        await following
    return bare, recorded, lag


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="agent runs per side")
    parser.add_argument("--calls", type=int, default=10, help="tool calls per run")
    parser.add_argument("--concurrency", type=int, default=20, help="runs in flight at once")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs per side first")
    parser.add_argument(
        "--batch", type=int, default=20, help="runs per batch; bare and recorded batches alternate"
    )
    parser.add_argument(
        "--no-mirror", action="store_true", help="diagnosis: record without the mirror following"
    )
    parser.add_argument(
        "--case", choices=[*CASES, "all"], default="all", help="which agents to compare"
    )
    args = parser.parse_args()

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(DEV_SERVER_FLAGS),
        dev_server_log_level="error",
    )
    address = env.client.service_client.config.target_host
    try:
        with tempfile.TemporaryDirectory(prefix="runrecord-bench-") as home:
            print(
                f"{args.runs} runs x {args.calls} tool calls, {args.concurrency} runs in flight, "
                f"dev server {address}, load average {os.getloadavg()[0]:.2f}"
            )
            cases = list(CASES.values()) if args.case == "all" else [CASES[args.case]]
            for case in cases:
                bare, recorded, lag = await compare(address, args, Path(home), case)
                print(f"[{case.name}]")
                print(f"bare temporalio: {bare:.2f} s")
                print(f"recorded (interceptor, journal, mirror): {recorded:.2f} s")
                print(f"mirror had every run recorded {lag:.2f} s after the last batch")
                print(f"ratio recorded/bare: {recorded / bare:.3f}")
            print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
