"""The console's routes: every page reads the records database; decisions go to Temporal."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine, bindparam, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.service import RPCError

from runrecord._settings import RunRecordError
from runrecord.recorder import RunFilter, diff_runs, find_runs, lineage, load_tree, parse_when
from runrecord.recorder._tables import RunEventRow, ToolCallRow
from runrecord.records import RunRecord
from runrecord.workflows import Policy

CSRF_COOKIE = "runrecord_csrf"
TOKEN_COOKIE = "runrecord_token"
_TEMPLATES = Path(__file__).parent / "templates"
_PAGE = 25
_DECIDED = ("approved", "denied", "expired")

# One-click filters: the seed's questions.
QUICK_FILTERS: tuple[tuple[str, dict[str, str]], ...] = (
    ("wrote", {"side_effect": "write"}),
    ("denied approvals", {"approval": "denied"}),
    ("failed", {"status": "failed"}),
    ("escalated", {"status": "escalated"}),
    ("waiting", {"status": "awaiting_approval"}),
    ("last 24 h", {"since": "24h"}),
)
_FILTER_FIELDS = (
    "side_effect",
    "approval",
    "mcp_server",
    "tool",
    "agent",
    "turn",
    "status",
    "model",
    "since",
    "until",
)


@dataclass
class ConsoleConfig:
    """What the console needs: the records, a Temporal client, the policy and who decides."""

    engine: Engine
    client: Callable[[], Awaitable[Client]]
    policy: Policy = field(default_factory=Policy)
    trusted_user_header: str | None = None
    ui_url: str | None = None
    # Approver tokens: approver -> sha256 hex of the token (the policy's [console.tokens]).
    tokens: Mapping[str, str] = field(default_factory=dict)
    # Where approvers' Ed25519 private keys (NAME.pem) are, if the console may sign for them.
    keys_dir: Path | None = None


class BadInput(Exception):
    """Input a page cannot use: shown as a clear error page with status 400."""


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(_TEMPLATES)),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["stamp"] = _stamp
    env.filters["money"] = lambda v: f"${v:.4f}" if v else "$0"
    env.filters["left"] = _time_left
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
    env.globals["quick_filters"] = [(label, urlencode(q)) for label, q in QUICK_FILTERS]
    return env


def _stamp(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _time_left(value: datetime | None) -> str:
    if value is None:
        return ""
    left = value - datetime.now(UTC)
    if left <= timedelta(0):
        return "expired"
    minutes = int(left.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _text(value: str | None, what: str, *, limit: int = 2000) -> str | None:
    """A query or form value a page may use: printable text of bounded length."""
    if value is None or value == "":
        return None
    if len(value) > limit or any(not c.isprintable() for c in value):
        raise BadInput(f"{what} must be printable text of at most {limit} characters")
    return value


class Console:
    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.env = _env()

    # --- plumbing

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        html = self.env.get_template(name).render(
            csrf=token,
            who=self.identity(request),
            ui_url=self.config.ui_url,
            request=request,
            **values,
        )
        response = HTMLResponse(html, status_code=status)
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict")
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' "
            "'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def error(self, request: Request, message: str, status: int = 400) -> Response:
        return self.page(request, "error.html", status=status, message=message)

    def identity(self, request: Request) -> str | None:
        """Who is deciding: the trusted proxy header, or the approver an approver token names."""
        header = self.config.trusted_user_header
        if header:
            person = (request.headers.get(header) or "").strip()
            if person and person.isprintable() and len(person) <= 200:
                return person
        token = request.cookies.get(TOKEN_COOKIE) or ""
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        for approver, known in self.config.tokens.items():
            if hmac.compare_digest(known, digest):
                return approver
        return None

    def csrf_ok(self, request: Request, form: Any) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE) or ""
        sent = str(form.get("csrf") or "")
        return bool(cookie) and hmac.compare_digest(cookie, sent)

    async def records(self, fn: Callable[..., Any], *args: Any) -> Any:
        def work() -> Any:
            with self.config.engine.connect() as conn:
                return fn(conn, *args)

        return await asyncio.to_thread(work)

    def wrap(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except (BadInput, RunRecordError, ValueError) as err:
                return self.error(request, str(err).splitlines()[0] if str(err) else "bad input")
            except RPCError as err:
                return self.error(request, f"Temporal did not answer: {err.message}", status=503)

        return endpoint

    # --- pages

    async def approvals(self, request: Request) -> Response:
        from runrecord.cli._approvals import pending_approvals

        started = time.perf_counter()
        client = await self.config.client()
        pending = await pending_approvals(client)
        decided = await self.records(_decided_calls, 50)
        return self.page(
            request,
            "approvals.html",
            pending=pending,
            decided=decided,
            verdicts=request.query_params.getlist("verdict"),
            server_ms=int((time.perf_counter() - started) * 1000),
        )

    async def decide(self, request: Request) -> Response:
        from runrecord.cli._approvals import send_decision

        form = await request.form()
        if not self.csrf_ok(request, form):
            return self.error(request, "the form's CSRF token is missing or wrong", status=403)
        who = self.identity(request)
        if who is None:
            return self.error(
                request,
                "deciding needs an identity: sign in through the proxy that sets the trusted "
                "user header, or use an approver token",
                status=403,
            )
        decision = str(form.get("decision") or "")
        if decision not in ("approve", "deny"):
            raise BadInput("decision must be approve or deny")
        reason = _text(str(form.get("reason") or ""), "reason", limit=4000)
        if not reason:
            raise BadInput("give a reason for the decision")
        picked = [str(v) for v in form.getlist("call")]
        if not picked:
            raise BadInput("pick at least one call")
        client = await self.config.client()
        verdicts: list[str] = []
        for value in picked[:100]:
            run_id, _, call_id = value.rpartition("/")
            if not run_id or not call_id:
                raise BadInput(f"{value[:80]!r} is not RUN/CALL")
            try:
                outcome = await send_decision(
                    client,
                    run_id,
                    call_id,
                    decision,
                    approver=who,
                    reason=reason,
                    policy=self.config.policy,
                    private_key=self.private_key(who),
                )
                verdicts.append(f"{run_id}/{call_id}: {outcome.message}")
            except RunRecordError as err:
                verdicts.append(f"{run_id}/{call_id}: {err}")
        query = urlencode([("verdict", v) for v in verdicts])
        return RedirectResponse(f"/approvals?{query}", status_code=303)

    def private_key(self, approver: str) -> bytes | None:
        """The approver's Ed25519 key, when this server holds it (``keys_dir/NAME.pem``)."""
        folder = self.config.keys_dir
        safe = approver.replace("-", "").replace("_", "").replace(".", "").replace("@", "")
        if folder is None or not safe.isalnum() or not safe.isascii() or ".." in approver:
            return None
        path = folder / f"{approver}.pem"
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError:
            return None

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.page(request, "login.html")
        form = await request.form()
        if not self.csrf_ok(request, form):
            return self.error(request, "the form's CSRF token is missing or wrong", status=403)
        token = str(form.get("token") or "").strip()
        digest = hashlib.sha256(token.encode()).hexdigest()
        if not token or not any(
            hmac.compare_digest(known, digest) for known in self.config.tokens.values()
        ):
            return self.error(request, "that approver token is not in the policy", status=403)
        response = RedirectResponse("/approvals", status_code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    async def runs(self, request: Request) -> Response:
        started = time.perf_counter()
        params = request.query_params
        chosen = {k: _text(params.get(k), k.replace("_", "-"), limit=255) for k in _FILTER_FIELDS}
        values: dict[str, Any] = {k: v for k, v in chosen.items() if v}
        for key in ("since", "until"):
            if key in values:
                values[key] = parse_when(values[key], what=f"--{key}")
        before = _text(params.get("before"), "before", limit=64)
        if before:  # the page after the run (start time, run id) that ended the last one
            at = datetime.fromisoformat(before)
            after = _text(params.get("before_run"), "before run", limit=255) or ""
            values["before"] = (
                (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC),
                after,
            )
        found = await self.records(find_runs, RunFilter(**values, limit=_PAGE + 1))
        more = len(found) > _PAGE
        found = found[:_PAGE]
        keep = {k: v for k, v in chosen.items() if v}
        next_page = None
        last = found[-1] if found else None
        if more and last is not None and last.started_at is not None:
            at = last.started_at  # SQLite gives UTC back without its zone
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            next_page = urlencode({**keep, "before": at.isoformat(), "before_run": last.run_id})
        return self.page(
            request,
            "runs.html",
            runs=found,
            chosen=keep,
            next_page=next_page,
            server_ms=int((time.perf_counter() - started) * 1000),
        )

    async def run(self, request: Request) -> Response:
        started = time.perf_counter()
        run_id = _text(request.path_params["run_id"], "run id", limit=255) or ""
        tree: list[RunRecord] = await self.records(load_tree, run_id)
        if not tree:
            return self.error(request, f"no run {run_id!r} in the records database", status=404)
        events = await self.records(_timeline, run_id)
        return self.page(
            request,
            "run.html",
            root=tree[0],
            events=events,
            children=_children(tree),
            models={m.tool_call_id: m for r in tree for m in r.model_calls},
            server_ms=int((time.perf_counter() - started) * 1000),
        )

    async def diff(self, request: Request) -> Response:
        started = time.perf_counter()
        bad = _text(request.query_params.get("bad"), "bad run", limit=255)
        good = _text(request.query_params.get("good"), "good run", limit=255)
        if not bad:
            raise BadInput("name the run that went wrong: /diff?bad=RUN[&good=RUN]")
        result = await self.records(diff_runs, bad, good)
        return self.page(
            request,
            "diff.html",
            diff=result,
            server_ms=int((time.perf_counter() - started) * 1000),
        )

    async def lineage(self, request: Request) -> Response:
        artifact = _text(request.path_params["artifact"], "artifact", limit=1024) or ""
        chains = await self.records(lineage, artifact)
        if not chains:
            return self.error(request, f"no artifact {artifact!r} in the records", status=404)
        return self.page(request, "lineage.html", chains=chains, artifact=artifact)


def _children(tree: list[RunRecord]) -> dict[str, list[RunRecord]]:
    by_parent: dict[str, list[RunRecord]] = {}
    for record in tree[1:]:
        by_parent.setdefault(record.parent_run_id or "", []).append(record)
    return by_parent


def _timeline(conn: Any, run_id: str) -> list[Any]:
    """The run's workflow-level events (signals, pauses, resets, children), in order."""
    return list(
        conn.execute(
            select(RunEventRow)
            .where(RunEventRow.workflow_id == run_id)
            .order_by(RunEventRow.event_time, RunEventRow.event_id)
            .limit(500)
        ).all()
    )


def _decided_calls(conn: Any, limit: int) -> list[dict[str, Any]]:
    """The latest decisions people made (not the policy), newest first."""
    rows = conn.execute(
        select(
            ToolCallRow.run_id,
            ToolCallRow.tool_call_id,
            ToolCallRow.tool,
            ToolCallRow.side_effect,
            ToolCallRow.approval_state,
            ToolCallRow.approval,
            ToolCallRow.ended_at,
        )
        # Written into the SQL, so PostgreSQL always sees the index of decided calls applies.
        .where(ToolCallRow.approval_state.in_(bindparam("decided", _DECIDED, literal_execute=True)))
        .order_by(ToolCallRow.ended_at.desc().nulls_last())
        .limit(limit * 4)
    ).all()
    decided = []
    for row in rows:
        approval = row.approval or {}
        by = approval.get("decidedBy") or ""
        if by.startswith("policy:"):
            continue
        decided.append(
            {
                "run_id": row.run_id,
                "tool_call_id": row.tool_call_id,
                "tool": row.tool,
                "side_effect": row.side_effect,
                "state": row.approval_state,
                "by": by,
                "at": approval.get("decidedAt") or "",
                "reason": approval.get("reason") or "",
            }
        )
    return decided[:limit]


def create_app(config: ConsoleConfig) -> Starlette:
    """The console as an ASGI app (``runrecord ui`` serves it with uvicorn)."""
    console = Console(config)

    async def home(request: Request) -> Response:
        return RedirectResponse("/approvals", status_code=303)

    routes = [
        Route("/", home),
        Route("/approvals", console.wrap(console.approvals)),
        Route("/approvals/decide", console.wrap(console.decide), methods=["POST"]),
        Route("/login", console.wrap(console.login), methods=["GET", "POST"]),
        Route("/runs", console.wrap(console.runs)),
        Route("/runs/{run_id:path}", console.wrap(console.run)),
        Route("/diff", console.wrap(console.diff)),
        Route("/lineage/{artifact:path}", console.wrap(console.lineage)),
    ]
    return Starlette(routes=routes)


__all__ = ["ConsoleConfig", "create_app"]
