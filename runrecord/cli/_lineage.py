"""``runrecord artifacts`` and ``lineage``: what a turn produced, and where it came from."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from runrecord._settings import RunRecordError
from runrecord.cli._options import AsJson
from runrecord.cli._query import (
    add_row,
    answered,
    echo_json,
    records,
    show_table,
    stamp,
    table,
)

if TYPE_CHECKING:
    from runrecord.recorder import CallRef


def _decided(call: CallRef) -> str:
    if call.approval_state == "not_required":
        return ""
    by = call.approval.decided_by if call.approval else None
    return f"{call.approval_state}" + (f" by {by}" if by else "")


def artifacts(
    turn: str = typer.Option(..., "--turn", help="The user turn (its id, as in `runs`)."),
    as_json: AsJson = False,
) -> None:
    """Every artifact created by a user turn, across all the agents it triggered."""
    from runrecord.recorder import turn_artifacts

    with records() as conn:
        found = turn_artifacts(conn, turn)
    if answered(found, as_json, f"no artifacts created by turn {turn!r}"):
        return
    t = table("artifact", "kind", "uri", "agent", "run", "call", "approval", "created (UTC)")
    for item in found:
        a, call = item.artifact, item.produced_by
        add_row(
            t,
            a.artifact_id,
            a.kind,
            a.uri,
            (call.agent_id if call else a.agent_id) or "",
            a.run_id,
            f"{a.tool_call_id} {call.tool}" if call else a.tool_call_id,
            _decided(call) if call else "",
            stamp(a.created_at),
        )
    show_table(t)


def lineage(
    artifact: str = typer.Argument(..., help="Artifact id (as `artifacts` shows), or its URI."),
    as_json: AsJson = False,
) -> None:
    """Where an artifact came from and where it went.

    The chain turn → agent → sub-agent → tool call (with its approval) → artifact, then
    every later tool call or sub-agent run that consumed it, and what they produced.
    """
    from runrecord.recorder import lineage as find_lineage

    with records() as conn:
        found = find_lineage(conn, artifact)
    if not found:
        raise RunRecordError(f"no artifact {artifact!r} in the records database")
    if as_json:
        echo_json(found)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.tree import Tree

    console = Console()
    for item in found:
        a = item.artifact
        root = Tree(f"turn [cyan]{escape(item.turn_id or '?')}[/cyan]")
        node = root
        for link in item.chain:
            node = node.add(
                f"[bold]{escape(link.agent_id or '')}[/bold]"
                + (f" {escape(link.agent_version)}" if link.agent_version else "")
                + f"  run [cyan]{escape(link.run_id)}[/cyan]  {link.final_status}"
            )
        call = item.produced_by
        if call is not None:
            decided = _decided(call)
            node = node.add(
                f"call #{escape(call.tool_call_id)} [bold]{escape(call.tool)}[/bold] "
                f"[magenta]{call.side_effect}[/magenta]  {call.status}"
                + (f"  approval {escape(decided)}" if decided else "")
                + (f"  mcp {escape(call.mcp_server)}" if call.mcp_server else "")
            )
        made = node.add(
            f"[blue]artifact[/blue] {escape(a.artifact_id)} {escape(a.kind)} {escape(a.uri)}"
            + (f"  sha256 {escape(a.sha256[:12])}…" if a.sha256 else "")
        )
        if not item.consumed_by:
            made.add("not consumed by any later call or sub-agent")
        for consumer in item.consumed_by:
            agent = escape(consumer.agent_id or "")
            if consumer.call is not None:
                c = consumer.call
                text = (
                    f"consumed by {agent} run [cyan]{escape(consumer.run_id)}[/cyan] "
                    f"call #{escape(c.tool_call_id)} [bold]{escape(c.tool)}[/bold] {c.status}"
                )
            else:
                text = f"passed to sub-agent {agent} run [cyan]{escape(consumer.run_id)}[/cyan]"
            used = made.add(text)
            for produced in consumer.produced:
                used.add(f"which produced artifact {escape(produced)}")
        console.print(root)
