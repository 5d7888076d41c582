"""Run bundles: one self-contained JSON file of runs' records, rows, attestations and the
public keys that signed them, verifiable with no records database and no Temporal.

The rows are the attested ones; the records (RunRecords as JSON) are derived from the
rows again on verification (in an in-memory SQLite), so an edit to either is found.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, MetaData, Table, create_engine, select

from runrecord.recorder._attest import (
    BOOKKEEPING,
    TABLES,
    PlainRows,
    Problem,
    Verified,
    check_chain,
    check_entry,
    check_run,
    plain,
    previous_entry,
    public_keys,
    runs_rows,
)
from runrecord.recorder._blobs import BlobStore
from runrecord.recorder._store import load_run, load_tree
from runrecord.recorder._tables import AttestationRow, MirrorKeyRow, RunTotalRow

FORMAT = "runrecord-bundle/1"
_PARTS = ("root", "tree", "records", "rows", "attestations", "chainLinks", "keys")


def export_bundle(
    conn: Connection, run_id: str, *, tree: bool, blobs: BlobStore | None = None
) -> dict[str, Any]:
    """A bundle of a run (and, with ``tree``, every sub-agent run under it); ``blobs`` adds
    the redacted payload copies the records refer to that the store still holds."""
    records = load_tree(conn, run_id) if tree else [r for r in [load_run(conn, run_id)] if r]
    if not records:
        raise LookupError(run_id)
    ids = [r.run_id for r in records]
    rows = runs_rows(conn, ids)
    entries = list(
        conn.execute(
            select(AttestationRow.__table__)
            .where(AttestationRow.run_id.in_(ids))
            .order_by(AttestationRow.seq)
        ).mappings()
    )
    links = []
    for row in entries:
        before = previous_entry(conn, row)
        if before is not None:
            links.append(_entry_json(before))
    used = {row["key_id"] for row in entries}
    keys = conn.execute(
        select(MirrorKeyRow.__table__).where(MirrorKeyRow.key_id.in_(sorted(used)))
    ).mappings()
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "exportedAt": datetime.now(UTC).isoformat(),
        "root": run_id,
        "tree": tree,
        "records": [r.to_json_dict() for r in records],
        "rows": rows,
        "attestations": [_entry_json(row) for row in entries],
        "chainLinks": links,
        "keys": [
            {"keyId": k["key_id"], "publicKey": k["public_key"], "host": k["host"]} for k in keys
        ],
    }
    if blobs is not None:
        bundle["payloads"] = _payloads(bundle["records"], blobs)
    return bundle


def _entry_json(row: Any) -> dict[str, Any]:
    return {k: plain(v) for k, v in row.items()}


def _payloads(records: list[dict[str, Any]], blobs: BlobStore) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for sha in sorted(_refs(records)):
        data = blobs.read(sha)
        if data is not None:
            found[sha] = base64.b64encode(data).decode()
    return found


def _refs(value: Any) -> set[str]:
    """Every payload ref's sha256 in a record."""
    found: set[str] = set()
    if isinstance(value, dict):
        if isinstance(value.get("sha256"), str) and "size" in value:
            found.add(value["sha256"])
        for v in value.values():
            found |= _refs(v)
    elif isinstance(value, list):
        for v in value:
            found |= _refs(v)
    return found


def verify_bundle(bundle: Any) -> Verified:
    """Check a bundle on its own: attestations' hashes, signatures and links, each run's rows
    against its latest attestation, and the records against the rows."""
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise ValueError(f"not a runrecord bundle (format {FORMAT} expected)")
    missing = [k for k in _PARTS if k not in bundle]
    if missing:
        raise ValueError(f"it lacks {', '.join(missing)}")
    rows: dict[str, PlainRows] = bundle["rows"]
    keys = public_keys({"key_id": k["keyId"], "public_key": k["publicKey"]} for k in bundle["keys"])
    report = Verified(problems=[])
    problems = report.problems
    assert problems is not None
    entries = bundle["attestations"]
    by_hash = {e["entry_hash"]: e for e in [*bundle["chainLinks"], *entries]}
    for entry in [*entries, *bundle["chainLinks"]]:
        problems.extend(check_entry(entry, keys))
    for entry in entries:
        before = by_hash.get(entry["previous"])
        if entry["previous"] and before is None:
            problems.append(
                Problem(
                    entry["run_id"],
                    f"attestation #{entry['seq']}: the attestation it follows is not in the bundle",
                )
            )
        elif before is not None:
            problems.extend(check_chain([before, entry]))
    latest: dict[str, Any] = {}
    for entry in entries:
        if entry["run_id"] not in latest or entry["seq"] > latest[entry["run_id"]]["seq"]:
            latest[entry["run_id"]] = entry
    for run_id, run_rows in rows.items():
        found = check_run(run_id, run_rows, latest.get(run_id), archived_ok=False)
        if latest.get(run_id) is None and not found:
            found = [Problem(run_id, "has no attestation in the bundle")]
        problems.extend(found)
        report.runs += 1
    report.attestations = len(entries)
    problems.extend(_check_records(bundle, rows))
    return report


def _check_records(bundle: dict[str, Any], rows: dict[str, PlainRows]) -> list[Problem]:
    """The bundle's RunRecords, derived again from its rows."""
    engine = create_engine("sqlite://")
    metadata = MetaData()
    tables: dict[str, Table] = {}
    for spec in TABLES:
        source = spec.model.__table__  # type: ignore[attr-defined]
        tables[spec.name] = Table(spec.name, metadata, *(c._copy() for c in source.c))
    metadata.create_all(engine)
    with engine.begin() as conn:
        for run_rows in rows.values():
            for name, table_rows in run_rows.items():
                table = tables[name]
                if table_rows:
                    conn.execute(table.insert(), [_stored(table, name, r) for r in table_rows])
        root = bundle["root"]
        again = (
            load_tree(conn, root) if bundle["tree"] else [r for r in [load_run(conn, root)] if r]
        )
    # SQLite hands times back without their zone (UTC): compare times as UTC moments.
    derived = {r.run_id: _utc_times(r.to_json_dict()) for r in again}
    found = []
    for record in bundle["records"]:
        run_id = str(record.get("runId"))
        again_json = derived.get(run_id)
        record = _utc_times(record)
        if again_json != record:
            field = _first_difference(record, again_json)
            found.append(
                Problem(run_id, f"its RunRecord in the bundle does not match its rows (at {field})")
            )
    if len(bundle["records"]) != len(derived):
        found.append(Problem(str(root), "the bundle's RunRecords and rows name different runs"))
    engine.dispose()
    return found


def _utc_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _utc_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utc_times(v) for v in value]
    if isinstance(value, str) and 19 <= len(value) <= 32 and value[4:5] == "-":
        try:
            return plain(datetime.fromisoformat(value))
        except ValueError:
            return value
    return value


def _first_difference(a: Any, b: Any, at: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{at}.{k}" if at else k)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{at}[{i}]")
    return at or "the record"


def _stored(table: Table, name: str, row: dict[str, Any]) -> dict[str, Any]:
    values = dict(row)
    for skipped in BOOKKEEPING.get(name, ()):
        values[skipped] = datetime(1970, 1, 1, tzinfo=UTC) if skipped.endswith("_at") else None
    for column in table.c:
        value = values.get(column.key)
        if isinstance(column.type, DateTime) and isinstance(value, str):
            values[column.key] = datetime.fromisoformat(value)
    return values


def run_ids_of(bundle: dict[str, Any]) -> Sequence[str]:
    return list(bundle.get("rows", {}))


def archivable(conn: Connection, ended_before: datetime) -> list[str]:
    """Closed runs that ended before ``ended_before``, top-level runs only (a sub-agent run
    goes with its root's tree)."""
    from runrecord.recorder._attest import OPEN_STATUSES
    from runrecord.recorder._tables import RunRow

    return list(
        conn.execute(
            select(RunRow.run_id)
            .where(
                RunRow.final_status.not_in(OPEN_STATUSES),
                RunRow.ended_at < ended_before,
                RunRow.parent_run_id.is_(None),
            )
            .order_by(RunRow.run_id)
        ).scalars()
    )


def archive_tree(conn: Connection, run_id: str, bundle: dict[str, Any]) -> int:
    """Delete a tree's rows, once its bundle is written: each run gets a last attestation
    (reason ``archived``) of the rows that went into the bundle; attestations stay."""
    from sqlalchemy import delete

    from runrecord.recorder._attest import _lock, append_all, leaves_of, mirror_key

    key = mirror_key()
    _lock(conn, key)
    append_all(
        conn,
        key,
        [
            (
                archived_id,
                run_rows["runs"][0]["namespace"] if run_rows["runs"] else "",
                "archived",
                leaves_of(run_rows),
            )
            for archived_id, run_rows in bundle["rows"].items()
        ],
    )
    deleted = 0
    for archived_id in bundle["rows"]:
        for spec in TABLES:
            owner = getattr(spec.model, spec.run_column)
            result = conn.execute(delete(spec.model).where(owner == archived_id))
            deleted += result.rowcount or 0
        # Derived from the calls just deleted (not attested): cost reports count it no more.
        conn.execute(delete(RunTotalRow).where(RunTotalRow.run_id == archived_id))
    return deleted
