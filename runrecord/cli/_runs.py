"""``runrecord runs``: find runs by what they did, who decided, and how they ended."""

from __future__ import annotations

import typer

from runrecord.cli._query import (
    JSON_HELP,
    TIME_HELP,
    add_row,
    echo_json,
    millis,
    money,
    records,
    show_table,
    stamp,
    table,
    when,
)
from runrecord.records import ApprovalState, FinalStatus, SideEffect


def runs(
    side_effect: SideEffect = typer.Option(
        None,
        "--side-effect",
        case_sensitive=False,
        help="Runs that made a call of this class, e.g. `write`: runs that wrote files. "
        "Only calls that were let run count (not requested, denied or expired).",
    ),
    approval: ApprovalState = typer.Option(
        None,
        "--approval",
        case_sensitive=False,
        help="Runs with a call in this approval state, e.g. `denied`.",
    ),
    mcp_server: str = typer.Option(
        None, "--mcp-server", help="Runs that called a tool of this MCP server."
    ),
    mcp_available: str = typer.Option(
        None,
        "--mcp-available",
        help="Runs whose tool registry offered this MCP server when they started.",
    ),
    tool: str = typer.Option(None, "--tool", help="Runs that called this tool."),
    agent: str = typer.Option(None, "--agent", help="Runs of this agent id."),
    turn: str = typer.Option(None, "--turn", help="Runs triggered by this user turn."),
    status: FinalStatus = typer.Option(
        None, "--status", case_sensitive=False, help="Runs that ended (or stand) so."
    ),
    model: str = typer.Option(
        None, "--model", help="Runs configured with, or that called, this model (name)."
    ),
    prompt_version: str = typer.Option(
        None,
        "--prompt-version",
        help="Runs with this prompt version; `name@version` matches every template hash.",
    ),
    since: str = typer.Option(None, "--since", help=f"Started at or after. {TIME_HELP}"),
    until: str = typer.Option(None, "--until", help=f"Started before. {TIME_HELP}"),
    parent: str = typer.Option(None, "--parent", help="Sub-agent runs started by this run."),
    limit: int = typer.Option(50, "--limit", min=1, max=100_000, help="At most this many."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List runs, newest first. Filters combine: every one given must hold.

    \b
    Examples:
      runrecord runs --side-effect write --since 24h
      runrecord runs --approval denied --agent release-deployer
      runrecord runs --mcp-server git --json
    """
    from runrecord.recorder import RunFilter, find_runs

    run_filter = RunFilter(
        side_effect=side_effect,
        approval=approval,
        mcp_server=mcp_server,
        mcp_available=mcp_available,
        tool=tool,
        agent=agent,
        turn=turn,
        status=status,
        model=model,
        prompt_version=prompt_version,
        since=when(since, "--since"),
        until=when(until, "--until"),
        parent=parent,
        limit=limit,
    )
    with records() as conn:
        found = find_runs(conn, run_filter)
    if as_json:
        echo_json(found)
        return
    if not found:
        typer.echo("no runs match")
        return
    t = table("run", "agent", "status", "started (UTC)", "duration", "calls", "cost", "turn")
    for r in found:
        agent_text = (r.agent_id or "") + (f" {r.agent_version}" if r.agent_version else "")
        if r.depth:
            agent_text = f"{'  ' * r.depth}↳ {agent_text}"
        add_row(
            t,
            r.run_id,
            agent_text,
            r.final_status,
            stamp(r.started_at),
            millis(r.duration_ms),
            str(r.tool_calls),
            money(r.cost.total),
            r.turn_id or "",
        )
    show_table(t)
    if len(found) == limit:
        typer.echo(f"showing the newest {limit}; more may match (--limit)")
