"""What changed between a good run and a bad one, across their sub-agent runs too.

Both trees are read as ``load_tree`` reads them (the runs as RunRecords, costs rolled up),
but of each tool call only what the diff compares, one query per table for a whole tree:
runs may have thousands of calls. Configuration is compared field by field; tool calls and
sub-agent runs are aligned as one sequence in execution order, so an inserted call does not
make every later call look different. The explanation is the earliest change of the most
telling kind (see ``_TIERS``).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import Field
from sqlalchemy import Connection, Text, cast, func, select

from runrecord._settings import RunRecordError
from runrecord.recorder._queries import MAX_DEPTH, _among, check_text
from runrecord.recorder._rows import artifact_of, from_row
from runrecord.recorder._store import roll_up_costs
from runrecord.recorder._tables import ArtifactRow, AttemptRow, RunRow, ToolCallRow
from runrecord.records import Approval, Artifact, Cost, MCPCall, Record, RunRecord, ToolCall

# Lower tiers explain more: what the run was configured with comes before anything it did;
# an approval, outcome or a call that appeared or vanished before a retry; a retry before
# a changed argument or result (often a consequence); then artifacts, workers, totals.
_TIERS = {
    "config": 0,
    "approval": 1,
    "outcome": 1,
    "sequence": 1,
    "attempts": 2,
    "arguments": 3,
    "result": 3,
    "artifact": 4,
    "worker": 5,
    "status": 6,
    "cost": 6,
}
_HEX = re.compile(r"[0-9a-f]{32,}")


class RunSide(Record):
    run_id: str
    agent_id: str | None = None
    final_status: str
    started_at: datetime | None = None
    duration_ms: int | None = None
    tool_calls: int = 0
    cost: Cost = Field(default_factory=Cost)


class RunPair(Record):
    """A bad run and the good run it was aligned with (one side is null if unmatched)."""

    agent_id: str | None = None
    bad: RunSide | None = None
    good: RunSide | None = None


class Change(Record):
    """One difference. ``bad``/``good`` hold the values on each side."""

    kind: str
    change: str  # changed | added | removed
    agent_id: str | None = None
    bad_run_id: str | None = None
    good_run_id: str | None = None
    subject: str
    tool_call_id: str | None = None
    good_tool_call_id: str | None = None
    bad: Any = None
    good: Any = None
    summary: str


class RunDiff(Record):
    bad_run_id: str
    good_run_id: str
    explanation: str
    changes: list[Change] = Field(default_factory=list)
    runs: list[RunPair] = Field(default_factory=list)


def short(value: Any) -> str:
    """Hashes shortened to 8 hex digits, as people compare them."""
    if value is None:
        return "none"
    text = str(value)
    return _HEX.sub(lambda m: m.group(0)[:8] + "…", text)


@dataclass(slots=True)
class _Call:
    """What the diff compares of a tool call (its attempts: history's and the journal's)."""

    tool_call_id: str
    tool: str
    status: str
    approval_state: str
    approval: Approval | None
    attempts: int
    last_failure: str | None
    mcp: MCPCall | None
    input_refs: str | None  # the refs' JSON text: equal texts hold equal hashes
    output_refs: str | None
    cost: float
    scheduled_at: datetime | None
    worker_identity: str | None


@dataclass
class _Tree:
    """A run and its sub-agent runs, root first, with their calls and artifacts by run."""

    runs: list[RunRecord]
    calls: dict[str, list[_Call]]
    made: dict[str, dict[str, list[Artifact]]]


def _runs(conn: Connection, run_id: str) -> list[RunRecord]:
    """The run and its sub-agent runs in ``load_tree``'s order, one query per level."""
    columns = RunRow.__table__.c
    ordered: list[RunRecord] = []
    seen: set[str] = set()
    level = [run_id]
    for _ in range(MAX_DEPTH + 1):
        wanted = [r for r in dict.fromkeys(level) if r not in seen]
        if not wanted:
            break
        found = {
            row.run_id: row
            for row in conn.execute(select(*columns).where(_among(conn, RunRow.run_id, wanted)))
        }
        records = []
        for r in level:
            if r in found and r not in seen:
                seen.add(r)
                records.append(from_row(RunRecord, found[r]))
        ordered += records
        level = [child for record in records for child in record.child_run_ids]
    return ordered


def _tree(conn: Connection, run_id: str) -> _Tree:
    runs = _runs(conn, run_id)
    if not runs:
        return _Tree([], {}, {})
    ids = [r.run_id for r in runs]
    journaled = {
        (run, call): int(last)
        for run, call, last in conn.execute(
            select(AttemptRow.run_id, AttemptRow.tool_call_id, func.max(AttemptRow.attempt))
            .where(_among(conn, AttemptRow.run_id, ids))
            .group_by(AttemptRow.run_id, AttemptRow.tool_call_id)
        ).all()
    }
    c = ToolCallRow
    calls: dict[str, list[_Call]] = {run: [] for run in ids}
    for row in conn.execute(
        select(
            c.run_id,
            c.tool_call_id,
            c.tool,
            c.status,
            c.approval_state,
            c.approval,
            c.attempts,
            c.last_failure,
            c.mcp,
            cast(c.input_refs, Text),
            cast(c.output_refs, Text),
            c.cost,
            c.scheduled_at,
            c.worker_identity,
        )
        .where(_among(conn, c.run_id, ids))
        .order_by(c.run_id, c.scheduled_event_id)
    ).all():
        run, call_id, tool, status, state, approval, attempts, failure, mcp, *rest = row
        inputs, outputs, cost, scheduled_at, worker = rest
        calls[run].append(
            _Call(
                tool_call_id=call_id,
                tool=tool,
                status=status,
                approval_state=state,
                approval=None if approval is None else Approval.model_validate(approval),
                attempts=max(attempts or 0, journaled.get((run, call_id), 0)),
                last_failure=failure,
                mcp=None if mcp is None else MCPCall.model_validate(mcp),
                input_refs=inputs,
                output_refs=outputs,
                cost=cost or 0.0,
                scheduled_at=scheduled_at,
                worker_identity=worker,
            )
        )
    made: dict[str, dict[str, list[Artifact]]] = {run: {} for run in ids}
    for a in conn.execute(
        select(*ArtifactRow.__table__.c)
        .where(_among(conn, ArtifactRow.run_id, ids))
        .order_by(ArtifactRow.run_id, ArtifactRow.created_at, ArtifactRow.artifact_id)
    ).all():
        made[a.run_id].setdefault(a.tool_call_id, []).append(artifact_of(a))
    for record in runs:
        own = round(sum(call.cost for call in calls[record.run_id]), 8)
        record.cost = Cost(own=own, total=own)
    roll_up_costs(runs)
    return _Tree(runs, calls, made)


def last_good_run(conn: Connection, run: RunRecord) -> str | None:
    """The latest succeeded run of the same agent that started before ``run``."""
    if run.started_at is None:
        return None
    return conn.execute(
        select(RunRow.run_id)
        .where(
            RunRow.agent_id == run.agent_id,
            RunRow.final_status == "succeeded",
            RunRow.started_at < run.started_at,
            RunRow.run_id != run.run_id,
        )
        .order_by(RunRow.started_at.desc(), RunRow.run_id.desc())
        .limit(1)
    ).scalar()


def _side(record: RunRecord, calls: int) -> RunSide:
    duration = None
    if record.started_at and record.ended_at:
        duration = (record.ended_at - record.started_at) // timedelta(milliseconds=1)
    return RunSide(
        run_id=record.run_id,
        agent_id=record.agent_id,
        final_status=record.final_status,
        started_at=record.started_at,
        duration_ms=duration,
        tool_calls=calls,
        cost=record.cost,
    )


def execution_order(record: RunRecord, runs: dict[str, RunRecord]) -> list[ToolCall | RunRecord]:
    """The run's tool calls with its sub-agent runs (those in ``runs``) where they started."""
    return _in_order(record, list(record.tool_calls), runs)


_Step = TypeVar("_Step", ToolCall, _Call)


def _in_order(
    record: RunRecord, calls: list[_Step], runs: dict[str, RunRecord]
) -> list[_Step | RunRecord]:
    steps: list[_Step | RunRecord] = list(calls)
    for child_id in record.child_run_ids:
        child = runs.get(child_id)
        if child is None:
            continue  # not mirrored (yet)
        at = len(steps)
        if child.started_at is not None:
            for i, step in enumerate(steps):
                when = step.started_at if isinstance(step, RunRecord) else step.scheduled_at
                if when is not None and when > child.started_at:
                    at = i
                    break
        steps.insert(at, child)
    return steps


def _key(step: _Call | RunRecord) -> tuple[str, str | None]:
    return ("call", step.tool) if isinstance(step, _Call) else ("run", step.agent_id)


def _align(good: list[Any], bad: list[Any]) -> list[tuple[str, int, int, int, int]]:
    """difflib opcodes; the common head and tail are matched first (runs mostly agree, and
    SequenceMatcher is quadratic on long sequences of few distinct tools)."""
    head = 0
    while head < min(len(good), len(bad)) and good[head] == bad[head]:
        head += 1
    tail = 0
    while tail < min(len(good), len(bad)) - head and good[-1 - tail] == bad[-1 - tail]:
        tail += 1
    ops = [("equal", 0, head, 0, head)] if head else []
    middle = difflib.SequenceMatcher(
        None, good[head : len(good) - tail], bad[head : len(bad) - tail], autojunk=False
    )
    for op, g1, g2, b1, b2 in middle.get_opcodes():
        ops.append((op, g1 + head, g2 + head, b1 + head, b2 + head))
    if tail:
        ops.append(("equal", len(good) - tail, len(good), len(bad) - tail, len(bad)))
    return ops


def _hash_list(refs: str | None) -> list[str]:
    return [str(r["sha256"]) for r in json.loads(refs or "[]") or []]


def _approval_text(call: _Call) -> str:
    by = call.approval.decided_by if call.approval else None
    return f"{call.approval_state}" + (f" by {by}" if by else "")


def _hashes_text(good: list[str], bad: list[str], noun: str) -> str:
    if len(good) != len(bad):
        return f"{len(good)} → {len(bad)} {noun}s"
    changed = [i for i, (g, b) in enumerate(zip(good, bad, strict=True)) if g != b]
    i = changed[0]
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    return f"{noun} {i + 1}: {short(good[i])} → {short(bad[i])}{more}"


class _Differ:
    def __init__(self, bad: _Tree, good: _Tree) -> None:
        self.bad = {r.run_id: r for r in bad.runs}
        self.good = {r.run_id: r for r in good.runs}
        self.calls = {**good.calls, **bad.calls}
        self._made = {**good.made, **bad.made}
        self.root_bad = bad.runs[0].run_id
        self.changes: list[tuple[int, int, Change]] = []  # (tier, order, change)
        self.runs: list[RunPair] = []
        self._order = 0

    def add(self, tier: str, change: Change) -> None:
        self._order += 1
        self.changes.append((_TIERS[tier], self._order, change))

    def made(self, run: RunRecord) -> dict[str, list[Artifact]]:
        """The run's artifacts by the call that made them."""
        return self._made.get(run.run_id, {})

    def side(self, run: RunRecord) -> RunSide:
        return _side(run, len(self.calls.get(run.run_id, ())))

    def label(self, bad: RunRecord) -> str:
        return "" if bad.run_id == self.root_bad else f"{bad.agent_id} "

    # --- one aligned pair of runs

    def pair(self, bad: RunRecord, good: RunRecord) -> None:
        self.runs.append(RunPair(agent_id=bad.agent_id, bad=self.side(bad), good=self.side(good)))
        self.config(bad, good)
        bad_steps = _in_order(bad, self.calls.get(bad.run_id, []), self.bad)
        good_steps = _in_order(good, self.calls.get(good.run_id, []), self.good)
        for op, g1, g2, b1, b2 in _align(
            [_key(s) for s in good_steps], [_key(s) for s in bad_steps]
        ):
            if op == "equal":
                for g, b in zip(good_steps[g1:g2], bad_steps[b1:b2], strict=True):
                    if isinstance(g, _Call) and isinstance(b, _Call):
                        self.call(bad, good, b, g)
                    elif isinstance(g, RunRecord) and isinstance(b, RunRecord):
                        self.pair(b, g)
                continue
            for g in good_steps[g1:g2]:
                self.unmatched(bad, good, g, added=False)
            for b in bad_steps[b1:b2]:
                self.unmatched(bad, good, b, added=True)
        self.outcome(bad, good)

    def change(
        self, tier: str, kind: str, b_run: RunRecord, g_run: RunRecord, /, **fields: Any
    ) -> None:
        self.add(
            tier,
            Change(
                kind=kind,
                agent_id=b_run.agent_id,
                bad_run_id=b_run.run_id,
                good_run_id=g_run.run_id,
                **fields,
            ),
        )

    def one_side(
        self,
        tier: str,
        kind: str,
        b_run: RunRecord,
        g_run: RunRecord,
        /,
        added: bool,
        value: Any,
        **fields: Any,
    ) -> None:
        """Something only one run has: the bad one (``added``) or the good one."""
        self.change(
            tier,
            kind,
            b_run,
            g_run,
            change="added" if added else "removed",
            bad=value if added else None,
            good=None if added else value,
            **fields,
        )

    def config(self, bad: RunRecord, good: RunRecord) -> None:
        who = self.label(bad)

        def field(subject: str, b: Any, g: Any, text: str | None = None) -> None:
            if b != g:
                self.change(
                    "config",
                    "config",
                    bad,
                    good,
                    change="changed",
                    subject=subject,
                    bad=b,
                    good=g,
                    summary=text or f"{who}{subject} changed {short(g)} → {short(b)}",
                )

        def entry(subject: str, what: str, b: Record, g: Record) -> None:
            """Each field of a registry entry or server description, but its name."""
            b_entry, g_entry = b.to_json_dict(), g.to_json_dict()
            for key in b_entry:
                if key != "name":
                    field(
                        f"{subject}.{key}",
                        b_entry[key],
                        g_entry.get(key),
                        f"{who}{what} {key} changed "
                        f"{short(g_entry.get(key))} → {short(b_entry[key])}",
                    )

        field("agentVersion", bad.agent_version, good.agent_version)
        bm, gm = bad.model, good.model
        field(
            "model",
            bm and f"{bm.provider}/{bm.name}",
            gm and f"{gm.provider}/{gm.name}",
        )
        b_params = bm.parameters if bm else {}
        g_params = gm.parameters if gm else {}
        for key in sorted(set(b_params) | set(g_params)):
            field(f"model.parameters.{key}", b_params.get(key), g_params.get(key))
        field("promptVersion", bad.prompt_version, good.prompt_version)

        b_tools = {t.name: t for t in bad.tool_registry}
        g_tools = {t.name: t for t in good.tool_registry}
        for name in sorted(set(b_tools) | set(g_tools)):
            b_tool, g_tool = b_tools.get(name), g_tools.get(name)
            if b_tool is None or g_tool is None:
                present = b_tool is not None
                tool = b_tool or g_tool
                assert tool is not None
                self.one_side(
                    "config",
                    "config",
                    bad,
                    good,
                    added=present,
                    value=tool.to_json_dict(),
                    subject=f"toolRegistry.{name}",
                    summary=f"{who}tool {name} "
                    + ("added to the registry" if present else "no longer in the registry"),
                )
                continue
            entry(f"toolRegistry.{name}", f"tool {name}", b_tool, g_tool)
        # MCP servers: those the registry offers tools of, and those the run listed.
        b_info = {m.name: m for m in bad.mcp_servers}
        g_info = {m.name: m for m in good.mcp_servers}
        b_servers = {t.server for t in bad.tool_registry if t.server} | set(b_info)
        g_servers = {t.server for t in good.tool_registry if t.server} | set(g_info)
        for server in sorted(b_servers ^ g_servers):
            now = server in b_servers
            self.one_side(
                "config",
                "config",
                bad,
                good,
                added=now,
                value=server,
                subject=f"mcpServer.{server}",
                summary=f"{who}MCP server {server} "
                + ("now available" if now else "no longer available"),
            )
        for server in sorted(set(b_info) & set(g_info)):
            entry(f"mcpServer.{server}", f"MCP server {server}", b_info[server], g_info[server])

    def call(self, bad: RunRecord, good: RunRecord, b: _Call, g: _Call) -> None:
        name = f"{self.label(bad)}call {b.tool_call_id} {b.tool}"

        def differs(tier: str, key: str, b_value: Any, g_value: Any, summary: str) -> None:
            self.change(
                tier,
                "call",
                bad,
                good,
                change="changed",
                subject=f"call {b.tool_call_id} {b.tool}",
                tool_call_id=b.tool_call_id,
                good_tool_call_id=g.tool_call_id,
                bad={key: b_value},
                good={key: g_value},
                summary=summary,
            )

        if (b.approval_state, _approval_text(b)) != (g.approval_state, _approval_text(g)):
            differs(
                "approval",
                "approval",
                b.approval.to_json_dict() if b.approval else None,
                g.approval.to_json_dict() if g.approval else None,
                f"{name} {_approval_text(b)} (was {_approval_text(g)})",
            )
        if b.status != g.status:
            failure = b.last_failure
            differs(
                "outcome",
                "status",
                b.status,
                g.status,
                f"{name} {b.status} (was {g.status})" + (f": {failure}" if failure else ""),
            )
        b_mcp, g_mcp = b.mcp, g.mcp
        b_error = b_mcp.is_error if b_mcp else None
        g_error = g_mcp.is_error if g_mcp else None
        if b.status == g.status and bool(b_error) != bool(g_error):
            differs(
                "outcome",
                "isError",
                b_error,
                g_error,
                f"{name} "
                + ("returned an MCP error (was fine)" if b_error else "no longer returns an error"),
            )
        b_drift = b_mcp.drift if b_mcp else None
        if b_drift is not None and (g_mcp is None or g_mcp.drift is None):
            differs(
                "outcome",
                "drift",
                b_drift.to_json_dict(),
                None,
                f"{name} tool schema drifted since the run started"
                + (f" ({', '.join(b_drift.changed)})" if b_drift.changed else "")
                + (", call refused" if b_drift.refused else ""),
            )
        if b.attempts != g.attempts:
            differs(
                "attempts",
                "attempts",
                b.attempts,
                g.attempts,
                f"{name} took {_attempts(b.attempts)} (was {g.attempts})",
            )
        for what, b_refs, g_refs in (
            ("arguments", b.input_refs, g.input_refs),
            ("result", b.output_refs, g.output_refs),
        ):
            if b_refs == g_refs or (what == "result" and b.status != g.status):
                continue
            b_hashes, g_hashes = _hash_list(b_refs), _hash_list(g_refs)
            if b_hashes != g_hashes:
                noun = "argument" if what == "arguments" else "result"
                differs(
                    what,
                    f"{noun}Hashes",
                    b_hashes,
                    g_hashes,
                    f"{name} {what} changed ({_hashes_text(g_hashes, b_hashes, noun)})",
                )
        if round(b.cost, 8) != round(g.cost, 8):
            differs(
                "cost", "cost", b.cost, g.cost, f"{name} cost ${b.cost:.6f} (was ${g.cost:.6f})"
            )
        self.artifacts(bad, good, b.tool_call_id, g.tool_call_id)

    def artifacts(
        self, bad: RunRecord, good: RunRecord, b_call: str | None, g_call: str | None
    ) -> None:
        b_list = self.made(bad).get(b_call, []) if b_call else []
        g_list = self.made(good).get(g_call, []) if g_call else []
        if not b_list and not g_list:
            return
        # Pair the same URI first, then what is left by kind in order.
        pairs: list[tuple[Artifact | None, Artifact | None]] = []
        g_left = list(g_list)
        b_left = []
        for b in b_list:
            same = next((g for g in g_left if (g.kind, g.uri) == (b.kind, b.uri)), None)
            if same is not None:
                g_left.remove(same)
                pairs.append((b, same))
            else:
                b_left.append(b)
        for b in b_left:
            same = next((g for g in g_left if g.kind == b.kind), None)
            if same is not None:
                g_left.remove(same)
            pairs.append((b, same))
        pairs.extend((None, g) for g in g_left)
        who = self.label(bad)
        for b_art, g_art in pairs:
            call = f"call {b_call}" if b_art else f"good run's call {g_call}"
            if b_art is None or g_art is None:
                art = b_art or g_art
                assert art is not None
                self.one_side(
                    "artifact",
                    "artifact",
                    bad,
                    good,
                    added=b_art is not None,
                    value=art.to_json_dict(),
                    subject=f"artifact {art.kind} {art.uri}",
                    tool_call_id=b_call if b_art else None,
                    good_tool_call_id=g_call if g_art else None,
                    summary=f"{who}{call} "
                    + ("made" if b_art else "no longer made")
                    + f" {art.kind} {art.uri}",
                )
                continue
            fields = {
                k: (getattr(b_art, k), getattr(g_art, k))
                for k in ("uri", "sha256", "size")
                if getattr(b_art, k) != getattr(g_art, k)
            }
            if fields:
                text = ", ".join(f"{k} {short(g)} → {short(b)}" for k, (b, g) in fields.items())
                self.change(
                    "artifact",
                    "artifact",
                    bad,
                    good,
                    change="changed",
                    subject=f"artifact {b_art.kind} {b_art.uri}",
                    tool_call_id=b_call,
                    good_tool_call_id=g_call,
                    bad={k: b for k, (b, _) in fields.items()},
                    good={k: g for k, (_, g) in fields.items()},
                    summary=f"{who}{call} {b_art.kind} changed: {text}",
                )

    def unmatched(
        self, bad: RunRecord, good: RunRecord, step: _Call | RunRecord, *, added: bool
    ) -> None:
        """A step only one run took: new in the bad run (``added``) or missing from it."""
        who = self.label(bad)

        def on_its_side(value: Any) -> dict[str, Any]:
            return {"bad": value, "good": None} if added else {"bad": None, "good": value}

        if isinstance(step, _Call):
            c = step
            ids = on_its_side(c.tool_call_id)
            if added:
                text = (
                    f"call {c.tool_call_id} {c.tool} is new "
                    f"({c.status}; the good run had no such call)"
                )
            else:
                text = f"call {c.tool} is missing (the good run's call {c.tool_call_id})"
            self.one_side(
                "sequence",
                "call",
                bad,
                good,
                added=added,
                value={"tool": c.tool, "status": c.status},
                subject=f"call {c.tool_call_id} {c.tool}",
                tool_call_id=ids["bad"],
                good_tool_call_id=ids["good"],
                summary=who + text,
            )
            self.artifacts(bad, good, ids["bad"], ids["good"])
            return
        if added:
            text = f"sub-agent {step.agent_id} is new (run {step.run_id}, {step.final_status})"
        else:
            text = f"sub-agent {step.agent_id} was not started (the good run started {step.run_id})"
        self.one_side(
            "sequence",
            "sub_agent",
            bad,
            good,
            added=added,
            value={"runId": step.run_id},
            subject=f"sub-agent {step.agent_id}",
            summary=who + text,
        )
        self.runs.append(RunPair(agent_id=step.agent_id, **on_its_side(self.side(step))))

    def outcome(self, bad: RunRecord, good: RunRecord) -> None:
        who = self.label(bad)
        b_workers = _workers(self.calls.get(bad.run_id, []))
        g_workers = _workers(self.calls.get(good.run_id, []))
        if b_workers and g_workers and b_workers != g_workers:
            self.change(
                "worker",
                "worker",
                bad,
                good,
                change="changed",
                subject="workerIdentity",
                bad=sorted(b_workers),
                good=sorted(g_workers),
                summary=f"{who}calls ran on other workers: "
                f"{', '.join(sorted(g_workers))} → {', '.join(sorted(b_workers))}",
            )
        if bad.final_status != good.final_status:
            self.change(
                "status",
                "status",
                bad,
                good,
                change="changed",
                subject="finalStatus",
                bad=bad.final_status,
                good=good.final_status,
                summary=f"{who}run {bad.final_status} (was {good.final_status})"
                + (f": {bad.failure}" if bad.failure else ""),
            )
        if round(bad.cost.own, 8) != round(good.cost.own, 8):
            self.change(
                "cost",
                "cost",
                bad,
                good,
                change="changed",
                subject="cost.own",
                bad=bad.cost.own,
                good=good.cost.own,
                summary=f"{who}run cost ${bad.cost.own:.6f} (was ${good.cost.own:.6f})",
            )


def _attempts(n: int) -> str:
    return f"{n} attempt" + ("" if n == 1 else "s")


def _workers(calls: Iterable[_Call]) -> set[str]:
    return {c.worker_identity for c in calls if c.worker_identity}


def diff_runs(conn: Connection, bad_run_id: str, good_run_id: str | None = None) -> RunDiff:
    """Compare BAD with GOOD (default: the last succeeded run of BAD's agent before it)."""
    check_text(bad_run_id, "BAD")
    check_text(good_run_id, "GOOD")
    bad = _tree(conn, bad_run_id)
    if not bad.runs:
        raise RunRecordError(f"no run {bad_run_id!r} in the records database")
    root = bad.runs[0]
    if good_run_id is None:
        good_run_id = last_good_run(conn, root)
        if good_run_id is None:
            raise RunRecordError(
                f"no succeeded run of agent {root.agent_id!r} started before {bad_run_id!r}: "
                "name the run to compare with as GOOD"
            )
    if good_run_id == bad_run_id:
        raise RunRecordError("BAD and GOOD are the same run")
    good = _tree(conn, good_run_id)
    if not good.runs:
        raise RunRecordError(f"no run {good_run_id!r} in the records database")
    differ = _Differ(bad, good)
    differ.pair(root, good.runs[0])
    ranked = sorted(differ.changes, key=lambda t: (t[0], t[1]))
    explanation = (
        ranked[0][2].summary
        if ranked
        else "no difference in configuration, tool calls, artifacts or outcome"
    )
    return RunDiff(
        bad_run_id=bad_run_id,
        good_run_id=good_run_id,
        explanation=explanation,
        changes=[c for _, _, c in ranked],
        runs=differ.runs,
    )
