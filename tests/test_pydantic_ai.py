"""A pydantic-ai agent on Temporal (``TemporalDurability``), recorded by runrecord: its model
requests are model calls with model, tokens and cost, its tools are calls under their real
names with their declared side effects, and its write tool waits for one person's approval.

The agent is examples/pydantic_ai_agent.py, answered by pydantic-ai's ``FunctionModel``."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import Engine
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from examples import pydantic_ai_agent as example  # noqa: E402
from runrecord.cli._approvals import pending_approvals, send_decision
from runrecord.integrations import prompt_hash
from runrecord.recorder import Mirror, load_run
from runrecord.records import RunRecord
from runrecord.worker import Journal, RunRecordPlugin
from tests.test_cli import runrecord

INSTRUCTIONS = "You resolve customer orders. Check an order before refunding it."


def _plugins(order: str, journal: Journal) -> list[Any]:
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin

    plugins: list[Any] = [PydanticAIPlugin(), RunRecordPlugin(journal)]
    return plugins if order == "pydantic-ai-first" else plugins[::-1]


@asynccontextmanager
async def _worker(
    address: str, journal: Journal, order: str, workflows: list[Any] | None = None
) -> AsyncIterator[tuple[Client, str]]:
    from pydantic_ai.durable_exec.temporal import PydanticAIPayloadConverter

    client = await Client.connect(address, plugins=_plugins(order, journal))
    assert client.data_converter.payload_converter_class is PydanticAIPayloadConverter, order
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=workflows or example.WORKFLOWS):
        yield client, queue


async def _waiting(client: Client, run_id: str, tool: str) -> str:
    for _ in range(300):
        for request in await pending_approvals(client, run_id):
            if request.tool == tool:
                return request.tool_call_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"{tool} of {run_id} never asked for approval")


async def _record(client: Client, engine: Engine, run_id: str) -> RunRecord:
    await Mirror(client, engine).sync_run(run_id)
    with engine.connect() as conn:
        loaded = load_run(conn, run_id)
    assert loaded is not None
    return loaded


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(runrecord, *args, env=env)


@pytest.mark.parametrize("order", ["pydantic-ai-first", "runrecord-first"])
async def test_model_requests_tools_and_one_approval_are_recorded(
    order: str,
    temporal_address: str,
    journal: Journal,
    engine: Engine,
    cli_env: dict[str, str],
) -> None:
    run_id = f"support-{uuid.uuid4().hex[:8]}"
    async with _worker(temporal_address, journal, order) as (client, queue):
        handle = await client.start_workflow(
            example.SupportDesk.run, "refund order 1042", id=run_id, task_queue=queue
        )
        call = await _waiting(client, run_id, "refund")
        waiting = await _record(client, engine, run_id)
        assert waiting.final_status == "awaiting_approval", order
        # The refund has not run: the model asked for it, the gate holds it.
        assert [(c.tool, c.status) for c in waiting.tool_calls if c.side_effect != "model"] == [
            ("order_status", "succeeded"),
            ("refund", "scheduled"),
        ], order
        approved = await _cli(
            "approve", run_id, call, "--as", "alice", "--reason", "order checked", env=cli_env
        )
        assert approved.returncode == 0, approved.stderr
        reply = await handle.result()
        assert reply.text == "Order 1042 was refunded 25.00.", order

        record = await _record(client, engine, run_id)
        if order == "runrecord-first":
            replayed = await _cli("replay", run_id, "-m", "examples.pydantic_ai_agent", env=cli_env)
            assert replayed.returncode == 0, replayed.stderr
            assert replayed.stdout.startswith("OK"), replayed.stdout

    assert record.final_status == "succeeded", order
    assert record.agent_id == "support", order
    models = [c for c in record.tool_calls if c.side_effect == "model"]
    assert [c.framework for c in models] == ["pydantic-ai"] * 3, order
    assert [c.agent_id for c in record.tool_calls] == ["support"] * 5, order
    by_call = {m.tool_call_id: m for m in record.model_calls}
    asked = [by_call[c.tool_call_id] for c in models]
    assert [(m.provider, m.model) for m in asked] == [("openai", "gpt-4o-mini")] * 3, order
    assert [[m.input_tokens, m.output_tokens] for m in asked] == reply.tokens, order
    assert all(m.priced and m.cost > 0 for m in asked), order
    assert {m.prompt_version for m in asked} == {prompt_hash(INSTRUCTIONS)}, order
    assert all(m.tools_offered == ["order_status", "refund"] for m in asked), order

    tools = [c for c in record.tool_calls if c.side_effect != "model"]
    assert [(c.tool, c.side_effect, c.toolset, c.status) for c in tools] == [
        ("order_status", "read", None, "succeeded"),
        ("refund", "write", None, "succeeded"),
    ], order
    assert tools[0].approval_state == "not_required", order
    refund = tools[1]
    assert refund.approval_state == "approved", order
    assert refund.approval is not None
    assert (refund.approval.decided_by, refund.approval.reason) == ("alice", "order checked")
    assert refund.activity_type == "agent__support__toolset__<agent>__call_tool", order


async def test_a_denied_refund_never_runs_and_the_run_escalates(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    run_id = f"support-{uuid.uuid4().hex[:8]}"
    async with _worker(temporal_address, journal, "runrecord-first") as (client, queue):
        handle = await client.start_workflow(
            example.SupportDesk.run, "refund order 1042", id=run_id, task_queue=queue
        )
        call = await _waiting(client, run_id, "refund")
        outcome = await send_decision(
            client, run_id, call, "deny", approver="bob", reason="refund window closed"
        )
        assert outcome.applied, outcome.message
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        record = await _record(client, engine, run_id)
    assert record.final_status == "escalated"
    refund = [c for c in record.tool_calls if c.tool == "refund"]
    assert [(c.status, c.approval_state) for c in refund] == [("denied", "denied")]
    assert refund[0].approval is not None and refund[0].approval.decided_by == "bob"


async def test_tools_declared_in_the_policy_file_and_a_denial_returned_to_the_model(
    temporal_address: str, journal: Journal, engine: Engine, tmp_path: Any
) -> None:
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin

    from runrecord.workflows import Policy
    from tests import pydantic_ai_agents_for_tests as agents

    path = tmp_path / "runrecord.toml"
    path.write_text(agents.POLICY)
    plugins = [RunRecordPlugin(journal, policy=Policy.load(path)), PydanticAIPlugin()]
    client = await Client.connect(temporal_address, plugins=plugins)
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"billing-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=agents.WORKFLOWS):
        handle = await client.start_workflow(
            agents.BillingDesk.run, "void INV-7", id=run_id, task_queue=queue
        )
        void = await _waiting(client, run_id, "void_invoice")
        denied = await send_decision(
            client, run_id, void, "deny", approver="bob", reason="over the refund limit"
        )
        assert denied.applied, denied.message
        # Declared nowhere, the tool is unknown: the rule for deletes gates it as the worst case.
        shred = await _waiting(client, run_id, "shred")
        approved = await send_decision(
            client, run_id, shred, "approve", approver="ops", reason="ok"
        )
        assert approved.applied, approved.message
        answer = await handle.result()
        record = await _record(client, engine, run_id)

    # The model read the denial as pydantic-ai words a denied tool call, and went on.
    assert answer == (
        "INV-7: 120.00 | noted | The tool call was denied. over the refund limit | INV-7 shredded"
    )
    assert "void_invoice INV-7" not in agents.RAN
    assert record.final_status == "succeeded"
    assert (record.agent_id, record.agent_version) == ("billing-clerk", "2.1")
    tools = [c for c in record.tool_calls if c.side_effect != "model"]
    assert [(c.tool, c.toolset, c.side_effect, c.approval_state) for c in tools] == [
        ("invoice_total", "billing", "read", "not_required"),
        ("add_note", None, "write", "not_required"),
        ("void_invoice", "billing", "payment", "denied"),
        ("shred", "billing", "unknown", "approved"),
    ]
    assert tools[2].compensator == "reissue_invoice"
    assert tools[2].approval is not None and tools[2].approval.decided_by == "bob"
    assert tools[3].approval is not None and tools[3].approval.rule == "destructive"
    # The agent's model object names the model; its metadata the prompt version.
    assert {(m.provider, m.model, m.prompt_version) for m in record.model_calls} == {
        ("function", "gpt-4o-mini", "clerk@3")
    }


def test_usage_is_read_from_a_response_and_odd_payloads_are_not_recognised() -> None:
    from runrecord.integrations._pydantic_ai import INTEGRATION

    response = {
        "model_name": "claude-sonnet-4-5",
        "provider_name": "anthropic",
        "finish_reason": "tool_call",
        "usage": {
            "input_tokens": 900,
            "cache_read_tokens": 600,
            "cache_write_tokens": 200,
            "cache_write_1h_tokens": 50,
            "output_tokens": 80,
            "output_reasoning_tokens": 30,
        },
    }
    used = INTEGRATION.usage("agent__a__model_request", response)
    assert used is not None
    assert (used.provider, used.model, used.finish_reason) == (
        "anthropic",
        "claude-sonnet-4-5",
        "tool_call",
    )
    assert (used.input_tokens, used.output_tokens, used.reasoning_tokens) == (900, 80, 30)
    assert (used.cache_read_tokens, used.cache_write_tokens) == (600, 200)
    streamed = INTEGRATION.usage("agent__a__model_request_stream", {"response": response})
    assert streamed == used
    assert INTEGRATION.usage("agent__a__model_request", ["not", "a", "response"]) is None

    settings = {
        "temperature": 0.2,
        "stop_sequences": ["END"],
        "extra_headers": {"Authorization": "Bearer abc123abc123abc123abc123"},
        "api_key": "sk-proj-" + "A1b2C3d4" * 6,
    }
    asked = INTEGRATION.recognise(
        "agent__a__model_request",
        [{"model_id": "openai:gpt-4o", "model_settings": settings, "messages": []}],
    )
    assert asked is not None and asked.model is not None
    assert (asked.model.provider, asked.model.model) == ("openai", "gpt-4o")
    kept = asked.model.parameters
    assert (kept["temperature"], kept["stop_sequences"]) == (0.2, ["END"])
    assert "extra_headers" not in kept and "A1b2C3d4" not in str(kept)

    hostile = "\x00" + "é" * 10_000
    assert INTEGRATION.recognise(f"agent__{hostile}__toolset__x__call_tool", [{}]) is None
    assert INTEGRATION.recognise("agent__a__toolset__x__call_tool", []) is None
    assert INTEGRATION.recognise("call_model", [{"name": "refund"}]) is None
    found = INTEGRATION.recognise("agent__a__toolset__x__call_tool", [{"name": hostile}])
    assert found is not None and found.tool == hostile and found.toolset == "x"


async def test_pydantic_ais_own_approval_request_is_decided_once_through_runrecord(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    from tests import pydantic_ai_agents_for_tests as agents

    async with _worker(temporal_address, journal, "pydantic-ai-first", agents.WORKFLOWS) as (
        client,
        queue,
    ):
        run_id = f"accounts-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.AccountDesk.run, "close ACC-9", id=run_id, task_queue=queue
        )
        call = await _waiting(client, run_id, "close_account")
        assert "close_account ACC-9" not in agents.RAN
        outcome = await send_decision(
            client, run_id, call, "approve", approver="carol", reason="customer asked"
        )
        assert outcome.applied, outcome.message
        assert await handle.result() == "ACC-9 closed"
        record = await _record(client, engine, run_id)
    assert agents.RAN.count("close_account ACC-9") == 1
    closing = [c for c in record.tool_calls if c.tool == "close_account"]
    assert [(c.status, c.approval_state) for c in closing] == [("succeeded", "approved")]
    assert closing[0].approval is not None
    assert (closing[0].approval.decided_by, closing[0].approval.rule) == ("carol", "declared")
