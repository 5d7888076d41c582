"""The ``runrecord`` command line."""

from __future__ import annotations

import gc as garbage_collector
import os
import sys
import traceback

import typer

try:  # typer >= 0.20 vendors click; older typer depends on it
    from typer import _click as click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    import click  # type: ignore[no-redef]
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from runrecord._settings import RunRecordError
from runrecord.cli._approvals import approvals, approve, deny, keygen
from runrecord.cli._cost import cost
from runrecord.cli._db import db_app, schema
from runrecord.cli._diff import diff
from runrecord.cli._evidence import export, keys, verify
from runrecord.cli._gc import blob, gc
from runrecord.cli._journal import journal_app
from runrecord.cli._lineage import artifacts, lineage
from runrecord.cli._mirror import mirror_app
from runrecord.cli._repair import pause, replay, rerun, reset, resume, rollback
from runrecord.cli._run import demo, dev, worker
from runrecord.cli._runs import runs
from runrecord.cli._show import show
from runrecord.cli._ui import token, ui

DEBUG_ENV = "RUNRECORD_DEBUG"
# The reader of stdout went away (`runrecord runs | head`): end quietly with 1, as click does.
STDOUT_GONE = 1

app = typer.Typer(
    name="runrecord",
    help=(
        "Run records for AI agents on Temporal: what each run did, with which tools, "
        "who approved it, and what changed.\n\n"
        "Start with `runrecord demo`; run `runrecord dev` for a local stack. Ask the records "
        "with `runs`, `show`, `diff`, `artifacts`, `lineage` and `cost` (each takes --json)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(demo)
app.command()(dev)
app.command()(worker)
app.command()(show)
app.command()(runs)
app.command()(diff)
app.command()(artifacts)
app.command()(lineage)
app.command()(cost)
app.command()(schema)
app.command()(gc)
app.command()(blob)
app.command()(verify)
app.command()(export)
app.command()(keys)
app.command()(approvals)
app.command()(approve)
app.command()(deny)
app.command()(keygen)
app.command()(pause)
app.command()(resume)
app.command()(rollback)
app.command()(reset)
app.command()(rerun)
app.command()(replay)
app.command()(ui)
app.command()(token)
app.add_typer(db_app, name="db")
app.add_typer(mirror_app, name="mirror")
app.add_typer(journal_app, name="journal")


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one line on stderr and a non-zero exit, never a traceback."""
    command = typer.main.get_command(app)
    try:
        # Without standalone mode click hands back typer.Exit's code instead of raising it.
        code = command.main(args=argv, prog_name="runrecord", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        if exc.ctx is not None:
            click.echo(exc.ctx.get_help())
        return 2
    except click_exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"runrecord: error: {exc.format_message()}{hint}", err=True)
        return 2
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        click.echo("runrecord: aborted", err=True)
        return 130
    except click_exceptions.ClickException as exc:
        click.echo(f"runrecord: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except RunRecordError as exc:
        click.echo(f"runrecord: error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return STDOUT_GONE
    except SystemExit as exc:  # click's own exits (a broken pipe, say) must not tear down
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        # A bug, not bad input: still one line, with the traceback on request.
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        from runrecord._redaction import Redactor

        detail = Redactor().text(str(exc)).strip().splitlines()
        click.echo(
            f"runrecord: error: unexpected {type(exc).__name__}"
            + (f": {detail[0][:500]}" if detail else "")
            + f" (set {DEBUG_ENV}=1 for the traceback)",
            err=True,
        )
        return 70
    return code if isinstance(code, int) else 0


def exit_now(code: int) -> None:
    """Exit without interpreter teardown: temporalio's client threads can abort a finalizing
    interpreter (sdk-python issue 300), which would turn a finished command into a crash."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a reader gone away must not let the exit fall back to teardown
    os._exit(code)


def run() -> None:
    """The process entry point (``runrecord``, ``python -m runrecord.cli``)."""
    # Imports leave ~180k objects that every full garbage collection would scan again; a
    # query reading thousands of calls would spend half its time there.
    garbage_collector.freeze()
    code = 70
    try:
        code = main()
    except BrokenPipeError:
        code = STDOUT_GONE
    finally:
        # Whatever happened, never reach interpreter teardown (see exit_now).
        exit_now(code)


if __name__ == "__main__":
    run()
