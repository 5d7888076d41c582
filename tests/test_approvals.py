"""Approvals are signals: a gated call runs only after a valid decision, and every decision or
refused attempt lands in the run record."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import Engine, text
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Replayer, Worker

from runrecord._contract import ApprovalRequest
from runrecord.cli._approvals import pending_approvals, send_decision
from runrecord.recorder import Mirror, load_run
from runrecord.records import RunRecord
from runrecord.worker import Journal, RunRecordPlugin
from runrecord.workflows import Policy
from tests import control_agents as agents


@asynccontextmanager
async def worker(
    server: str | Client, journal: Journal, policy: Policy | None = None
) -> AsyncIterator[tuple[Client, str]]:
    """A recording client and a worker for the control agents on a task queue of its own.

    ``server`` is an address, or a client whose settings (a test environment's time
    skipping, say) the recording client keeps.
    """
    plugins = [RunRecordPlugin(journal, policy=policy)]
    if isinstance(server, Client):
        client = Client(**{**server.config(), "plugins": plugins})
    else:
        client = await Client.connect(server, plugins=plugins)
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=agents.WORKFLOWS, activities=agents.ACTIVITIES
    ):
        yield client, queue


async def waiting_for(client: Client, run_id: str, call: str) -> ApprovalRequest:
    for _ in range(200):
        for request in await pending_approvals(client, run_id):
            if request.tool_call_id == call:
                return request
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {call} of {run_id} never asked for approval")


async def record(client: Client, engine: Engine, run_id: str) -> RunRecord:
    await Mirror(client, engine).sync_run(run_id)
    with engine.connect() as conn:
        loaded = load_run(conn, run_id)
    assert loaded is not None
    return loaded


async def test_an_approved_call_runs_and_records_who_approved_it(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"deploy-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.Deployer.run, ["staging-a"], id=run_id, task_queue=queue
        )
        request = await waiting_for(client, run_id, "1")
        assert (request.tool, request.side_effect, request.rule) == ("deploy", "deploy", "declared")
        assert request.arguments == '["staging-a"]'
        # The same request answers the `runrecord.approvals` query.
        queried = await client.get_workflow_handle(run_id).query("runrecord.approvals")
        assert [(q["toolCallId"], q["tool"], q["rule"]) for q in queried] == [
            ("1", "deploy", "declared")
        ]
        assert agents.ran("deploy", "staging-a") == []
        waiting = await record(client, engine, run_id)
        assert waiting.final_status == "awaiting_approval"
        assert waiting.tool_calls[0].approval_state == "requested"
        listed = [r.id async for r in client.list_workflows("RunRecordAwaitingApproval = true")]
        assert run_id in listed

        outcome = await send_decision(
            client, run_id, "1", "approve", approver="alice", reason="checked the diff"
        )
        assert outcome.applied, outcome.message
        assert await handle.result() == ["deployed staging-a"]

    done = await record(client, engine, run_id)
    call = done.tool_calls[0]
    assert (call.status, call.approval_state) == ("succeeded", "approved")
    assert call.approval is not None
    assert (call.approval.decided_by, call.approval.reason) == ("alice", "checked the diff")
    assert call.approval.decided_at is not None and call.approval.signal_identity
    assert agents.ran("deploy", "staging-a") == ["staging-a"]


async def test_a_denied_call_never_runs_and_unhandled_the_run_escalates(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"deploy-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.Deployer.run, ["prod-b"], id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "1")
        outcome = await send_decision(
            client, run_id, "1", "deny", approver="bob", reason="freeze week"
        )
        assert outcome.applied
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert "ToolDenied" in str(failed.value.cause) or failed.value.cause.type == "ToolDenied"  # type: ignore[attr-defined]
    done = await record(client, engine, run_id)
    assert done.final_status == "escalated"
    call = done.tool_calls[0]
    assert (call.tool, call.status, call.approval_state) == ("deploy", "denied", "denied")
    assert call.approval is not None and call.approval.decided_by == "bob"
    assert agents.ran("deploy", "prod-b") == []


async def test_refused_decisions_are_recorded_and_run_nothing(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    policy = Policy.from_dict(
        {
            "groups": {"release": ["carol", "dave"]},
            "rule": [
                {"name": "releases", "side_effects": ["deploy"], "approvers": ["group:release"]}
            ],
        }
    )
    async with worker(temporal_address, journal, policy) as (client, queue):
        run_id = f"careful-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.CarefulDeployer.run, "eu-1", id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "1")

        async def decide(call: str, decision: str, approver: str) -> tuple[bool, str]:
            outcome = await send_decision(
                client, run_id, call, decision, approver=approver, reason="because", policy=policy
            )
            return outcome.applied, outcome.message

        # Not in the rule's group: refused, and the call keeps waiting.
        applied, why = await decide("1", "approve", "mallory")
        assert not applied and "'mallory' may not decide deploy calls" in why
        assert agents.ran("deploy", "eu-1") == []
        # An unknown call id.
        applied, why = await decide("99", "approve", "carol")
        assert (applied, why) == (False, "no call 99 in this run")
        # A malformed payload, as anyone with namespace access could send it.
        await client.get_workflow_handle(run_id).signal("runrecord.approve", {"call": "1"})
        # The real decision: carol denies; the agent handles ToolDenied and asks for a fallback.
        assert await decide("1", "deny", "carol") == (True, "call 1 denied")
        await waiting_for(client, run_id, "2")
        # A second decision on a decided call.
        applied, why = await decide("1", "approve", "dave")
        assert (applied, why) == (False, "call 1 was already denied by carol")
        assert await decide("2", "approve", "dave") == (True, "call 2 approved")
        assert await handle.result() == "denied by carol; deployed fallback"

    done = await record(client, engine, run_id)
    assert done.final_status == "succeeded"
    assert agents.ran("deploy", "eu-1") == []
    first, second = done.tool_calls
    assert (first.status, first.approval_state) == ("denied", "denied")
    assert (second.status, second.approval_state) == ("succeeded", "approved")
    assert second.approval is not None and second.approval.rule == "releases"
    refused = [(r.tool_call_id, r.decision, r.approver, r.reason) for r in done.approval_rejections]
    assert refused[0][:3] == ("1", "approve", "mallory")
    assert refused[1] == ("99", "approve", "carol", "no call 99 in this run")
    assert refused[2][:3] == (None, "approve", None)
    assert refused[2][3].startswith("malformed payload: toolCallId")
    assert refused[3] == ("1", "approve", "dave", "call 1 was already denied by carol")
    assert all(r.signal_identity for r in done.approval_rejections)
    with engine.connect() as conn:  # the query docs/records.md gives for refused attempts
        claimed = conn.execute(
            text(
                "SELECT j->>'approver' FROM runs r, jsonb_array_elements(r.approval_rejections) j"
                " WHERE r.run_id = :run"
            ),
            {"run": run_id},
        ).scalars()
        assert list(claimed) == ["mallory", "carol", None, "dave"]
    # The decisions are deterministic: the history replays against the same code and policy.
    history = await client.get_workflow_handle(run_id).fetch_history()
    replayer = Replayer(workflows=agents.WORKFLOWS, plugins=[RunRecordPlugin(policy=policy)])
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None


async def _raw_signal(client: Client, run_id: str, name: str, identity: str, *data: bytes) -> None:
    """A signal as any gRPC client could send it: payloads of our choosing, any identity."""
    await client.workflow_service.signal_workflow_execution(
        SignalWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=run_id),
            signal_name=name,
            input=Payloads(
                payloads=[Payload(metadata={"encoding": b"json/plain"}, data=d) for d in data]
            ),
            identity=identity,
            request_id=str(uuid.uuid4()),
        )
    )


async def test_an_undecodable_approval_signal_is_recorded_with_its_sender(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"deploy-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.Deployer.run, ["staging-m"], id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "1")
        await _raw_signal(client, run_id, "runrecord.approve", "mallory@host", b"{not json")
        await _raw_signal(client, run_id, "runrecord.deny", "eve@host")  # no payload at all
        two = b'{"toolCallId": "1", "approver": "trent", "reason": "x"}'
        await _raw_signal(client, run_id, "runrecord.approve", "trent@host", two, two)
        # The run still takes a valid decision afterwards.
        outcome = await send_decision(
            client, run_id, "1", "approve", approver="alice", reason="checked"
        )
        assert outcome.applied, outcome.message
        assert await handle.result() == ["deployed staging-m"]

    done = await record(client, engine, run_id)
    refused = [
        (r.decision, r.approver, r.signal_identity, r.reason) for r in done.approval_rejections
    ]
    assert [r[:3] for r in refused] == [
        ("approve", None, "mallory@host"),
        ("deny", None, "eve@host"),
        ("approve", None, "trent@host"),
    ]
    assert refused[0][3].startswith("malformed payload: not decodable")
    assert refused[1][3] == "malformed payload: no payload"
    assert refused[2][3] == "malformed payload: 2 payloads, expected one"
    call = done.tool_calls[0]
    assert (call.status, call.approval_state) == ("succeeded", "approved")
    assert call.approval is not None and call.approval.decided_by == "alice"
    # The decision is paired with its own signal, not with one of the refused ones.
    assert call.approval.signal_identity not in ("mallory@host", "eve@host", "trent@host")
    assert call.approval.signal_identity


async def test_the_request_preview_hides_secrets(temporal_address: str, journal: Journal) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"secret-{uuid.uuid4().hex[:8]}"
        token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
        handle = await client.start_workflow(
            agents.Deployer.run, [f"prod?token={token}"], id=run_id, task_queue=queue
        )
        request = await waiting_for(client, run_id, "1")
        assert token not in request.arguments and "[REDACTED]" in request.arguments
        await send_decision(client, run_id, "1", "deny", approver="ivy", reason="no")
        with pytest.raises(WorkflowFailureError):
            await handle.result()


@pytest.mark.parametrize("way", ["by-name", "local", "start-activity"])
async def test_every_way_of_calling_a_gated_tool_waits_for_approval(
    temporal_address: str, journal: Journal, way: str
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"sneaky-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(agents.Sneaky.run, way, id=run_id, task_queue=queue)
        request = await waiting_for(client, run_id, "1")
        assert request.tool == "deploy"
        assert agents.ran("deploy", "x") == []
        await send_decision(client, run_id, "1", "deny", approver="erin", reason="no")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert agents.ran("deploy", "x") == []


async def test_a_gated_tool_scheduled_around_the_gate_fails_closed(
    temporal_address: str, journal: Journal
) -> None:
    # The workflow runs on a worker without runrecord; the activity on one with it.
    plain = await Client.connect(temporal_address)
    gated = await Client.connect(temporal_address, plugins=[RunRecordPlugin(journal)])
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with (
        Worker(plain, task_queue=queue, workflows=[agents.Unrecorded]),
        Worker(gated, task_queue=queue, activities=agents.ACTIVITIES),
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await plain.execute_workflow(
                agents.Unrecorded.run, id=f"unrecorded-{uuid.uuid4().hex[:8]}", task_queue=queue
            )
    cause = failed.value.cause.cause  # type: ignore[union-attr]
    assert "tool 'deploy' needs approval" in str(cause) and "it was not run" in str(cause)
    assert agents.ran("deploy", "x") == []
