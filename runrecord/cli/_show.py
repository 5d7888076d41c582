"""``runrecord show``: a run as a tree — agent → sub-agents → tool calls → artifacts."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.tree import Tree

from runrecord._settings import RunRecordError, Settings
from runrecord.cli._stack import DEFAULT_UI
from runrecord.recorder import load_tree, open_engine, require_current
from runrecord.records import RunRecord

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "denied": "red",
    "running": "yellow",
    "scheduled": "yellow",
}


def ui_link(record: RunRecord, ui_url: str | None) -> str | None:
    if not ui_url:
        return None
    return f"{ui_url.rstrip('/')}/namespaces/{record.namespace}/workflows/{record.run_id}"


def _styled(status: str) -> str:
    style = _STATUS_STYLE.get(status, "white")
    return f"[{style}]{status}[/{style}]"


def render_tree(records: list[RunRecord], ui_url: str | None) -> Tree:
    by_id = {r.run_id: r for r in records}

    def add_run(parent: Tree | None, record: RunRecord) -> Tree:
        agent = record.agent_id or record.workflow_type
        version = f" {record.agent_version}" if record.agent_version else ""
        label = (
            f"[bold]{agent}{version}[/bold]  run [cyan]{record.run_id}[/cyan]  "
            f"{_styled(record.final_status)}  cost ${record.cost.total:.6f}"
        )
        if record.model:
            label += f"\n  model {record.model.provider}/{record.model.name}"
        if record.prompt_version:
            label += f"  prompt {record.prompt_version}"
        if record.turn_id:
            label += f"  turn {record.turn_id}"
        for server in record.mcp_servers:
            found = " ".join(p for p in (server.server_name, server.server_version) if p)
            trust = "trusted" if server.trusted else "untrusted"
            state = f"[red]{server.error}[/red]" if server.error else f"{server.tools} tools"
            label += f"\n  mcp {server.name} {found} ({server.transport}, {trust}): {state}"
        link = ui_link(record, ui_url)
        if link:
            label += f"\n  [link={link}]{link}[/link]"
        node = parent.add(label) if parent is not None else Tree(label)
        artifacts_by_call: dict[str, list[str]] = {}
        for a in record.artifacts:
            artifacts_by_call.setdefault(a.tool_call_id, []).append(f"{a.kind} {a.uri}")
        for call in record.tool_calls:
            approval = ""
            if call.approval_state != "not_required":
                decider = call.approval.decided_by if call.approval else None
                approval = f"  approval {call.approval_state}" + (
                    f" by {decider}" if decider else ""
                )
            duration = f"  {call.duration_ms} ms" if call.duration_ms is not None else ""
            cost = f"  ${call.cost:.6f}" if call.cost else ""
            attempts = call.retry_state.attempts
            tool = f"{call.mcp_server}/{call.tool}" if call.mcp_server else call.tool
            flags = "+network" if call.network else ""
            if call.mcp is not None and call.mcp.drift is not None:
                flags += "  [red]schema drift[/red]"
            call_node = node.add(
                f"#{call.tool_call_id} [bold]{tool}[/bold] [magenta]{call.side_effect}"
                f"{flags}[/magenta]  {_styled(call.status)}  {attempts} attempt"
                f"{'s' if attempts != 1 else ''}{duration}{approval}{cost}"
            )
            for text in artifacts_by_call.get(call.tool_call_id, []):
                call_node.add(f"[blue]artifact[/blue] {text}")
        for child_id in record.child_run_ids:
            child = by_id.get(child_id)
            if child is not None:
                add_run(node, child)
            else:
                node.add(f"sub-agent run {child_id} (not mirrored yet)")
        return node

    return add_run(None, records[0])


def print_records(records: list[RunRecord], *, as_json: bool, ui_url: str | None) -> None:
    if as_json:
        for r in records:
            r.temporal_ui_url = ui_link(r, ui_url)
        typer.echo(json.dumps([r.to_json_dict() for r in records], indent=2))
    else:
        Console().print(render_tree(records, ui_url))


def show(
    run_id: str = typer.Argument(..., help="The run id (the agent workflow's id)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the run and its sub-agent runs as a JSON array of RunRecords."
    ),
) -> None:
    """Show a run as a tree: agent, sub-agents, tool calls, artifacts."""
    settings = Settings.from_env()
    engine = open_engine(settings.database_url)
    require_current(engine)
    with engine.connect() as conn:
        records = load_tree(conn, run_id)
    if not records:
        raise RunRecordError(f"no run {run_id!r} in the records database")
    print_records(records, as_json=as_json, ui_url=settings.ui_url or DEFAULT_UI)
