"""A tool call's record: one row per scheduled activity, timeouts, policy, models, cost."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Replayer, Worker

import runrecord
from runrecord._contract import HEADER_KEY, RunContext
from runrecord.activities import set_price
from runrecord.recorder import Mirror, load_run, load_tree
from runrecord.recorder._tables import AttemptRow, ToolCallRow
from runrecord.records import ModelSpec
from runrecord.worker import Journal, RunRecordPlugin
from tests import agents_for_calls as agents
from tests.openai_stub import OpenAIStub


async def _run(
    client: Client, engine: Engine, journal: Journal, workflow: Any, *args: Any
) -> tuple[str, Any]:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"calls-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        result = await client.execute_workflow(
            workflow, args=list(args), id=run_id, task_queue=queue
        )
    mirror = Mirror(client, engine, journal_dir=journal.directory)
    mirror.drain_journal()
    await mirror.sync_tree(run_id)
    return run_id, result


async def test_every_scheduled_activity_has_exactly_one_tool_call_row(
    client: Client, engine: Engine, journal: Journal
) -> None:
    run_id, result = await _run(client, engine, journal, agents.MixedAgent.run)
    assert result == ["value of a", "remote b", "value of c", "remote d"]

    history = await client.get_workflow_handle(run_id).fetch_history()
    scheduled = sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        or (
            e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        )
    )
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(ToolCallRow)).scalar_one()
        record = load_run(conn, run_id)
    assert scheduled == 4 and rows == 4
    assert record is not None
    calls = sorted(record.tool_calls, key=lambda c: int(c.tool_call_id))
    assert [(c.tool_call_id, c.tool, c.local, c.side_effect, c.status) for c in calls] == [
        ("1", "local_lookup", True, "read", "succeeded"),
        ("2", "remote_lookup", False, "read", "succeeded"),
        ("3", "local_lookup", True, "read", "succeeded"),
        ("4", "remote_lookup", False, "read", "succeeded"),
    ]
    # The local activities' journaled attempts landed on the same tool calls.
    assert all(c.retry_state.history[0].worker_identity for c in calls)
    assert calls[0].output_refs and calls[0].idempotent


async def test_a_call_that_fails_twice_then_succeeds_has_three_attempt_rows(
    client: Client, engine: Engine, journal: Journal
) -> None:
    from tests import agents_for_tests

    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"notes-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=agents_for_tests.WORKFLOWS,
        activities=agents_for_tests.ACTIVITIES,
    ):
        await client.execute_workflow(
            agents_for_tests.NoteTaker.run, "hello", id=run_id, task_queue=queue
        )
    mirror = Mirror(client, engine, journal_dir=journal.directory)
    mirror.drain_journal()
    await mirror.sync_run(run_id)
    with engine.connect() as conn:
        flaky = conn.execute(
            select(ToolCallRow.tool_call_id).where(
                ToolCallRow.run_id == run_id, ToolCallRow.tool == "flaky_fetch"
            )
        ).scalar_one()
        rows = conn.execute(
            select(AttemptRow.attempt, AttemptRow.outcome, AttemptRow.error)
            .where(AttemptRow.run_id == run_id, AttemptRow.tool_call_id == flaky)
            .order_by(AttemptRow.attempt)
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, "failed", "RuntimeError: connection reset on attempt 1"),
        (2, "failed", "RuntimeError: connection reset on attempt 2"),
        (3, "succeeded", None),
    ]


async def test_a_start_to_close_timeout_is_recorded_as_timed_out_with_its_type(
    client: Client, engine: Engine, journal: Journal
) -> None:
    run_id, result = await _run(client, engine, journal, agents.TimeoutAgent.run, 5.0)
    assert result == "timed out"
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    (call,) = record.tool_calls
    assert call.status == "timed_out"
    assert call.retry_state.timeout_type == "start_to_close"
    assert call.timeouts.start_to_close_ms == 1000
    assert call.retry_policy is not None and call.retry_policy.maximum_attempts == 1
    (attempt,) = call.retry_state.history
    assert attempt.outcome == "timed_out"
    assert attempt.ended_at is not None and attempt.started_at is not None


async def test_timeouts_and_retry_policy_are_recorded_as_configured(
    client: Client, engine: Engine, journal: Journal, tmp_path: Any
) -> None:
    gate = tmp_path / "gate"
    gate.write_text("open")
    run_id, _ = await _run(client, engine, journal, agents.OutageAgent.run, str(gate))
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    (call,) = record.tool_calls
    assert call.timeouts.start_to_close_ms == 120_000
    assert call.timeouts.heartbeat_ms == 10_000
    assert call.retry_policy is not None
    assert call.retry_policy.initial_interval_ms == 100
    assert call.retry_policy.backoff_coefficient == 1.0
    assert call.retry_policy.maximum_attempts is None  # unlimited
    assert [a.outcome for a in call.retry_state.history] == ["failed", "succeeded"]


async def test_a_failed_model_falls_back_to_the_next_route_visible_in_retry_state(
    client: Client, engine: Engine, journal: Journal
) -> None:
    set_price("model-b", 0.01, 0.03)
    with OpenAIStub(failing={"model-a"}) as stub:
        spec = ModelSpec(
            provider="openai",
            name="model-a",
            parameters={"base_url": stub.base_url, "temperature": 0.2},
            fallbacks=[
                ModelSpec(
                    provider="openai",
                    name="model-b",
                    parameters={"base_url": stub.base_url, "temperature": 0.2},
                )
            ],
        )
        run_id, result = await _run(
            client,
            engine,
            journal,
            agents.ModelAgent.run,
            agents.ModelTask(model=spec, messages=["summarise the incident"]),
        )
    assert result.model == "model-b" and result.content == "stub answer from model-b"
    assert [r["model"] for r in stub.requests] == ["model-a", "model-b"]
    assert stub.requests[1]["messages"][-1]["content"] == "summarise the incident"

    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    (call,) = record.tool_calls
    assert call.side_effect == "model" and call.status == "succeeded"
    history = call.retry_state.history
    assert [(a.attempt, a.route, a.outcome) for a in history] == [
        (1, "openai/model-a", "failed"),
        (2, "openai/model-b", "succeeded"),
    ]
    assert history[0].error and "model-a" in history[0].error and "503" in history[0].error
    (model_call,) = record.model_calls
    assert (model_call.provider, model_call.model) == ("openai", "model-b")
    assert model_call.parameters["temperature"] == 0.2
    assert (model_call.input_tokens, model_call.output_tokens) == (12, 5)
    assert model_call.cost == round(12 / 1000 * 0.01 + 5 / 1000 * 0.03, 8)
    assert model_call.latency_ms is not None
    assert model_call.prompt_version == agents.PROMPT.prompt_version
    assert call.cost == model_call.cost == record.cost.own


async def test_cost_rolls_up_from_sub_agents_to_the_root_per_agent(
    client: Client, engine: Engine, journal: Journal
) -> None:
    run_id, _ = await _run(client, engine, journal, agents.Planner.run)
    with engine.connect() as conn:
        root, child = load_tree(conn, run_id)
    assert root.cost.own > 0 and child.cost.own > 0 and child.cost.own != root.cost.own
    assert child.cost.total == child.cost.own
    assert root.cost.total == round(root.cost.own + child.cost.own, 8)
    assert root.cost.by_agent == {"planner": root.cost.own, "researcher": child.cost.own}
    assert child.cost.by_agent == {"researcher": child.cost.own}


async def test_a_signal_a_run_sends_says_which_run_and_turn_sent_it(
    client: Client, engine: Engine, journal: Journal
) -> None:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    listener_id, notifier_id = (
        f"listener-{uuid.uuid4().hex[:8]}",
        f"notifier-{uuid.uuid4().hex[:8]}",
    )
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        listener = await client.start_workflow(
            agents.Listener.run, id=listener_id, task_queue=queue
        )
        with runrecord.turn("turn-42"):
            await client.execute_workflow(
                agents.Notifier.run, listener_id, id=notifier_id, task_queue=queue
            )
        assert await listener.result() == "pinged"
    history = await listener.fetch_history()
    (signaled,) = [
        e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    header = signaled.workflow_execution_signaled_event_attributes.header.fields[HEADER_KEY]
    context = RunContext.model_validate_json(header.data)
    assert (context.parent_run_id, context.root_run_id, context.turn_id) == (
        notifier_id,
        notifier_id,
        "turn-42",
    )


async def test_replaying_recorded_histories_records_nothing_and_stays_deterministic(
    client: Client, engine: Engine, journal: Journal, tmp_path: Any
) -> None:
    gate = tmp_path / "gate"
    gate.write_text("open")
    runs = [
        await _run(client, engine, journal, agents.MixedAgent.run),
        await _run(client, engine, journal, agents.TimeoutAgent.run, 3.0),
        await _run(client, engine, journal, agents.OutageAgent.run, str(gate)),
        await _run(client, engine, journal, agents.Planner.run),
    ]
    with engine.connect() as conn:
        calls_before = conn.execute(select(func.count()).select_from(ToolCallRow)).scalar_one()
        attempts_before = conn.execute(select(func.count()).select_from(AttemptRow)).scalar_one()
    lines_before = journal.path.read_text().count("\n")

    replayer = Replayer(workflows=agents.WORKFLOWS, plugins=[RunRecordPlugin(journal)])
    for run_id, _ in runs:
        history = await client.get_workflow_handle(run_id).fetch_history()
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert replayed.replay_failure is None, run_id

    Mirror(client, engine, journal_dir=journal.directory).drain_journal()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ToolCallRow)).scalar_one() == (
            calls_before
        )
        assert conn.execute(select(func.count()).select_from(AttemptRow)).scalar_one() == (
            attempts_before
        )
    assert journal.path.read_text().count("\n") == lines_before
