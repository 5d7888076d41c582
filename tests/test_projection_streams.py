"""The projector under hostile delivery: real histories, duplicated, reordered and cut short.

Whatever order and however often events arrive, folding never crashes, never holds an
event twice, and once the whole stream has arrived the run record is the one a clean,
in-order fold gives.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from runrecord.cli._approvals import send_decision
from runrecord.recorder import RunChain
from runrecord.recorder._store import run_rows
from runrecord.worker import Journal, RunRecordPlugin
from tests import mirror_agents as agents
from tests.test_approvals import waiting_for

History = tuple[str, str, list[HistoryEvent]]


@pytest.fixture(scope="module")
async def histories(temporal_env: WorkflowEnvironment, tmp_path_factory: Any) -> list[History]:
    """Histories of real runs: plain calls with an artifact, an approved deploy, a signal,
    and every Temporal run of a continue-as-new chain."""
    journal = Journal(Path(tmp_path_factory.mktemp("journal")))
    client = await Client.connect(
        temporal_env.client.service_client.config.target_host,
        plugins=[RunRecordPlugin(journal)],
    )
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    note = tmp_path_factory.mktemp("notes") / "note.txt"
    ids = {name: f"{name}-{uuid.uuid4().hex[:8]}" for name in ("plain", "approved", "waiter")}
    looper = f"looper-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        await client.execute_workflow(
            agents.Streamer.run, args=[3, str(note), False], id=ids["plain"], task_queue=queue
        )
        approved = await client.start_workflow(
            agents.Streamer.run, args=[2, str(note), True], id=ids["approved"], task_queue=queue
        )
        await waiting_for(client, ids["approved"], "4")
        await send_decision(client, ids["approved"], "4", "approve", approver="ines", reason="ok")
        await approved.result()
        waiter = await client.start_workflow(agents.Waiter.run, id=ids["waiter"], task_queue=queue)
        await waiter.signal(agents.Waiter.proceed)
        await waiter.result()
        await client.execute_workflow(agents.Looper.run, 2, id=looper, task_queue=queue)
    journal.close()
    found: list[History] = []
    for workflow_id in [*ids.values(), looper]:
        async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
            history = await client.get_workflow_handle(
                workflow_id, run_id=execution.run_id
            ).fetch_history()
            found.append((workflow_id, execution.run_id, list(history.events)))
    return found


def fold(workflow_id: str, run_id: str, *streams: list[HistoryEvent]) -> RunChain:
    chain = RunChain(workflow_id)
    for stream in streams:
        chain.fold(run_id).apply_all(stream)
    return chain


def rows(chain: RunChain) -> dict[str, list[dict[str, Any]]]:
    out = run_rows(chain, everything=True)
    for row in out["runs"] + out["temporal_runs"]:
        row.pop("updated_at")
    return out


@st.composite
def mangled(draw: st.DrawFn, events: list[HistoryEvent]) -> list[HistoryEvent]:
    """The stream cut at some point, with events repeated and moved about."""
    cut = draw(st.integers(min_value=0, max_value=len(events)))
    stream = list(events[:cut])
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        if stream:
            stream.insert(
                draw(st.integers(0, len(stream))), stream[draw(st.integers(0, len(stream) - 1))]
            )
    return draw(st.permutations(stream)) if draw(st.booleans()) else stream


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_delivery_converges_to_the_in_order_record(
    histories: list[History], data: st.DataObject
) -> None:
    workflow_id, run_id, events = data.draw(st.sampled_from(histories))
    clean = fold(workflow_id, run_id, events)
    stream = data.draw(mangled(events))

    partial = fold(workflow_id, run_id, stream)
    projection = partial.folds[run_id]
    held = [e["event_id"] for e in projection.events]
    assert len(held) == len(set(held)), "a timeline event was taken twice"
    assert projection.last_event_id + projection.waiting <= len(events)
    # Only a gap-free prefix is ever applied: what is applied is what in-order gives.
    applied = fold(workflow_id, run_id, events[: projection.last_event_id])
    assert rows(partial) == rows(applied)

    # The rest arrives (again, in order): the same rows as the clean fold, nothing twice.
    projection.apply_all(events)
    assert rows(partial) == rows(clean)
    assert projection.waiting == 0
    assert partial.record() == clean.record()
