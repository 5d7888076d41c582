"""The approval policy file: what it requires of a call, who may decide, and signatures.

The policy fails closed: a tool name never auto-allows an untrusted MCP server's tool of the
same name, and a tool declared nowhere (``unknown``) is gated as the worst case.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

from runrecord._contract import ApprovalRequest
from runrecord.cli._approvals import pending_approvals, send_decision
from runrecord.recorder import Mirror, load_run
from runrecord.records import RunRecord, SideEffect, ToolCall
from runrecord.worker import Journal, RunRecordPlugin
from runrecord.workflows import Action, Policy, PolicyError, sign
from runrecord.workflows._policy import signing_message
from tests import policy_agents as agents
from tests.mcp_agents_for_tests import Step

POLICY = """
[approval]
expiry = "2h"
approvers = ["ops"]

[groups]
finance = ["alice", "bob"]

[approvers.bob]
hmac_key = "bob-shared-secret-0123456789"

[[rule]]
name = "reads"
side_effects = ["read"]
action = "allow"

[[rule]]
name = "payments"
side_effects = ["payment"]
approvers = ["group:finance"]
expiry = "15m"
require_signatures = true

[[rule]]
name = "no-prod-deletes"
tools = ["delete_*"]
action = "deny"
"""


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    path = tmp_path / "runrecord.toml"
    path.write_text(POLICY)
    return Policy.load(path)


def test_the_first_matching_rule_decides(policy: Policy) -> None:
    reads = policy.requirement("read_file", SideEffect.READ, declared=True)
    assert (reads.action, reads.rule) == (Action.ALLOW, "reads")
    pay = policy.requirement("charge", SideEffect.PAYMENT, declared=False)
    assert (pay.action, pay.rule, pay.approvers) == (Action.REQUIRE, "payments", ("group:finance",))
    assert (pay.expiry, pay.signatures_required) == (timedelta(minutes=15), True)
    wipe = policy.requirement("delete_branch", SideEffect.DELETE, declared=False)
    assert (wipe.action, wipe.rule) == (Action.DENY, "no-prod-deletes")
    # No rule: the tool's own declaration decides, with the default approvers and expiry.
    deploy = policy.requirement("deploy", SideEffect.DEPLOY, declared=True)
    assert (deploy.action, deploy.rule, deploy.approvers) == (Action.REQUIRE, "declared", ("ops",))
    assert deploy.expiry == timedelta(hours=2)
    assert (
        policy.requirement("write", SideEffect.WRITE, declared=False).action is Action.NOT_REQUIRED
    )


def test_groups_decide_who_may_approve(policy: Policy) -> None:
    assert policy.may_decide("alice", ("group:finance",))
    assert not policy.may_decide("mallory", ("group:finance",))
    assert policy.may_decide("anyone", ("*",))


def test_without_a_file_declared_tools_need_anyones_approval_within_an_hour() -> None:
    need = Policy().requirement("deploy", SideEffect.DEPLOY, declared=True)
    assert (need.action, need.approvers, need.expiry) == (
        Action.REQUIRE,
        ("*",),
        timedelta(hours=1),
    )


def test_hmac_and_ed25519_signatures_verify_and_forgeries_do_not(policy: Policy) -> None:
    message = signing_message("approve", "run-1", "3", "digest", "bob", "ok")
    signature = sign(policy, "bob", message, None)
    assert policy.verify("bob", message, signature) is None
    other = signing_message("approve", "run-1", "4", "digest", "bob", "ok")
    assert policy.verify("bob", other, signature) == "signature does not verify"
    assert policy.verify("bob", message, None) == "unsigned: this policy requires signed decisions"

    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    keyed = Policy.from_dict(
        {"approvers": {"alice": {"ed25519_public_key": base64.b64encode(public).decode()}}}
    )
    signed = sign(keyed, "alice", message, pem)
    assert keyed.verify("alice", message, signed) is None
    assert keyed.verify("alice", other, signed) == "signature does not verify"
    assert keyed.verify("carol", message, signed) == "no signing key for 'carol' in the policy"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[rule]]\nname = 'x'\naction = 'maybe'\n", "'maybe' is not a valid Action"),
        ("[[rule]]\nname = 'x'\nexpiry = 'soon'\n", "is not a duration"),
        ("[[rule]]\nname = 'x'\napprovers = ['group:nobody']\n", "unknown group 'nobody'"),
        ("[approvers.bob]\nhmac_key = 'short'\n", "at least 16 characters"),
        ("[approvers.bob]\nhmac_key_env = 'RR_TEST_UNSET_KEY'\n", "is not set"),
        ("[approval]\nexpire = '1h'\n", "unknown key(s) ['expire']"),
        ("rule = [", "not valid TOML"),
    ],
)
def test_a_bad_policy_file_is_refused_with_the_reason(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "runrecord.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=None) as err:
        Policy.load(path)
    assert needle in str(err.value)


def test_the_policy_repr_never_shows_a_secret(policy: Policy) -> None:
    assert "bob-shared-secret" not in repr(policy)


# --- which tools a rule names


def _rules(*rules: dict[str, Any]) -> Policy:
    return Policy.from_dict({"rule": list(rules)})


def test_a_bare_tool_name_never_allows_an_untrusted_servers_tool() -> None:
    policy = _rules(
        {"name": "harmless", "tools": ["get_file_info"], "action": "allow"},
        {"name": "deletes", "side_effects": ["delete"]},
    )
    trusted = policy.requirement("get_file_info", SideEffect.READ, False, server="fs", trusted=True)
    assert (trusted.action, trusted.rule) == (Action.ALLOW, "harmless")
    declared = policy.requirement("get_file_info", SideEffect.READ, False)
    assert (declared.action, declared.rule) == (Action.ALLOW, "harmless")
    stranger = policy.requirement("get_file_info", SideEffect.DELETE, False, server="web")
    assert (stranger.action, stranger.rule) == (Action.REQUIRE, "deletes")


def test_a_bare_tool_name_still_gates_an_untrusted_servers_tool() -> None:
    policy = _rules(
        {"name": "no-push", "tools": ["git_push"], "action": "deny"},
        {"name": "review", "tools": ["git_commit"], "action": "require"},
    )
    push = policy.requirement("git_push", SideEffect.DELETE, False, server="web")
    commit = policy.requirement("git_commit", SideEffect.DELETE, False, server="web")
    assert (push.action, commit.action) == (Action.DENY, Action.REQUIRE)


def test_server_qualified_names_match_that_server_only() -> None:
    policy = _rules(
        {"name": "web-echo", "tools": ["web:echo"], "action": "allow"},
        {"name": "fs-all", "tools": ["fs:*"], "action": "deny"},
        {"name": "any-clock", "tools": ["*:now"], "action": "allow"},
    )

    def decide(tool: str, server: str | None, trusted: bool = False) -> str | None:
        return policy.requirement(
            tool, SideEffect.DELETE, False, server=server, trusted=trusted
        ).rule

    assert decide("echo", "web") == "web-echo"
    assert decide("echo", "webby") is None  # a server name is matched whole
    assert decide("echo", None) is None  # a worker's own tool is on no server
    assert decide("list", "web") is None
    assert decide("echo", "fs", trusted=True) == "fs-all"
    assert decide("read", "fs") == "fs-all"
    # `*:tool` says explicitly: on every server, trusted or not (and on no server: no).
    assert decide("now", "web") == decide("now", "fs2", trusted=True) == "any-clock"
    assert decide("now", None) is None


@pytest.mark.parametrize(
    ("tools", "needle"),
    [
        (["web:"], "'web:' names no tool (server:tool or server:*)"),
        ([":echo"], "':echo' does not start with an MCP server name"),
        (["my server:echo"], "'my server:echo' does not start with an MCP server name"),
        (["web\x00:echo"], "does not start with an MCP server name"),
        (["x" * 10_000 + ":"], "names no tool"),
        ("echo", "tools must be a list of names"),
        ([""], "tools must be a list of names"),
    ],
)
def test_a_bad_tool_name_in_a_rule_is_refused_in_one_line(tools: Any, needle: str) -> None:
    with pytest.raises(PolicyError) as err:
        _rules({"name": "r", "tools": tools, "action": "allow"})
    message = str(err.value)
    assert needle in message and "\n" not in message and len(message) < 300
    assert "[[rule]] #1" in message


def test_side_effects_must_be_a_list_of_classes() -> None:
    with pytest.raises(PolicyError, match="side_effects must be a list of names"):
        _rules({"name": "r", "side_effects": "delete"})


def test_the_worker_refuses_a_bad_tool_name_in_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "no_agents.py").write_text("WORKFLOWS = []\nACTIVITIES = []\n")
    policy = tmp_path / "runrecord.toml"
    hostile = "web\\u0000 " + "x" * 10_000
    policy.write_text(f'[[rule]]\nname = "r"\ntools = ["{hostile}:echo"]\naction = "allow"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "runrecord.cli", "worker", "--module", "no_agents"],
        env={**cli_env, "RUNRECORD_POLICY": str(policy), "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("runrecord: error: ") and len(line) < 400 and "\x00" not in line
    assert "[[rule]] #1 (r) tools" in line and "does not start with an MCP server name" in line


# --- a tool declared nowhere


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([{"name": "deletes", "side_effects": ["delete"]}], (Action.REQUIRE, "deletes")),
        (
            [{"name": "no-network", "side_effects": ["network"], "action": "deny"}],
            (Action.DENY, "no-network"),
        ),
        # The strictest rule decides, not the first.
        (
            [
                {"name": "writes", "side_effects": ["write"]},
                {"name": "no-deletes", "side_effects": ["delete"], "action": "deny"},
            ],
            (Action.DENY, "no-deletes"),
        ),
        # An allow rule for some class does not allow what may be any class ...
        (
            [
                {"name": "reads", "side_effects": ["read"], "action": "allow"},
                {"name": "deploys", "side_effects": ["deploy"]},
            ],
            (Action.REQUIRE, "deploys"),
        ),
        (
            [{"name": "reads", "side_effects": ["read"], "action": "allow"}],
            (Action.NOT_REQUIRED, None),
        ),
        # ... only one that names `unknown`, or the tool alone, and no stricter rule matches.
        (
            [{"name": "legacy", "side_effects": ["unknown"], "action": "allow"}],
            (Action.ALLOW, "legacy"),
        ),
        (
            [
                {"name": "legacy", "tools": ["purge_cache"], "action": "allow"},
                {"name": "deletes", "side_effects": ["delete"]},
            ],
            (Action.REQUIRE, "deletes"),
        ),
        (
            [{"name": "other", "tools": ["wipe_*"], "side_effects": ["delete"], "action": "deny"}],
            (Action.NOT_REQUIRED, None),
        ),
    ],
)
def test_an_unknown_side_effect_is_gated_as_the_worst_case(
    rules: list[dict[str, Any]], expected: tuple[Action, str | None]
) -> None:
    need = _rules(*rules).requirement("purge_cache", SideEffect.UNKNOWN, False)
    assert (need.action, need.rule) == expected


# --- on the real dev server, with real MCP servers


@asynccontextmanager
async def agent_worker(
    temporal_address: str, journal: Journal, policy: Policy
) -> AsyncIterator[tuple[Client, str]]:
    """A recording client under ``policy`` and a worker for the policy agents, on a queue
    of its own."""
    plugin = RunRecordPlugin(journal, mcp_servers=agents.MCP_SERVERS, policy=policy)
    client = await Client.connect(temporal_address, plugins=[plugin])
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[agents.PairProber, agents.CachePurger],
        activities=[agents.purge_cache],
    ):
        yield client, queue


async def first_request(client: Client, handle: WorkflowHandle[Any, Any]) -> ApprovalRequest:
    """The run's first approval request; fails at once if the run ends without one."""
    result = asyncio.ensure_future(handle.result())
    try:
        for _ in range(600):
            if result.done():
                outcome = result.exception() or result.result()
                raise AssertionError(f"the run ended without asking for approval: {outcome!r}")
            waiting = await pending_approvals(client, handle.id)
            if waiting:
                return waiting[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"{handle.id} never asked for approval")
    finally:
        result.cancel()


async def recorded(client: Client, engine: Engine, journal: Journal, run_id: str) -> RunRecord:
    mirror = Mirror(client, engine, journal_dir=journal.directory)
    mirror.drain_journal()
    await mirror.sync_run(run_id)
    with engine.connect() as conn:
        record = load_run(conn, run_id)
    assert record is not None
    return record


def _mcp_call(record: RunRecord, server: str, tool: str) -> ToolCall:
    (call,) = [c for c in record.tool_calls if (c.mcp_server, c.tool) == (server, tool)]
    return call


async def test_a_bare_name_allow_rule_allows_the_trusted_servers_tool_only(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    policy = _rules(
        {"name": "echo-is-harmless", "tools": ["echo"], "action": "allow"},
        {"name": "deletes", "side_effects": ["delete"], "approvers": ["ops"]},
    )
    steps = [
        Step(server="trusted", tool="echo", arguments={"text": "hello"}),
        Step(server="stranger", tool="echo", arguments={"text": "hello"}),
    ]
    async with agent_worker(temporal_address, journal, policy) as (client, queue):
        run_id = f"pair-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.PairProber.run, steps, id=run_id, task_queue=queue
        )
        # The untrusted server's echo (delete + network as far as anyone knows) waits.
        request = await first_request(client, handle)
        assert (request.tool, request.side_effect, request.rule) == ("echo", "delete", "deletes")
        outcome = await send_decision(
            client, run_id, request.tool_call_id, "approve", approver="ops", reason="looked"
        )
        assert outcome.applied, outcome.message
        assert await handle.result() == ["trusted/echo: ok hello", "stranger/echo: ok hello"]

    record = await recorded(client, engine, journal, run_id)
    trusted, stranger = _mcp_call(record, "trusted", "echo"), _mcp_call(record, "stranger", "echo")
    assert trusted.approval is not None and stranger.approval is not None
    assert (trusted.side_effect, trusted.approval_state) == ("read", "approved")
    assert trusted.approval.decided_by == "policy:echo-is-harmless"
    assert (stranger.side_effect, stranger.approval_state) == ("delete", "approved")
    assert (stranger.approval.decided_by, stranger.approval.rule) == ("ops", "deletes")


async def test_server_qualified_rules_match_that_servers_tools_only(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    policy = _rules(
        {"name": "no-stranger-echo", "tools": ["stranger:echo"], "action": "deny"},
        {"name": "trusted-all", "tools": ["trusted:*"], "action": "allow"},
        {"name": "changes", "side_effects": ["write", "delete"], "action": "deny"},
    )
    steps = [
        Step(server="trusted", tool="echo", arguments={"text": "a"}),
        Step(server="trusted", tool="redefine"),
        Step(server="stranger", tool="echo", arguments={"text": "b"}),
        Step(server="stranger", tool="redefine"),
    ]
    async with agent_worker(temporal_address, journal, policy) as (client, queue):
        run_id = f"pair-{uuid.uuid4().hex[:8]}"
        result = await client.execute_workflow(
            agents.PairProber.run, steps, id=run_id, task_queue=queue
        )
    assert result == [
        "trusted/echo: ok a",
        "trusted/redefine: ok echo redefined",
        "stranger/echo: denied by policy:no-stranger-echo",
        "stranger/redefine: denied by policy:changes",
    ]
    record = await recorded(client, engine, journal, run_id)
    decided = {
        (c.mcp_server, c.tool): (
            c.side_effect,
            c.status,
            c.approval.decided_by if c.approval else None,
        )
        for c in record.tool_calls
    }
    assert decided == {
        # `trusted:*` covers every call to that server, its tools listing included.
        ("trusted", "list-tools"): ("read", "succeeded", "policy:trusted-all"),
        ("trusted", "echo"): ("read", "succeeded", "policy:trusted-all"),
        ("trusted", "redefine"): ("write", "succeeded", "policy:trusted-all"),
        ("stranger", "list-tools"): ("read", "succeeded", None),
        ("stranger", "echo"): ("delete", "denied", "policy:no-stranger-echo"),
        ("stranger", "redefine"): ("delete", "denied", "policy:changes"),
    }


async def test_a_tool_declared_nowhere_waits_under_a_rule_for_deletes(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    policy = _rules({"name": "deletes", "side_effects": ["delete"], "approvers": ["ops"]})
    path = f"/cache/{uuid.uuid4().hex[:8]}"
    async with agent_worker(temporal_address, journal, policy) as (client, queue):
        run_id = f"purge-{uuid.uuid4().hex[:8]}"
        handle = await client.start_workflow(
            agents.CachePurger.run, path, id=run_id, task_queue=queue
        )
        request = await first_request(client, handle)
        assert (request.tool, request.side_effect, request.rule) == (
            "purge_cache",
            "unknown",
            "deletes",
        )
        assert path not in agents.RAN
        await send_decision(client, run_id, "1", "deny", approver="ops", reason="not today")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert path not in agents.RAN
    call = (await recorded(client, engine, journal, run_id)).tool_calls[0]
    assert (call.tool, call.side_effect, call.status) == ("purge_cache", "unknown", "denied")
    assert call.approval is not None and call.approval.rule == "deletes"


async def test_a_tool_declared_nowhere_is_denied_by_a_rule_against_network_calls(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    policy = _rules({"name": "offline", "side_effects": ["network"], "action": "deny"})
    path = f"/cache/{uuid.uuid4().hex[:8]}"
    async with agent_worker(temporal_address, journal, policy) as (client, queue):
        run_id = f"purge-{uuid.uuid4().hex[:8]}"
        with pytest.raises(WorkflowFailureError) as failed:
            await client.execute_workflow(agents.CachePurger.run, path, id=run_id, task_queue=queue)
    assert "denied by policy:offline" in str(failed.value.cause)
    assert path not in agents.RAN
    record = await recorded(client, engine, journal, run_id)
    assert record.final_status == "escalated"
    (call,) = record.tool_calls
    assert (call.status, call.approval_state) == ("denied", "denied")


@pytest.mark.parametrize(
    ("rule", "refusal"),
    [
        (
            {"name": "deletes", "side_effects": ["delete"]},
            "tool 'purge_cache' needs approval (policy rule 'deletes')",
        ),
        (
            {"name": "offline", "side_effects": ["network"], "action": "deny"},
            "tool 'purge_cache' is denied by policy rule 'offline'",
        ),
    ],
)
async def test_a_tool_declared_nowhere_scheduled_around_the_gate_fails_closed(
    temporal_address: str, journal: Journal, rule: dict[str, Any], refusal: str
) -> None:
    # The workflow runs on a worker without runrecord; the activity on one with it.
    plain = await Client.connect(temporal_address)
    gated = await Client.connect(
        temporal_address, plugins=[RunRecordPlugin(journal, policy=_rules(rule))]
    )
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    path = f"/cache/{uuid.uuid4().hex[:8]}"
    async with (
        Worker(plain, task_queue=queue, workflows=[agents.UnrecordedPurger]),
        Worker(gated, task_queue=queue, activities=[agents.purge_cache]),
    ):
        result = await plain.execute_workflow(
            agents.UnrecordedPurger.run,
            path,
            id=f"unrecorded-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
    assert result.startswith("refused: ") and refusal in result and "it was not run" in result
    assert path not in agents.RAN


def test_tools_without_an_activity_function_are_declared_by_name_or_toolset() -> None:
    policy = Policy.from_dict(
        {
            "tools": {
                "refund": {"side_effect": "payment", "approval": True},
                "billing:refund": {"side_effect": "write", "compensate": "reverse"},
            }
        }
    )
    own = policy.tool("refund", "billing")
    assert own is not None
    assert (own.name, own.side_effect, own.compensator, own.approval) == (
        "refund",
        SideEffect.WRITE,
        "reverse",
        False,
    )
    bare = policy.tool("refund", "payments")
    assert bare is not None and (bare.side_effect, bare.approval) == (SideEffect.PAYMENT, True)
    assert policy.tool("void") is None


@pytest.mark.parametrize(
    ("key", "spec", "needle"),
    [
        ("refund", {}, "side_effect must be one of read, write"),
        ("refund", {"side_effect": "unknown"}, "got 'unknown'"),
        ("refund", {"side_effect": "model"}, "got 'model'"),
        ("refund", {"side_effect": "write", "aproval": True}, "unknown key(s) ['aproval']"),
        ("refund", {"side_effect": "write", "approval": "yes"}, "approval must be true or false"),
        ("a:b:c", {"side_effect": "read"}, "name or toolset:name"),
        (":refund", {"side_effect": "read"}, "name or toolset:name"),
        ("re fund", {"side_effect": "read"}, "name or toolset:name"),
        ("re\x00fund", {"side_effect": "read"}, "name or toolset:name"),
        ("x" * 10_000, {"side_effect": "x" * 10_000}, "side_effect must be one of"),
        (
            "refund",
            {"side_effect": "payment", "compensate": "undo", "irreversible": True},
            "both irreversible and have a compensator",
        ),
    ],
)
def test_a_bad_tool_declaration_is_refused_in_one_line(
    key: str, spec: dict[str, Any], needle: str
) -> None:
    with pytest.raises(PolicyError) as err:
        Policy.from_dict({"tools": {key: spec}}, source="runrecord.toml")
    message = str(err.value)
    assert needle in message and "\n" not in message and len(message) < 400
