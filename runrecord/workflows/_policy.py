"""The approval policy: which calls need a human's approval, who may decide, and how long to wait.

A policy is a TOML file (``runrecord.toml``; ``RUNRECORD_POLICY`` names another). Rules are
tried in order and the first whose ``tools`` and ``side_effects`` both match a call decides:

    [approval]
    expiry = "1h"                  # default wait before a request expires
    approvers = ["*"]              # who decides calls of tools declared approval=True
    require_signatures = false

    [groups]
    finance = ["alice", "bob"]

    [approvers.alice]
    ed25519_public_key = "base64 of the 32-byte key"   # `runrecord keygen alice` makes one
    [approvers.bob]
    hmac_key_env = "BOB_APPROVAL_KEY"                   # or hmac_key = "..."

    [[rule]]
    name = "payments"
    side_effects = ["payment"]
    action = "require"             # require | allow | deny
    approvers = ["group:finance"]
    expiry = "30m"
    require_signatures = true

    [console.tokens]               # the console's approver tokens, as digests
    alice = "sha256:<64 hex digits>"                    # `runrecord token alice` makes one

    [[rule]]
    name = "git-reads"
    tools = ["git:git_status", "git:git_log", "time:*"]   # server:tool, server:*
    action = "allow"

Tools that have no activity function to decorate (an agent framework's tools, recognised
by ``runrecord.integrations``) can be declared here, by name or ``toolset:name`` (the
framework's toolset or MCP server); a ``@runrecord.tool`` declaration wins over these:

    [tools.refund]
    side_effect = "payment"        # read | write | delete | exec | network | deploy | payment
    approval = true                # every call waits for a person (rule "declared")
    compensate = "reverse_refund"  # the activity rollback runs to undo it
    [tools."billing:void_invoice"]
    side_effect = "delete"
    irreversible = true

A bare tool name matches tools declared on the worker and tools of MCP servers marked
``trusted``; it may gate (require, deny) an untrusted server's tool of that name but never
allow it. ``server:tool`` names one MCP server's tool (``server:*`` all of them, ``*:tool``
the tool on every server, trusted or not). A call whose side effect is ``unknown`` (declared
nowhere) may do anything: every require or deny rule with ``side_effects`` matches it too,
and the strictest matching rule decides (deny, then require, then allow; file order among
equals). A call no rule matches needs approval only if its tool is declared
``approval=True`` (rule ``declared``). Everything here runs inside the workflow sandbox:
pure and deterministic.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from runrecord._contract import (
    CallHeader,
)
from runrecord.activities._tool import ToolSpec
from runrecord.records import (
    ApprovalState,
    SideEffect,
)

DEFAULT_EXPIRY = timedelta(hours=1)
DECLARED_RULE = "declared"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
# A server part is a server name (letters, digits, '_', '-') or a glob of one.
_SERVER_PATTERN = re.compile(r"[A-Za-z0-9_*?\[\]!-]+")


class PolicyError(ValueError):
    """The policy file is missing, unreadable or says something runrecord cannot follow."""


class Action(StrEnum):
    NOT_REQUIRED = "not_required"
    REQUIRE = "require"
    ALLOW = "allow"
    DENY = "deny"


_STRICTNESS = {Action.DENY: 0, Action.REQUIRE: 1, Action.ALLOW: 2}


def parse_duration(value: Any, where: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"`` or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise PolicyError(f"{where}: {value!r} is not a duration like '30m' or '1h'")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise PolicyError(f"{where}: a duration must be positive, got {value!r}")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Requirement:
    """What the policy says about one call."""

    action: Action
    rule: str | None = None
    approvers: tuple[str, ...] = ()
    expiry: timedelta = DEFAULT_EXPIRY
    signatures_required: bool = False


@dataclass(frozen=True)
class ToolPattern:
    """One entry of a rule's ``tools``: ``name``, ``server:name``, globs in either part."""

    tool: str
    server: str | None = None  # None: a bare name

    @classmethod
    def parse(cls, text: str, where: str) -> ToolPattern:
        if ":" not in text:
            return cls(text)
        server, _, tool = text.partition(":")
        if not server or not _SERVER_PATTERN.fullmatch(server):
            raise PolicyError(
                f"{where}: {text[:80]!r} does not start with an MCP server name "
                "(server:tool, server:* or *:tool)"
            )
        if not tool:
            raise PolicyError(f"{where}: {text[:80]!r} names no tool (server:tool or server:*)")
        return cls(tool, server)

    def matches(self, tool: str, server: str | None, trusted: bool, action: Action) -> bool:
        if not fnmatch.fnmatchcase(tool, self.tool):
            return False
        if self.server is not None:
            return server is not None and fnmatch.fnmatchcase(server, self.server)
        # A bare name was written for the tools runrecord can vouch for: an untrusted
        # server may offer a tool of the same name that does something else entirely.
        return server is None or trusted or action is not Action.ALLOW


@dataclass(frozen=True)
class Rule:
    name: str
    action: Action
    tools: tuple[ToolPattern, ...] = ()
    side_effects: tuple[SideEffect, ...] = ()
    approvers: tuple[str, ...] = ()
    expiry: timedelta | None = None
    require_signatures: bool | None = None

    def matches(
        self,
        tool: str,
        side_effect: SideEffect,
        server: str | None = None,
        trusted: bool = False,
    ) -> bool:
        """Whether this rule applies to a call to ``tool`` (on MCP ``server``, if any)."""
        if self.tools and not any(
            p.matches(tool, server, trusted, self.action) for p in self.tools
        ):
            return False
        if not self.side_effects or side_effect in self.side_effects:
            return True
        # Undeclared, it may be any class: whatever gates one class gates it too.
        return side_effect == SideEffect.UNKNOWN and self.action is not Action.ALLOW


@dataclass(frozen=True)
class ApproverKey:
    """How an approver's signatures are checked; ``secret`` never leaves the process."""

    kind: str  # "ed25519" or "hmac-sha256"
    public: bytes = b""
    secret: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    keys: dict[str, ApproverKey] = field(default_factory=dict)
    expiry: timedelta = DEFAULT_EXPIRY
    approvers: tuple[str, ...] = ("*",)
    require_signatures: bool = False
    source: str = "built-in default"
    # The console's approver tokens: approver -> sha256 hex of the token ([console.tokens]).
    console_tokens: dict[str, str] = field(default_factory=dict)
    # Tools declared in the file's [tools], by ``name`` or ``toolset:name``.
    tools: dict[str, ToolSpec] = field(default_factory=dict)

    # --- loading

    @classmethod
    def load(cls, path: Path | str) -> Policy:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise PolicyError(f"policy file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as err:
            raise PolicyError(f"cannot read policy file {path}: {err}") from None
        except tomllib.TOMLDecodeError as err:
            raise PolicyError(f"policy file {path} is not valid TOML: {err}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "inline") -> Policy:
        unknown = set(data) - {"approval", "groups", "approvers", "rule", "console", "tools"}
        if unknown:
            raise PolicyError(f"{source}: unknown section(s) {sorted(unknown)}")
        defaults = _table(data.get("approval", {}), f"{source} [approval]")
        _only(defaults, {"expiry", "approvers", "require_signatures"}, f"{source} [approval]")
        groups = {
            str(name): _names(members, f"{source} [groups] {name}")
            for name, members in _table(data.get("groups", {}), f"{source} [groups]").items()
        }
        keys = {
            str(name): _key(spec, f"{source} [approvers.{name}]")
            for name, spec in _table(data.get("approvers", {}), f"{source} [approvers]").items()
        }
        raw_rules = data.get("rule", [])
        if not isinstance(raw_rules, list):
            raise PolicyError(f"{source}: [[rule]] must be an array of tables")
        rules = tuple(_rule(r, f"{source} [[rule]] #{i + 1}") for i, r in enumerate(raw_rules))
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise PolicyError(f"{source}: rule names must be unique, got {names}")
        policy = cls(
            rules=rules,
            groups=groups,
            keys=keys,
            console_tokens=_console_tokens(data.get("console", {}), f"{source} [console]"),
            expiry=parse_duration(defaults["expiry"], f"{source} [approval] expiry")
            if "expiry" in defaults
            else DEFAULT_EXPIRY,
            approvers=_names(defaults.get("approvers", ["*"]), f"{source} [approval] approvers"),
            require_signatures=_bool(
                defaults.get("require_signatures", False), f"{source} require_signatures"
            ),
            source=source,
            tools={
                str(key): _tool(str(key), spec, f"{source} [tools.{str(key)[:80]!r}]")
                for key, spec in _table(data.get("tools", {}), f"{source} [tools]").items()
            },
        )
        for name, members in [("[approval]", policy.approvers)] + [
            (f"rule {r.name!r}", r.approvers) for r in rules
        ]:
            for member in members:
                if member.startswith("group:") and member[6:] not in groups:
                    raise PolicyError(f"{source}: {name} names unknown group {member[6:]!r}")
        return policy

    def tool(self, name: str, toolset: str | None = None) -> ToolSpec | None:
        """A tool as the file's [tools] declare it: ``toolset:name`` first, then ``name``."""
        if toolset:
            found = self.tools.get(f"{toolset}:{name}")
            if found is not None:
                return found.model_copy(update={"name": name})
        return self.tools.get(name)

    # --- deciding

    def requirement(
        self,
        tool: str,
        side_effect: SideEffect,
        declared: bool,
        *,
        server: str | None = None,
        trusted: bool = False,
    ) -> Requirement:
        """What the policy says of a call to ``tool``; ``server`` is its MCP server, if any,
        and ``trusted`` whether that server is marked trusted."""
        matching = [r for r in self.rules if r.matches(tool, side_effect, server, trusted)]
        if side_effect == SideEffect.UNKNOWN:
            # The worst case: the strictest matching rule, not the first (sort is stable).
            matching.sort(key=lambda r: _STRICTNESS[r.action])
        if matching:
            rule = matching[0]
            return Requirement(
                action=rule.action,
                rule=rule.name,
                approvers=rule.approvers or self.approvers,
                expiry=rule.expiry or self.expiry,
                signatures_required=self.require_signatures
                if rule.require_signatures is None
                else rule.require_signatures,
            )
        if declared:
            return Requirement(
                action=Action.REQUIRE,
                rule=DECLARED_RULE,
                approvers=self.approvers,
                expiry=self.expiry,
                signatures_required=self.require_signatures,
            )
        return Requirement(action=Action.NOT_REQUIRED)

    def refusal(
        self,
        activity: str,
        header: CallHeader | None,
        spec: ToolSpec,
        *,
        server: str | None = None,
        trusted: bool = False,
    ) -> str | None:
        """Why ``activity`` must not run: the fail-closed check on the activity side, for a
        call scheduled outside the approval gate (or approved by someone this policy does
        not let decide). ``server`` is the MCP server of an MCP call, ``trusted`` whether
        this worker's registration trusts it; ``spec`` describes any other call."""
        if header is not None and server is not None:
            # An MCP call: the tool and its side effect come from the run's MCP snapshot.
            need = self.requirement(
                header.tool, header.side_effect, False, server=server, trusted=trusted
            )
        else:
            need = self.requirement(spec.name, spec.side_effect, spec.approval)
        if need.action is Action.NOT_REQUIRED:
            return None
        if need.action is Action.DENY:
            return f"tool {activity!r} is denied by policy rule {need.rule!r}; it was not run"
        approval = header.approval if header is not None else None
        if approval is None or approval.state != ApprovalState.APPROVED:
            return (
                f"tool {activity!r} needs approval (policy rule {need.rule!r}) but was scheduled "
                "without one, outside the runrecord approval gate; it was not run"
            )
        decider = approval.decided_by or ""
        if need.action is Action.REQUIRE and not self.may_decide(decider, need.approvers):
            return (
                f"tool {activity!r} was approved by {decider!r}, who may not approve it under "
                f"policy rule {need.rule!r}; it was not run"
            )
        return None

    def may_decide(self, approver: str, approvers: tuple[str, ...] | list[str]) -> bool:
        for allowed in approvers:
            if allowed == "*" or allowed == approver:
                return True
            if allowed.startswith("group:") and approver in self.groups.get(allowed[6:], ()):
                return True
        return False

    def verify(self, approver: str, message: bytes, signature: str | None) -> str | None:
        """None if ``signature`` is ``approver``'s over ``message``, else why not."""
        if not signature:
            return "unsigned: this policy requires signed decisions"
        key = self.keys.get(approver)
        if key is None:
            return f"no signing key for {approver!r} in the policy"
        kind, _, value = signature.partition(":")
        if kind != key.kind:
            return f"signature is {kind or 'untyped'}, but {approver!r} signs with {key.kind}"
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return "signature is not base64"
        if key.kind == "hmac-sha256":
            expected = hmac.new(key.secret, message, hashlib.sha256).digest()
            return None if hmac.compare_digest(raw, expected) else "signature does not verify"
        try:
            Ed25519PublicKey.from_public_bytes(key.public).verify(raw, message)
        except (InvalidSignature, ValueError):
            return "signature does not verify"
        return None


def signing_message(
    decision: str, run_id: str, tool_call_id: str, request_digest: str, approver: str, reason: str
) -> bytes:
    """The exact bytes an approver signs: binds the decision to this call and its arguments."""
    doc = {
        "decision": decision,
        "runId": run_id,
        "toolCallId": tool_call_id,
        "requestDigest": request_digest,
        "approver": approver,
        "reason": reason,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# --- parsing helpers


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError(f"{where} must be a table")
    return value


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)}")


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a list of names")
    return tuple(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{where} must be true or false")
    return value


def _rule(raw: Any, where: str) -> Rule:
    table = _table(raw, where)
    _only(
        table,
        {"name", "action", "tools", "side_effects", "approvers", "expiry", "require_signatures"},
        where,
    )
    name = table.get("name")
    if not isinstance(name, str) or not name or name.startswith("policy:"):
        raise PolicyError(f"{where} needs a name")
    effects = _names(table.get("side_effects", []), f"{where} side_effects")
    try:
        action = Action(table.get("action", "require"))
        side_effects = tuple(SideEffect(e) for e in effects)
    except ValueError as err:
        raise PolicyError(f"{where} ({name}): {err}") from None
    if action is Action.NOT_REQUIRED:
        raise PolicyError(f"{where} ({name}): action must be require, allow or deny")
    return Rule(
        name=name,
        action=action,
        tools=tuple(
            ToolPattern.parse(t, f"{where} ({name}) tools")
            for t in _names(table.get("tools", []), f"{where} tools")
        ),
        side_effects=side_effects,
        approvers=_names(table.get("approvers", []), f"{where} approvers"),
        expiry=parse_duration(table["expiry"], f"{where} expiry") if "expiry" in table else None,
        require_signatures=_bool(table["require_signatures"], f"{where} require_signatures")
        if "require_signatures" in table
        else None,
    )


# What a declared tool may do: every side effect but ``model`` and ``unknown``.
_DECLARABLE = [e.value for e in SideEffect if e not in (SideEffect.MODEL, SideEffect.UNKNOWN)]
# A name part of a [tools] key: no blank, no control character, no second ':'.
_TOOL_NAME = re.compile(r"[^\s:\x00-\x1f\x7f]+")


def _tool(key: str, raw: Any, where: str) -> ToolSpec:
    table = _table(raw, where)
    _only(
        table,
        {"side_effect", "approval", "compensate", "idempotent", "irreversible", "network"},
        where,
    )
    toolset, _, name = key.rpartition(":")
    if (
        not _TOOL_NAME.fullmatch(name)
        or (toolset and not _TOOL_NAME.fullmatch(toolset))
        or (not toolset and ":" in key)
    ):
        raise PolicyError(
            f"{where}: a tool is declared as name or toolset:name (no spaces, one ':')"
        )
    effect = table.get("side_effect")
    if effect not in _DECLARABLE:
        raise PolicyError(
            f"{where}: side_effect must be one of {', '.join(_DECLARABLE)}, "
            f"got {str(effect)[:40]!r}"
        )
    compensate = table.get("compensate")
    if compensate is not None and (not isinstance(compensate, str) or not compensate.strip()):
        raise PolicyError(f"{where}: compensate must name the activity that undoes the tool")
    flags: dict[str, Any] = {
        flag: _bool(table[flag], f"{where} {flag}")
        for flag in ("approval", "idempotent", "irreversible", "network")
        if flag in table
    }
    if compensate is not None and flags.get("irreversible"):
        raise PolicyError(f"{where}: a tool cannot be both irreversible and have a compensator")
    return ToolSpec(name=name, side_effect=SideEffect(effect), compensator=compensate, **flags)


def _key(raw: Any, where: str) -> ApproverKey:
    table = _table(raw, where)
    _only(table, {"ed25519_public_key", "hmac_key", "hmac_key_env"}, where)
    if len(table) != 1:
        raise PolicyError(
            f"{where} needs exactly one of ed25519_public_key, hmac_key, hmac_key_env"
        )
    if "ed25519_public_key" in table:
        try:
            public = base64.b64decode(str(table["ed25519_public_key"]), validate=True)
            Ed25519PublicKey.from_public_bytes(public)
        except (binascii.Error, ValueError):
            raise PolicyError(f"{where}: ed25519_public_key is not a base64 32-byte key") from None
        return ApproverKey("ed25519", public=public)
    if "hmac_key_env" in table:
        secret = os.environ.get(str(table["hmac_key_env"]), "")
        if not secret:
            raise PolicyError(f"{where}: environment variable {table['hmac_key_env']} is not set")
    else:
        secret = str(table["hmac_key"])
    if len(secret) < 16:
        raise PolicyError(f"{where}: an HMAC key needs at least 16 characters")
    return ApproverKey("hmac-sha256", secret=secret.encode())


def sign(policy: Policy, approver: str, message: bytes, private_key_pem: bytes | None) -> str:
    """Sign ``message`` as ``approver``: with their HMAC key from the policy, or their Ed25519
    private key (PEM, as ``runrecord keygen`` writes it)."""
    key = policy.keys.get(approver)
    if key is None:
        raise PolicyError(f"the policy lists no signing key for {approver!r}")
    if key.kind == "hmac-sha256":
        digest = hmac.new(key.secret, message, hashlib.sha256).digest()
        return "hmac-sha256:" + base64.b64encode(digest).decode()
    if private_key_pem is None:
        raise PolicyError(f"{approver!r} signs with Ed25519: pass the private key with --key")
    try:
        private = load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError):
        raise PolicyError("the private key is not an unencrypted PEM key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise PolicyError("the private key is not an Ed25519 key")
    return "ed25519:" + base64.b64encode(private.sign(message)).decode()


def _console_tokens(section: Any, where: str) -> dict[str, str]:
    """``[console.tokens]``: approver = "sha256:<hex of the token>" (never the token itself)."""
    console = _table(section, where)
    _only(console, {"tokens"}, where)
    tokens: dict[str, str] = {}
    for name, digest in _table(console.get("tokens", {}), f"{where} tokens").items():
        text = str(digest)
        hexpart = text.removeprefix("sha256:")
        if (
            not text.startswith("sha256:")
            or len(hexpart) != 64
            or not all(c in "0123456789abcdef" for c in hexpart)
        ):
            raise PolicyError(
                f'{where} tokens.{name}: give the token\'s digest as "sha256:<64 hex digits>" '
                "(`runrecord token NAME` makes a token and prints its digest)"
            )
        tokens[str(name)] = hexpart
    return tokens
