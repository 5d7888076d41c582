"""``runrecord runs``: find runs by what they did, who decided, and how they ended."""

from __future__ import annotations

import typer

from runrecord.cli._options import AsJson, filter_option
from runrecord.cli._query import (
    TIME_HELP,
    add_row,
    answered,
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
    side_effect: SideEffect = filter_option(
        "--side-effect",
        "Runs that made a call of this class, e.g. `write`: runs that wrote files. "
        "Only calls that were let run count (not requested, denied or expired).",
        case_sensitive=False,
    ),
    approval: ApprovalState = filter_option(
        "--approval",
        "Runs with a call in this approval state, e.g. `denied`.",
        case_sensitive=False,
    ),
    mcp_server: str = filter_option("--mcp-server", "Runs that called a tool of this MCP server."),
    mcp_available: str = filter_option(
        "--mcp-available", "Runs whose tool registry offered this MCP server when they started."
    ),
    tool: str = filter_option("--tool", "Runs that called this tool."),
    agent: str = filter_option("--agent", "Runs of this agent id."),
    turn: str = filter_option("--turn", "Runs triggered by this user turn."),
    status: FinalStatus = filter_option(
        "--status", "Runs that ended (or stand) so.", case_sensitive=False
    ),
    model: str = filter_option(
        "--model", "Runs configured with, or that called, this model (name)."
    ),
    prompt_version: str = filter_option(
        "--prompt-version",
        "Runs with this prompt version; `name@version` matches every template hash.",
    ),
    since: str = filter_option("--since", f"Started at or after. {TIME_HELP}"),
    until: str = filter_option("--until", f"Started before. {TIME_HELP}"),
    parent: str = filter_option("--parent", "Sub-agent runs started by this run."),
    limit: int = typer.Option(50, "--limit", min=1, max=100_000, help="At most this many."),
    as_json: AsJson = False,
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
    if answered(found, as_json, "no runs match"):
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
