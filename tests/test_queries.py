"""The operator's questions, answered by the CLI (``--json``) and by the SQL views, identically.

One set of runs serves every test in this module: the example scenario (release supervisor
delegating to a deployer) three times, purpose-built reporter runs (tests/agents_for_queries.py)
that fail, retry, change their prompt version, or are handed artifacts, and the MCP example's clock
reader twice against the real ``mcp-server-time``. All of them run on the real Temporal dev server
and reach PostgreSQL through the mirror. States no agent can produce here (a denied approval, a
reporter run whose tool went to MCP server ``git`` while ``time`` sat unused in its registry, a
different MCP server version) are written on top of real runs with the store's own writer,
``save_projection``; the tests that rely on them say so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text
from temporalio.client import Client
from temporalio.worker import Worker

import runrecord
from runrecord._contract import JournalEntry
from runrecord.cli import main
from runrecord.cli._stack import load_agents
from runrecord.recorder import (
    Mirror,
    RunChain,
    apply_journal,
    open_engine,
    save_projection,
    upgrade,
)
from runrecord.recorder import _queries as queries
from runrecord.recorder._tables import Base
from runrecord.records import Approval, ApprovalState, Artifact, ToolCallStatus, ToolRegistryEntry
from runrecord.worker import Journal, RunRecordPlugin
from runrecord.workflows import Policy
from tests import agents_for_queries as q
from tests._postgres import scratch_database


@dataclass
class Scenario:
    url: str
    engine: Engine
    started: datetime
    demo: list[str]  # three release-supervisor runs; the third releases another version
    good1: str
    good2: str
    failed: str  # publish_report fails
    flaky: str  # upload_report needs a second attempt
    prompt_v2: str  # same agent, prompt version 2
    denied: str  # publish_report denied by a person (written on top of a real run)
    mcp: str  # fetch_spec went to MCP server "git"; "time" was available (written on top)
    clocks: list[str]  # real MCP runs; the second's time server reports 9.9.9 (written on top)
    turns: dict[str, str]
    roots: list[str]
    client: Client
    journal_dir: Path


@pytest.fixture(scope="module")
def records_url(pg_admin_url: str) -> Iterator[str]:
    with scratch_database(pg_admin_url) as url:
        yield url


async def _overlay(mirror: Mirror, run_id: str, change: Any) -> None:
    projection: RunChain = await mirror.sync_run(run_id)
    change(projection)
    with mirror.engine.begin() as conn:
        save_projection(conn, projection)


def _deny_publish(projection: RunChain) -> None:
    call = next(c for c in projection.calls.values() if c.tool == "publish_report")
    call.approval_state = ApprovalState.DENIED
    call.approval = Approval(
        state=ApprovalState.DENIED,
        decided_by="alice@example.com",
        decided_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        reason="release freeze",
    )
    call.status = ToolCallStatus.DENIED
    call.output_refs = []


def _newer_time_server(projection: RunChain) -> None:
    projection.memo.mcp_servers = [
        s.model_copy(update={"server_version": "9.9.9"}) if s.name == "time" else s
        for s in projection.memo.mcp_servers
    ]


def _use_mcp(projection: RunChain) -> None:
    registry = []
    for entry in projection.memo.tool_registry:
        if entry.name == "fetch_spec":
            entry = entry.model_copy(update={"server": "git"})
        registry.append(entry)
    registry.append(ToolRegistryEntry(name="get_current_time", side_effect="read", server="time"))
    projection.memo.tool_registry = registry
    next(c for c in projection.calls.values() if c.tool == "fetch_spec").mcp_server = "git"


GATED_TOOLS = ("deploy", "charge_invoice", "publish_report", "git_commit")


@pytest.fixture(scope="module")
async def scenario(
    records_url: str, temporal_address: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Scenario]:
    home = tmp_path_factory.mktemp("queries-home")
    journal = Journal(home / "journal")
    demo = load_agents(None)  # puts examples/ on sys.path
    import mcp_agents

    # These tests ask the records; an operator's policy allows the gated tools so no run waits.
    allow = {"name": "auto-allow", "action": "allow", "tools": list(GATED_TOOLS)}
    plugin = RunRecordPlugin(
        journal, mcp_servers=mcp_agents.MCP_SERVERS, policy=Policy.from_dict({"rule": [allow]})
    )
    client = await Client.connect(temporal_address, plugins=[plugin])
    engine = open_engine(records_url)
    upgrade(engine)
    workspace = demo.prepare_workspace(home / "workspace")
    queue = f"tq-queries-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:6]
    turns = {
        name: f"turn-{name}-{tag}"
        for name in ("shared", "good2", "failed", "flaky", "v2", "denied", "mcp", "d2", "d3", "c")
    }
    every = [*q.ACTIVITIES, *demo.ACTIVITIES, *mcp_agents.ACTIVITIES]
    activities = list({id(a): a for a in every}.values())
    started = datetime.now(UTC)
    roots: list[str] = []

    async def run(workflow: Any, arg: Any, turn: str, name: str) -> str:
        run_id = f"{name}-{tag}"
        with runrecord.turn(turn):
            handle = await client.start_workflow(workflow, arg, id=run_id, task_queue=queue)
        try:
            await handle.result()
        except Exception:
            pass  # the failing scenario fails on purpose
        roots.append(run_id)
        return run_id

    async with Worker(
        client,
        task_queue=queue,
        workflows=[*q.WORKFLOWS, *demo.WORKFLOWS, *mcp_agents.WORKFLOWS],
        activities=activities,
    ):
        task = demo.ReleaseTask(workspace=str(workspace))
        demo_runs = [
            await run(demo.ReleaseSupervisor.run, task, turns["shared"], "demo1"),
            await run(demo.ReleaseSupervisor.run, task, turns["d2"], "demo2"),
        ]
        good1 = await run(q.Reporter.run, q.ReportTask(name="alpha"), turns["shared"], "good1")
        good2 = await run(q.Reporter.run, q.ReportTask(name="alpha"), turns["good2"], "good2")
        failed = await run(
            q.Reporter.run, q.ReportTask(name="alpha", fail_publish=True), turns["failed"], "fail"
        )
        flaky = await run(
            q.Reporter.run, q.ReportTask(name="alpha", flaky_upload=True), turns["flaky"], "flaky"
        )
        prompt_v2 = await run(q.ReporterV2.run, q.ReportTask(name="alpha"), turns["v2"], "v2")
        denied = await run(q.Reporter.run, q.ReportTask(name="alpha"), turns["denied"], "deny")
        mcp = await run(q.Reporter.run, q.ReportTask(name="gamma"), turns["mcp"], "mcp")
        newer = task.model_copy(update={"version": "1.4.1"})
        demo_runs.append(await run(demo.ReleaseSupervisor.run, newer, turns["d3"], "demo3"))
        clocks = [
            await run(mcp_agents.ClockReader.run, "Europe/Paris", turns["c"], f"clock{i}")
            for i in (1, 2)
        ]
    journal.close()
    # A shipped journal file is removed: keep a copy for the SQLite records of the same runs.
    kept_journal = journal.directory.with_name("journal-for-sqlite")
    shutil.copytree(journal.directory, kept_journal)
    mirror = Mirror(client, engine, journal_dir=journal.directory)
    mirror.drain_journal()
    for root in roots:
        await mirror.sync_tree(root)
    await _overlay(mirror, denied, _deny_publish)
    await _overlay(mirror, mcp, _use_mcp)
    await _overlay(mirror, clocks[1], _newer_time_server)
    try:
        yield Scenario(
            url=records_url,
            engine=engine,
            started=started,
            demo=demo_runs,
            good1=good1,
            good2=good2,
            failed=failed,
            flaky=flaky,
            prompt_v2=prompt_v2,
            denied=denied,
            mcp=mcp,
            clocks=clocks,
            turns=turns,
            roots=roots,
            client=client,
            journal_dir=kept_journal,
        )
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, records_url: str) -> None:
    monkeypatch.setenv("RUNRECORD_DATABASE_URL", records_url)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TEMPORAL_UI_URL", "http://ui.example:8233")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def view(s: Scenario, sql: str, **params: Any) -> list[Any]:
    with s.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def view_ids(s: Scenario, sql: str, **params: Any) -> set[str]:
    return {row[0] for row in view(s, sql, **params)}


def ids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["runId"] for r in rows}


# --- runrecord runs


def test_every_runs_filter_answers_like_its_view(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    s = scenario
    since = (s.started + timedelta(seconds=0)).isoformat()
    started = dict(view(s, "select run_id, started_at from runs"))
    cases: list[tuple[list[str], str, dict[str, Any]]] = [
        (["--side-effect", "write"], "select run_id from runs_that_wrote", {}),
        (
            ["--side-effect", "payment"],
            "select run_id from executed_calls where side_effect = :v",
            {"v": "payment"},
        ),
        (
            ["--side-effect", "NETWORK"],
            "select run_id from executed_calls where side_effect = :v",
            {"v": "network"},
        ),
        (["--approval", "denied"], "select run_id from denied_approvals", {}),
        (
            ["--approval", "approved"],
            "select run_id from approvals where approval_state = 'approved'",
            {},
        ),
        (
            ["--mcp-server", "git"],
            "select run_id from mcp_usage where usage = 'called' and mcp_server = :v",
            {"v": "git"},
        ),
        (
            ["--mcp-available", "time"],
            "select run_id from mcp_usage where usage = 'available' and mcp_server = :v",
            {"v": "time"},
        ),
        (
            ["--tool", "publish_report"],
            "select run_id from executed_calls where tool = :v",
            {"v": "publish_report"},
        ),
        (
            ["--agent", "reviewer"],
            "select run_id from run_summary where agent_id = :v",
            {"v": "reviewer"},
        ),
        (
            ["--turn", s.turns["shared"]],
            "select run_id from run_summary where turn_id = :v",
            {"v": s.turns["shared"]},
        ),
        (
            ["--status", "failed"],
            "select run_id from run_summary where final_status = :v",
            {"v": "failed"},
        ),
        (
            ["--model", "scripted-1"],
            "select run_id from run_summary where model = :v",
            {"v": "scripted-1"},
        ),
        (
            ["--prompt-version", "reporter@2"],
            "select run_id from run_summary where prompt_version like 'reporter@2:%'",
            {},
        ),
        (
            ["--since", since],
            "select run_id from run_summary where started_at >= :t",
            {"t": s.started},
        ),
        (
            ["--until", "1h"],
            "select run_id from run_summary where started_at < now() - interval '1 hour'",
            {},
        ),
        (
            ["--parent", s.demo[0]],
            "select run_id from run_summary where parent_run_id = :v",
            {"v": s.demo[0]},
        ),
        (
            ["--side-effect", "write", "--agent", "reporter", "--approval", "approved"],
            "select run_id from runs_that_wrote where agent_id = 'reporter' "
            "intersect select run_id from approvals where approval_state = 'approved'",
            {},
        ),
    ]
    # Every way of searching (matching calls counted as rare / sparse / dense, and how many
    # of the newest runs are looked at first): among the newest runs tested one by one,
    # among them joined with the matching calls, and from the matching calls when the
    # newest runs hold too few, or when the calls are rare.
    searches = [
        (0, 0, 2000),
        (0, 9000, 2000),
        (0, 9000, 3),
        (0, 0, 1),
        (0, 9000, 1),
        (5000, 9000, 1),
    ]
    for args, sql, params in cases:
        expected = view_ids(s, sql, **params)
        assert ids(cli_json(capsys, "runs", *args, "--limit", "1000")) == expected, args
        newest = set(sorted(expected, key=started.__getitem__, reverse=True)[:3])
        for rare, dense, recent in searches:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(queries, "_RARE", rare)
                patch.setattr(queries, "_DENSE", dense)
                patch.setattr(queries, "_RECENT", recent)
                found = ids(cli_json(capsys, "runs", *args, "--limit", "3"))
            assert found == newest, (args, rare, dense, recent)


def test_runs_filters_find_the_runs_that_did_it(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    s = scenario

    def runs(*args: str) -> set[str]:
        return ids(cli_json(capsys, "runs", *args, "--limit", "1000"))

    deployers = {f"{d}.release-deployer" for d in s.demo}
    reporters = {s.good1, s.good2, s.failed, s.flaky, s.prompt_v2, s.denied, s.mcp}
    assert runs("--approval", "denied") == {s.denied}
    assert runs("--status", "failed") == {s.failed}
    assert runs("--side-effect", "payment") == deployers
    assert runs("--side-effect", "write") == (
        set(s.demo) | reporters | {f"{r}.reviewer" for r in reporters}
    )
    # A denied call never ran: it is not a use of the tool (publish failed in `failed`, but ran).
    assert runs("--tool", "publish_report") == reporters - {s.denied}
    # The clock readers really called the time server; the overlaid reporter only had it.
    assert runs("--mcp-server", "git") == {s.mcp}
    assert runs("--mcp-server", "time") == set(s.clocks)
    assert runs("--mcp-available", "time") == {s.mcp, *s.clocks}
    assert runs("--mcp-available", "git") == {s.mcp}
    assert runs("--mcp-server", "time", "--tool", "get_current_time") == set(s.clocks)
    assert runs("--prompt-version", "reporter@2") == {s.prompt_v2}
    assert runs("--parent", s.demo[0]) == {f"{s.demo[0]}.release-deployer"}
    assert runs("--agent", "reporter", "--tool", "upload_report", "--status", "failed") == {
        s.failed
    }


def test_runs_json_lines_match_the_run_summary_view(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    answered = {r["runId"]: r for r in cli_json(capsys, "runs", "--limit", "1000")}
    rows = view(scenario, "select * from run_summary")
    assert set(answered) == {r.run_id for r in rows}
    for row in rows:
        line = answered[row.run_id]
        assert (line["agentId"], line["turnId"], line["finalStatus"]) == (
            row.agent_id,
            row.turn_id,
            row.final_status,
        )
        assert (line["model"], line["promptVersion"], line["depth"]) == (
            row.model,
            row.prompt_version,
            row.depth,
        )
        assert (line["parentRunId"], line["rootRunId"]) == (row.parent_run_id, row.root_run_id)
        assert (line["toolCalls"], line["durationMs"]) == (row.tool_calls, row.duration_ms)
        assert line["cost"]["own"] == pytest.approx(row.own_cost)
        assert line["cost"]["total"] == pytest.approx(row.total_cost)
    root = answered[scenario.demo[0]]
    child = answered[f"{scenario.demo[0]}.release-deployer"]
    assert root["cost"]["total"] == pytest.approx(root["cost"]["own"] + child["cost"]["total"])


def test_runs_lists_newest_first_as_a_table_with_a_limit(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    newest = cli_json(capsys, "runs", "--limit", "2", "--agent", "reporter")
    assert [r["runId"] for r in newest] == [scenario.mcp, scenario.denied]
    code, out, err = cli(capsys, "runs", "--agent", "reporter", "--limit", "2")
    assert code == 0, err
    assert scenario.mcp in out and scenario.denied in out and scenario.good1 not in out
    assert "more may match" in out
    code, out, _ = cli(capsys, "runs", "--agent", "nobody")
    assert (code, out.strip()) == (0, "no runs match")


# --- runrecord show


def test_show_draws_the_tree_with_approvals_attempts_artifacts_and_links(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "show", scenario.denied)
    assert code == 0, err
    lines = out.splitlines()
    reviewer = next(i for i, line in enumerate(lines) if "reviewer 1.0" in line)
    upload = next(i for i, line in enumerate(lines) if "upload_report" in line)
    write = next(i for i, line in enumerate(lines) if "#3 write_report" in line)
    assert write < reviewer < upload  # the sub-agent sits where it was started
    publish = next(line for line in lines if "#5 publish_report" in line)
    assert "denied by alice@example.com (release freeze)" in publish
    assert f"http://ui.example:8233/namespaces/default/workflows/{scenario.denied}" in out
    assert "artifact" in out and "report://alpha" in out

    code, out, _ = cli(capsys, "show", scenario.flaky)
    assert "2 attempts" in out and "attempt 1 failed: RuntimeError: upload connection reset" in out
    code, out, _ = cli(capsys, "show", scenario.good1)
    assert "approval approved by policy:auto-allow" in out


def test_show_json_is_the_full_record_with_costs_rolled_up_like_the_view(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    records = cli_json(capsys, "show", scenario.demo[0])
    assert [r["runId"] for r in records] == [
        scenario.demo[0],
        f"{scenario.demo[0]}.release-deployer",
    ]
    totals = dict(
        view(
            scenario,
            "select run_id, total_cost from run_summary where root_run_id = :r",
            r=scenario.demo[0],
        )
    )
    for record in records:
        assert record["cost"]["total"] == pytest.approx(totals[record["runId"]])
        assert record["temporalUiUrl"].endswith(f"/workflows/{record['runId']}")


# --- runrecord diff


def diff_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    result: dict[str, Any] = cli_json(capsys, "diff", *args)
    return result


def test_diff_defaults_to_the_last_good_run_like_the_view(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    s = scenario
    good = dict(view(s, "select run_id, good_run_id from last_good_run"))
    for bad in (s.failed, s.flaky, s.prompt_v2, s.demo[1], s.demo[2]):
        assert diff_json(capsys, bad)["goodRunId"] == good[bad]
    assert good[s.failed] == s.good2  # the failed run is skipped, later runs are ignored
    assert good[s.prompt_v2] == s.flaky


def test_diff_explains_a_new_prompt_version_first(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    result = diff_json(capsys, scenario.prompt_v2)
    assert re.fullmatch(
        r"promptVersion changed reporter@1:[0-9a-f]{12} → reporter@2:[0-9a-f]{12}",
        result["explanation"],
    )
    code, out, _ = cli(capsys, "diff", scenario.prompt_v2)
    assert out.splitlines()[0] == result["explanation"]


def test_diff_explains_a_failed_call_before_its_changed_arguments(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    result = diff_json(capsys, scenario.failed)
    assert result["explanation"].startswith("call 5 publish_report failed (was succeeded)")
    assert "publisher rejected the report" in result["explanation"]
    kinds = {(c["kind"], c["subject"]) for c in result["changes"]}
    assert ("status", "finalStatus") in kinds
    assert ("call", "call 5 publish_report") in kinds
    # The sub-agent runs were aligned and compared too.
    assert [p["agentId"] for p in result["runs"]] == ["reporter", "reviewer"]


def test_diff_explains_retries_and_denials(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    """The denial is written on top of a real run (no agent can be denied yet)."""
    assert diff_json(capsys, scenario.flaky)["explanation"] == (
        "call 4 upload_report took 2 attempts (was 1)"
    )
    denied = diff_json(capsys, scenario.denied, scenario.good2)
    assert denied["explanation"] == (
        "call 5 publish_report denied by alice@example.com (was approved by policy:auto-allow)"
    )


def test_diff_compares_tool_registry_and_mcp_servers(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    """The MCP servers are written on top of a real run (no MCP integration yet)."""
    result = diff_json(capsys, scenario.mcp, scenario.good2)
    summaries = [c["summary"] for c in result["changes"] if c["kind"] == "config"]
    assert "MCP server git now available" in summaries
    assert "tool get_current_time added to the registry" in summaries
    assert result["explanation"] == summaries[0]


def test_diff_names_a_new_mcp_server_version_first(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two real runs against mcp-server-time; the second's server version is written on top."""
    result = diff_json(capsys, scenario.clocks[1])
    assert result["goodRunId"] == scenario.clocks[0]
    assert re.fullmatch(
        r"MCP server time serverVersion changed \S+ → 9\.9\.9", result["explanation"]
    )


def test_diff_of_the_example_scenario_sees_changed_input_across_sub_agents(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    same = diff_json(capsys, scenario.demo[1])
    assert same["goodRunId"] == scenario.demo[0]
    assert [c for c in same["changes"] if c["kind"] != "call"] == []
    # Identical inputs: at most model latency differs, which shows in a model call's result.
    assert all("resultHashes" in c["bad"] for c in same["changes"])

    newer = diff_json(capsys, scenario.demo[2])
    assert newer["explanation"].startswith("call 1 runrecord.model_call arguments changed")
    assert {c["agentId"] for c in newer["changes"]} == {"release-supervisor", "release-deployer"}
    assert [p["agentId"] for p in newer["runs"]] == ["release-supervisor", "release-deployer"]


# --- runrecord artifacts and lineage


def test_artifacts_of_a_turn_span_every_agent_it_triggered_like_the_view(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    turn = scenario.turns["shared"]
    answered = cli_json(capsys, "artifacts", "--turn", turn)
    rows = view(
        scenario,
        "select * from turn_artifacts where turn_id = :t order by created_at, artifact_id",
        t=turn,
    )
    assert [a["artifact"]["artifactId"] for a in answered] == [r.artifact_id for r in rows]
    for item, row in zip(answered, rows, strict=True):
        call = item["producedBy"]
        assert (call["agentId"], call["tool"], call["approvalState"]) == (
            row.agent_id,
            row.tool,
            row.approval_state,
        )
        assert (call["approval"] or {}).get("decidedBy") == row.decided_by
    agents = {a["producedBy"]["agentId"] for a in answered}
    assert agents == {"release-supervisor", "release-deployer", "reporter", "reviewer"}
    kinds = sorted(a["artifact"]["kind"] for a in answered)
    assert kinds == ["file", "file", "message", "message", "url"]


def _report_of(scenario: Scenario, run_id: str) -> str:
    return str(
        view(
            scenario,
            "select artifact_id from artifacts where run_id = :r and kind = 'file'",
            r=run_id,
        )[0][0]
    )


def test_lineage_follows_an_artifact_from_the_turn_to_every_consumer_like_the_view(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report_of(scenario, scenario.good1)
    (found,) = cli_json(capsys, "lineage", report)
    assert found["turnId"] == scenario.turns["shared"]
    assert [link["agentId"] for link in found["chain"]] == ["reporter"]
    assert found["producedBy"]["tool"] == "write_report"
    consumers = {
        (c["runId"], c["call"]["tool"] if c["call"] else None) for c in found["consumedBy"]
    }
    reviewer = f"{scenario.good1}.reviewer"
    assert consumers == {
        (reviewer, None),
        (reviewer, "review_report"),
        (scenario.good1, "publish_report"),
    }
    review = next(
        c for c in found["consumedBy"] if c["call"] and c["call"]["tool"] == "review_report"
    )
    assert len(review["produced"]) == 1  # the review it wrote from the report

    rows = view(scenario, "select * from artifact_lineage where artifact_id = :a", a=report)
    assert {r.agent_path for r in rows} == {" > ".join(lk["agentId"] for lk in found["chain"])}
    assert {r.run_path for r in rows} == {" > ".join(lk["runId"] for lk in found["chain"])}
    assert {(r.consumer_run_id, r.consumer_tool_call_id) for r in rows} == {
        (c["runId"], c["call"]["toolCallId"] if c["call"] else None) for c in found["consumedBy"]
    }
    assert {(r.tool, r.approval_state) for r in rows} == {("write_report", "not_required")}


def test_lineage_of_a_sub_agent_artifact_names_the_whole_chain(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    deployer = f"{scenario.demo[0]}.release-deployer"
    url = view(
        scenario, "select artifact_id from artifacts where run_id = :r and kind = 'url'", r=deployer
    )[0][0]
    (found,) = cli_json(capsys, "lineage", url)
    assert [(lk["agentId"], lk["runId"]) for lk in found["chain"]] == [
        ("release-supervisor", scenario.demo[0]),
        ("release-deployer", deployer),
    ]
    assert found["producedBy"]["approval"]["decidedBy"] == "policy:auto-allow"
    (row,) = view(scenario, "select * from artifact_lineage where artifact_id = :a", a=url)
    assert row.agent_path == "release-supervisor > release-deployer"
    assert row.root_run_id == scenario.demo[0] and row.decided_by == "policy:auto-allow"
    code, out, _ = cli(capsys, "lineage", url)
    assert "release-deployer" in out and "approved by policy:auto-allow" in out


def test_lineage_by_uri_lists_every_artifact_at_that_uri_newest_first(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    found = cli_json(capsys, "lineage", "report://alpha")
    runs = [f["artifact"]["runId"] for f in found]
    s = scenario
    assert runs == [s.denied, s.prompt_v2, s.flaky, s.failed, s.good2, s.good1]
    denied_publish = next(
        c for c in found[0]["consumedBy"] if c["call"] and c["call"]["tool"] == "publish_report"
    )
    assert denied_publish["call"]["approvalState"] == "denied"


# --- runrecord cost


def test_cost_by_every_dimension_matches_its_view(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    for by, key in (
        ("agent", "agent_id"),
        ("model", "model"),
        ("turn", "turn_id"),
        ("tool", "tool"),
    ):
        answered = {c["key"]: c for c in cli_json(capsys, "cost", "--by", by)}
        rows = view(scenario, f"select {key}, runs, calls, cost, total from cost_by_{by}")
        assert set(answered) == {r[0] for r in rows}, by
        for k, runs, calls, spent, total in rows:
            line = answered[k]
            assert (line["runs"], line["calls"]) == (runs, calls), (by, k)
            assert line["cost"] == pytest.approx(spent, abs=1e-9), (by, k)
            assert line["total"] == pytest.approx(total, abs=1e-9), (by, k)


def test_cost_rolls_sub_agents_up_into_the_agents_that_started_them(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    by_agent = {c["key"]: c for c in cli_json(capsys, "cost", "--by", "agent")}
    supervisor, deployer = by_agent["release-supervisor"], by_agent["release-deployer"]
    assert supervisor["total"] == pytest.approx(supervisor["cost"] + deployer["total"])
    reporter, reviewer = by_agent["reporter"], by_agent["reviewer"]
    assert reporter["total"] == pytest.approx(reporter["cost"] + reviewer["total"])
    assert reporter["cost"] > 0 and reviewer["cost"] > 0
    # A filter picks runs; their sub-agents' calls come along.
    tools = {
        c["key"] for c in cli_json(capsys, "cost", "--by", "tool", "--agent", "release-supervisor")
    }
    assert {"write_file", "charge_invoice", "deploy"} <= tools
    turn = scenario.turns["shared"]
    answered = {c["key"]: c for c in cli_json(capsys, "cost", "--by", "agent", "--turn", turn)}
    rows = view(
        scenario,
        "select agent_id, count(*), sum(tool_calls), sum(own_cost), sum(total_cost) "
        "from run_summary where turn_id = :t group by agent_id",
        t=turn,
    )
    assert set(answered) == {r[0] for r in rows}
    for k, runs, calls, own, total in rows:
        assert (answered[k]["runs"], answered[k]["calls"]) == (runs, calls)
        assert answered[k]["cost"] == pytest.approx(own) and answered[k]["total"] == pytest.approx(
            total
        )
    code, out, err = cli(capsys, "cost", "--by", "agent")
    assert code == 0 and "with sub-agents" in out and "release-supervisor" in out


_RECOUNT = """
    SELECT run_id, 'tool', tool, count(*), coalesce(sum(cost), 0.0), NULL, NULL
    FROM tool_calls GROUP BY run_id, tool
    UNION ALL
    SELECT run_id, 'model', model, count(*), coalesce(sum(cost), 0.0),
           coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0)
    FROM model_calls GROUP BY run_id, model"""
_TOTALS = """SELECT run_id, kind, key, calls, cost, input_tokens, output_tokens FROM run_totals"""


def _same_totals(conn: Any) -> None:
    recount = {tuple(r[:3]): tuple(r[3:]) for r in conn.execute(text(_RECOUNT))}
    kept = {tuple(r[:3]): tuple(r[3:]) for r in conn.execute(text(_TOTALS))}
    assert set(kept) == set(recount)
    for key, (calls, cost, tokens_in, tokens_out) in recount.items():
        assert kept[key][0] == calls and kept[key][1] == pytest.approx(cost), key
        assert kept[key][2:] == (tokens_in, tokens_out), key
    runs = conn.execute(
        text(
            "SELECT r.run_id FROM runs r WHERE r.tool_call_count <> "
            "(SELECT count(*) FROM tool_calls c WHERE c.run_id = r.run_id)"
        )
    ).all()
    assert runs == []


def test_the_writer_keeps_every_run_total_equal_to_its_calls(scenario: Scenario) -> None:
    """The totals cost reports read (per run, per tool, per model) are what the calls add
    up to, after the mirror wrote them change set by change set; a call whose tool changes
    moves its total to the new key, and the old key's row goes."""
    from runrecord.recorder._store import update_run_totals

    with scenario.engine.connect() as conn:
        _same_totals(conn)
        run_id, call_id, tool = conn.execute(
            text("SELECT run_id, tool_call_id, tool FROM tool_calls ORDER BY run_id LIMIT 1")
        ).one()
        alone = conn.execute(
            text("SELECT count(*) FROM tool_calls WHERE run_id = :r AND tool = :t"),
            {"r": run_id, "t": tool},
        ).scalar_one()
        conn.execute(
            text(
                "UPDATE tool_calls SET tool = 'renamed-tool' "
                "WHERE run_id = :r AND tool_call_id = :c"
            ),
            {"r": run_id, "c": call_id},
        )
        update_run_totals(conn, [run_id], models=[])
        _same_totals(conn)
        keys = {
            k
            for (k,) in conn.execute(
                text("SELECT key FROM run_totals WHERE run_id = :r AND kind = 'tool'"),
                {"r": run_id},
            )
        }
        assert "renamed-tool" in keys and (tool in keys) == (alone > 1)
        conn.rollback()


def test_a_window_counts_sub_agents_stamped_before_it_and_long_reports_are_cut(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """From a start time on, a sub-agent run counts with the run that started it even when
    the clocks stamped it a little before the window, or not yet; a report by turn shows
    the most expensive lines first, and says so when it leaves some out."""
    from sqlalchemy import insert

    from runrecord.recorder import open_engine, upgrade
    from runrecord.recorder._tables import RunRow

    now = datetime.now(UTC)

    def run(run_id: str, agent: str, started: datetime | None, cost: float, **more: Any) -> Any:
        links = {"parent_run_id": None, "root_run_id": None, "depth": 0}  # every row, every key
        return (
            dict(
                links,
                run_id=run_id,
                workflow_type="Agent",
                agent_id=agent,
                final_status="succeeded",
                started_at=started,
                updated_at=now,
                tool_call_count=1,
                own_cost=cost,
            )
            | more
        )

    rows = [
        run("boss-run", "boss", now - timedelta(minutes=30), 1.0, turn_id="t-1"),
        run(
            "helper-run",
            "helper",
            now - timedelta(minutes=65),  # stamped before the window: clocks apart
            2.0,
            turn_id="t-1",
            parent_run_id="boss-run",
            root_run_id="boss-run",
            depth=1,
        ),
        run(
            "helper-sub-run",
            "helper",
            None,  # no start recorded yet
            4.0,
            turn_id="t-1",
            parent_run_id="helper-run",
            root_run_id="boss-run",
            depth=2,
        ),
        run("old-run", "boss", now - timedelta(hours=3), 8.0, turn_id="t-old"),
    ]
    rows += [
        run(f"many-{i:03}", "many", now - timedelta(minutes=10), i / 1000, turn_id=f"t-{i:03}z")
        for i in range(1, 151)
    ]
    with scratch_database(pg_admin_url) as url:
        engine = open_engine(url)
        try:
            upgrade(engine)
            with engine.begin() as conn:
                conn.execute(insert(RunRow), rows)
            monkeypatch.setenv("RUNRECORD_DATABASE_URL", url)
            until = (now + timedelta(minutes=1)).isoformat()
            for window in (["--since", "1h"], ["--since", "1h", "--until", until]):
                agents = {c["key"]: c for c in cli_json(capsys, "cost", "--by", "agent", *window)}
                assert set(agents) == {"boss", "many"}, window
                boss = agents["boss"]
                assert (boss["runs"], boss["cost"], boss["total"]) == (1, 1.0, 7.0), window
                turns = cli_json(capsys, "cost", "--by", "turn", "--limit", "0", *window)
                t1 = next(c for c in turns if c["key"] == "t-1")
                assert (t1["runs"], t1["cost"]) == (3, 7.0), window
                assert len(turns) == 151 and "t-old" not in {c["key"] for c in turns}, window
            code, out, err = cli(capsys, "cost", "--by", "turn", "--since", "1h", "--json")
            shown = json.loads(out)
            assert code == 0 and "showing the 100 most expensive lines" in err
            assert [c["key"] for c in shown[:3]] == ["t-1", "t-150z", "t-149z"]
            assert len(shown) == 100 and shown[-1]["key"] == "t-052z"
        finally:
            engine.dispose()


# --- bad input


NASTY = [
    "x' OR '1'='1",
    "'; DROP TABLE runs; --",
    '"',
    "\\",
    "%",
    "_",
    "reporter@%",
    "$1",
    "🙂",
    "a" * 300,
]


def test_quotes_and_sql_metacharacters_in_every_filter_match_nothing(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    before = view(scenario, "select count(*) from runs")[0][0]
    for value in NASTY:
        for option in (
            "--mcp-server",
            "--mcp-available",
            "--tool",
            "--agent",
            "--turn",
            "--model",
            "--prompt-version",
            "--parent",
        ):
            assert cli_json(capsys, "runs", option, value) == [], (option, value)
        for option in ("--agent", "--turn"):
            assert cli_json(capsys, "cost", option, value) == [], (option, value)
        assert cli_json(capsys, "artifacts", "--turn", value) == []
        for args in (["show", value], ["diff", value], ["diff", scenario.failed, value]):
            code, out, err = cli(capsys, *args)
            assert code == 1 and err.startswith("runrecord: error: no run "), (args, err)
            assert len(err.strip().splitlines()) == 1
        code, _, err = cli(capsys, "lineage", value)
        assert code == 1 and err.startswith("runrecord: error: no artifact "), err
    assert view(scenario, "select count(*) from runs")[0][0] == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["runs", "--since", "yesterday"], "--since: cannot read 'yesterday'"),
        (["runs", "--until", "2026-13-45"], "--until: cannot read '2026-13-45'"),
        (["runs", "--since", "99999999999d"], "--since: cannot read"),
        (["cost", "--since", "' OR 1=1 --"], "--since: cannot read"),
        (["runs", "--since", "1h", "--until", "2h"], "--since is later than --until"),
        (["runs", "--side-effect", "' OR 1=1"], "--side-effect"),
        (["runs", "--approval", "maybe"], "--approval"),
        (["runs", "--status", "done"], "--status"),
        (["runs", "--limit", "0"], "--limit"),
        (["cost", "--by", "planet"], "--by"),
        (["runs", "--agent", "a\x00b"], "--agent must not contain NUL"),
        (["lineage", "no-such-artifact"], "no artifact 'no-such-artifact'"),
        (["show", "no-such-run"], "no run 'no-such-run'"),
        (["diff", "no-such-run"], "no run 'no-such-run'"),
        (["artifacts"], "--turn"),
    ],
)
def test_bad_input_is_one_clear_line(
    scenario: Scenario, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, out, err = cli(capsys, *args)
    assert code != 0 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("runrecord: error: ") and needle in line, line


def test_recorded_values_that_look_like_markup_are_printed_as_they_are(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    """An artifact URI with rich markup in it, journaled for a real run."""
    run_id = scenario.clocks[0]
    odd = Artifact(
        artifact_id="0dd0dd0dd0dd0dd0dd0dd0dd",
        kind="file",
        uri="file:///tmp/[/red][bold]notes[x].md",
        tool_call_id="1",
        attempt=1,
        run_id=run_id,
        agent_id="clock-reader",
        turn_id=scenario.turns["c"],
    )
    with scenario.engine.begin() as conn:
        apply_journal(
            conn, [JournalEntry(kind="artifact", run_id=run_id, tool_call_id="1", artifact=odd)]
        )
    for args in (
        ["show", run_id],
        ["artifacts", "--turn", scenario.turns["c"]],
        ["lineage", odd.uri],
    ):
        code, out, err = cli(capsys, *args)
        assert code == 0, err
        assert odd.uri in out.replace("\n", ""), args


def test_diff_without_an_earlier_good_run_says_what_to_do(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "diff", scenario.good1)
    assert code == 1
    assert "no succeeded run of agent 'reporter' started before" in err
    assert "name the run to compare with as GOOD" in err
    code, _, err = cli(capsys, "diff", scenario.good1, scenario.good1)
    assert "BAD and GOOD are the same run" in err


def test_the_real_command_prints_one_line_and_no_traceback(
    scenario: Scenario, records_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNRECORD_", "TEMPORAL_"))}
    env["RUNRECORD_DATABASE_URL"] = records_url
    for args in (
        ["runs", "--since", "last tuesday"],
        ["lineage", "x' OR 1=1 --"],
        ["diff", "nope", "--json"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "runrecord.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "runrecord.cli", "runs", "--tool", "x' OR '1'='1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (proc.returncode, json.loads(proc.stdout)) == (0, [])


# --- the same answers on SQLite


def _normalized(value: Any) -> Any:
    """SQLite hands datetimes back without a zone (they are UTC) and sums floats in its order."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, float):
        return round(value, 8)
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z?", value):
        return value.removesuffix("Z")
    return value


async def test_the_cli_gives_the_same_answers_on_sqlite(
    scenario: Scenario,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same histories mirrored into SQLite (no views there); overlays written the same way."""
    s = scenario
    lite = open_engine(f"sqlite:///{tmp_path / 'records.sqlite3'}")
    upgrade(lite)
    mirror = Mirror(s.client, lite, journal_dir=s.journal_dir)
    mirror.drain_journal()
    for root in s.roots:
        await mirror.sync_tree(root)
    await _overlay(mirror, s.denied, _deny_publish)
    await _overlay(mirror, s.mcp, _use_mcp)
    await _overlay(mirror, s.clocks[1], _newer_time_server)
    report = _report_of(s, s.good1)
    questions = [
        ["runs", "--limit", "1000"],
        ["runs", "--side-effect", "write", "--limit", "1000"],
        ["runs", "--approval", "denied"],
        ["runs", "--mcp-server", "git"],
        ["runs", "--mcp-available", "time"],
        ["runs", "--prompt-version", "reporter@2"],
        ["runs", "--model", "scripted-1", "--limit", "1000"],
        ["runs", "--since", s.started.isoformat(), "--limit", "1000"],
        ["show", s.demo[0]],
        ["diff", s.failed],
        ["diff", s.denied, s.good2],
        ["artifacts", "--turn", s.turns["shared"]],
        ["lineage", report],
        ["cost", "--by", "agent"],
        ["cost", "--by", "model", "--agent", "reviewer"],
        ["cost", "--by", "tool", "--turn", s.turns["shared"]],
    ]
    rare = queries._RARE
    monkeypatch.setattr(queries, "_RARE", 0)  # every filter among the newest runs first
    on_postgres = [cli_json(capsys, *q) for q in questions]
    monkeypatch.setenv("RUNRECORD_DATABASE_URL", f"sqlite:///{tmp_path / 'records.sqlite3'}")
    on_sqlite = [cli_json(capsys, *q) for q in questions]
    monkeypatch.setattr(queries, "_RARE", rare)  # the search from the matching calls, too
    monkeypatch.setattr(queries, "_RECENT", 1)
    from_calls = [cli_json(capsys, *q) for q in questions]
    for question, pg, lite_answer, lite_calls in zip(
        questions, on_postgres, on_sqlite, from_calls, strict=True
    ):
        assert _normalized(lite_answer) == _normalized(pg), question
        assert _normalized(lite_calls) == _normalized(pg), question
    lite.dispose()


# --- the schema


def test_the_migrations_build_the_schema_the_tables_declare(engine: Engine) -> None:
    """Indexes the queries rely on exist as _tables.py says (alembic finds nothing to add)."""
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        indexes = {
            row[0]
            for row in conn.execute(
                text("select indexname from pg_indexes where tablename = 'runs'")
            )
        }
    assert {"ix_runs_mcp_servers", "ix_runs_model_started", "ix_runs_status_started"} <= indexes


# --- the documented SQL


def test_every_sql_example_in_the_docs_runs_and_answers(scenario: Scenario) -> None:
    docs = (Path(__file__).parents[1] / "docs" / "records.md").read_text()
    section = docs.split("## SQL views (PostgreSQL)", 1)[1]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(blocks) >= 8
    values = {
        "server": "git",
        "run": scenario.failed,
        "turn": scenario.turns["shared"],
        "artifact": _report_of(scenario, scenario.good1),
    }
    for block in blocks:
        body = "\n".join(line for line in block.splitlines() if not line.startswith("\\set"))
        body = re.sub(r":'(\w+)'", r":\1", body)
        for statement in filter(None, (s.strip() for s in body.split(";"))):
            params = {k: v for k, v in values.items() if f":{k}" in statement}
            rows = view(scenario, statement, **params)
            assert rows, statement
