"""Pause, resume, rollback, reset, rerun and replay, from the CLI, on real Temporal."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import Engine
from temporalio.api.activity.v1 import ActivityOptions
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import (
    DescribeWorkflowExecutionRequest,
    PauseActivityRequest,
    ResetActivityRequest,
    UnpauseActivityRequest,
    UpdateActivityOptionsRequest,
)
from temporalio.client import Client, WorkflowFailureError

from runrecord.cli._approvals import send_decision
from runrecord.cli._control import pause_run, request_rollback, resume_run, rollback_report
from runrecord.recorder import Mirror, load_run
from runrecord.worker import Journal
from tests import control_agents as agents
from tests.test_approvals import record, waiting_for, worker
from tests.test_cli import assert_one_line_error, runrecord
from tests.test_mirror import following, load, until


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(runrecord, *args, env=env)


async def _scheduled(client: Client, run_id: str) -> int:
    history = await client.get_workflow_handle(run_id).fetch_history()
    return sum(1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))


async def _status(client: Client, run_id: str) -> int:
    response = await client.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=run_id)
        )
    )
    return int(response.workflow_execution_info.status)


async def test_pause_stops_new_tool_calls_until_resume(
    cli_env: dict[str, str], temporal_address: str, journal: Journal
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"ticker-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(agents.Ticker.run, 12, id=run_id, task_queue=queue)
        while await _scheduled(client, run_id) < 2:
            await asyncio.sleep(0.05)
        paused = await _cli(
            "pause", run_id, "--reason", "investigating", "--as", "olga", env=cli_env
        )
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.strip() == f"run {run_id} paused by olga"
        assert await _status(client, run_id) == 8  # PAUSED
        before = await _scheduled(client, run_id)
        await asyncio.sleep(1.5)
        assert await _scheduled(client, run_id) <= before + 1  # at most the one already due
        frozen = await _scheduled(client, run_id)
        await asyncio.sleep(1.0)
        assert await _scheduled(client, run_id) == frozen
        assert_one_line_error(
            await _cli("pause", run_id, "--reason", "again", env=cli_env), "already paused"
        )
        resumed = await _cli("resume", run_id, "--as", "olga", env=cli_env)
        assert resumed.returncode == 0, resumed.stderr
        assert await asyncio.wait_for(handle.result(), 30) == 12
    assert await _scheduled(client, run_id) == 12
    history = await client.get_workflow_handle(run_id).fetch_history()
    pauses = [
        e.workflow_execution_paused_event_attributes
        for e in history.events
        if e.HasField("workflow_execution_paused_event_attributes")
    ]
    assert [(p.identity, p.reason) for p in pauses] == [("olga", "investigating")]


async def _operations(engine: Engine, run_id: str, call: str) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        loaded = load_run(conn, run_id)
    if loaded is None:
        return []
    found = [c for c in loaded.tool_calls if c.tool_call_id == call]
    return [(o.operation, o.by) for o in found[0].operations] if found else []


async def _recorded(engine: Engine, run_id: str, call: str, count: int) -> None:
    for _ in range(600):
        if len(await _operations(engine, run_id, call)) >= count:
            return
        await asyncio.sleep(0.1)
    seen = await _operations(engine, run_id, call)
    raise AssertionError(f"call {call} of {run_id}: {count} operations expected, saw {seen}")


async def test_activity_pause_and_unpause_are_recorded_on_the_call(
    cli_env: dict[str, str], temporal_address: str, journal: Journal, engine: Engine, tmp_path: Path
) -> None:
    done_file = tmp_path / "go"
    stop = asyncio.Event()
    async with worker(temporal_address, journal) as (client, queue):
        mirror = asyncio.create_task(Mirror(client, engine, poll_interval=0.2).run(stop))
        try:
            run_id = f"waiter-{uuid.uuid4().hex[:8]}"
            handle = await client.start_workflow(
                agents.Waiter.run, str(done_file), id=run_id, task_queue=queue
            )
            while len(agents.ran("wait_for_file", str(done_file))) < 2:
                await asyncio.sleep(0.05)
            paused = await _cli(
                "pause",
                run_id,
                "--call",
                "1",
                "--reason",
                "looks stuck",
                "--as",
                "olga",
                env=cli_env,
            )
            assert paused.returncode == 0, paused.stderr
            assert paused.stdout.strip() == f"call 1 of run {run_id} paused by olga"
            await _recorded(engine, run_id, "1", 1)
            resumed = await _cli(
                "resume",
                run_id,
                "--call",
                "1",
                "--reason",
                "input fixed",
                "--as",
                "olga",
                env=cli_env,
            )
            assert resumed.returncode == 0, resumed.stderr
            await _recorded(engine, run_id, "1", 2)
            # The same from any other client (the Temporal UI, `temporal activity pause`).
            execution = WorkflowExecution(workflow_id=run_id)
            await client.workflow_service.pause_activity(
                PauseActivityRequest(
                    namespace=client.namespace,
                    execution=execution,
                    id="1",
                    identity="ops-bot@host",
                    reason="second look",
                )
            )
            await _recorded(engine, run_id, "1", 3)
            # Attempt 2 is the one running (the first fails): a reset takes it back to 1.
            await client.workflow_service.reset_activity(
                ResetActivityRequest(
                    namespace=client.namespace,
                    execution=execution,
                    id="1",
                    identity="ops-bot@host",
                    keep_paused=True,
                )
            )
            await _recorded(engine, run_id, "1", 4)
            await client.workflow_service.update_activity_options(
                UpdateActivityOptionsRequest(
                    namespace=client.namespace,
                    execution=execution,
                    id="1",
                    identity="ops-bot@host",
                    activity_options=ActivityOptions(heartbeat_timeout=Duration(seconds=3)),
                    update_mask=FieldMask(paths=["heartbeat_timeout"]),
                )
            )
            await _recorded(engine, run_id, "1", 5)
            await client.workflow_service.unpause_activity(
                UnpauseActivityRequest(
                    namespace=client.namespace, execution=execution, id="1", identity="ops-bot@host"
                )
            )
            await _recorded(engine, run_id, "1", 6)
            done_file.write_text("done")
            assert await asyncio.wait_for(handle.result(), 60) == "done"
        finally:
            stop.set()
            await mirror

    with engine.connect() as conn:
        loaded = load_run(conn, run_id)
    assert loaded is not None
    call = loaded.tool_calls[0]
    assert call.status == "succeeded"
    ops = [(o.operation, o.by, o.reason) for o in call.operations]
    assert ops[0] == ("paused", "olga", "looks stuck")
    assert ops[1] == ("unpaused", "olga", "input fixed")  # from the CLI's note
    assert ops[2] == ("paused", "ops-bot@host", "second look")
    assert ops[3][0] == "reset"
    assert ops[4][0] == "options_updated"
    assert call.operations[4].detail["changed"] == ["heartbeatTimeout"]
    assert ops[5] == ("unpaused", None, None)  # Temporal keeps no author for it
    times = [o.at for o in call.operations]
    assert times == sorted(times) and all(t is not None for t in times)
    shown = await _cli("show", run_id, env={**cli_env, "COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr
    assert "paused by olga (looks stuck)" in shown.stdout


async def test_rollback_restores_a_written_file_and_reports_the_payment_not_undone(
    cli_env: dict[str, str], temporal_address: str, journal: Journal, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "ledger.txt"
    path.write_text("old content")
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"books-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.Bookkeeper.run, str(path), id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "2")
        assert (
            await send_decision(client, run_id, "2", "approve", approver="fay", reason="ok")
        ).applied
        await waiting_for(client, run_id, "3")
        assert path.read_text() == "new content"

        rolled = await _cli(
            "rollback", run_id, "--reason", "wrong ledger", "--as", "fay", env=cli_env
        )
        assert_one_line_error(
            rolled, "rollback of", "incomplete", "2 charge (declared irreversible)"
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert path.read_text() == "old content"
    assert agents.ran("deploy", "prod") == []

    done = await record(client, engine, run_id)
    assert done.final_status == "rollback_incomplete"
    assert done.rollback is not None
    assert (done.rollback.requested_by, done.rollback.reason) == ("fay", "wrong ledger")
    assert done.rollback.compensated == ["1"]
    assert [(n.tool_call_id, n.tool, n.why) for n in done.rollback.not_undone] == [
        ("2", "charge", "declared irreversible")
    ]
    calls = {c.tool_call_id: c for c in done.tool_calls}
    assert calls["1"].status == "compensated"
    assert calls["2"].status == "succeeded"
    assert calls["3"].status == "cancelled" and calls["3"].approval_state == "requested"
    undo = next(c for c in done.tool_calls if c.compensates == "1")
    assert (undo.tool, undo.status) == ("restore_file", "succeeded")


async def test_rollback_undoes_a_sub_agents_calls_first_and_lists_what_it_could_not(
    cli_env: dict[str, str], temporal_address: str, journal: Journal, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"lead-{uuid.uuid4().hex[:8]}"
        child_id = f"{run_id}.releaser"
        handle = await client.start_workflow(
            agents.ReleaseLead.run, str(path), id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "2")  # the sub-agent has released and announced
        assert agents.ran("release", str(path)) == [str(path)]
        rolled = await _cli(
            "rollback", run_id, "--reason", "bad release", "--as", "fay", env=cli_env
        )
        assert_one_line_error(
            rolled, "incomplete", f"{child_id}/2 announce (declared irreversible)"
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert not path.exists()  # the notes are gone again
    assert agents.ran("withdraw_release", str(path)) == [str(path)]
    # Deepest first: the sub-agent's release was withdrawn before the notes were removed.
    when = {tool: t for tool, arg, t in agents.RAN if arg == str(path)}
    assert when["withdraw_release"] < when["restore_file"]

    done = await record(client, engine, run_id)
    assert done.final_status == "rollback_incomplete"
    assert done.rollback is not None
    assert done.rollback.compensated == ["1"]
    assert [(c.run_id, c.tool_call_id, c.tool) for c in done.rollback.sub_agent_compensated] == [
        (child_id, "1", "release")
    ]
    assert [(n.run_id, n.tool_call_id, n.tool, n.why) for n in done.rollback.not_undone] == [
        (child_id, "2", "announce", "declared irreversible")
    ]
    undo = next(c for c in done.tool_calls if c.compensates == f"{child_id}/1")
    assert (undo.tool, undo.status) == ("withdraw_release", "succeeded")
    assert {c.tool_call_id: c.status for c in done.tool_calls}["1"] == "compensated"
    shown = await _cli("show", run_id, env={**cli_env, "COLUMNS": "400"})
    assert shown.returncode == 0, shown.stderr
    assert f"undid #1, {child_id} #1" in shown.stdout
    assert f"not undone {child_id} #2 announce (declared irreversible)" in shown.stdout


async def test_rollback_of_a_parent_undoes_a_sub_agent_still_running(
    temporal_address: str, journal: Journal, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"lead-{uuid.uuid4().hex[:8]}"
        child_id = f"{run_id}.releaser"
        await client.start_workflow(
            agents.ReleaseLead.run, args=[str(path), True], id=run_id, task_queue=queue
        )
        while not agents.ran("release", str(path)):
            await asyncio.sleep(0.05)
        await waiting_for(client, child_id, "2")  # released; waits to deploy
        await request_rollback(client, run_id, by="fay", reason="stop it all", to_call=None)
        report = await rollback_report(client, run_id, 60)
        with pytest.raises(WorkflowFailureError):
            await client.get_workflow_handle(child_id).result()
    assert report.outcome == "rolled_back" and report.not_undone == []
    assert report.compensated == ["1"]
    assert [(c.run_id, c.tool_call_id) for c in report.sub_agent_compensated] == [(child_id, "1")]
    assert agents.ran("withdraw_release", str(path)) == [str(path)]
    assert agents.ran("deploy", "prod") == []
    assert not path.exists()
    child = await record(client, engine, child_id)
    assert child.final_status == "cancelled"
    assert [c.status for c in child.tool_calls] == ["succeeded", "cancelled"]


async def test_an_agent_can_opt_in_to_rollback_on_failure(
    temporal_address: str, journal: Journal, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "state.txt"
    path.write_text("before")
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"fragile-{uuid.uuid4().hex[:8]}"
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                agents.FragileWriter.run, str(path), id=run_id, task_queue=queue
            )
    assert path.read_text() == "before"
    done = await record(client, engine, run_id)
    assert done.final_status == "rolled_back"
    assert done.rollback is not None
    assert done.rollback.requested_by == "policy:rollback-on-failure"
    assert "disk quota exceeded" in (done.rollback.reason or "")


async def test_reset_asks_again_instead_of_reusing_an_approval(
    cli_env: dict[str, str], temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"reset-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.Deployer.run, [f"r-{run_id}"], id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "1")
        await send_decision(client, run_id, "1", "approve", approver="gil", reason="go")
        await handle.result()
        assert agents.ran("deploy", f"r-{run_id}") == [f"r-{run_id}"]

        # Asked for explicitly, the approval given after the reset point is applied again.
        again = await _cli("reset", run_id, "--to-call", "1", "--reapply-approvals", env=cli_env)
        assert again.returncode == 0, again.stderr
        assert "1 signal(s) sent again" in again.stdout
        assert await client.get_workflow_handle(run_id).result() == [f"deployed r-{run_id}"]
        assert len(agents.ran("deploy", f"r-{run_id}")) == 2

        # By default it is not: the call asks for a decision again and does not run.
        reset = await _cli("reset", run_id, "--to-call", "1", "--reason", "redo", env=cli_env)
        assert reset.returncode == 0, reset.stderr
        assert "1 runrecord signal(s) withheld" in reset.stdout
        request = await waiting_for(client, run_id, "1")
        assert request.tool == "deploy"
        await asyncio.sleep(0.5)
        assert len(agents.ran("deploy", f"r-{run_id}")) == 2
        waiting = await record(client, engine, run_id)
        assert waiting.final_status == "awaiting_approval"
        calls = {c.tool_call_id: c for c in waiting.tool_calls}
        assert calls["1"].approval_state == "requested"
        # Both resets are linked, and the calls they replaced stay in the record.
        runs = waiting.temporal_runs
        assert len(runs) == 3
        assert [r.reset_from for r in runs] == [None, *(r.temporal_run_id for r in runs[:2])]
        assert "redo" in (runs[2].reset_reason or "")
        replaced = sorted(c for c in calls if c.startswith("1~"))
        assert replaced == sorted(f"1~{r.temporal_run_id[-8:]}" for r in runs[:2])
        assert all(calls[c].status == "succeeded" for c in replaced)
        assert_one_line_error(
            await _cli("reset", run_id, "--to-call", "7", env=cli_env), "has no call 7"
        )


async def test_rerun_starts_a_linked_run_and_replay_reports_determinism(
    cli_env: dict[str, str], temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"rerun-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(agents.Ticker.run, 2, id=run_id, task_queue=queue)
        await handle.result()

        rerun = await _cli("rerun", run_id, "--id", f"{run_id}-again", env=cli_env)
        assert rerun.returncode == 0, rerun.stderr
        assert await client.get_workflow_handle(f"{run_id}-again").result() == 2
        again = await record(client, engine, f"{run_id}-again")
        original = await record(client, engine, run_id)
        assert again.rerun_of == run_id
        assert again.turn_id != original.turn_id
        assert [c.tool for c in again.tool_calls] == [c.tool for c in original.tool_calls]

        ok = await _cli("replay", run_id, "-m", "tests.control_agents", env=cli_env)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("OK")
        changed = await _cli("replay", run_id, "-m", "tests.changed_agents", env=cli_env)
        assert_one_line_error(changed, f"replay of {run_id} failed", "ondeterminism")


async def test_control_commands_refuse_bad_input_in_one_line(
    cli_env: dict[str, str], temporal_address: str, journal: Journal, tmp_path: Path
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"done-{uuid.uuid4().hex[:8]}"
        await client.execute_workflow(agents.Ticker.run, 1, id=run_id, task_queue=queue)
    cases = [
        (("approve", run_id, "1", "--reason", "x"), "has ended (completed)"),
        (("rollback", run_id), "has ended (completed)"),
        (("pause", run_id, "--reason", "x"), "has ended (completed)"),
        (("resume", run_id), "is not paused"),
        (("pause", run_id, "--call", "1", "--reason", "x"), "call 1 of", "not a pending activity"),
        (("resume", run_id, "--call", "99"), "has no call '99'"),
        (("approve", "no-such-run", "1", "--reason", "x"), "no run 'no-such-run'"),
        (("deny", run_id, "1"), "--reason"),
        (("rerun", "no-such-run"), "no-such-run"),
    ]
    for args, *needles in cases:
        assert_one_line_error(await _cli(*args, env=cli_env), *needles)
    bad = tmp_path / "policy.toml"
    bad.write_text('[[rule]]\nname = "x"\nside_effects = ["teleport"]\n')
    for policy, needle in (
        (bad, "'teleport' is not a valid SideEffect"),
        (tmp_path / "nope", "does not exist"),
    ):
        proc = await _cli(
            "approve",
            run_id,
            "1",
            "--reason",
            "x",
            env={**cli_env, "RUNRECORD_POLICY": str(policy)},
        )
        assert_one_line_error(proc, needle)


async def test_a_run_paused_before_any_mirror_follows_it_is_recorded_and_verified(
    cli_env: dict[str, str], temporal_address: str, journal: Journal, engine: Engine
) -> None:
    since = datetime.now(UTC).isoformat()  # verify --all: the agent runs of this test
    async with worker(temporal_address, journal) as (client, queue):
        run_id = f"ticker-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(agents.Ticker.run, 12, id=run_id, task_queue=queue)
        while await _scheduled(client, run_id) < 2:
            await asyncio.sleep(0.05)
        await pause_run(client, run_id, by="olga", reason="investigating")
        assert await _status(client, run_id) == 8  # PAUSED

        async def paused_in_the_records() -> bool:
            # Every event so far: the call in flight when the pause came still completes.
            events = len((await handle.fetch_history()).events)
            loaded = await asyncio.to_thread(load, engine, run_id)
            return (
                loaded is not None
                and loaded.final_status == "paused"
                and loaded.pause is not None
                and loaded.pause.paused_by == "olga"
                and [t.last_event_id for t in loaded.temporal_runs] == [events]
            )

        # A mirror that starts while the run is paused finds it, and verifying it works.
        async with following(client, engine, journal):
            await until(paused_in_the_records, "the paused run in the records")
            # A paused run's history can still grow (its timer fires, the call in flight
            # ends): compare once it has stood still for a while.
            settled = 0
            while settled < 3:
                before = len((await handle.fetch_history()).events)
                await asyncio.sleep(1.0)
                settled = settled + 1 if len((await handle.fetch_history()).events) == before else 0
            await until(paused_in_the_records, "the paused run's last events in the records")
            for args in (("--all", "--since", since), (run_id,)):
                verified = await _cli("mirror", "verify", *args, env=cli_env)
                assert verified.returncode == 0, verified.stdout + verified.stderr
                assert verified.stdout.strip().endswith("checked: no difference")
        await resume_run(client, run_id, by="olga", reason="done")
        assert await asyncio.wait_for(handle.result(), 60) == 12
