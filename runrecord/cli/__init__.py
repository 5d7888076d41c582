"""The ``runrecord`` command line."""

from __future__ import annotations

import gc as garbage_collector
import importlib
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

DEBUG_ENV = "RUNRECORD_DEBUG"
# The reader of stdout went away (`runrecord runs | head`): end quietly with 1, as click does.
STDOUT_GONE = 1

HELP = (
    "Run records for AI agents on Temporal: what each run did, with which tools, "
    "who approved it, and what changed.\n\n"
    "Start with `runrecord demo`; run `runrecord dev` for a local stack. Ask the records "
    "with `runs`, `show`, `diff`, `artifacts`, `lineage` and `cost` (each takes --json)."
)

# Every command (a function) and command group (a Typer), in help order, with the module that
# defines it. A command's module is imported only when the command runs or help lists them
# all: `runrecord runs` never loads what `approve` or `worker` need.
COMMANDS = {
    "demo": "runrecord.cli._run",
    "dev": "runrecord.cli._run",
    "worker": "runrecord.cli._run",
    "show": "runrecord.cli._show",
    "runs": "runrecord.cli._runs",
    "diff": "runrecord.cli._diff",
    "artifacts": "runrecord.cli._lineage",
    "lineage": "runrecord.cli._lineage",
    "cost": "runrecord.cli._cost",
    "schema": "runrecord.cli._db",
    "gc": "runrecord.cli._gc",
    "blob": "runrecord.cli._gc",
    "verify": "runrecord.cli._evidence",
    "export": "runrecord.cli._evidence",
    "keys": "runrecord.cli._evidence",
    "approvals": "runrecord.cli._approvals",
    "approve": "runrecord.cli._approvals",
    "deny": "runrecord.cli._approvals",
    "keygen": "runrecord.cli._approvals",
    "pause": "runrecord.cli._repair",
    "resume": "runrecord.cli._repair",
    "rollback": "runrecord.cli._repair",
    "reset": "runrecord.cli._repair",
    "rerun": "runrecord.cli._repair",
    "replay": "runrecord.cli._repair",
    "ui": "runrecord.cli._ui",
    "token": "runrecord.cli._ui",
}
GROUPS = {
    "db": ("runrecord.cli._db", "db_app"),
    "mirror": ("runrecord.cli._mirror", "mirror_app"),
    "journal": ("runrecord.cli._journal", "journal_app"),
}

# Commands that answer one question (or send one decision) and exit.
ANSWER_AND_EXIT = frozenset(
    {"runs", "show", "diff", "artifacts", "lineage", "cost", "schema"}
    | {"approvals", "approve", "deny"}
)


def _root() -> None:
    # A callback keeps a one-command application a group: `runrecord runs ...`, not `runs`.
    pass


def application(only: str | None = None) -> typer.Typer:
    """The `runrecord` application: every command, or only the command or group ``only``."""
    cli = typer.Typer(
        name="runrecord",
        help=HELP,
        callback=_root,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name, module in COMMANDS.items():
        if only in (None, name):
            cli.command()(getattr(importlib.import_module(module), name))
    for name, (module, attribute) in GROUPS.items():
        if only in (None, name):
            cli.add_typer(getattr(importlib.import_module(module), attribute), name=name)
    return cli


# The whole application, built on first use (PEP 562 ``__getattr__`` below).
app: typer.Typer


def __getattr__(name: str) -> typer.Typer:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    global app
    app = application()
    return app


def _chosen(argv: list[str]) -> str | None:
    """The command or group ``argv`` names, if it names one; else None (help, a typo)."""
    return argv[0] if argv and (argv[0] in COMMANDS or argv[0] in GROUPS) else None


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one line on stderr and a non-zero exit, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(application(_chosen(args)))
    try:
        # Without standalone mode click hands back typer.Exit's code instead of raising it.
        code = command.main(args=args, prog_name="runrecord", standalone_mode=False)
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
    if _chosen(sys.argv[1:]) in ANSWER_AND_EXIT:
        # Start-up alone would run dozens of collections (a tenth of its time), and a query
        # reading thousands of calls would scan the ~200k objects its imports left again and
        # again; these commands make little cyclic garbage before they exit.
        garbage_collector.disable()
    else:
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
