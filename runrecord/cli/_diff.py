"""``runrecord diff``: what changed between the last good run and this bad one."""

from __future__ import annotations

import typer

from runrecord.cli._options import AsJson
from runrecord.cli._query import (
    add_row,
    echo_json,
    millis,
    money,
    records,
    show_table,
    table,
)


def diff(
    bad: str = typer.Argument(..., help="The run that went wrong."),
    good: str = typer.Argument(
        None,
        help="The run to compare with. Default: the last succeeded run of the same agent "
        "that started before BAD.",
    ),
    as_json: AsJson = False,
) -> None:
    """Compare two runs, sub-agent runs included; the first line is the likeliest cause.

    Compares configuration (model and parameters, prompt version, tool registry and
    schema hashes, MCP servers), the aligned sequence of tool calls (added, removed, or
    changed: arguments, outcome, approval, attempts), artifacts, workers, cost and durations.
    """
    from runrecord.recorder import diff_runs

    with records() as conn:
        result = diff_runs(conn, bad, good)
    if as_json:
        echo_json(result)
        return
    typer.echo(result.explanation)
    typer.echo(f"bad {result.bad_run_id}  vs  good {result.good_run_id}")
    if result.changes:
        t = table("agent", "what", "change", "detail")
        for c in result.changes:
            add_row(t, c.agent_id or "", c.kind, c.change, c.summary)
        show_table(t)
    pairs = table(
        "agent", "bad run", "status", "duration", "cost", "good run", "status", "duration", "cost"
    )
    for p in result.runs:
        b, g = p.bad, p.good
        add_row(
            pairs,
            p.agent_id or "",
            b.run_id if b else "—",
            b.final_status if b else "",
            millis(b.duration_ms) if b else "",
            money(b.cost.own) if b else "",
            g.run_id if g else "—",
            g.final_status if g else "",
            millis(g.duration_ms) if g else "",
            money(g.cost.own) if g else "",
        )
    show_table(pairs)
