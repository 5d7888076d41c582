"""The operator console in a real browser: Debian's Chromium driven by Playwright.

Decisions made on the page reach the runs as the same signals `runrecord approve` sends, with
the identity an authenticating proxy puts in the trusted header; forged forms are refused;
hostile values are shown as text. Screenshots go to $RUNRECORD_SCREENSHOTS (default
test-artifacts/screenshots), which CI keeps.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Engine
from temporalio.client import Client, WorkflowFailureError

from runrecord.console import ConsoleConfig, create_app
from runrecord.recorder import Mirror, load_run
from runrecord.worker import Journal
from tests import control_agents as agents
from tests.test_approvals import waiting_for, worker

CHROMIUM = os.environ.get("RUNRECORD_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(
    os.environ.get("RUNRECORD_SCREENSHOTS")
    or Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
)
# Flags a root CI machine with a closed network needs (no sandbox, no background fetches).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def console(engine: Engine, client: Client) -> AsyncIterator[str]:
    """The console app served on a free port, deciding as the proxy's X-Forwarded-User."""

    async def temporal() -> Client:
        return client

    app = create_app(
        ConsoleConfig(engine=engine, client=temporal, trusted_user_header="X-Forwarded-User")
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the console did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def browser(user: str | None) -> AsyncIterator[object]:
    """A page of headless Chromium, behind a proxy that signs ``user`` in (None: nobody)."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"Chromium is missing at {CHROMIUM}: apt-get install chromium", pytrace=False)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        headers = {"X-Forwarded-User": user} if user else {}
        context = await chromium.new_context(
            extra_http_headers=headers, viewport={"width": 1400, "height": 900}
        )
        try:
            yield await context.new_page()
        finally:
            await chromium.close()


async def _start(client: Client, queue: str, target: str) -> tuple[str, object]:
    run_id = f"console-{target}-{uuid.uuid4().hex[:6]}"
    handle = await client.start_workflow(agents.Deployer.run, [target], id=run_id, task_queue=queue)
    await waiting_for(client, run_id, "1")
    return run_id, handle


async def _mirrored(client: Client, engine: Engine, *run_ids: str) -> None:
    mirror = Mirror(client, engine)
    for run_id in run_ids:
        await mirror.sync_run(run_id)


def _shot(name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / name


async def test_deciding_from_the_inbox_runs_or_stops_the_tools_and_records_the_proxy_user(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        good_run, good = await _start(client, queue, "inbox-good")
        bad_run, bad = await _start(client, queue, "inbox-bad")
        async with console(engine, client) as url, browser("alice") as page:
            await page.goto(f"{url}/approvals")  # type: ignore[attr-defined]
            rows = page.locator("tr.pending-call")  # type: ignore[attr-defined]
            assert await rows.count() >= 2
            await page.screenshot(path=str(_shot("inbox.png")), full_page=True)  # type: ignore[attr-defined]

            # Approve one call.
            await page.check(f'input[value="{good_run}/1"]')  # type: ignore[attr-defined]
            await page.fill("#reason", "checked the target")  # type: ignore[attr-defined]
            await page.click("#approve")  # type: ignore[attr-defined]
            await page.wait_for_selector(".verdict")  # type: ignore[attr-defined]
            assert await good.result() == ["deployed inbox-good"]  # type: ignore[attr-defined]

            # Deny the other, with a reason that is hostile HTML.
            await page.check(f'input[value="{bad_run}/1"]')  # type: ignore[attr-defined]
            await page.fill("#reason", HOSTILE)  # type: ignore[attr-defined]
            await page.click("#deny")  # type: ignore[attr-defined]
            await page.wait_for_selector(".verdict")  # type: ignore[attr-defined]
            with pytest.raises(WorkflowFailureError):
                await bad.result()  # type: ignore[attr-defined]
            assert agents.ran("deploy", "inbox-bad") == []

            await _mirrored(client, engine, good_run, bad_run)
            with engine.connect() as conn:
                approved = load_run(conn, good_run)
                denied = load_run(conn, bad_run)
            assert approved is not None and denied is not None
            call = approved.tool_calls[0]
            assert (call.approval_state, call.approval and call.approval.decided_by) == (
                "approved",
                "alice",
            )
            assert denied.final_status == "escalated"
            assert denied.tool_calls[0].approval and denied.tool_calls[0].approval.decided_by == (
                "alice"
            )

            # The decided list shows the hostile reason as text; no script ran.
            await page.goto(f"{url}/approvals")  # type: ignore[attr-defined]
            decided = await page.inner_text("#decided")  # type: ignore[attr-defined]
            assert "<script>window.pwned = 1</script>" in decided
            assert await page.evaluate("window.pwned") is None  # type: ignore[attr-defined]

            # The run inspector and the diff page render the runs.
            await page.goto(f"{url}/runs/{good_run}")  # type: ignore[attr-defined]
            assert "alice" in await page.inner_text(f"#call-{good_run}-1 .by")  # type: ignore[attr-defined]
            await page.screenshot(path=str(_shot("run-inspector.png")), full_page=True)  # type: ignore[attr-defined]
            await page.goto(f"{url}/diff?bad={bad_run}&good={good_run}")  # type: ignore[attr-defined]
            explanation = await page.inner_text("#explanation")  # type: ignore[attr-defined]
            assert explanation.strip()
            assert bad_run in await page.inner_text("#pairs")  # type: ignore[attr-defined]
            await page.screenshot(path=str(_shot("diff.png")), full_page=True)  # type: ignore[attr-defined]


async def test_a_forged_form_and_an_anonymous_decision_are_refused_and_the_call_stays_waiting(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        run_id, handle = await _start(client, queue, "forged")
        async with console(engine, client) as url:
            async with browser("mallory") as page:
                await page.goto(f"{url}/approvals")  # type: ignore[attr-defined]
                # A form posted from elsewhere carries no CSRF token.
                forged = await page.request.post(  # type: ignore[attr-defined]
                    f"{url}/approvals/decide",
                    form={"call": f"{run_id}/1", "decision": "approve", "reason": "forged"},
                )
                assert forged.status == 403
                assert "CSRF" in await forged.text()
            async with browser(None) as page:
                # Nobody signed in: the page reads, but a decision is refused.
                await page.goto(f"{url}/approvals")  # type: ignore[attr-defined]
                await page.check(f'input[value="{run_id}/1"]')  # type: ignore[attr-defined]
                await page.fill("#reason", "anonymous")  # type: ignore[attr-defined]
                await page.click("#approve")  # type: ignore[attr-defined]
                assert "needs an identity" in await page.inner_text("#error")  # type: ignore[attr-defined]
        request = await waiting_for(client, run_id, "1")
        assert request.tool == "deploy"
        assert agents.ran("deploy", "forged") == []
        await handle.cancel()  # type: ignore[attr-defined]


async def test_a_batch_approval_of_three_calls_runs_all_three(
    temporal_address: str, journal: Journal, engine: Engine
) -> None:
    async with worker(temporal_address, journal) as (client, queue):
        started = [await _start(client, queue, f"batch-{i}") for i in range(3)]
        async with console(engine, client) as url, browser("bob") as page:
            await page.goto(f"{url}/approvals")  # type: ignore[attr-defined]
            for run_id, _ in started:
                await page.check(f'input[value="{run_id}/1"]')  # type: ignore[attr-defined]
            await page.fill("#reason", "release train 42")  # type: ignore[attr-defined]
            await page.click("#approve")  # type: ignore[attr-defined]
            await page.wait_for_selector(".verdict")  # type: ignore[attr-defined]
            assert await page.locator(".verdict").count() == 3  # type: ignore[attr-defined]
        results = [await handle.result() for _, handle in started]  # type: ignore[attr-defined]
        assert results == [[f"deployed batch-{i}"] for i in range(3)]
        await _mirrored(client, engine, *(run_id for run_id, _ in started))
        with engine.connect() as conn:
            for run_id, _ in started:
                record = load_run(conn, run_id)
                assert record is not None
                approval = record.tool_calls[0].approval
                assert approval is not None and approval.decided_by == "bob"
                assert approval.reason == "release train 42"


async def test_bad_input_gets_a_clear_error_page(engine: Engine) -> None:
    async def no_temporal() -> Client:
        raise AssertionError("these pages never need Temporal")

    from starlette.testclient import TestClient

    app = create_app(ConsoleConfig(engine=engine, client=no_temporal))
    with TestClient(app) as http:
        missing = http.get("/runs/no-such-run")
        assert missing.status_code == 404
        assert "no run &#39;no-such-run&#39;" in missing.text
        bad = http.get("/runs", params={"since": "yesterday-ish"})
        assert bad.status_code == 400 and "Cannot do that" in bad.text
        nul = http.get("/runs", params={"agent": "a\x00b"})
        assert nul.status_code == 400 and "printable" in nul.text
        no_bad = http.get("/diff")
        assert no_bad.status_code == 400 and "/diff?bad=RUN" in no_bad.text


def test_an_approver_token_from_the_policy_signs_a_person_in(
    engine: Engine, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient
    from typer.testing import CliRunner

    from runrecord.cli import app as cli
    from runrecord.workflows import Policy

    made = CliRunner().invoke(cli, ["token", "carol"])
    assert made.exit_code == 0, made.output
    lines = made.output.splitlines()
    secret = lines[1].strip()
    policy_file = tmp_path / "runrecord.toml"
    policy_file.write_text("\n".join(lines[3:]) + "\n")
    policy = Policy.load(policy_file)
    assert secret not in policy_file.read_text()

    async def no_temporal() -> Client:
        raise AssertionError("signing in never needs Temporal")

    app = create_app(
        ConsoleConfig(
            engine=engine, client=no_temporal, policy=policy, tokens=policy.console_tokens
        )
    )
    with TestClient(app) as http:
        form = http.get("/login")
        csrf = form.cookies.get("runrecord_csrf") or http.cookies.get("runrecord_csrf")
        wrong = http.post("/login", data={"csrf": csrf, "token": "guess"})
        assert wrong.status_code == 403 and "not in the policy" in wrong.text
        signed = http.post("/login", data={"csrf": csrf, "token": secret}, follow_redirects=False)
        assert signed.status_code == 303
        page = http.get("/runs")
        assert page.status_code == 200 and "deciding as <strong>carol</strong>" in page.text


# --- the runs list on either records database


def _recorded_runs(engine: Engine, now: datetime) -> dict[str, datetime]:
    """Thirty runs written as the mirror writes them: every third wrote a file; four share
    a start time across the first page's end; the oldest four started two days ago."""
    from runrecord.recorder._rows import call_row, run_row
    from runrecord.recorder._store import update_run_totals, upsert
    from runrecord.recorder._tables import RunRow, ToolCallRow
    from runrecord.records import RunRecord, ToolCall

    started: dict[str, datetime] = {}
    for i in range(30):
        at = now - timedelta(minutes=i)
        if 22 <= i <= 25:
            at = now - timedelta(minutes=22)
        if i >= 26:
            at = now - timedelta(days=2, minutes=i)
        started[f"run-{i:02d}"] = at
    with engine.begin() as conn:
        for i, (run_id, at) in enumerate(started.items()):
            record = RunRecord(
                run_id=run_id,
                workflow_type="Deployer",
                agent_id="deployer",
                final_status="succeeded",
                started_at=at,
                ended_at=at + timedelta(seconds=3),
                root_run_id=run_id,
            )
            upsert(conn, RunRow, [run_row(record, last_event_id=9, now=now)], ["run_id"])
            call = ToolCall(
                tool_call_id="1",
                tool="write_file" if i % 3 == 0 else "read_file",
                side_effect="write" if i % 3 == 0 else "read",
                status="succeeded",
                scheduled_at=at,
            )
            upsert(conn, ToolCallRow, [call_row(run_id, call, 5)], ["run_id", "tool_call_id"])
        update_run_totals(conn, list(started))
    return started


def _listed(html: str) -> list[str]:
    return re.findall(r'<a class="mono" href="/runs/([^"]+)">', html)


def _next(html: str) -> str | None:
    found = re.search(r'<a href="(/runs\?[^"]+)" id="next">', html)
    return unescape(found.group(1)) if found else None


@pytest.mark.parametrize("store", ["postgresql", "sqlite"])
def test_the_runs_list_filters_and_pages_alike_on_postgresql_and_sqlite(
    store: str, database_url: str, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    from runrecord.recorder import open_engine, upgrade

    url = database_url if store == "postgresql" else f"sqlite:///{tmp_path / 'records.sqlite3'}"
    engine = open_engine(url)
    upgrade(engine)

    async def no_temporal() -> Client:
        raise AssertionError("the runs list never needs Temporal")

    now = datetime.now(UTC).replace(microsecond=0)
    started = _recorded_runs(engine, now)
    newest_first = sorted(started, key=lambda r: (started[r], r), reverse=True)
    try:
        with TestClient(create_app(ConsoleConfig(engine=engine, client=no_temporal))) as http:
            first = http.get("/runs")
            assert first.status_code == 200
            assert _listed(first.text) == newest_first[:25]
            older = _next(first.text)
            assert older is not None
            second = http.get(older)
            assert second.status_code == 200
            # Runs that started at the same moment as the first page's last are not skipped.
            assert _listed(second.text) == newest_first[25:]
            assert _next(second.text) is None

            wrote = http.get("/runs", params={"side_effect": "write"})
            writers = [r for r in newest_first if int(r.removeprefix("run-")) % 3 == 0]
            assert _listed(wrote.text) == writers

            # The quick filter "last 24 h", paged: the page after keeps the filter.
            day = http.get("/runs?since=24h")
            assert _listed(day.text) == newest_first[:25]
            older = _next(day.text)
            assert older is not None and "since=24h" in older
            rest = http.get(older)
            assert rest.status_code == 200
            assert _listed(rest.text) == newest_first[25:26]
            assert _next(rest.text) is None
    finally:
        engine.dispose()
