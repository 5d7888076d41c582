"""An OpenAI Agents SDK agent on Temporal is recorded as it is: its model requests as model
calls with model, tokens, cost and prompt version; its tools by their real names and declared
side effects; the gated tool after one ``runrecord approve``; its agents by name."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from rich.console import Console
from sqlalchemy import Engine
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import HeaderCodecBehavior
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter
from temporalio.worker import Worker

from examples import openai_agent
from runrecord.cli._approvals import pending_approvals, send_decision
from runrecord.cli._show import render_tree
from runrecord.integrations import prompt_hash
from runrecord.recorder import Mirror, load_run
from runrecord.records import ModelCall, RunRecord, ToolCall
from runrecord.worker import Journal, RunRecordPlugin
from tests.codec_for_tests import ENCRYPTED, EncryptionCodec
from tests.test_cli import runrecord
from tests.test_plugin import _payloads

TEST_MODEL_USAGE = openai_agent.USAGE


async def _client(
    temporal_address: str, journal: Journal, order: str, *, traced: bool = False
) -> Client:
    plugins: list[Any] = [openai_agent.openai_plugin(), RunRecordPlugin(journal)]
    if order == "runrecord-first":
        plugins.reverse()
    # A worker that also traces with Temporal's OpenTelemetry interceptor.
    tracing = [TracingInterceptor(TracerProvider().get_tracer("support"))] if traced else []
    return await Client.connect(temporal_address, plugins=plugins, interceptors=tracing)


async def _waiting_call(client: Client, run_id: str) -> str:
    for _ in range(200):
        pending = await pending_approvals(client, run_id)
        if pending:
            assert len(pending) == 1, pending
            return pending[0].tool_call_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run_id}: no call waits for approval")


async def _record(client: Client, engine: Engine, run_id: str) -> RunRecord:
    await Mirror(client, engine).sync_run(run_id)
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    return record


async def _run(
    client: Client, engine: Engine, env: dict[str, str], decision: str, approver: str
) -> tuple[RunRecord, Any]:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"support-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=openai_agent.WORKFLOWS,
        activities=openai_agent.ACTIVITIES,
    ):
        handle = await client.start_workflow(
            openai_agent.SupportDesk.run, "A-1", id=run_id, task_queue=queue
        )
        call_id = await _waiting_call(client, run_id)
        # The worker runs on this event loop: the CLI runs beside it.
        proc = await asyncio.to_thread(
            runrecord, decision, run_id, call_id, "--as", approver, "--reason", "checked", env=env
        )
        assert proc.returncode == 0, proc.stderr
        try:
            outcome: Any = await handle.result()
        except WorkflowFailureError as err:
            outcome = err
    return await _record(client, engine, run_id), outcome


def _assert_recorded(record: RunRecord, approver: str, order: str) -> None:
    assert record.final_status == "succeeded", order
    assert record.agent_id == "support-triage", order

    calls = [(c.tool, c.side_effect, c.agent_id, c.status) for c in record.tool_calls]
    model = "invoke_model_activity"
    assert calls == [
        (model, "model", "support-triage", "succeeded"),
        (model, "model", "refunds", "succeeded"),
        ("lookup_order", "read", "refunds", "succeeded"),
        (model, "model", "refunds", "succeeded"),
        ("refund_order", "write", "refunds", "succeeded"),
        (model, "model", "refunds", "succeeded"),
    ], order
    refund = record.tool_calls[4]
    assert refund.approval_state == "approved", order
    assert refund.approval is not None and refund.approval.decided_by == approver, order
    assert sum(c.tool == "refund_order" for c in record.tool_calls) == 1, order

    assert len(record.model_calls) == 4, order
    for m in record.model_calls:
        assert (m.provider, m.model) == ("openai", "gpt-4o-mini"), order
        assert m.input_tokens == TEST_MODEL_USAGE["input_tokens"], order
        assert m.output_tokens == TEST_MODEL_USAGE["output_tokens"], order
        assert m.cache_read_tokens == TEST_MODEL_USAGE["cached_tokens"], order
        assert m.cache_write_tokens == TEST_MODEL_USAGE["cache_write_tokens"], order
        assert m.reasoning_tokens == TEST_MODEL_USAGE["reasoning_tokens"], order
        assert m.priced and m.cost > 0, order
    first, second = record.model_calls[0], record.model_calls[1]
    assert first.prompt_version == prompt_hash("Hand refund requests to the refunds agent.")
    assert first.tools_offered == ["transfer_to_refunds"], order
    assert first.finish_reason == "tool_calls", order
    assert second.tools_offered == ["lookup_order", "refund_order"], order
    assert second.parameters == {"temperature": 0.2, "max_tokens": 400}, order
    assert record.model_calls[-1].finish_reason == "stop", order
    # The handoff runs in the workflow: listed as an in-workflow tool, never as a call.
    in_workflow = {t.name: t.side_effect for t in record.tool_registry if t.in_workflow}
    assert in_workflow == {"transfer_to_refunds": "unknown"}, order
    assert record.cost.own > 0, order


async def test_an_openai_agent_is_recorded_with_models_tools_agents_and_one_approval(
    temporal_address: str, engine: Engine, journal: Journal, cli_env: dict[str, str]
) -> None:
    env = cli_env
    for order in ("openai-first", "runrecord-first"):
        client = await _client(temporal_address, journal, order)
        record, answer = await _run(client, engine, cli_env, "approve", "alice")
        assert answer == "Order A-1 is refunded.", (order, answer)
        _assert_recorded(record, "alice", order)

        replay = await asyncio.to_thread(
            runrecord, "replay", record.run_id, "-m", "examples.openai_agent", env=env
        )
        assert replay.returncode == 0 and replay.stdout.startswith("OK"), replay.stderr


async def test_a_denied_refund_ends_the_run_escalated_and_show_links_each_call_to_its_trace(
    temporal_address: str, engine: Engine, journal: Journal, cli_env: dict[str, str]
) -> None:
    client = await _client(temporal_address, journal, "openai-first", traced=True)
    record, outcome = await _run(client, engine, cli_env, "deny", "bob")
    assert isinstance(outcome, WorkflowFailureError)
    assert record.final_status == "escalated"
    refund = next(c for c in record.tool_calls if c.tool == "refund_order")
    assert refund.status == "denied" and refund.approval is not None
    assert refund.approval.decided_by == "bob"

    # Each call carries the OpenTelemetry trace and span its activity was scheduled in.
    scheduled = [c for c in record.tool_calls if c.status != "denied"]
    assert scheduled and all(c.trace_id and c.span_id for c in scheduled)
    assert {c.trace_id for c in scheduled} == {scheduled[0].trace_id}
    assert re.fullmatch("[0-9a-f]{32}", scheduled[0].trace_id or "")

    wide = {**cli_env, "COLUMNS": "250"}
    shown = await asyncio.to_thread(runrecord, "show", record.run_id, env=wide)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "agent refunds" in text
    usage = TEST_MODEL_USAGE
    assert (
        f"model openai/gpt-4o-mini prompt {record.model_calls[1].prompt_version} "
        f"tokens {usage['input_tokens']} in, {usage['output_tokens']} out, "
        f"{usage['cached_tokens']} cache read, {usage['cache_write_tokens']} cache write, "
        f"{usage['reasoning_tokens']} reasoning finish tool_calls cost $"
    ) in text
    assert f"trace {scheduled[0].trace_id} span {scheduled[0].span_id}" in text


def test_show_says_when_a_model_call_has_no_price() -> None:
    call = ToolCall(
        tool_call_id="1", tool="invoke_model_activity", side_effect="model", status="succeeded"
    )
    record = RunRecord(
        run_id="r", agent_id="a", workflow_type="W", final_status="succeeded", tool_calls=[call]
    )
    record.model_calls = [
        ModelCall(tool_call_id="1", provider="acme", model="m-1", priced=False, input_tokens=3)
    ]
    console = Console(width=200, record=True)
    console.print(render_tree([record], None))
    assert "cost unknown (no price for acme/m-1)" in console.export_text()


async def test_with_an_encryption_codec_history_holds_only_ciphertext_and_the_record_is_complete(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    client = await Client.connect(
        temporal_address,
        plugins=[openai_agent.openai_plugin(), RunRecordPlugin(journal)],
        data_converter=DataConverter(payload_codec=EncryptionCodec()),
        header_codec_behavior=HeaderCodecBehavior.CODEC,
    )
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"support-{uuid.uuid4().hex[:8]}"
    order_id = f"order-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=openai_agent.WORKFLOWS,
        activities=openai_agent.ACTIVITIES,
    ):
        handle = await client.start_workflow(
            openai_agent.SupportDesk.run, order_id, id=run_id, task_queue=queue
        )
        call_id = await _waiting_call(client, run_id)
        outcome = await send_decision(
            client, run_id, call_id, "approve", approver="alice", reason="checked"
        )
        assert outcome.applied, outcome.message
        await handle.result()

    history = await client.get_workflow_handle(run_id).fetch_history()
    raw = History(events=history.events).SerializeToString()
    secrets = (order_id, "gpt-4o-mini", "Refund delivered orders", "toolCallId", "alice")
    for plaintext in secrets:
        assert plaintext.encode() not in raw, plaintext
    encodings = {
        p.metadata.get("encoding")
        for e in History(events=history.events).events
        if e.marker_recorded_event_attributes.marker_name != "core_patch"
        for p in _payloads(e)
    }
    assert encodings == {ENCRYPTED}

    _assert_recorded(await _record(client, engine, run_id), "alice", "codec")


def test_an_mcp_tool_the_plugin_calls_is_recognised_by_its_name_and_server() -> None:
    from temporalio.openai_agents._mcp import (
        _StatefulCallToolsArguments,
        _StatelessCallToolsArguments,
    )

    from runrecord.integrations import recognise

    for args in (
        _StatelessCallToolsArguments("git_status", {"repo_path": "."}, None),
        _StatefulCallToolsArguments("git_status", {"repo_path": "."}),
        {"tool_name": "git_status", "arguments": {"repo_path": "."}},  # decoded as JSON
    ):
        found = recognise("git-call-tool-v2", [args])
        assert found is not None, args
        assert (found.framework, found.tool, found.toolset) == (
            "openai-agents",
            "git_status",
            "git",
        )
    assert recognise("git-list-tools", []) is None


def test_a_model_request_names_its_declared_prompt_version_and_routed_provider() -> None:
    from agents import ModelSettings

    from runrecord.integrations import recognise

    secret = "sk-" + "a" * 40
    settings = ModelSettings(
        temperature=0.1,
        extra_headers={"Authorization": f"Bearer {secret}"},
        metadata={"prompt_version": "refunds@3"},
    )
    request = {
        "model_name": "litellm/anthropic/claude-3-5-sonnet",
        "system_instructions": "Refund.\x00" * 2000,
        "input": "hi",
        "model_settings": settings,
        "tracing": 0,
    }
    found = recognise("invoke_model_activity", [request])
    assert found is not None and found.model is not None
    assert (found.model.provider, found.model.model) == ("anthropic", "claude-3-5-sonnet")
    assert found.model.prompt_version == "refunds@3"
    assert found.model.parameters == {"temperature": 0.1}
    assert secret not in found.model_dump_json()

    # An OpenAI prompt given by reference is its own version.
    by_reference = {**request, "prompt": {"id": "pmpt_1", "version": "2"}}
    found = recognise("invoke_model_activity", [by_reference])
    assert found is not None and found.model is not None
    assert found.model.prompt_version == "pmpt_1@2"
