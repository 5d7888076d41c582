"""Signed approvals from the CLI: the run verifies each signature and refuses the rest."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.client import WorkflowFailureError

from runrecord.worker import Journal, temporal_binary
from runrecord.workflows import Policy
from tests import control_agents as agents
from tests.test_approvals import record, waiting_for, worker
from tests.test_cli import assert_one_line_error, runrecord


def _policy(cli_env: dict[str, str], home: Path) -> Path:
    made = runrecord("keygen", "alice", env=cli_env)
    assert made.returncode == 0, made.stderr
    assert (home / "keys" / "alice.pem").stat().st_mode & 0o777 == 0o600
    public = re.search(r'ed25519_public_key = "([^"]+)"', made.stdout)
    assert public is not None
    path = home / "runrecord.toml"
    path.write_text(
        f"""
[approval]
require_signatures = true
expiry = "10m"

[groups]
release = ["alice", "bob"]

[approvers.alice]
ed25519_public_key = "{public.group(1)}"

[approvers.bob]
hmac_key = "bob-shared-secret-0123456789"

[[rule]]
name = "releases"
side_effects = ["deploy"]
approvers = ["group:release"]
"""
    )
    return path


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(runrecord, *args, env=env)


async def test_signed_decisions_apply_and_unsigned_or_forged_ones_are_refused(
    cli_env: dict[str, str],
    home: Path,
    temporal_address: str,
    journal: Journal,
    engine: Engine,
) -> None:
    policy_file = _policy(cli_env, home)
    env = {**cli_env, "RUNRECORD_POLICY": str(policy_file)}
    async with worker(temporal_address, journal, Policy.load(policy_file)) as (client, queue):
        run_id = f"signed-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.Deployer.run, ["s-1", "s-2"], id=run_id, task_queue=queue
        )
        await waiting_for(client, run_id, "1")

        listed = await _cli("approvals", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        mine = [r for r in json.loads(listed.stdout) if r["runId"] == run_id]
        assert [(r["toolCallId"], r["signaturesRequired"]) for r in mine] == [("1", True)]

        # Anyone with namespace access can send the signal, but not sign it.
        raw = await asyncio.to_thread(
            subprocess.run,
            [
                temporal_binary(),
                "workflow",
                "signal",
                "--address",
                temporal_address,
                "--workflow-id",
                run_id,
                "--name",
                "runrecord.approve",
                "--input",
                json.dumps({"toolCallId": "1", "approver": "alice", "reason": "trust me"}),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert raw.returncode == 0, raw.stderr
        # A signature made with someone else's key.
        forged = await _cli(
            "approve", run_id, "1", "--reason", "ok", "--as", "alice", "--key",
            str(_other_key(cli_env, home)), env=env,
        )  # fmt: skip
        assert_one_line_error(forged, "refused by run", "signature does not verify")
        assert agents.ran("deploy", "s-1") == []

        approved = await _cli("approve", run_id, "1", "--reason", "release notes ok", "--as",
                              "alice", env=env)  # fmt: skip
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.strip() == f"call 1 approved in run {run_id} by alice"
        await waiting_for(client, run_id, "2")
        # bob signs with his HMAC key from the policy.
        denied = await _cli("deny", run_id, "2", "--reason", "not today", "--as", "bob", env=env)
        assert denied.returncode == 0, denied.stderr
        # Approver not in the rule's group, as a CLI error.
        late = await _cli("approve", run_id, "2", "--reason", "x", "--as", "mallory", env=env)
        assert_one_line_error(late)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    done = await record(client, engine, run_id)
    first, second = done.tool_calls
    assert first.approval is not None and first.approval.signed
    assert (first.status, first.approval.decided_by) == ("succeeded", "alice")
    assert second.approval is not None and second.approval.signed
    assert (second.status, second.approval.decided_by) == ("denied", "bob")
    refused = [(r.approver, r.reason) for r in done.approval_rejections]
    assert refused[0] == (
        "alice",
        "signature refused: unsigned: this policy requires signed decisions",
    )
    assert refused[1] == ("alice", "signature refused: signature does not verify")
    assert agents.ran("deploy", "s-1") == ["s-1"] and agents.ran("deploy", "s-2") == []


def _other_key(cli_env: dict[str, str], home: Path) -> Path:
    made = runrecord("keygen", "intruder", env=cli_env)
    assert made.returncode == 0, made.stderr
    return home / "keys" / "intruder.pem"
