"""The audit trail is complete and never rewritten: every Temporal run of a workflow id keeps
its own calls, approvals, attempts and artifacts, and ``mirror verify`` notices what the records
lost."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from temporalio.client import Client
from temporalio.worker import Worker

from runrecord._contract import APPROVE_SIGNAL
from runrecord._settings import RunRecordError
from runrecord.cli._approvals import pending_approvals, send_decision
from runrecord.cli._control import pause_run, reset_run, resume_run
from runrecord.records import RunRecord, ToolCall
from runrecord.worker import Journal, RunRecordPlugin
from tests import audit_agents as agents
from tests import control_agents
from tests.test_approvals import record as control_record
from tests.test_approvals import worker as control_worker
from tests.test_cli import runrecord
from tests.test_mirror import following, load, until


@asynccontextmanager
async def audit_worker(address: str, journal: Journal) -> AsyncIterator[tuple[Client, str]]:
    client = await Client.connect(address, plugins=[RunRecordPlugin(journal)])
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        yield client, queue


async def waiting_for(client: Client, run_id: str, call: str) -> None:
    """Until the run (which may not have started yet) asks for a decision on ``call``."""

    async def asking() -> bool:
        try:
            return any(r.tool_call_id == call for r in await pending_approvals(client, run_id))
        except RunRecordError:
            return False

    await until(asking, f"call {call} of {run_id} asking for approval")


def _calls(record: RunRecord | None) -> dict[str, ToolCall]:
    return {c.tool_call_id: c for c in record.tool_calls} if record else {}


async def _verify(cli_env: dict[str, str], run_id: str) -> tuple[int, str]:
    proc = await asyncio.to_thread(runrecord, "mirror", "verify", run_id, env=cli_env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout


@pytest.mark.parametrize("mirror_restarts", [False, True], ids=["one-mirror", "mirror-restarted"])
async def test_a_sub_agent_rerun_by_a_parent_reset_keeps_the_first_runs_calls(
    temporal_address: str,
    journal: Journal,
    engine: Engine,
    cli_env: dict[str, str],
    mirror_restarts: bool,
) -> None:
    parent = f"release-{uuid.uuid4().hex[:8]}"
    child = f"{parent}.release-deployer"
    async with (
        audit_worker(temporal_address, journal) as (client, queue),
        AsyncExitStack() as mirror,
    ):
        await mirror.enter_async_context(following(client, engine, journal))
        handle = await client.start_workflow(
            agents.ReleaseSupervisor.run, "1.4.0", id=parent, task_queue=queue
        )
        await waiting_for(client, child, "1")
        await send_decision(client, child, "1", "approve", approver="pat", reason="tested build")
        assert await handle.result() == "released 1.4.0"
        first_child = (await client.get_workflow_handle(child).describe()).run_id
        assert first_child is not None
        old = f"1~{first_child[-8:]}"

        async def first_recorded() -> bool:
            calls = _calls(load(engine, child))
            return "1" in calls and len(calls["1"].retry_state.history) == 2

        await until(first_recorded, "the first sub-agent run in the records")
        if mirror_restarts:
            # The next mirror knows the first run only from the records: nothing links the
            # sub-agent's second Temporal run to it.
            await mirror.aclose()

        # Back to before the parent's call 1: the sub-agent starts again under the same id.
        await reset_run(client, parent, "1", by="ops", reason="redo the release")
        await waiting_for(client, child, "1")
        await send_decision(client, child, "1", "approve", approver="quinn", reason="again")
        assert await client.get_workflow_handle(parent).result() == "released 1.4.0"
        second_child = (await client.get_workflow_handle(child).describe()).run_id
        assert second_child not in (None, first_child)

        if mirror_restarts:
            await mirror.enter_async_context(following(client, engine, journal))

        async def both_kept() -> bool:
            calls = _calls(load(engine, child))
            return (
                old in calls
                and calls[old].retry_state.attempts == 2
                and "1" in calls
                and calls["1"].temporal_run_id == second_child
                and calls["1"].status == "succeeded"
                and len(load(engine, child).artifacts) == 2  # type: ignore[union-attr]
            )

        await until(both_kept, "both sub-agent runs' calls in the records")

    record = load(engine, child)
    assert record is not None
    assert [r.temporal_run_id for r in record.temporal_runs] == [first_child, second_child]
    calls = _calls(record)
    first, again = calls[old], calls["1"]
    assert first.temporal_run_id == first_child
    assert (first.status, first.approval_state) == ("succeeded", "approved")
    assert first.approval is not None and first.approval.decided_by == "pat"
    assert (again.status, again.approval_state) == ("succeeded", "approved")
    assert again.approval is not None and again.approval.decided_by == "quinn"
    # Each run's attempts, from the journal: the failed first attempt names its own run.
    for call, run in ((first, first_child), (again, second_child)):
        assert [a.outcome for a in call.retry_state.history] == ["failed", "succeeded"]
        assert f"registry busy for run {run}" in (call.retry_state.history[0].error or "")
    # Each run's artifact hangs off its own call.
    assert sorted(a.tool_call_id for a in record.artifacts) == sorted(["1", old])

    code, out = await _verify(cli_env, child)
    assert code == 0, out

    # Whatever the records lose, verify names it.
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM tool_calls WHERE run_id = :r AND tool_call_id = :c"),
            {"r": child, "c": old},
        )
    code, out = await _verify(cli_env, child)
    assert code == 1
    assert f"{child} tool_calls[{child}, {old}]: missing from the records" in out

    rebuilt = await asyncio.to_thread(runrecord, "mirror", "rebuild", child, env=cli_env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE tool_calls SET approval = NULL, approval_state = 'requested' "
                "WHERE run_id = :r AND tool_call_id = :c"
            ),
            {"r": child, "c": old},
        )
    code, out = await _verify(cli_env, child)
    assert code == 1
    assert f"{child} tool_calls[{child}, {old}].approval_state: records 'requested'" in out
    assert f"{child} tool_calls[{child}, {old}].approval: records None" in out

    rebuilt = await asyncio.to_thread(runrecord, "mirror", "rebuild", child, env=cli_env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    with engine.begin() as conn:
        conn.execute(
            text(
                "DELETE FROM tool_call_attempts "
                "WHERE run_id = :r AND tool_call_id = :c AND attempt = 1"
            ),
            {"r": child, "c": old},
        )
    code, out = await _verify(cli_env, child)
    assert code == 1
    assert f"{child} tool_call_attempts[{child}, {old}, 1]: missing from the records" in out


async def test_an_approval_sent_while_the_run_is_paused_keeps_when_the_person_decided(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with control_worker(temporal_address, journal) as (client, queue):
        run_id = f"frozen-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            control_agents.Deployer.run, ["staging-b"], id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "1")
        await pause_run(client, run_id, by="olga", reason="change freeze")
        with pytest.raises(RunRecordError, match="is paused"):
            await send_decision(client, run_id, "1", "approve", approver="pat", reason="go")
        await asyncio.sleep(3)
        await resume_run(client, run_id, by="olga", reason="freeze over")
        assert await handle.result() == ["deployed staging-b"]
        done = await control_record(client, engine, run_id)

    history = await client.get_workflow_handle(run_id).fetch_history()
    signalled = next(
        e.event_time.ToDatetime(tzinfo=UTC)
        for e in history.events
        if e.workflow_execution_signaled_event_attributes.signal_name == APPROVE_SIGNAL
    )
    resumed = next(
        e.event_time.ToDatetime(tzinfo=UTC)
        for e in history.events
        if e.HasField("workflow_execution_unpaused_event_attributes")
    )
    approval = _calls(done)["1"].approval
    assert approval is not None and approval.decided_by == "pat"
    assert approval.decided_at == signalled
    assert resumed - signalled >= timedelta(seconds=2)
    assert approval.applied_at is not None and approval.applied_at >= resumed


async def test_verify_all_names_agent_runs_temporal_has_and_the_records_lack(
    temporal_address: str, journal: Journal, engine: Engine, cli_env: dict[str, str]
) -> None:
    since = datetime.now(UTC).isoformat()
    async with control_worker(temporal_address, journal) as (client, queue):
        recorded, lost = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("recorded", "lost"))
        for run_id in (recorded, lost):
            await client.execute_workflow(control_agents.Ticker.run, 1, id=run_id, task_queue=queue)
        await control_record(client, engine, recorded)

        async def listed() -> bool:
            found = [w.id async for w in client.list_workflows(f"WorkflowId = '{lost}'")]
            return found == [lost]

        await until(listed, "the run in Temporal's visibility")

    for args in ((), ("--since", since)):
        proc = await asyncio.to_thread(runrecord, "mirror", "verify", "--all", *args, env=cli_env)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        assert f"{lost}: in Temporal, missing from the records" in lines
        assert not any(line.startswith(recorded) for line in lines)

    as_json = await asyncio.to_thread(
        runrecord, "mirror", "verify", "--all", "--since", since, "--json", env=cli_env
    )
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    found = json.loads(as_json.stdout)
    assert found["missing"] == [lost]
    assert f"{lost}: in Temporal, missing from the records" in found["differences"]
