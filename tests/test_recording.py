"""Every tool call an agent makes reaches its run record, through plain Temporal calls."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, func, select
from temporalio.client import Client
from temporalio.worker import Replayer, Worker

from runrecord.recorder import Mirror, load_tree
from runrecord.recorder._tables import AttemptRow, LineageEdgeRow, ToolCallRow
from runrecord.worker import Journal, RunRecordPlugin
from tests import agents_for_tests as agents


async def _run_note_taker(client: Client, engine: Engine, journal: Journal) -> tuple[str, Mirror]:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"notes-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        result = await client.execute_workflow(
            agents.NoteTaker.run, "hello", id=run_id, task_queue=queue
        )
    assert result == "42 wrote hello-checked"
    mirror = Mirror(client, engine, journal_dir=journal.directory)
    mirror.drain_journal()
    await mirror.sync_tree(run_id)
    return run_id, mirror


async def test_plain_activity_calls_are_recorded_with_their_side_effects(
    client: Client, engine: Engine, journal: Journal
) -> None:
    run_id, _ = await _run_note_taker(client, engine, journal)
    with engine.connect() as conn:
        root, child = load_tree(conn, run_id)

    assert root.agent_id == "note-taker" and root.final_status == "succeeded"
    assert [(c.tool, c.side_effect) for c in root.tool_calls] == [
        ("write_note", "write"),
        ("flaky_fetch", "network"),
        ("undeclared_step", "unknown"),
        ("draft_note", "write"),
        ("publish_note", "network"),
    ]
    write = root.tool_calls[0]
    assert write.compensator == "erase_note"
    assert write.schema_hash and len(write.schema_hash) == 64
    assert write.input_refs and write.output_refs
    assert sorted((a.kind, a.uri, a.tool_call_id) for a in root.artifacts) == [
        ("file", "draft://hello", "4"),
        ("message", "note://hello", write.tool_call_id),
    ]
    # Delegation: the sub-agent is linked to its parent and root, and shares the turn.
    assert child.agent_id == "note-checker"
    assert (child.parent_run_id, child.root_run_id, child.depth) == (run_id, run_id, 1)
    assert child.turn_id == root.turn_id and root.turn_id
    assert root.child_run_ids == [child.run_id]


async def test_every_attempt_is_recorded_with_its_error(
    client: Client, engine: Engine, journal: Journal
) -> None:
    run_id, _ = await _run_note_taker(client, engine, journal)
    with engine.connect() as conn:
        (root, _child) = load_tree(conn, run_id)
    flaky = next(c for c in root.tool_calls if c.tool == "flaky_fetch")

    assert flaky.status == "succeeded"
    assert flaky.retry_state.attempts == 3
    outcomes = [(a.attempt, a.outcome) for a in flaky.retry_state.history]
    assert outcomes == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    errors = [a.error for a in flaky.retry_state.history[:2]]
    assert errors == [
        "RuntimeError: connection reset on attempt 1",
        "RuntimeError: connection reset on attempt 2",
    ]


async def test_mirroring_twice_changes_nothing(
    client: Client, engine: Engine, journal: Journal
) -> None:
    run_id, mirror = await _run_note_taker(client, engine, journal)

    def snapshot() -> tuple[int, int, list[object]]:
        with engine.connect() as conn:
            calls = conn.execute(select(func.count()).select_from(ToolCallRow)).scalar_one()
            attempts = conn.execute(select(func.count()).select_from(AttemptRow)).scalar_one()
            return calls, attempts, [r.to_json_dict() for r in load_tree(conn, run_id)]

    before = snapshot()
    await mirror.sync_tree(run_id)
    mirror.drain_journal()
    assert snapshot() == before
    assert before[0] == 6  # five calls in the root run, one in the child


async def test_replaying_recorded_history_records_nothing_new(
    client: Client, engine: Engine, journal: Journal
) -> None:
    run_id, _ = await _run_note_taker(client, engine, journal)
    lines_before = journal.path.read_text().count("\n")
    history = await client.get_workflow_handle(run_id).fetch_history()

    replayer = Replayer(workflows=agents.WORKFLOWS, plugins=[RunRecordPlugin(journal)])
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is None
    assert journal.path.read_text().count("\n") == lines_before


async def test_an_artifact_passed_on_becomes_a_lineage_edge(
    client: Client, engine: Engine, journal: Journal
) -> None:
    run_id, _ = await _run_note_taker(client, engine, journal)
    with engine.connect() as conn:
        root, child = load_tree(conn, run_id)
        edges = conn.execute(
            select(LineageEdgeRow.consumer_run_id, LineageEdgeRow.consumer_tool_call_id).order_by(
                LineageEdgeRow.consumer_run_id
            )
        ).all()
    draft = next(a for a in root.artifacts if a.uri == "draft://hello")
    publish = next(c for c in root.tool_calls if c.tool == "publish_note")
    assert publish.consumes == [draft.artifact_id]
    assert child.consumes == [draft.artifact_id]
    assert sorted(edges) == sorted([(run_id, publish.tool_call_id), (child.run_id, "")])
