"""The approval policy file: what it requires of a call, who may decide, and signatures."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runrecord.records import SideEffect
from runrecord.workflows import Action, Policy, PolicyError, sign
from runrecord.workflows._policy import signing_message

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
