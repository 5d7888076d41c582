"""RunRecordPlugin composes with what the user configured: payload codec, payload converter,
sandbox runner, other plugins; and each worker's runs list that worker's own tools."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from sqlalchemy import Engine
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.converter import DataConverter
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowInstance,
    WorkflowInstanceDetails,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from runrecord.cli._approvals import pending_approvals, send_decision
from runrecord.recorder import FolderBlobStore, Mirror, load_run, load_tree
from runrecord.recorder._blobs import canonical_json
from runrecord.worker import Journal, RunRecordPlugin
from tests import agents_for_plugin, agents_for_tests, control_agents
from tests.codec_for_tests import ENCRYPTED, EncryptionCodec
from tests.test_cli import assert_one_line_error, runrecord

REPO = Path(__file__).resolve().parents[1]


def _payloads(message: Message) -> Iterator[Payload]:
    """Every payload in a history, except search attributes (which the server indexes)."""
    if isinstance(message, Payload):
        yield message
        return
    if message.DESCRIPTOR.full_name == "temporal.api.common.v1.SearchAttributes":
        return
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        elif isinstance(value, Message):
            items = [value]
        else:
            items = list(value)
        for item in items:
            if isinstance(item, Message):
                yield from _payloads(item)


async def _encrypting_client(temporal_address: str, journal: Journal) -> Client:
    return await Client.connect(
        temporal_address,
        plugins=[RunRecordPlugin(journal)],
        data_converter=DataConverter(payload_codec=EncryptionCodec()),
        header_codec_behavior=HeaderCodecBehavior.CODEC,
    )


async def _run_note_taker(client: Client, text: str) -> str:
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"notes-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=agents_for_tests.WORKFLOWS,
        activities=agents_for_tests.ACTIVITIES,
    ):
        result = await client.execute_workflow(
            agents_for_tests.NoteTaker.run, text, id=run_id, task_queue=queue
        )
    assert result == f"42 wrote {text}-checked"
    return run_id


async def _raw_history(client: Client, run_id: str) -> History:
    history = await client.get_workflow_handle(run_id).fetch_history()
    return History(events=history.events)


def _sha(value: object) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


async def test_history_holds_only_ciphertext_while_the_records_hold_the_decoded_payloads(
    temporal_address: str, engine: Engine, journal: Journal, tmp_path: Path
) -> None:
    client = await _encrypting_client(temporal_address, journal)
    secret_text = f"plaintext-{uuid.uuid4().hex}"
    run_id = await _run_note_taker(client, secret_text)

    for workflow_id in (run_id, f"{run_id}.checker"):
        history = await _raw_history(client, workflow_id)
        raw = history.SerializeToString()
        # Arguments, results, runrecord's headers (toolCallId) and memos (toolRegistry).
        for plaintext in (secret_text.encode(), b"toolCallId", b"toolRegistry", b"turnId"):
            assert plaintext not in raw, f"{plaintext!r} in the history of {workflow_id}"
        # Temporal's own patch markers are written by the SDK's core without the codec;
        # they hold nothing but the patch id.
        patches = [
            e
            for e in history.events
            if e.marker_recorded_event_attributes.marker_name == "core_patch"
        ]
        for marker in patches:
            for p in _payloads(marker):
                assert json.loads(p.data)["id"].startswith("runrecord-")
        encodings = {
            p.metadata.get("encoding")
            for e in history.events
            if e not in patches
            for p in _payloads(e)
        }
        assert encodings == {ENCRYPTED}

    blobs = FolderBlobStore(tmp_path / "blobs")
    mirror = Mirror(client, engine, journal_dir=journal.directory, blobs=blobs)
    mirror.drain_journal()
    await mirror.sync_tree(run_id)
    with engine.connect() as conn:
        root, child = load_tree(conn, run_id)

    # Memo and headers were read through the codec: agent, tools, delegation, turn.
    assert root.agent_id == "note-taker" and root.final_status == "succeeded"
    assert [(c.tool, c.side_effect) for c in root.tool_calls] == [
        ("write_note", "write"),
        ("flaky_fetch", "network"),
        ("undeclared_step", "unknown"),
        ("draft_note", "write"),
        ("publish_note", "network"),
    ]
    assert "write_note" in {t.name for t in root.tool_registry}
    assert (child.parent_run_id, child.turn_id) == (run_id, root.turn_id)
    # Refs are the sha256 of the decoded payload, with its redacted copy in the blob store.
    write = root.tool_calls[0]
    assert [r.sha256 for r in write.input_refs] == [_sha(secret_text)]
    assert [r.sha256 for r in write.output_refs] == [_sha(f"wrote {secret_text}")]
    assert blobs.read(_sha(secret_text)) == canonical_json(secret_text)
    assert await mirror.verify(run_id) == []


async def test_a_standalone_mirror_and_replay_read_history_with_the_configured_codec(
    temporal_address: str, engine: Engine, journal: Journal, cli_env: dict[str, str]
) -> None:
    client = await _encrypting_client(temporal_address, journal)
    text = f"note-{uuid.uuid4().hex[:8]}"
    run_id = await _run_note_taker(client, text)
    env = {
        **cli_env,
        "RUNRECORD_PAYLOAD_CODEC": "tests.codec_for_tests:EncryptionCodec",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), cli_env.get("PYTHONPATH")])),
    }

    rebuilt = runrecord("mirror", "rebuild", run_id, env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None and record.agent_id == "note-taker"
    assert [r.sha256 for r in record.tool_calls[0].input_refs] == [_sha(text)]

    replayed = runrecord("replay", run_id, "--module", "tests.agents_for_tests", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith("OK")

    wrong = runrecord("replay", run_id, env={**env, "RUNRECORD_PAYLOAD_CODEC": "tests.nothing:X"})
    assert_one_line_error(wrong, "RUNRECORD_PAYLOAD_CODEC", "tests.nothing")


async def test_approvals_are_read_and_decided_through_the_codec(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    client = await _encrypting_client(temporal_address, journal)
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    run_id = f"deploy-{uuid.uuid4().hex[:8]}"
    target = f"target-{uuid.uuid4().hex[:8]}"
    reason = f"reason-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=control_agents.WORKFLOWS,
        activities=control_agents.ACTIVITIES,
    ):
        handle = await client.start_workflow(
            control_agents.Deployer.run, [target], id=run_id, task_queue=queue
        )
        request = None
        for _ in range(600):
            # The pending list is in the (encrypted) memo, of the run and in visibility.
            listed = [r for r in await pending_approvals(client) if r.run_id == run_id]
            if listed:
                request = (await pending_approvals(client, run_id))[0]
                break
            await asyncio.sleep(0.05)
        assert request is not None, "the pending approval was never read from the memo"
        assert (request.tool, request.arguments) == ("deploy", f'["{target}"]')
        outcome = await send_decision(
            client, run_id, "1", "approve", approver="alice", reason=reason
        )
        assert outcome.applied, outcome.message
        assert await handle.result() == [f"deployed {target}"]

    raw = (await _raw_history(client, run_id)).SerializeToString()
    for plaintext in (target.encode(), reason.encode(), b"alice"):
        assert plaintext not in raw
    await Mirror(client, engine).sync_run(run_id)
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    approval = record.tool_calls[0].approval
    assert approval is not None and (approval.decided_by, approval.reason) == ("alice", reason)


class OwnRunner(UnsandboxedWorkflowRunner):
    """A user's own inner runner: counts the workflow instances it made."""

    made = 0

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        type(self).made += 1
        return super().create_instance(det)


async def test_the_users_sandbox_runner_settings_survive(client: Client) -> None:
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("tests"),
        runner_class=OwnRunner,
    )
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client, task_queue=queue, workflows=[agents_for_plugin.Greeter], workflow_runner=runner
    )
    configured = worker.config(active_config=True)["workflow_runner"]
    assert isinstance(configured, SandboxedWorkflowRunner)
    assert {"tests", "runrecord", "cryptography"} <= configured.restrictions.passthrough_modules
    made = OwnRunner.made
    async with worker:
        greeting = await client.execute_workflow(
            agents_for_plugin.Greeter.run,
            "ada",
            id=f"greet-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
    assert greeting == "hello ada"
    assert OwnRunner.made > made, "the workflow did not run in the user's runner class"


async def test_each_workers_runs_list_only_that_workers_tools(
    client: Client, engine: Engine
) -> None:
    mail_queue, pay_queue = (f"tq-{uuid.uuid4().hex[:8]}" for _ in range(2))
    workers = [
        Worker(
            client,
            task_queue=queue,
            workflows=[agents_for_plugin.Greeter],
            activities=tools,
        )
        for queue, tools in (
            (mail_queue, agents_for_plugin.MAIL_TOOLS),
            (pay_queue, agents_for_plugin.PAYMENT_TOOLS),
        )
    ]
    run_ids = {queue: f"greet-{uuid.uuid4().hex[:8]}" for queue in (mail_queue, pay_queue)}
    async with workers[0], workers[1]:
        for queue, run_id in run_ids.items():
            await client.execute_workflow(
                agents_for_plugin.Greeter.run, "ada", id=run_id, task_queue=queue
            )
    mirror = Mirror(client, engine)
    registries = {}
    for queue, run_id in run_ids.items():
        await mirror.sync_run(run_id)
        with engine.connect() as conn:
            record = load_run(conn, run_id)
        assert record is not None
        registries[queue] = [t.name for t in record.tool_registry]

    assert registries == {mail_queue: ["read_inbox"], pay_queue: ["pay_invoice"]}


async def test_openai_agents_plugin_and_runrecord_compose_in_either_order(
    temporal_address: str, engine: Engine, journal: Journal
) -> None:
    from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin
    from temporalio.openai_agents._temporal_openai_agents import OpenAIPayloadConverter
    from temporalio.openai_agents.testing import ResponseBuilders, TestModel, TestModelProvider

    from tests import openai_agents_for_tests

    def openai_plugin() -> OpenAIAgentsPlugin:
        model = TestModel.returning_responses([ResponseBuilders.output_message("at nine")])
        return OpenAIAgentsPlugin(
            model_params=ModelActivityParameters(start_to_close_timeout=timedelta(seconds=30)),
            model_provider=TestModelProvider(model),
        )

    for order in ("openai-first", "runrecord-first"):
        plugins = [openai_plugin(), RunRecordPlugin(journal)]
        if order == "runrecord-first":
            plugins.reverse()
        client = await Client.connect(
            temporal_address,
            plugins=plugins,
            data_converter=DataConverter(payload_codec=EncryptionCodec()),
        )
        converter = client.data_converter
        assert converter.payload_converter_class is OpenAIPayloadConverter, order
        assert isinstance(converter.payload_codec, EncryptionCodec), order
        queue = f"tq-{uuid.uuid4().hex[:8]}"
        run_id = f"concierge-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[openai_agents_for_tests.Concierge]):
            answer = await client.execute_workflow(
                openai_agents_for_tests.Concierge.run,
                "when does the shop open?",
                id=run_id,
                task_queue=queue,
            )
        assert answer == "at nine", order

        await Mirror(client, engine).sync_run(run_id)
        with engine.connect() as conn:
            record = load_run(conn, run_id)
        assert record is not None and record.final_status == "succeeded", order
        assert [c.status for c in record.tool_calls] == ["succeeded"], order
