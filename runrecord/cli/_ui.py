"""``runrecord ui``: the operator console in a browser (approvals inbox, runs, diff, lineage)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

import typer

from runrecord._settings import RunRecordError, Settings
from runrecord.cli._stack import DEFAULT_UI, load_policy, records_engine
from runrecord.cli._temporal import control_client

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


async def serve_console(
    settings: Settings,
    *,
    host: str,
    port: int,
    trusted_user_header: str | None,
    started: asyncio.Event | None = None,
) -> None:
    """Serve the console until cancelled; its Temporal client connects on first need."""
    import uvicorn

    from runrecord.console import ConsoleConfig, create_app

    policy = load_policy(settings)
    stack: list[Any] = []
    lock = asyncio.Lock()

    async def client() -> Any:
        async with lock:
            if not stack:
                manager = control_client()
                stack.append((manager, (await manager.__aenter__())[1]))
            return stack[0][1]

    config = ConsoleConfig(
        engine=records_engine(settings),
        client=client,
        policy=policy,
        trusted_user_header=trusted_user_header,
        ui_url=settings.ui_url or DEFAULT_UI,
        tokens=policy.console_tokens,
        keys_dir=settings.home / "keys",
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host=host, port=port, log_level="warning")
    )

    @asynccontextmanager
    async def running() -> Any:
        try:
            yield
        finally:
            for manager, _ in stack:
                await manager.__aexit__(None, None, None)

    async with running():
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if task.done():
            task.result()
            raise RunRecordError(f"cannot serve the console on {host}:{port}")
        if started is not None:
            started.set()
        await task


def ui(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535, help="Port to listen on."),
    trusted_user_header: str = typer.Option(
        None,
        "--trusted-user-header",
        help=(
            "Header an authenticating reverse proxy sets to the signed-in person "
            "(e.g. X-Forwarded-User from oauth2-proxy). Off unless given: only then may "
            "people decide without an approver token."
        ),
    ),
) -> None:
    r"""Serve the operator console: approvals inbox, runs, run inspector, diff, lineage.

    Reading needs no identity. Deciding needs one: the --trusted-user-header a proxy sets,
    or an approver token from the policy file's \[console.tokens]. Decisions go through the
    same signal and checks as `runrecord approve`.
    """
    if trusted_user_header is not None and (
        not trusted_user_header.strip() or not trusted_user_header.isascii()
    ):
        raise RunRecordError("--trusted-user-header must be an ASCII header name")
    settings = Settings.from_env()
    typer.echo(f"Console: http://{host}:{port}/  (Ctrl-C stops it)")
    try:
        asyncio.run(
            serve_console(settings, host=host, port=port, trusted_user_header=trusted_user_header)
        )
    except KeyboardInterrupt:
        pass


def token(
    name: str = typer.Argument(..., help="The approver the token is for."),
) -> None:
    r"""Make a console approver token for NAME.

    Give NAME the token; put the digest line it prints in the policy file's
    \[console.tokens] table. Only the digest is stored."""
    import hashlib
    import secrets

    if not name.strip() or not name.isprintable() or len(name) > 200 or "=" in name:
        raise RunRecordError("NAME must be a printable approver name")
    made = secrets.token_urlsafe(32)
    typer.echo(f"token for {name} (give it to them, it is not shown again):")
    typer.echo(f"  {made}")
    typer.echo("add to the policy file:")
    typer.echo("  [console.tokens]")
    typer.echo(f'  "{name}" = "sha256:{hashlib.sha256(made.encode()).hexdigest()}"')
