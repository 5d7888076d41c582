"""A LangGraph agent on Temporal (``temporalio-langgraph``) is recorded as it is: nodes that
answer with a model are model calls with their tokens and cost, the tools node's call has
the real tool's name and declared side effect, the gated write waits for one approval and a
denial escalates. Real Temporal dev server, real PostgreSQL, LangChain's offline model."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from examples import langgraph_agent
from runrecord.cli._approvals import pending_approvals
from runrecord.recorder import Mirror, load_run
from runrecord.records import RunRecord
from runrecord.worker import Journal, RunRecordPlugin
from tests.test_cli import runrecord

ORDERS = ["langgraph-first", "runrecord-first"]


async def _client(temporal_address: str, journal: Journal, order: str) -> Client:
    plugins: list[Any] = [langgraph_agent.plugin(), RunRecordPlugin(journal)]
    if order == "runrecord-first":
        plugins.reverse()
    return await Client.connect(temporal_address, plugins=plugins)


async def _waiting_call(client: Client, run_id: str) -> str:
    for _ in range(600):
        pending = await pending_approvals(client, run_id)
        if pending:
            assert [p.tool for p in pending] == ["write_note"]
            return pending[0].tool_call_id
        await asyncio.sleep(0.05)
    raise AssertionError("the gated write never asked for approval")


async def _record(client: Client, engine: Engine, run_id: str) -> RunRecord:
    await Mirror(client, engine).sync_run(run_id)
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    return record


async def _start(client: Client) -> tuple[Worker, str]:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    worker = Worker(client, task_queue=queue, workflows=langgraph_agent.WORKFLOWS)
    return worker, queue


@pytest.mark.parametrize("order", ORDERS)
async def test_a_langgraph_agent_is_recorded_with_models_tools_and_one_approval(
    order: str,
    temporal_address: str,
    journal: Journal,
    engine: Engine,
    cli_env: dict[str, str],
) -> None:
    langgraph_agent.NOTES.pop("summary", None)
    client = await _client(temporal_address, journal, order)
    run_id = f"notes-{uuid.uuid4().hex[:8]}"
    worker, queue = await _start(client)
    async with worker:
        handle = await client.start_workflow(
            langgraph_agent.NoteAssistant.run, "tidy my notes", id=run_id, task_queue=queue
        )
        call = await _waiting_call(client, run_id)
        assert "summary" not in langgraph_agent.NOTES, "the write ran before its approval"
        approved = await asyncio.to_thread(
            runrecord, "approve", run_id, call, "--as", "alice", "--reason", "ok", env=cli_env
        )
        assert approved.returncode == 0, approved.stderr
        assert await handle.result() == "Your summary note is saved."
    assert langgraph_agent.NOTES["summary"] == "2 tasks"

    record = await _record(client, engine, run_id)
    assert record.final_status == "succeeded", order
    assert record.agent_id == langgraph_agent.GRAPH
    calls = [(c.tool, c.side_effect, c.toolset) for c in record.tool_calls]
    assert calls == [
        ("agent", "model", None),
        ("read_note", "read", "tools"),
        ("agent", "model", None),
        ("write_note", "write", "tools"),
        ("agent", "model", None),
    ], order
    assert {(c.framework, c.agent_id) for c in record.tool_calls} == {
        ("langgraph", langgraph_agent.GRAPH)
    }
    assert [c.activity_type for c in record.tool_calls][:2] == [
        f"{langgraph_agent.GRAPH}.agent",
        f"{langgraph_agent.GRAPH}.tools",
    ]

    models = record.model_calls
    assert [(m.provider, m.model) for m in models] == [("openai", "gpt-4o-mini")] * 3
    assert [(m.input_tokens, m.output_tokens) for m in models] == langgraph_agent.USAGE
    assert [m.finish_reason for m in models] == ["tool_calls", "tool_calls", "stop"]
    assert {m.prompt_version for m in models} == {"notes@1"}
    assert all(m.priced and m.cost > 0 for m in models), [(m.cost, m.priced) for m in models]
    assert record.cost.total == pytest.approx(sum(m.cost for m in models))

    # One approval, by the named approver, for the one gated call; nothing else asked.
    write = record.tool_calls[3]
    assert write.status == "succeeded"
    assert write.approval is not None
    assert (write.approval.state, write.approval.decided_by) == ("approved", "alice")
    assert [c.tool for c in record.tool_calls if c.approval_state != "not_required"] == [
        "write_note"
    ]

    if order == ORDERS[0]:
        replayed = await asyncio.to_thread(
            runrecord, "replay", run_id, "-m", "examples.langgraph_agent", env=cli_env
        )
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.startswith("OK"), replayed.stdout


async def test_a_denied_write_never_runs_and_the_run_ends_escalated(
    temporal_address: str, journal: Journal, engine: Engine, cli_env: dict[str, str]
) -> None:
    langgraph_agent.NOTES.pop("summary", None)
    client = await _client(temporal_address, journal, ORDERS[0])
    run_id = f"notes-{uuid.uuid4().hex[:8]}"
    worker, queue = await _start(client)
    async with worker:
        handle = await client.start_workflow(
            langgraph_agent.NoteAssistant.run, "tidy my notes", id=run_id, task_queue=queue
        )
        call = await _waiting_call(client, run_id)
        denied = await asyncio.to_thread(
            runrecord, "deny", run_id, call, "--as", "bob", "--reason", "no", env=cli_env
        )
        assert denied.returncode == 0, denied.stderr
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert "summary" not in langgraph_agent.NOTES

    record = await _record(client, engine, run_id)
    assert record.final_status == "escalated"
    write = next(c for c in record.tool_calls if c.tool == "write_note")
    assert write.status == "denied"
    assert write.approval is not None
    assert (write.approval.state, write.approval.decided_by) == ("denied", "bob")
