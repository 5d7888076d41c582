"""A LangGraph agent on Temporal (``temporalio-langgraph``) is recorded as it is: nodes that
answer with a model are model calls with their tokens and cost, the tools node's call has
the real tool's name and declared side effect, the gated write waits for one approval and a
denial escalates. Real Temporal dev server, real PostgreSQL, LangChain's offline model."""

from __future__ import annotations

import asyncio
import json
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
            # The approver sees the write's own arguments, not the node's whole state.
            assert json.loads(pending[0].arguments) == [{"name": "summary", "text": "2 tasks"}]
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


# -- what the integration reads of a node activity (no server needed) --------------------


def _node_input(messages: Any, node: str = "tools", **meta: Any) -> dict[str, Any]:
    """A node activity's input as history holds it (JSON of LangGraph's ActivityInput)."""
    return {
        "args": [{"messages": messages}],
        "kwargs": {},
        "langgraph_config": {"metadata": {"langgraph_node": node, **meta}},
    }


def _asks(*names: str) -> list[dict[str, Any]]:
    calls = [{"name": n, "args": {}, "id": f"c{i}"} for i, n in enumerate(names)]
    return [{"type": "human", "content": "hi"}, {"type": "ai", "content": "", "tool_calls": calls}]


def test_a_tools_node_running_several_tools_is_one_call_judged_by_all_their_declarations() -> None:
    from runrecord.integrations import recognise
    from runrecord.worker import RunRecordInterceptor

    found = recognise("note-assistant.tools", [_node_input(_asks("read_note", "write_note"))])
    assert found is not None
    assert (found.tool, found.tools, found.toolset) == (
        "read_note,write_note",
        ["read_note", "write_note"],
        "tools",
    )
    assert found.arguments == [{"read_note": {}}, {"write_note": {}}]
    spec = RunRecordInterceptor().framework_spec(found)
    # The gated write is in it: the call needs approval; read and write: the worst class.
    assert (spec.approval, spec.side_effect) == (True, "unknown")

    twice = recognise("note-assistant.tools", [_node_input(_asks("read_note", "read_note"))])
    assert twice is not None and (twice.tool, twice.tools) == ("read_note", [])
    assert RunRecordInterceptor().framework_spec(twice).side_effect == "read"


HOSTILE_NAME = "wr\x00ite\u202e" + "x" * 10_000


@pytest.mark.parametrize(
    "args",
    [
        [],
        [None],
        ["text"],
        [{"args": "not a list", "langgraph_config": {}}],
        [{"args": [], "kwargs": {}, "langgraph_config": {"metadata": "nope"}}],
        [_node_input("not messages")],
        [_node_input([{"type": "ai", "tool_calls": "nope"}])],
        [_node_input([{"type": "ai", "tool_calls": [{"name": None}, 7, "x"]}])],
        [_node_input([None, 3, {"type": ["ai"]}])],
        [_node_input([{"type": "human", "content": "\x00"}], node="\x00")],
    ],
)
def test_odd_node_inputs_are_a_node_or_nothing_never_an_error(args: list[Any]) -> None:
    from runrecord.integrations._langgraph import INTEGRATION

    found = INTEGRATION.recognise("note-assistant.tools", args)
    assert found is None or (found.tool, found.tools) == ("tools", [])


def test_a_hostile_tool_name_is_carried_as_given() -> None:
    from runrecord.integrations._langgraph import INTEGRATION

    found = INTEGRATION.recognise("g.tools", [_node_input(_asks(HOSTILE_NAME))])
    assert found is not None and found.tool == HOSTILE_NAME
    assert INTEGRATION.recognise("no-dot", [_node_input(_asks("a"))]) is None


@pytest.mark.parametrize(
    "result",
    [
        None,
        "text",
        {"result": None},
        {"result": {"messages": [{"type": "ai", "usage_metadata": "lots"}]}},
        {"result": {"messages": [{"type": "tool", "name": "read_note", "content": "x"}]}},
        {"result": [1, 2]},
        {"langgraph_interrupts": [{"value": "approve?"}], "result": None},
    ],
)
def test_a_result_without_a_models_answer_is_no_model_call(result: Any) -> None:
    from runrecord.integrations._langgraph import INTEGRATION

    assert INTEGRATION.usage("g.agent", result) is None
    assert INTEGRATION.model_answer("g.agent", [_node_input([], node="agent")], result) is None


def test_a_nodes_model_answers_are_read_with_cache_and_reasoning_tokens() -> None:
    from runrecord.integrations import prompt_hash
    from runrecord.integrations._langgraph import INTEGRATION

    def answer(tokens_in: Any, tokens_out: int, reason: str) -> dict[str, Any]:
        return {
            "type": "ai",
            "content": "",
            "usage_metadata": {
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "input_token_details": {"cache_read": 40, "cache_creation": 5},
                "output_token_details": {"reasoning": 7},
            },
            "response_metadata": {"model": "claude-sonnet-4-5", "stop_reason": reason},
        }

    # A node that asked its model twice: one call, the tokens summed, the last answer's reason.
    result = {"result": {"messages": [answer(100, 10, "tool_use"), answer(-5, 20, "end_turn")]}}
    used = INTEGRATION.usage("g.agent", result)
    assert used is not None
    assert (used.model, used.provider, used.finish_reason) == (
        "claude-sonnet-4-5",
        None,
        "end_turn",
    )
    assert (used.input_tokens, used.output_tokens) == (100, 30)
    assert (used.cache_read_tokens, used.cache_write_tokens, used.reasoning_tokens) == (80, 10, 14)

    system = [{"type": "system", "content": "Be brief."}, {"type": "human", "content": "hi"}]
    asked = INTEGRATION.model_answer("g.agent", [_node_input(system, node="agent")], result)
    assert asked is not None and asked.prompt_version == prompt_hash("Be brief.")
    named = [_node_input(system, node="agent", prompt_version="brief@2")]
    asked = INTEGRATION.model_answer("g.agent", named, result)
    assert asked is not None and asked.prompt_version == "brief@2"


def test_a_gated_tool_run_by_a_tools_node_outside_the_gate_is_refused_on_the_worker() -> None:
    from temporalio.langgraph._activity import ActivityInput

    from runrecord.worker import RunRecordInterceptor

    # As the activity receives it: LangGraph's ActivityInput, the messages as JSON dicts.
    decoded = _node_input(_asks("write_note"))
    node_input = ActivityInput(
        args=tuple(decoded["args"]), kwargs={}, langgraph_config=decoded["langgraph_config"]
    )
    refusal = RunRecordInterceptor().refusal(f"{langgraph_agent.GRAPH}.tools", None, [node_input])
    assert refusal is not None and "needs approval" in refusal
    reading = ActivityInput(
        args=({"messages": _asks("read_note")},), kwargs={}, langgraph_config={}
    )
    assert RunRecordInterceptor().refusal(f"{langgraph_agent.GRAPH}.tools", None, [reading]) is None


def test_a_node_declared_by_name_is_judged_by_its_declaration_before_it_runs() -> None:
    from runrecord.integrations import recognise
    from runrecord.integrations.langgraph import declare_node
    from runrecord.worker import RunRecordInterceptor

    declare_node("summarise", "model")
    found = recognise("g.summarise", [_node_input([], node="summarise")])
    assert found is not None and (found.tool, found.toolset) == ("summarise", None)
    assert RunRecordInterceptor().framework_spec(found).side_effect == "model"
    undeclared = recognise("g.prepare", [_node_input([], node="prepare")])
    assert undeclared is not None
    assert RunRecordInterceptor().framework_spec(undeclared).side_effect == "unknown"
    with pytest.raises(ValueError, match="node's name"):
        declare_node("  ", "read")
