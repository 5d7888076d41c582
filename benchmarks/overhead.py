"""What recording costs: the same agent runs with and without runrecord, on one dev server.

    python benchmarks/overhead.py [--runs 200] [--calls 10] [--concurrency 20] [--in-process]
        [--case plain|openai-agents|all]

Bare: a plain temporalio client and worker. Recorded: the worker as ``runrecord worker
--no-mirror`` runs it (RunRecordPlugin with its interceptor, the journal as a spool and
the shipper writing attempts and artifacts to the records database from a thread of the
worker's process), with the production layout's mirror, ``runrecord mirror run``, in a
process of its own following the runs into the records database. ``--in-process`` puts
the mirror in the worker's process instead (``runrecord worker`` without
``--no-mirror``; it follows only during recorded batches, its final drain counted).
Same dev server, same worker settings. Each side first runs a short warm-up; then bare
and recorded batches alternate, so load from other processes on the machine hits both
sides alike. In the production layout a third kind of batch runs recorded with the mirror
process stopped (SIGSTOP, then let catch up untimed): the worker's own share, which is
what a worker pays when its mirror runs on other cores or another machine.

Cases: ``plain`` (the default) is a workflow that calls its tools itself; ``openai-agents``
is an OpenAI Agents SDK agent (Temporal's OpenAI Agents plugin on both sides, its offline
test model asking for the tool ``--calls`` times, so each run makes ``calls + 1`` model
calls too); ``all`` runs both, one after the other.

It also times the activity interceptor alone: one attempt through ``RunRecordInterceptor``'s
activity side (header decoded, policy checked, start and end lines written to the journal,
the shipper woken) against the same call without it, in µs per attempt.

Each batch is timed in wall and CPU seconds: this process's CPU (the worker with its
shipper, and the client that starts the runs) and the mirror process's, per tool call. A
round is one batch of each side back to back; a side's ratio to bare is the median over
rounds of its batch's time over the bare batch's, so a burst of load from elsewhere moves
one round, not the figure. Each case ends with ``ratio recorded/bare: <median>``; the
interceptor's line is ``interceptor: <n> µs per attempt``. The records database is
RUNRECORD_DATABASE_URL if set (PostgreSQL in production: the mirror hears of new runs
through NOTIFY), else an SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
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
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Worker

# Workflow code runs in Temporal's sandbox, which re-imports the workflow's module for every
# run: everything but temporalio itself is passed through, or each run re-imports it.
with workflow.unsafe.imports_passed_through():
    from agents import Agent, ModelResponse, Runner, Usage
    from sqlalchemy import func, select
    from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin
    from temporalio.openai_agents.testing import ResponseBuilders, TestModel, TestModelProvider
    from temporalio.openai_agents.workflow import activity_as_tool

    import runrecord
    from runrecord._contract import CallHeader
    from runrecord._settings import Settings
    from runrecord.cli._stack import recording_worker
    from runrecord.recorder import Mirror
    from runrecord.recorder._tables import AttemptRow, RunRow
    from runrecord.worker import (
        SEARCH_ATTRIBUTES,
        Journal,
        RunRecordInterceptor,
        encode_header,
        temporal_binary,
    )
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
    """One batch; with ``--in-process``, the mirror follows in this process as in
    ``runrecord worker``, and its last drain counts."""
    stop = asyncio.Event()
    started = time.perf_counter()
    if args.no_mirror or not args.in_process:
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


async def _shipped_attempts(mirror: Mirror) -> int:
    def count() -> int:
        with mirror.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(AttemptRow)
                    .where(AttemptRow.run_id.like("bench-%"), AttemptRow.outcome == "succeeded")
                ).scalar_one()
            )

    return await asyncio.to_thread(count)


def start_mirror_process(url: str, address: str, home: Path) -> subprocess.Popen[str]:
    """``runrecord mirror run`` in a process of its own, with a home of its own."""
    env = {
        **os.environ,
        "RUNRECORD_DATABASE_URL": url,
        "TEMPORAL_ADDRESS": address,
        "RUNRECORD_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "runrecord.cli", "mirror", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Mirroring"):
        proc.kill()
        raise SystemExit(f"mirror did not start: {line}{proc.stdout.read()[-2000:]}")
    return proc


class _Terminal(ActivityInboundInterceptor):
    """The end of the chain: calls the activity function, as the SDK's own last link does."""

    def __init__(self) -> None:
        pass

    async def execute_activity(self, input: ExecuteActivityInput) -> object:
        return await input.fn(*input.args)


async def interceptor_cost(attempts: int, folder: Path) -> tuple[float, float]:
    """µs per attempt of the same activity call with and without the recording interceptor
    (journal on a real file, its fsync thread and a listener as the shipper's wake-up)."""
    journal = Journal(folder / "interceptor-journal")
    journal.listen(lambda: None)
    root = RunRecordInterceptor(journal.record)
    root.add_tools([lookup])
    header = CallHeader(tool_call_id="1", tool="lookup", run_id="bench-x", side_effect="read")
    headers = {"runrecord": encode_header(header)}
    recorded = root.intercept_activity(_Terminal())
    bare = _Terminal()
    call = ExecuteActivityInput(fn=lookup, args=[1], executor=None, headers=headers)

    async def timed(chain: ActivityInboundInterceptor) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(attempts):
                await chain.execute_activity(call)
            best = min(best, time.perf_counter() - started)
        return best / attempts * 1e6

    async def both() -> tuple[float, float]:
        await timed(recorded)  # warm-up
        return await timed(bare), await timed(recorded)

    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, activity_type="lookup", workflow_id="bench-x", workflow_run_id="r"
    )
    try:
        return await env.run(both)
    finally:
        journal.close()


@dataclass
class Batch:
    """One timed batch: its side, wall and CPU seconds (this process: the worker, its
    shipper and the client), and the mirror process's CPU seconds meanwhile."""

    side: str
    calls: int
    wall: float
    cpu: float
    mirror_cpu: float = 0.0


def load() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


def process_cpu(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def compare(
    address: str, args: argparse.Namespace, home: Path, case: Case
) -> tuple[list[Batch], float]:
    """Bare and recorded batches, alternating, so load from elsewhere hits both sides alike;
    returns every batch and the lag after the last one."""
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
    batches: list[Batch] = []
    separate = None
    async with (
        Worker(bare_client, task_queue=bare_queue, workflows=case.workflows, activities=ACTIVITIES),
        recording_worker(settings, address, module, mirror=False) as (client, mirror),
    ):
        queue = settings.task_queue
        if not args.in_process and not args.no_mirror:
            separate = start_mirror_process(settings.database_url, address, home / "mirror-home")
        # Runs and attempts of an earlier case share the records database.
        recorded_before = await _mirrored_runs(mirror)
        shipped_before = await _shipped_attempts(mirror)
        await _run_all(bare_client, bare_queue, args.warmup, args.calls, args.concurrency, case)
        await _recorded_batch(client, queue, mirror, args.warmup, args, case)
        left, batch, recorded_runs = args.runs, 0, recorded_before + args.warmup
        while left > 0:
            size = min(args.batch, left)
            sides = ["bare", "recorded"] if batch % 2 == 0 else ["recorded", "bare"]
            if separate is not None:
                sides.insert(batch % 3, "worker")
            for side in sides:
                cpu = time.process_time()
                mirror_cpu = process_cpu(separate.pid) if separate is not None else 0.0
                if side == "bare":
                    wall = await _run_all(
                        bare_client, bare_queue, size, args.calls, args.concurrency, case
                    )
                elif side == "recorded":
                    wall = await _recorded_batch(client, queue, mirror, size, args, case)
                    recorded_runs += size
                else:
                    # The worker's own share: the mirror process stopped while the batch
                    # runs, then let catch up untimed before the next batch.
                    assert separate is not None
                    separate.send_signal(signal.SIGSTOP)
                    try:
                        wall = await _run_all(
                            client, queue, size, args.calls, args.concurrency, case
                        )
                    finally:
                        separate.send_signal(signal.SIGCONT)
                    recorded_runs += size
                batches.append(
                    Batch(
                        side,
                        size * args.calls,
                        wall,
                        time.process_time() - cpu,
                        process_cpu(separate.pid) - mirror_cpu if separate is not None else 0.0,
                    )
                )
                if side == "worker":
                    while await _mirrored_runs(mirror) < recorded_runs:
                        await asyncio.sleep(0.1)
            left -= size
            batch += 1
        # The mirror's lag: how long until every recorded run is in the records database,
        # and every attempt shipped.
        done = time.perf_counter()
        stop = asyncio.Event()
        following = asyncio.create_task(mirror.run(stop)) if separate is None else None
        total = recorded_runs
        attempts = shipped_before + (total - recorded_before) * args.calls
        while await _mirrored_runs(mirror) < total or await _shipped_attempts(mirror) < attempts:
            if time.perf_counter() - done > 120:
                print("not everything was recorded within 120 s", file=sys.stderr)
                break
            await asyncio.sleep(0.1)
        lag = time.perf_counter() - done
        stop.set()
        if following is not None:
            await following
    if separate is not None:
        separate.send_signal(signal.SIGINT)
        separate.wait(timeout=30)
    return batches, lag


def report(batches: list[Batch], layout: str) -> float:
    """Per round (one batch of each side, back to back), each side's ratio to the bare batch;
    the median over rounds is the figure, since load from elsewhere moves single rounds.
    CPU is what recording costs the agent's machine: this process's CPU per tool call (the
    worker with its shipper, and the client) and the mirror process's. Returns the
    recorded/bare median."""
    rounds: list[dict[str, Batch]] = []
    for batch in batches:
        if not rounds or batch.side in rounds[-1]:
            rounds.append({})
        rounds[-1][batch.side] = batch
    names = {
        "bare": "bare temporalio",
        "recorded": f"recorded ({layout})",
        "worker": "recorded, the mirror process stopped during the batch (the worker's own share)",
    }
    median = statistics.median
    recorded = 0.0
    for side, name in names.items():
        mine = [b for b in batches if b.side == side]
        if not mine:
            continue
        cpu_us = median(b.cpu / b.calls for b in mine) * 1e6
        print(f"{name}: {sum(b.wall for b in mine):.2f} s in {len(mine)} batches")
        line = f"  worker process CPU per tool call: {cpu_us:.0f} µs"
        if any(b.mirror_cpu for b in mine):
            line += f"; mirror process: {median(b.mirror_cpu / b.calls for b in mine) * 1e6:.0f} µs"
        print(line)
        if side == "bare":
            continue
        pairs = [(r[side], r["bare"]) for r in rounds if side in r and "bare" in r]
        walls = [mine.wall / bare.wall for mine, bare in pairs]
        cpus = [mine.cpu / bare.cpu for mine, bare in pairs]
        print(
            f"  ratio to bare: wall {median(walls):.3f} (median of {len(walls)} rounds, "
            f"{min(walls):.2f} to {max(walls):.2f}), worker CPU {median(cpus):.3f}"
        )
        if side == "recorded":
            recorded = median(walls)
    return recorded


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
        "--in-process",
        action="store_true",
        help="the mirror in the worker's process (`runrecord worker`), not in its own",
    )
    parser.add_argument(
        "--attempts", type=int, default=5000, help="attempts timed for the interceptor alone"
    )
    parser.add_argument(
        "--case", choices=[*CASES, "all"], default="plain", help="which agents to compare"
    )
    args = parser.parse_args()
    # Temporal's sandbox imports the workflows' module (this file) again for every run: as
    # from an installed package, from bytecode, not compiled from source each time (a
    # checkout run with PYTHONDONTWRITEBYTECODE would, on both sides, hiding the ratio).
    compileall.compile_file(__file__, quiet=1)

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(DEV_SERVER_FLAGS),
        dev_server_log_level="error",
    )
    address = env.client.service_client.config.target_host
    try:
        with tempfile.TemporaryDirectory(prefix="runrecord-bench-") as home:
            layout = (
                "mirror in the worker's process"
                if args.in_process
                else "no mirror"
                if args.no_mirror
                else "production layout: worker with spool + shipper, `runrecord mirror run` apart"
            )
            print(
                f"{args.runs} runs x {args.calls} tool calls, {args.concurrency} runs in flight, "
                f"dev server {address}; {layout}"
            )
            print(f"load average before: {load()} on {os.cpu_count()} cores")
            without, with_it = await interceptor_cost(args.attempts, Path(home))
            print(
                f"activity call alone: {without:.1f} µs bare, {with_it:.1f} µs through the "
                "recording interceptor"
            )
            print(f"interceptor: {with_it - without:.1f} µs per attempt")
            cases = list(CASES.values()) if args.case == "all" else [CASES[args.case]]
            for case in cases:
                batches, lag = await compare(address, args, Path(home), case)
                print(f"[{case.name}] load average {load()}")
                ratio = report(batches, layout)
                print(f"every run and attempt in the records {lag:.2f} s after the last batch")
                print(f"ratio recorded/bare: {ratio:.3f}")
            print(f"load average after: {load()}")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
