"""Records as evidence: after the demo every run verifies against its signed attestation;
each kind of tampering with the records database or a bundle is found and named."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from runrecord.recorder import open_engine
from runrecord.recorder._attest import canonical, plain
from tests.test_cli import RUNRECORD, runrecord


def _sql(database_url: str, statement: str, **params: object) -> list[tuple[object, ...]]:
    engine = open_engine(database_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        engine.dispose()


def _verify(env: dict[str, str], *args: str) -> tuple[int, dict[str, object]]:
    proc = runrecord("verify", *args, "--json", env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _messages(report: dict[str, object]) -> list[str]:
    problems = report["problems"]
    assert isinstance(problems, list)
    return [f"{p['table']} {p['row']} {p['message']}" for p in problems]


@pytest.fixture
def demo(cli_env: dict[str, str]) -> list[dict[str, object]]:
    proc = runrecord("demo", "--json", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert isinstance(records, list)
    return records


def test_demo_records_verify_and_each_tampering_is_named(
    demo: list[dict[str, object]], cli_env: dict[str, str], database_url: str
) -> None:
    code, report = _verify(cli_env, "--all")
    assert code == 0 and report["ok"], report
    assert report["runs"] == len(demo) and report["attestations"] >= len(demo)

    # A rebuild from the same history writes the same rows: every attestation still holds,
    # and none is added.
    before = _sql(database_url, "SELECT count(*) FROM attestations")
    rebuilt = runrecord("mirror", "rebuild", "--all", env=cli_env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _sql(database_url, "SELECT count(*) FROM attestations") == before
    assert _verify(cli_env, "--all")[0] == 0

    tamperings = {
        "an approver": (
            "UPDATE tool_calls SET approval = jsonb_set(approval, '{decidedBy}', '\"mallory\"') "
            "WHERE approval->>'decidedBy' = 'demo-operator' AND status = 'succeeded'"
        ),
        "a side effect": "UPDATE tool_calls SET side_effect = 'read' WHERE side_effect = 'deploy'",
        "a call status": "UPDATE tool_calls SET status = 'succeeded' WHERE status = 'denied'",
        "a deleted call": (
            "DELETE FROM tool_calls WHERE (run_id, tool_call_id) IN "
            "(SELECT run_id, tool_call_id FROM tool_calls WHERE side_effect = 'write' LIMIT 1)"
        ),
    }
    for what, statement in tamperings.items():
        _sql(database_url, "CREATE TEMP TABLE IF NOT EXISTS x (y int)")  # a fresh transaction
        changed = _sql(database_url, statement + " RETURNING run_id, tool_call_id")
        assert len(changed) >= 1, what
        run_id, call_id = changed[0]
        code, report = _verify(cli_env, "--all")
        assert code == 1, what
        found = _messages(report)
        expected = "deleted since attested" if "deleted" in what else "changed since attested"
        assert f"tool_calls {[run_id, call_id]} {expected}" in found, (what, found)
        # The plain output says it in one line per problem, and exits 1.
        plain = runrecord("verify", str(run_id), env=cli_env)
        assert plain.returncode == 1 and f"run {run_id}: tool_calls row" in plain.stdout
        # History still has the truth: a rebuild puts it back, and the attestation holds.
        assert runrecord("mirror", "rebuild", str(run_id), env=cli_env).returncode == 0
        assert _verify(cli_env, "--all")[0] == 0, what

    # Attestations are append-only: PostgreSQL refuses to delete one ...
    first = "DELETE FROM attestations WHERE seq = (SELECT min(seq) FROM attestations)"
    with pytest.raises(Exception, match="append-only"):
        _sql(database_url, first)
    # ... unless a database administrator drops the guard: the chain shows the gap.
    _sql(database_url, "ALTER TABLE attestations DISABLE TRIGGER attestations_append_only")
    gone = _sql(database_url, first + " RETURNING seq")
    code, report = _verify(cli_env, "--all")
    assert code == 1
    assert any("chain of key" in m and "broken" in m for m in _messages(report)), report
    assert gone


def test_a_bundle_verifies_with_no_database_and_an_edit_to_it_is_found(
    demo: list[dict[str, object]], cli_env: dict[str, str], tmp_path: Path
) -> None:
    root = str(demo[0]["runId"])
    out = tmp_path / "bundle" / "run.json"
    proc = runrecord("export", root, "--tree", "--out", str(out), env=cli_env)
    assert proc.returncode == 0, proc.stderr
    bundle = json.loads(out.read_text())
    assert {r["runId"] for r in bundle["records"]} == {r["runId"] for r in demo}

    # Nothing but the file: no database, no Temporal, an empty home, another folder.
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("RUNRECORD_", "TEMPORAL_"))}
    bare.update(
        RUNRECORD_HOME=str(tmp_path / "empty-home"),
        RUNRECORD_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none",
        TEMPORAL_ADDRESS="127.0.0.1:1",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [*RUNRECORD, "verify", "--bundle", str(out), "--json"],
        env=bare,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], (report, proc.stderr)
    assert not (tmp_path / "empty-home").exists() and list(elsewhere.iterdir()) == []

    # An edited row: the run, the table and the row are named.
    calls = [c for rows in bundle["rows"].values() for c in rows["tool_calls"]]
    denied = next(c for c in calls if c["status"] == "denied")
    denied["status"] = "succeeded"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(bundle))
    code, report = _verify(bare, "--bundle", str(edited))
    assert code == 1
    found = _messages(report)
    row = [denied["run_id"], denied["tool_call_id"]]
    assert f"tool_calls {row} changed since attested" in found, found

    # An edited RunRecord (the rows untouched) no longer matches its rows.
    bundle = json.loads(out.read_text())
    bundle["records"][0]["toolCalls"][0]["sideEffect"] = "read"
    edited.write_text(json.dumps(bundle))
    code, report = _verify(bare, "--bundle", str(edited))
    assert code == 1
    assert any("RunRecord in the bundle does not match its rows" in m for m in _messages(report))

    # Not a bundle: one clear line.
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    proc = runrecord("verify", "--bundle", str(junk), env=bare)
    assert proc.returncode == 1 and proc.stderr.startswith("runrecord: error: ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_gc_archive_moves_old_runs_to_bundles_and_keeps_attestations(
    demo: list[dict[str, object]], cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    attested = _sql(database_url, "SELECT count(*) FROM attestations")[0][0]
    assert _sql(database_url, "SELECT count(*) FROM run_totals")[0][0] > 0
    archive = tmp_path / "archive"
    proc = runrecord("gc", "--older-than", "0s", "--archive", str(archive), "--json", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["archivedRuns"] == [demo[0]["runId"]]
    assert _sql(database_url, "SELECT count(*) FROM runs")[0][0] == 0
    # An archived run's spend leaves the cost reports with its calls.
    assert _sql(database_url, "SELECT count(*) FROM run_totals")[0][0] == 0
    assert json.loads(runrecord("cost", "--by", "tool", "--json", env=cli_env).stdout) == []
    assert _sql(database_url, "SELECT count(*) FROM attestations")[0][0] == attested + len(demo)
    assert _verify(cli_env, "--all")[0] == 0
    (bundle,) = archive.iterdir()
    assert _verify(cli_env, "--bundle", str(bundle))[0] == 0
    keys = json.loads(runrecord("keys", "--json", env=cli_env).stdout)
    assert (
        len(keys) == 1
        and keys[0]["thisProcess"]
        and keys[0]["attestations"] == attested + len(demo)
    )


def test_late_attempts_are_attested_but_never_launder_a_tampered_row(
    demo: list[dict[str, object]], cli_env: dict[str, str], database_url: str, home: Path
) -> None:
    from datetime import UTC, datetime

    from runrecord._contract import JournalEntry
    from runrecord.recorder import apply_journal
    from runrecord.records import Attempt, AttemptOutcome

    root = str(demo[0]["runId"])
    ((call_id,),) = _sql(
        database_url, "SELECT tool_call_id FROM tool_calls WHERE run_id = :r LIMIT 1", r=root
    )

    def late(attempt: int) -> None:
        entry = JournalEntry(
            kind="attempt",
            run_id=root,
            tool_call_id=str(call_id),
            attempt=Attempt(
                attempt=attempt,
                started_at=datetime.now(UTC),
                ended_at=datetime.now(UTC),
                outcome=AttemptOutcome.FAILED,
                error="late line from a worker's journal",
            ),
        )
        engine = open_engine(database_url)
        try:
            with engine.begin() as conn:
                apply_journal(conn, [entry])
        finally:
            engine.dispose()

    os.environ["RUNRECORD_HOME"] = str(home)  # the journal writer signs with the same key
    try:
        count = "SELECT count(*) FROM attestations WHERE run_id = :r"
        (before,) = _sql(database_url, count, r=root)
        late(90)  # an attempt row that lands after the run closed: attested again
        assert _sql(database_url, count, r=root)[0][0] == before[0] + 1
        assert _verify(cli_env, "--all")[0] == 0

        # A tampered row, then a late row: the late row is not attested over the tampering.
        _sql(database_url, "UPDATE runs SET failure = 'covered up' WHERE run_id = :r", r=root)
        _sql(
            database_url,
            "UPDATE run_events SET identity = 'mallory' "
            "WHERE workflow_id = :r AND kind = 'started'",
            r=root,
        )
        late(91)
        assert _sql(database_url, count, r=root)[0][0] == before[0] + 1
        code, report = _verify(cli_env, root)
        assert code == 1
        found = _messages(report)
        assert f"runs {[root]} changed since attested" in found, found
        assert any(m.startswith("run_events") and "changed since attested" in m for m in found)
    finally:
        os.environ.pop("RUNRECORD_HOME", None)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=("Cs",))), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=3000, deadline=None)
@given(_JSON)
def test_a_row_hashes_as_its_rfc8785_form_whichever_way_it_is_written(value: object) -> None:
    # Digests are defined by RFC 8785 (the rfc8785 package); the fast way must agree byte for byte.
    assert canonical(value) == rfc8785.dumps(value)
    assert canonical(plain(value)) == rfc8785.dumps(value)
