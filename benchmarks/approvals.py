"""Approval round trip: from an operator's approval to the approved tool's activity starting.

    python benchmarks/approvals.py [--approvals N] [--cli M]

On a Temporal dev server, one agent makes N gated calls in a row. For each, once the call is
waiting, the benchmark approves it through ``send_decision`` (the function ``runrecord
approve`` calls: signal, then wait for the run's confirmation) and measures the time until
the tool's activity starts. Then M more approvals go through the ``runrecord approve``
command itself, a new process each time, as an operator would type it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import runrecord
    from runrecord.cli._approvals import pending_approvals, send_decision
    from runrecord.worker import SEARCH_ATTRIBUTES, RunRecordPlugin, temporal_binary
    from runrecord.worker._devserver import DEV_SERVER_FLAGS

STARTED: dict[int, float] = {}


@runrecord.tool("deploy", approval=True)
@activity.defn
async def gated_step(n: int) -> int:
    STARTED[n] = time.perf_counter()
    return n


@runrecord.agent("approval-bench", version="1")
@workflow.defn(sandboxed=False)
class ApprovalBench:
    @workflow.run
    async def run(self, calls: int) -> int:
        for n in range(1, calls + 1):
            await workflow.execute_activity(
                gated_step, n, start_to_close_timeout=timedelta(seconds=30)
            )
        return calls


async def _waiting(client: Client, run_id: str, call: str) -> None:
    while not any(r.tool_call_id == call for r in await pending_approvals(client, run_id)):
        await asyncio.sleep(0.01)


async def _started(n: int) -> float:
    while n not in STARTED:
        await asyncio.sleep(0.001)
    return STARTED[n]


def _figures(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, round(len(ms) * 0.99) - 1)]
    return (
        f"{label}: n={len(ms)}  p50 {statistics.median(ms):.1f} ms  p99 {p99:.1f} ms  "
        f"min {ms[0]:.1f} ms  max {ms[-1]:.1f} ms"
    )


async def main(approvals: int, cli: int) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(DEV_SERVER_FLAGS),
    )
    try:
        address = env.client.service_client.config.target_host
        client = await Client.connect(address, plugins=[RunRecordPlugin()])
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        run_id = f"approval-bench-{uuid.uuid4().hex[:8]}"
        async with Worker(
            client, task_queue=queue, workflows=[ApprovalBench], activities=[gated_step]
        ):
            handle = await client.start_workflow(
                ApprovalBench.run, approvals + cli, id=run_id, task_queue=queue
            )
            in_process: list[float] = []
            for n in range(1, approvals + 1):
                await _waiting(client, run_id, str(n))
                sent = time.perf_counter()
                await send_decision(
                    client, run_id, str(n), "approve", approver="bench", reason="benchmark"
                )
                in_process.append(await _started(n) - sent)
            env_vars = {**os.environ, "TEMPORAL_ADDRESS": address}
            by_command: list[float] = []
            for n in range(approvals + 1, approvals + cli + 1):
                await _waiting(client, run_id, str(n))
                sent = time.perf_counter()
                command = [sys.executable, "-m", "runrecord.cli", "approve", run_id, str(n)]
                proc = await asyncio.create_subprocess_exec(
                    *command,
                    "--reason",
                    "benchmark",
                    "--as",
                    "bench",
                    env=env_vars,
                    stdout=subprocess.DEVNULL,
                )
                by_command.append(await _started(n) - sent)
                if await proc.wait() != 0:
                    raise SystemExit(f"runrecord approve failed for call {n}")
            await handle.result()
        print(_figures("approval round trip, send_decision -> activity start", in_process))
        if by_command:
            print(
                _figures(
                    "approval round trip, `runrecord approve` process -> activity start", by_command
                )
            )
    finally:
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=50)
    parser.add_argument("--cli", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.approvals, args.cli))
