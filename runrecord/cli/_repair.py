"""``runrecord pause``, ``resume``, ``rollback``, ``reset``, ``rerun`` and ``replay``: repair runs.

The commands only; what they do is in ``_control``, imported when one runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from runrecord._settings import RunRecordError
from runrecord.cli._temporal import (
    REASON_FILE_OPTION,
    RUN_ARGUMENT,
    acting_as,
    control_client,
    typed_reason,
)

if TYPE_CHECKING:
    from runrecord.cli._control import ResetResult
    from runrecord.records import Rollback

_AS = typer.Option(None, "--as", help="Who acts (default: your OS user name).")


_CALL = typer.Option(
    None, "--call", help="Only this pending call (Temporal's activity pause), not the whole run."
)


def _pause_command(paused: bool, doc: str) -> Callable[..., None]:
    """``pause`` or ``resume``: one command, told which way it goes."""
    what = "pause" if paused else "resume"

    def command(
        run_id: str = RUN_ARGUMENT,
        reason: str = typer.Option(None, "--reason", help=f"Why: recorded with the {what}."),
        reason_file: str = REASON_FILE_OPTION,
        name: str = _AS,
        call: str = _CALL,
    ) -> None:
        why = typed_reason(reason, reason_file, default=None if paused else "resumed")
        if not why:
            if paused:
                raise RunRecordError("give a reason with --reason or --reason-file")
            why = "resumed"
        _pause_or_resume(paused, run_id, call, why, name)

    command.__name__ = command.__qualname__ = what
    command.__doc__ = doc
    return command


pause = _pause_command(
    True,
    """Pause RUN with Temporal's native workflow pause: no new tool calls until resumed.

    With --call, pause only that pending call: its current attempt is cancelled and no
    other starts until it is resumed; the rest of the run goes on.
    """,
)
resume = _pause_command(False, "Resume a paused RUN, or with --call one paused call of it.")


def _pause_or_resume(
    paused: bool, run_id: str, call: str | None, reason: str, name: str | None
) -> None:
    from runrecord.cli._control import pause_call, pause_run, resume_call, resume_run

    by = acting_as(name)

    async def main() -> None:
        async with control_client() as (_, client):
            if call is None:
                act = pause_run if paused else resume_run
                await act(client, run_id, by=by, reason=reason)
            elif paused:
                await pause_call(client, run_id, call, by=by, reason=reason)
            else:
                await resume_call(client, run_id, call, by=by, reason=reason)

    asyncio.run(main())
    what = f"call {call} of run {run_id}" if call is not None else f"run {run_id}"
    typer.echo(f"{what} {'paused' if paused else 'resumed'} by {by}")


def rollback(
    run_id: str = typer.Argument(..., help="The run (workflow id); it must still be open."),
    to: str = typer.Option(
        None, "--to", help="Keep this call and those before it; undo the ones after (default all)."
    ),
    reason: str = typer.Option(None, "--reason", help="Why: recorded with the rollback."),
    reason_file: str = REASON_FILE_OPTION,
    name: str = _AS,
    wait: float = typer.Option(120.0, "--wait", help="Seconds to wait for the report."),
) -> None:
    """Undo RUN's completed side-effecting calls, newest first, with their compensators.

    The run stops, runs each tool's declared compensator, and ends `rolled_back`, or
    `rollback_incomplete` listing what it could not undo (irreversible calls, calls without a
    compensator, failed compensators); then this command exits non-zero.
    """
    from runrecord._redaction import default_redactor
    from runrecord.cli._control import request_rollback, rollback_report
    from runrecord.records import FinalStatus
    from runrecord.workflows._rollback import summary

    by = acting_as(name)
    why = typed_reason(reason, reason_file)

    async def main() -> Rollback:
        async with control_client() as (_, client):
            await request_rollback(client, run_id, by=by, reason=why, to_call=to)
            return await rollback_report(client, run_id, wait)

    report = asyncio.run(main())
    said = default_redactor().text(summary(report))  # a run on older code may not have
    if report.outcome == FinalStatus.ROLLBACK_INCOMPLETE:
        raise RunRecordError(f"rollback of {run_id} incomplete: {said}")
    typer.echo(f"run {run_id} {said}")


def reset(
    run_id: str = RUN_ARGUMENT,
    to_call: str = typer.Option(..., "--to-call", help="Reset to just before this call."),
    reason: str = typer.Option(None, "--reason", help="Why: recorded with the reset."),
    reason_file: str = REASON_FILE_OPTION,
    reapply_approvals: bool = typer.Option(
        False,
        "--reapply-approvals",
        help="Re-apply the approvals and denials given after that point (default: ask again).",
    ),
    name: str = _AS,
) -> None:
    """Reset RUN to just before call CALL; the run continues from there as a new Temporal run.

    Approval signals after that point are not re-applied unless --reapply-approvals, so a
    person's approval is never silently reused; other signals are sent again in order.
    """
    from runrecord.cli._control import reset_run

    by = acting_as(name)
    why = typed_reason(reason, reason_file, default="repair") or "repair"

    async def main() -> ResetResult:
        async with control_client() as (_, client):
            return await reset_run(
                client, run_id, to_call, by=by, reason=why, reapply_approvals=reapply_approvals
            )

    result = asyncio.run(main())
    typer.echo(
        f"run {run_id} reset to before call {to_call} (event {result.event_id}): Temporal run "
        f"{result.old_temporal_run_id} -> {result.new_temporal_run_id}; "
        f"{result.resent} signal(s) sent again, {result.withheld} runrecord signal(s) withheld"
    )


def rerun(
    run_id: str = typer.Argument(..., help="The run (workflow id) to run again."),
    new_id: str = typer.Option(None, "--id", help="Id for the new run (default RUN-rerun-<hex>)."),
) -> None:
    """Start RUN again as a new run with the same inputs and configuration (rerunOf: RUN)."""
    from runrecord.cli._control import rerun_run

    async def main() -> str:
        async with control_client(recording=True) as (_, client):
            return await rerun_run(client, run_id, new_id)

    typer.echo(f"started run {asyncio.run(main())} (rerun of {run_id})")


def replay(
    run_id: str = RUN_ARGUMENT,
    module: str = typer.Option(
        None,
        "--module",
        "-m",
        help=(
            "Module with the WORKFLOWS list, and PLUGINS (e.g. the OpenAI Agents plugin) if its "
            "agents run with framework plugins (default: the example agents)."
        ),
    ),
) -> None:
    """Replay RUN's history against the current worker code: OK, or the first nondeterminism."""
    from runrecord.cli._control import replay_run
    from runrecord.cli._stack import load_policy

    async def main() -> str | None:
        async with control_client() as (settings, client):
            return await replay_run(client, run_id, module, load_policy(settings))

    failure = asyncio.run(main())
    if failure is not None:
        raise RunRecordError(f"replay of {run_id} failed: {failure}")
    typer.echo(f"OK: run {run_id} replays deterministically against the current code")
