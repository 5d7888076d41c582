"""Agents for the audit-trail tests: a parent that delegates a release to a sub-agent under a
workflow id derived from its own (the pattern examples/demo_agents.py uses), and a run that
waits for one approval.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import runrecord


@runrecord.tool("deploy", approval=True)
@activity.defn
async def release(target: str) -> str:
    """Fails its first attempt (naming the Temporal run it belongs to), then deploys."""
    info = activity.info()
    if info.attempt == 1:
        raise RuntimeError(f"registry busy for run {info.workflow_run_id}")
    runrecord.artifact(f"https://deploy.example.internal/{target}", kind="url")
    return f"released {target}"


@runrecord.tool("read", idempotent=True)
@activity.defn
async def check(target: str) -> str:
    return f"{target} is ready"


_TIMEOUT = timedelta(seconds=20)
_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=5)


@runrecord.agent("release-deployer", version="1")
@workflow.defn
class ReleaseDeployer:
    @workflow.run
    async def run(self, target: str) -> str:
        return await workflow.execute_activity(
            release, target, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
        )


@runrecord.agent("release-supervisor", version="1")
@workflow.defn
class ReleaseSupervisor:
    """Checks the target (call 1, where a reset goes back to), then delegates the release."""

    @workflow.run
    async def run(self, target: str) -> str:
        await workflow.execute_activity(check, target, start_to_close_timeout=_TIMEOUT)
        return await workflow.execute_child_workflow(
            ReleaseDeployer.run, target, id=f"{workflow.info().workflow_id}.release-deployer"
        )


WORKFLOWS = [ReleaseDeployer, ReleaseSupervisor]
ACTIVITIES = [release, check]
