"""The `runrecord` command as a user runs it: demo, schema, db upgrade, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import psycopg
import pytest
from sqlalchemy import text

from runrecord.recorder import open_engine, upgrade
from tests._postgres import libpq_url

RUNRECORD = [sys.executable, "-m", "runrecord.cli"]


def runrecord(
    *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNRECORD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("runrecord: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_demo_json_validates_and_covers_six_side_effects_across_two_agents(
    cli_env: dict[str, str],
) -> None:
    proc = runrecord("demo", "--json", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    schema = json.loads(runrecord("schema", env=cli_env).stdout)
    for record in records:
        jsonschema.validate(record, schema)

    root, child = records
    assert root["agentId"] == "release-supervisor" and child["agentId"] == "release-deployer"
    assert child["parentRunId"] == root["runId"]
    assert child["rootRunId"] == root["rootRunId"] == root["runId"]
    assert root["finalStatus"] == child["finalStatus"] == "succeeded"
    effects = {c["sideEffect"] for r in records for c in r["toolCalls"]}
    assert {"read", "write", "exec", "network", "deploy", "payment", "model"} <= effects
    # Model calls carry the prompt version and a cost; costs roll up into the root.
    assert all(
        m["promptVersion"].startswith(("supervisor@3:", "deployer@2:"))
        for r in records
        for m in r["modelCalls"]
    )
    assert root["cost"]["total"] == pytest.approx(root["cost"]["own"] + child["cost"]["total"])
    # The deploy was approved and the charge denied, through approval signals.
    calls = {c["tool"]: c for c in child["toolCalls"]}
    assert calls["deploy"]["approvalState"] == "approved"
    assert calls["deploy"]["approval"]["decidedBy"] == "demo-operator"
    assert calls["deploy"]["approval"]["signalIdentity"]
    charge = calls["charge_invoice"]
    assert (charge["status"], charge["approvalState"]) == ("denied", "denied")
    assert charge["approval"]["reason"] == "no release fee for staging"
    # Every payload's redacted copy is in the blob store: the records database by default.
    refs = {
        ref["sha256"]
        for r in records
        for c in r["toolCalls"]
        for ref in [*c["inputRefs"], *c["outputRefs"]]
    }
    engine = open_engine(cli_env["RUNRECORD_DATABASE_URL"])
    with engine.connect() as conn:
        copies = set(conn.execute(text("select sha256 from blobs")).scalars())
    engine.dispose()
    assert refs and copies == refs
    kinds = sorted(a["kind"] for r in records for a in r["artifacts"])
    assert kinds == ["file", "url"]  # no receipt: the charge never ran
    write = next(c for c in root["toolCalls"] if c["tool"] == "write_file")
    assert write["compensator"] == "delete_file"


def test_demo_tree_names_agents_tools_and_the_temporal_ui(cli_env: dict[str, str]) -> None:
    proc = runrecord(
        "demo", env={**cli_env, "COLUMNS": "200", "TEMPORAL_UI_URL": "http://127.0.0.1:8233"}
    )
    assert proc.returncode == 0, proc.stderr
    for needle in (
        "release-supervisor",
        "release-deployer",
        "charge_invoice",
        "payment",
        "approval approved by demo-operator",
        "approval denied by demo-operator",
        "artifact",
        "/namespaces/default/workflows/release-",
    ):
        assert needle in proc.stdout


def test_show_reads_back_what_demo_recorded(cli_env: dict[str, str]) -> None:
    demo = json.loads(runrecord("demo", "--json", env=cli_env).stdout)
    shown = runrecord("show", demo[0]["runId"], "--json", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert [r["runId"] for r in json.loads(shown.stdout)] == [r["runId"] for r in demo]


def test_schema_uses_the_record_names() -> None:
    proc = subprocess.run([*RUNRECORD, "schema"], capture_output=True, text=True, check=True)
    schema = json.loads(proc.stdout)
    run_fields = set(schema["properties"])
    assert {
        "runId",
        "turnId",
        "agentId",
        "model",
        "promptVersion",
        "toolRegistry",
        "toolCalls",
        "artifacts",
        "finalStatus",
        "parentRunId",
        "rootRunId",
        "cost",
    } <= run_fields
    call_fields = set(schema["$defs"]["ToolCall"]["properties"])
    assert {
        "toolCallId",
        "tool",
        "sideEffect",
        "approvalState",
        "inputRefs",
        "outputRefs",
        "retryState",
        "status",
    } <= call_fields


def test_unknown_option_is_one_line(cli_env: dict[str, str]) -> None:
    assert_one_line_error(runrecord("demo", "--frobnicate", env=cli_env), "--frobnicate")


def test_unreachable_temporal_is_one_line_and_writes_nothing(
    cli_env: dict[str, str], database_url: str, home: Path
) -> None:
    env = {**cli_env, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    assert_one_line_error(runrecord("demo", env=env, timeout=60), "cannot reach Temporal")
    with psycopg.connect(libpq_url(database_url)) as conn:
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
    assert list(home.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("not a url", "malformed"),
        ("mysql://root@127.0.0.1/x", "unsupported"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", "unreachable"),
    ],
)
def test_bad_database_url_is_one_line(cli_env: dict[str, str], url: str, needle: str) -> None:
    env = {**cli_env, "RUNRECORD_DATABASE_URL": url}
    for args in (("demo",), ("db", "upgrade"), ("show", "some-run")):
        assert_one_line_error(runrecord(*args, env=env, timeout=60), needle)


def test_newer_schema_is_refused_and_left_untouched(
    cli_env: dict[str, str], database_url: str
) -> None:
    engine = open_engine(database_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("update alembic_version set version_num = '9999_future'"))
    for args in (("db", "upgrade"), ("demo",), ("show", "x")):
        assert_one_line_error(
            runrecord(*args, env=cli_env, timeout=60), "newer than this runrecord"
        )
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == (
            "9999_future"
        )
        assert conn.execute(text("select count(*) from runs")).scalar() == 0


def test_show_unknown_run_is_one_line(cli_env: dict[str, str], engine: object) -> None:
    assert_one_line_error(runrecord("show", "no-such-run", env=cli_env), "no run 'no-such-run'")
