"""``runrecord cost``: spend by agent, model, turn or tool, sub-agents rolled up."""

from __future__ import annotations

import typer

from runrecord.cli._options import AsJson, filter_option
from runrecord.cli._query import (
    TIME_HELP,
    add_row,
    answered,
    money,
    records,
    show_table,
    table,
    when,
)
from runrecord.records import CostDimension

LINES = 100
"""Lines a report shows unless told otherwise (``--limit``): a report by turn over a day
may have thousands."""


def cost(
    by: CostDimension = typer.Option(
        CostDimension.AGENT, "--by", case_sensitive=False, help="How to group the spend."
    ),
    since: str = filter_option("--since", f"Runs started at or after. {TIME_HELP}"),
    until: str = filter_option("--until", f"Runs started before. {TIME_HELP}"),
    agent: str = filter_option("--agent", "Only runs of this agent id."),
    turn: str = filter_option("--turn", "Only runs of this user turn."),
    limit: int = typer.Option(
        LINES,
        "--limit",
        min=0,
        max=10_000_000,
        help="At most this many lines, the most expensive; 0 for every line.",
    ),
    as_json: AsJson = False,
) -> None:
    """What runs spent (USD), most expensive first.

    Sub-agent runs count with the runs that started them: `--by agent` shows each agent's
    own spend and its total with the sub-agents it delegated to; the filters pick runs and
    always bring their sub-agent runs along.
    """
    from runrecord.recorder import cost_by

    with records() as conn:
        lines = cost_by(
            conn,
            by,
            since=when(since, "--since"),
            until=when(until, "--until"),
            agent=agent,
            turn=turn,
            limit=limit + 1 if limit else None,  # one more: to say whether lines were left out
        )
    more = bool(limit) and len(lines) > limit
    lines = lines[:limit] if limit else lines
    if more:
        typer.echo(
            f"showing the {limit} most expensive lines; more match (--limit 0 for all)", err=True
        )
    if answered(lines, as_json, "no runs match"):
        return
    headers = [str(by), "runs", "calls", "own cost" if by is CostDimension.AGENT else "cost"]
    if by is CostDimension.AGENT:
        headers.append("with sub-agents")
    if by is CostDimension.MODEL:
        headers += ["input tokens", "output tokens"]
    t = table(*headers)
    for line in lines:
        row = [line.key or "(none)", str(line.runs), str(line.calls), money(line.cost)]
        if by is CostDimension.AGENT:
            row.append(money(line.total))
        if by is CostDimension.MODEL:
            row += [str(line.input_tokens or 0), str(line.output_tokens or 0)]
        add_row(t, *row)
    show_table(t)
