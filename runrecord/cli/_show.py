"""``runrecord show``: a run as a tree — agent → sub-agents → tool calls → artifacts."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

import typer

from runrecord._settings import RunRecordError, Settings
from runrecord.cli._query import millis, records
from runrecord.cli._stack import DEFAULT_UI
from runrecord.records import ModelCall, RunRecord, ToolCall, to_json_list

if TYPE_CHECKING:
    from rich.tree import Tree

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "denied": "red",
    "expired": "red",
    "terminated": "red",
    "cancelled": "red",
    "escalated": "red",
    "rolled_back": "magenta",
    "rollback_incomplete": "red",
    "compensated": "magenta",
    "running": "yellow",
    "scheduled": "yellow",
    "awaiting_approval": "yellow",
    "paused": "yellow",
}


def ui_link(record: RunRecord, ui_url: str | None) -> str | None:
    if not ui_url:
        return None
    namespace, run_id = quote(record.namespace, safe=""), quote(record.run_id, safe="")
    return f"{ui_url.rstrip('/')}/namespaces/{namespace}/workflows/{run_id}"


def _styled(status: str) -> str:
    style = _STATUS_STYLE.get(status, "white")
    return f"[{style}]{status}[/{style}]"


def _run_label(record: RunRecord, ui_url: str | None) -> str:
    from rich.markup import escape

    agent = escape(record.agent_id or record.workflow_type)
    version = f" {escape(record.agent_version)}" if record.agent_version else ""
    duration = ""
    if record.started_at and record.ended_at:
        duration = "  " + millis((record.ended_at - record.started_at) // timedelta(milliseconds=1))
    cost = f"cost ${record.cost.own:.6f}"
    if record.cost.total != record.cost.own:
        cost += f" (${record.cost.total:.6f} with sub-agents)"
    label = (
        f"[bold]{agent}{version}[/bold]  run [cyan]{escape(record.run_id)}[/cyan]  "
        f"{_styled(record.final_status)}{duration}  {cost}"
    )
    model = f"{record.model.provider}/{record.model.name}" if record.model else None
    shown = (
        ("model", model),
        ("prompt", record.prompt_version),
        ("turn", record.turn_id),
        ("rerun of", record.rerun_of),
    )
    details = [f"{what} {escape(value)}" for what, value in shown if value]
    if details:
        label += "\n  " + "  ".join(details)
    for server in record.mcp_servers:
        found = " ".join(p for p in (server.server_name, server.server_version) if p)
        trust = "trusted" if server.trusted else "untrusted"
        state = f"[red]{escape(server.error)}[/red]" if server.error else f"{server.tools} tools"
        label += (
            f"\n  mcp {escape(server.name)} {escape(found)} ({server.transport}, {trust}): {state}"
        )
    if record.consumes:
        label += "\n  received artifacts " + escape(", ".join(record.consumes))
    if record.failure:
        label += f"\n  [red]{escape(record.failure)}[/red]"
    link = ui_link(record, ui_url)
    if link:
        label += f"\n  [link={link}]{escape(link)}[/link]"
    return label


def _tokens(model: ModelCall) -> str:
    parts = [f"{model.input_tokens} in", f"{model.output_tokens} out"]
    optional = (
        (model.cache_read_tokens, "cache read"),
        (model.cache_write_tokens, "cache write"),
        (model.reasoning_tokens, "reasoning"),
    )
    parts += [f"{count} {what}" for count, what in optional if count]
    return "tokens " + ", ".join(parts)


def _model_line(model: ModelCall) -> str:
    """What a model call asked and got: model, prompt version, tokens, why it stopped, cost."""
    from rich.markup import escape

    parts = [f"model {model.provider}/{model.model}"]
    if model.prompt_version:
        parts.append(f"prompt {model.prompt_version}")
    parts.append(_tokens(model))
    if model.finish_reason:
        parts.append(f"finish {model.finish_reason}")
    if model.priced:
        parts.append(f"cost ${model.cost:.6f}")
    else:
        parts.append(f"cost unknown (no price for {model.provider}/{model.model})")
    return escape("  ".join(parts))


def _call_details(call: ToolCall, record: RunRecord, model: ModelCall | None) -> str:
    """The lines under a call's headline: its agent when not the run's, its model, its trace."""
    from rich.markup import escape

    lines = []
    if call.agent_id and call.agent_id != record.agent_id:
        lines.append(f"agent {escape(call.agent_id)}")
    if model is not None:
        lines.append(_model_line(model))
    if call.trace_id:
        span = f" span {escape(call.span_id)}" if call.span_id else ""
        lines.append(f"trace {escape(call.trace_id)}{span}")
    return "".join(f"\n  {line}" for line in lines)


def _call_label(call: ToolCall) -> str:
    from rich.markup import escape

    attempts = call.retry_state.attempts
    tool = f"{call.mcp_server}/{call.tool}" if call.mcp_server else call.tool
    flags = "+network" if call.network else ""
    if call.mcp is not None and call.mcp.drift is not None:
        flags += "  [red]schema drift[/red]"
    text = (
        f"#{escape(call.tool_call_id)} [bold]{escape(tool)}[/bold] "
        f"[magenta]{call.side_effect}{flags}[/magenta]  {_styled(call.status)}  "
        f"{attempts} attempt{'s' if attempts != 1 else ''}"
    )
    if call.duration_ms is not None:
        text += f"  {millis(call.duration_ms)}"
    if call.approval_state != "not_required":
        approval = call.approval
        text += f"  approval {_styled(call.approval_state)}"
        if approval and approval.decided_by:
            text += f" by {escape(approval.decided_by)}"
        if approval and approval.reason:
            text += f" ({escape(approval.reason)})"
    if call.cost:
        text += f"  ${call.cost:.6f}"
    if call.consumes:
        text += "  consumed " + escape(", ".join(call.consumes))
    if call.compensates:
        text += f"  undoes #{escape(call.compensates)}"
    if call.status in ("failed", "timed_out") and call.retry_state.last_failure:
        text += f"\n  [red]{escape(call.retry_state.last_failure)}[/red]"
    return text


def render_tree(records: list[RunRecord], ui_url: str | None) -> Tree:
    from rich.markup import escape
    from rich.tree import Tree

    from runrecord.recorder import execution_order

    by_id = {r.run_id: r for r in records}

    def add_run(parent: Tree | None, record: RunRecord) -> Tree:
        label = _run_label(record, ui_url)
        node = parent.add(label) if parent is not None else Tree(label)
        artifacts_by_call: dict[str, list[str]] = {}
        for a in record.artifacts:
            artifacts_by_call.setdefault(a.tool_call_id, []).append(
                f"[blue]artifact[/blue] {escape(a.artifact_id)} {escape(a.kind)} {escape(a.uri)}"
            )
        models = {m.tool_call_id: m for m in record.model_calls}
        for step in execution_order(record, by_id):
            if isinstance(step, RunRecord):
                add_run(node, step)
                continue
            model = models.get(step.tool_call_id)
            call_node = node.add(_call_label(step) + _call_details(step, record, model))
            if len(step.retry_state.history) > 1:
                for attempt in step.retry_state.history:
                    if attempt.error:
                        call_node.add(
                            f"attempt {attempt.attempt} {attempt.outcome}: {escape(attempt.error)}"
                        )
            for op in step.operations:
                who = f" by {op.by}" if op.by else ""
                why = f" ({op.reason})" if op.reason else ""
                call_node.add(escape(f"{op.operation}{who}{why} at {op.at:%Y-%m-%d %H:%M:%S}"))
            for text in artifacts_by_call.get(step.tool_call_id, []):
                call_node.add(text)
        for refused in record.approval_rejections:
            target = f"#{refused.tool_call_id} " if refused.tool_call_id else ""
            node.add(
                f"[red]refused {refused.decision}[/red] {escape(target)}by "
                f"{escape(refused.approver or '?')}: {escape(refused.reason)}"
            )
        if record.rollback is not None:
            undone = ", ".join(
                [f"#{c}" for c in record.rollback.compensated]
                + [f"{c.run_id} #{c.tool_call_id}" for c in record.rollback.sub_agent_compensated]
            )
            undone = undone or "nothing"
            text = f"[magenta]rollback[/magenta] by {escape(record.rollback.requested_by)}: undid "
            text += escape(undone)
            for missed in record.rollback.not_undone:
                where = f"{missed.run_id} " if missed.run_id else ""
                text += escape(
                    f"; not undone {where}#{missed.tool_call_id} {missed.tool} ({missed.why})"
                )
            node.add(text)
        for child_id in record.child_run_ids:
            if child_id not in by_id:
                node.add(f"sub-agent run {escape(child_id)} (not mirrored yet)")
        return node

    return add_run(None, records[0])


def print_records(records: list[RunRecord], *, as_json: bool, ui_url: str | None) -> None:
    if as_json:
        for r in records:
            r.temporal_ui_url = ui_link(r, ui_url)
        typer.echo(json.dumps(to_json_list(records), indent=2))
    else:
        from rich.console import Console

        Console().print(render_tree(records, ui_url))


def show(
    run_id: str = typer.Argument(..., help="The run id (the agent workflow's id)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the run and its sub-agent runs as a JSON array of RunRecords."
    ),
) -> None:
    """Show a run as a tree: agent, sub-agents, tool calls, artifacts.

    Each tool call shows its side effect, status, attempts, duration, approval and who
    decided it, and cost; under it the agent that made it (when not the run's), for a model
    call the model, prompt version, tokens, finish reason and cost, and the trace and span
    it ran in when the worker traces. Sub-agent runs appear where they were started. The Temporal UI
    link is under each run (TEMPORAL_UI_URL, default the dev server's).
    """
    if "\x00" in run_id:
        raise RunRecordError("RUN must not contain NUL characters")
    from runrecord.recorder import load_tree

    settings = Settings.from_env()
    with records() as conn:
        found = load_tree(conn, run_id)
    if not found:
        raise RunRecordError(f"no run {run_id!r} in the records database")
    print_records(found, as_json=as_json, ui_url=settings.ui_url or DEFAULT_UI)
