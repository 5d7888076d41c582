"""Attestations: a signed, chained digest of each run's rows, and their verification.

A run's digest is a Merkle root over one hash per row of the run (every table that holds
the run), each row hashed as canonical JSON (RFC 8785) and the hashes sorted by (table,
primary key): the digest depends on what the rows say, never on the order they arrived.
Columns that are the mirror's bookkeeping (``BOOKKEEPING``) are left out.

The mirror attests a run in the transaction that writes it, when the run closes and when
an approval, a rollback or a reset is recorded (it writes the run whole from history
then); the journal's writer re-attests a closed run whose late attempts or artifacts it
writes. An attestation never covers a change it cannot vouch for (``violations``): an
attested row deleted, an insert-only row changed, a finished attempt changed.

Each attestation carries the hash of the previous attestation of its key (a chain per
key) and an Ed25519 signature over its canonical JSON; public keys are in ``mirror_keys``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rfc8785
from sqlalchemy import Connection, func, insert, select, text

from runrecord._settings import RunRecordError, Settings
from runrecord.recorder._tables import (
    ActivityOperationRow,
    ArtifactRow,
    AttemptRow,
    AttestationRow,
    Base,
    LineageEdgeRow,
    MirrorKeyRow,
    ModelCallRow,
    RunEventRow,
    RunRow,
    TemporalRunRow,
    ToolCallRow,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger("runrecord.attest")

KEY_ENV = "RUNRECORD_MIRROR_KEY"
"""The mirror's Ed25519 private key: PEM text, or the path of a PEM file."""

OPEN_STATUSES = frozenset({"running", "awaiting_approval", "paused"})

# Bookkeeping: when the mirror last wrote the row, not what happened.
BOOKKEEPING: dict[str, frozenset[str]] = {
    "runs": frozenset({"updated_at"}),
    "temporal_runs": frozenset({"updated_at"}),
}

# How a table's rows may legitimately change between two attestations of a run:
# "rewritten" rows are written again from history by the mirror at every attestation;
# "insert_only" rows never change; "attempts" change only from running to finished.
REWRITTEN, INSERT_ONLY, ATTEMPTS = "rewritten", "insert_only", "attempts"


@dataclass(frozen=True)
class _Table:
    model: type[Base]
    run_column: str
    kind: str

    @cached_property
    def name(self) -> str:
        return self.model.__tablename__

    @cached_property
    def keys(self) -> tuple[str, ...]:
        """The primary key's columns, in _tables.py's order (a leaf's key lists them so)."""
        return tuple(c.name for c in self.model.__table__.primary_key.columns)  # type: ignore[attr-defined]


TABLES: tuple[_Table, ...] = (
    _Table(RunRow, "run_id", REWRITTEN),
    _Table(TemporalRunRow, "workflow_id", REWRITTEN),
    _Table(ToolCallRow, "run_id", REWRITTEN),
    _Table(ModelCallRow, "run_id", REWRITTEN),
    _Table(AttemptRow, "run_id", ATTEMPTS),
    _Table(ActivityOperationRow, "run_id", INSERT_ONLY),
    _Table(ArtifactRow, "run_id", INSERT_ONLY),
    _Table(LineageEdgeRow, "consumer_run_id", INSERT_ONLY),
    _Table(RunEventRow, "workflow_id", INSERT_ONLY),
)
KINDS = {t.name: t.kind for t in TABLES}

Leaf = tuple[str, list[Any], str, bool]
"""(table, primary key, row hash, an attempt still running)."""

PlainRows = dict[str, list[dict[str, Any]]]
"""A run's rows by table, as the JSON values that are hashed."""


# --- canonical rows and the digest


def plain(value: Any) -> Any:
    """A column value as JSON: times in UTC ISO 8601, numbers JSON can carry exactly."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
    if kind is int:
        return value if -(2**53) < value < 2**53 else str(value)
    if kind is float:
        if not math.isfinite(value):
            return repr(value)
        # RFC 8785 writes 30.0 as 30: the same bytes, and the faster way in ``canonical``.
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    if isinstance(value, bool | int | float | str | dict | list | tuple):
        return plain(_builtin(value))
    return str(value)


def _builtin(value: Any) -> Any:
    """A subclass of a JSON type (an enum, say) as its plain built-in value."""
    kinds: tuple[Any, ...] = (bool, int, float, str, dict, list)
    for kind in kinds:
        if isinstance(value, kind):
            return kind(value)
    return list(value)


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON (the ``rfc8785`` package). Values whose canonical form the
    standard library writes byte for byte the same (``_same_in_json``) take that faster way."""
    if _same_in_json(value):
        return json.dumps(
            value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        ).encode()
    return rfc8785.dumps(value)


def _same_in_json(value: Any) -> bool:
    """True when ``json.dumps`` (sorted keys, no spaces, UTF-8) gives RFC 8785's bytes: both
    escape strings alike; floats agree only in fixed notation and when not integral (1e-4 <=
    |x| < 1e16; 1.0 is "1" in RFC 8785); keys sort alike unless one is beyond U+FFFF (RFC
    8785 sorts UTF-16 code units)."""
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is str or v is None or kind is bool:
            continue
        if kind is dict:
            for k in v:
                if type(k) is not str or (not k.isascii() and max(k) > "\uffff"):
                    return False
            stack.extend(v.values())
        elif kind is list:
            stack.extend(v)
        elif kind is int:
            if not -(2**53) < v < 2**53:
                return False
        elif kind is float:
            if v.is_integer() or not 1e-4 <= abs(v) < 1e16:
                return False
        else:
            return False
    return True


def row_leaf(table: str, row: dict[str, Any]) -> Leaf:
    spec = _SPECS[table]
    key = [row[k] for k in spec.keys]
    digest = hashlib.sha256(b"\x00" + canonical([table, row])).hexdigest()
    return table, key, digest, spec.kind == ATTEMPTS and row.get("outcome") == "running"


def leaves_of(rows: PlainRows) -> list[Leaf]:
    """Every row's leaf, sorted by (table, primary key)."""
    leaves = [row_leaf(table, row) for table, table_rows in rows.items() for row in table_rows]
    leaves.sort(key=lambda leaf: (leaf[0], canonical(leaf[1])))  # keys: strings and integers
    return leaves


def merkle_root(hashes: Sequence[str]) -> str:
    """Root of a binary Merkle tree over hex leaf hashes (a lone node is carried up)."""
    level = [bytes.fromhex(h) for h in hashes]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        paired = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


def digest_of(leaves: Sequence[Leaf]) -> str:
    return merkle_root([leaf[2] for leaf in leaves])


_SPECS = {t.name: t for t in TABLES}


def runs_rows(conn: Connection, run_ids: Sequence[str]) -> dict[str, PlainRows]:
    """The rows of each run, every table read once for all of them (bookkeeping left out)."""
    found: dict[str, PlainRows] = {r: {t.name: [] for t in TABLES} for r in run_ids}
    if not run_ids:
        return found
    for spec in TABLES:
        table = spec.model.__table__
        skip = BOOKKEEPING.get(spec.name, frozenset())
        columns = [c for c in table.c if c.key not in skip]  # type: ignore[attr-defined]
        where = table.c[spec.run_column].in_(list(run_ids))  # type: ignore[attr-defined]
        for row in conn.execute(select(*columns).where(where)).mappings():
            owner = row[spec.run_column]
            if owner in found:
                found[owner][spec.name].append({k: plain(v) for k, v in row.items()})
    return found


# --- what an attestation may cover


@dataclass(frozen=True)
class Problem:
    """One thing verification found wrong."""

    run_id: str
    message: str
    table: str | None = None
    row: list[Any] | None = None

    def __str__(self) -> str:
        where = f" {self.table} row {canonical(self.row).decode()}" if self.table else ""
        return f"run {self.run_id}:{where} {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"runId": self.run_id, "table": self.table, "row": self.row, "message": self.message}


def differences(run_id: str, attested: Sequence[Leaf], current: Sequence[Leaf]) -> list[Problem]:
    """Every row added, deleted or changed since the attestation."""
    before = {(leaf[0], canonical(leaf[1])): leaf for leaf in attested}
    now = {(leaf[0], canonical(leaf[1])): leaf for leaf in current}
    found = []
    for key in sorted(before.keys() | now.keys()):
        was, nows = before.get(key), now.get(key)
        if was is None and nows is not None:
            found.append(Problem(run_id, "not in its attestation (added)", nows[0], nows[1]))
        elif nows is None and was is not None:
            found.append(Problem(run_id, "deleted since attested", was[0], was[1]))
        elif was is not None and nows is not None and was[2] != nows[2]:
            found.append(Problem(run_id, "changed since attested", was[0], was[1]))
    return found


def violations(
    run_id: str,
    attested: Sequence[Leaf],
    current: Sequence[Leaf],
    *,
    rewritten: bool = True,
    reset: bool = False,
) -> list[Problem]:
    """Changes since an attestation that no writer of the records makes: an attested row
    deleted, an insert-only row changed, a finished attempt changed. Added rows are not
    violations, nor are changed rewritten rows when the mirror has just written them again
    from history (``rewritten``). A reset moves earlier calls' attempts and artifacts, so
    it may change those."""
    found = []
    for problem in differences(run_id, attested, current):
        kind = KINDS.get(problem.table or "", REWRITTEN)
        if reset and problem.table in ("tool_call_attempts", "artifacts"):
            continue
        if problem.message.startswith("deleted"):
            found.append(problem)
        elif problem.message.startswith("changed"):
            if kind == INSERT_ONLY or (kind == REWRITTEN and not rewritten):
                found.append(problem)
            elif kind == ATTEMPTS and not _was_open(attested, problem):
                found.append(problem)
    return found


def _was_open(attested: Sequence[Leaf], problem: Problem) -> bool:
    return any(leaf[0] == problem.table and leaf[1] == problem.row and leaf[3] for leaf in attested)


# --- the mirror's key


@dataclass(frozen=True)
class MirrorKey:
    private: Ed25519PrivateKey
    public: str
    """The raw public key, base64."""

    @property
    def key_id(self) -> str:
        return hashlib.sha256(base64.b64decode(self.public)).hexdigest()[:32]

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode()


_keys: dict[str, MirrorKey] = {}


def mirror_key(settings: Settings | None = None) -> MirrorKey:
    """The key from RUNRECORD_MIRROR_KEY (PEM, or a path to one), else from
    $RUNRECORD_HOME/mirror-key.pem, made there (mode 0600) on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    named = os.environ.get(KEY_ENV, "").strip()
    path: Path | None = None
    if named.startswith("-----BEGIN"):
        pem = named.encode()
    else:
        path = Path(named).expanduser() if named else key_path(settings)
        if str(path) in _keys:
            return _keys[str(path)]
        if not path.exists() and not named:
            _make_key(path)
        try:
            pem = path.read_bytes()
        except OSError as err:
            raise RunRecordError(f"cannot read the mirror key {path}: {err.strerror}") from None
    cached = _keys.get(pem.decode(errors="replace"))
    if cached is not None:
        return cached
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise RunRecordError(
            f"{KEY_ENV if path is None else path} is not a PEM private key"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise RunRecordError("the mirror key must be an Ed25519 key")
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    key = MirrorKey(private, base64.b64encode(raw).decode())
    _keys[pem.decode(errors="replace")] = key
    if path is not None:
        _keys[str(path)] = key
    return key


def key_path(settings: Settings | None = None) -> Path:
    return (settings or Settings.from_env()).home / "mirror-key.pem"


def _make_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first
    except OSError as err:
        raise RunRecordError(f"cannot create the mirror key {path}: {err.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    log.info("attest: made the mirror key %s", path)


def publish(conn: Connection, key: MirrorKey) -> None:
    from runrecord.recorder._store import upsert

    row = {
        "key_id": key.key_id,
        "public_key": key.public,
        "host": socket.gethostname(),
        "created_at": datetime.now(UTC),
    }
    upsert(conn, MirrorKeyRow, [row], ["key_id"], update=False)


# --- attesting


def entry_of(row: Any) -> dict[str, Any]:
    """The signed part of an attestation (its seq is the database's, not signed)."""
    return {
        "v": 1,
        "keyId": row["key_id"],
        "runId": row["run_id"],
        "namespace": row["namespace"],
        "reason": row["reason"],
        "digest": row["digest"],
        "rows": row["row_count"],
        "previous": row["previous"],
        "createdAt": plain(row["created_at"]),
    }


def attest(
    conn: Connection,
    run_id: str,
    reason: str,
    *,
    key: MirrorKey | None = None,
    rows: PlainRows | None = None,
) -> str | None:
    """Attest a run's rows as they stand in this transaction; returns the digest, or None
    when the latest attestation already says the same, or when the rows hold a change this
    writer cannot vouch for (logged; ``verify`` reports it)."""
    found = None if rows is None else {run_id: rows}
    return attest_runs(conn, {run_id: reason}, key=key, rows=found).get(run_id)


def attest_runs(
    conn: Connection,
    reasons: dict[str, str],
    *,
    key: MirrorKey | None = None,
    rows: dict[str, PlainRows] | None = None,
) -> dict[str, str]:
    """``attest`` for several runs (``reasons``: why each is attested), in one round trip
    for their latest attestations and one lock, whatever their number; returns the digests
    written, by run."""
    key = key or mirror_key()
    if rows is None:
        rows = runs_rows(conn, sorted(reasons))
    current: dict[str, list[Leaf]] = {}
    for run_id in sorted(reasons):
        if rows[run_id]["runs"]:
            current[run_id] = leaves_of(rows[run_id])
    if not current:
        return {}
    digests = {run_id: digest_of(leaves) for run_id, leaves in current.items()}
    _lock(conn, key)
    ids = list(current)
    latest: dict[str, Any] = {}
    for start in range(0, len(ids), _IN_BATCH):
        part = ids[start : start + _IN_BATCH]
        latest.update(_latest(conn, part, AttestationRow.seq, AttestationRow.digest))
    # The attested leaves are read only where the digest moved (a rebuild moves none).
    moved = [row["seq"] for run_id, row in latest.items() if row["digest"] != digests[run_id]]
    attested: dict[int, Any] = {}
    for start in range(0, len(moved), _IN_BATCH):
        attested.update(
            conn.execute(
                select(AttestationRow.seq, AttestationRow.leaves).where(
                    AttestationRow.seq.in_(moved[start : start + _IN_BATCH])
                )
            ).all()
        )
    written: dict[str, str] = {}
    entries: list[tuple[str, str, str, list[Leaf]]] = []
    for run_id, leaves in current.items():
        reason = reasons[run_id]
        if run_id in latest:
            if latest[run_id]["digest"] == digests[run_id]:
                continue
            refused = violations(
                run_id,
                _leaves(attested[latest[run_id]["seq"]]),
                leaves,
                rewritten=reason != "late_rows",  # the journal writer writes no history rows
                reset=reason == "reset",
            )
            if refused:
                log.warning(
                    "attest: run %s not attested (%s): %s%s",
                    run_id,
                    reason,
                    refused[0],
                    f" and {len(refused) - 1} more" if len(refused) > 1 else "",
                )
                continue
        entries.append((run_id, rows[run_id]["runs"][0]["namespace"], reason, leaves))
        written[run_id] = digests[run_id]
    append_all(conn, key, entries)
    return written


_IN_BATCH = 5000
"""Values per IN list."""


def append_all(
    conn: Connection, key: MirrorKey, entries: Sequence[tuple[str, str, str, Sequence[Leaf]]]
) -> None:
    """Append signed attestations (run id, namespace, reason, leaves), in this order, to the
    key's chain (the caller holds ``_lock``): the chain's head is read once, and each entry
    names the one before it; one INSERT for all."""
    if not entries:
        return
    publish(conn, key)
    head = conn.execute(
        select(AttestationRow.entry_hash)
        .where(AttestationRow.key_id == key.key_id)
        .order_by(AttestationRow.seq.desc())
        .limit(1)
    ).scalar()
    rows: list[dict[str, Any]] = []
    for run_id, namespace, reason, leaves in entries:
        row: dict[str, Any] = {
            "key_id": key.key_id,
            "run_id": run_id,
            "namespace": namespace,
            "reason": reason,
            "digest": digest_of(leaves),
            "row_count": len(leaves),
            "previous": head or "",
            "created_at": datetime.now(UTC),
        }
        signed = canonical(entry_of(row))
        row["entry_hash"] = head = hashlib.sha256(signed).hexdigest()
        row["signature"] = key.sign(signed)
        row["leaves"] = [list(leaf) for leaf in leaves]
        rows.append(row)
    conn.execute(insert(AttestationRow), rows)


def _lock(conn: Connection, key: MirrorKey) -> None:
    """One writer at a time extends a key's chain."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"runrecord:attest:{key.key_id}"},
        )


def _leaves(stored: Iterable[Any]) -> list[Leaf]:
    return [(t, list(k), h, bool(o)) for t, k, h, o in stored]


# --- when the writers attest


def reason_to_attest(rows: dict[str, list[dict[str, Any]]]) -> str | None:
    """Why the mirror must attest a change set it is about to write, or None: a reset, an
    approval decided by a person, a rollback asked for, the run closed."""
    events = rows.get("run_events", [])
    if any(e["kind"] == "reset" for e in events):
        return "reset"
    runs = rows.get("runs", [])
    if runs and runs[0]["final_status"] not in OPEN_STATUSES:
        return "close"
    signals = {e.get("detail", {}).get("signal") for e in events if e["kind"] == "signaled"}
    if "runrecord.rollback" in signals:
        return "rollback"
    for call in rows.get("tool_calls", []):
        approval = call.get("approval") or {}
        by = approval.get("decidedBy") or ""
        if by and not by.startswith("policy:") and call["status"] in ("scheduled", "denied"):
            return "approval"
    if signals & {"runrecord.approve", "runrecord.deny"}:
        return "approval"
    return None


def attest_written(conn: Connection, reasons: dict[str, str]) -> None:
    """The mirror's hook: attest the runs it just wrote, in the same transaction."""
    from runrecord.recorder._store import storable

    reasons = {storable(run_id): why for run_id, why in reasons.items()}  # ids as stored
    if not reasons:
        return
    key = _usable_key()
    if key is None:
        return
    attest_runs(conn, reasons, key=key)


def attest_late(
    conn: Connection, run_ids: Iterable[str], *, closed: Iterable[str] | None = None
) -> None:
    """The journal writer's hook: re-attest closed, attested runs it wrote rows for.

    ``closed``: those runs, if the writer looked them up already (ids as stored)."""
    from runrecord.recorder._store import storable

    if closed is None:
        wanted = sorted({storable(run_id) for run_id in run_ids})  # ids as stored
        if not wanted:
            return
        closed = conn.execute(
            select(RunRow.run_id).where(
                RunRow.run_id.in_(wanted),
                RunRow.final_status.not_in(OPEN_STATUSES),
                select(AttestationRow.seq).where(AttestationRow.run_id == RunRow.run_id).exists(),
            )
        ).scalars()
    closed_ids = sorted(closed)
    if not closed_ids:
        return
    key = _usable_key()
    if key is None:
        return
    attest_runs(conn, dict.fromkeys(closed_ids, "late_rows"), key=key)


def _usable_key() -> MirrorKey | None:
    """The key, or None (logged) when it cannot be read: the rows are written all the same,
    unattested, and ``verify`` says so."""
    try:
        return mirror_key()
    except RunRecordError as err:
        log.warning("attest: no attestation written: %s", err)
        return None


# --- verifying


@dataclass
class Verified:
    runs: int = 0
    attestations: int = 0
    problems: list[Problem] | None = None


def public_keys(rows: Iterable[Any]) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = {}
    for row in rows:
        raw = base64.b64decode(row["public_key"])
        if hashlib.sha256(raw).hexdigest()[:32] == row["key_id"]:
            keys[row["key_id"]] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


def check_entry(row: Any, keys: dict[str, Any]) -> list[Problem]:
    """An attestation's own integrity: its hash and its signature."""
    from cryptography.exceptions import InvalidSignature

    signed = canonical(entry_of(row))
    found = []
    where = f"attestation #{row['seq']}"
    if hashlib.sha256(signed).hexdigest() != row["entry_hash"]:
        found.append(Problem(row["run_id"], f"{where} was edited: its hash does not match"))
    key = keys.get(row["key_id"])
    if key is None:
        found.append(Problem(row["run_id"], f"{where} is signed by unknown key {row['key_id']}"))
    else:
        try:
            key.verify(base64.b64decode(row["signature"]), signed)
        except (InvalidSignature, ValueError):
            found.append(Problem(row["run_id"], f"{where}: signature does not verify"))
    return found


def check_chain(entries: Iterable[Any]) -> list[Problem]:
    """Each key's attestations, in order, each naming the one before it."""
    found = []
    heads: dict[str, str] = {}
    for row in entries:
        before = heads.get(row["key_id"], "")
        if row["previous"] != before:
            found.append(
                Problem(
                    row["run_id"],
                    f"attestation #{row['seq']}: chain of key {row['key_id']} broken, the "
                    "attestation it follows is missing or was edited",
                )
            )
        heads[row["key_id"]] = row["entry_hash"]
    return found


def check_run(
    run_id: str, rows: PlainRows | None, latest: Any, *, archived_ok: bool = True
) -> list[Problem]:
    """A run's rows against its latest attestation."""
    present = rows is not None and bool(rows.get("runs"))
    if latest is None:
        if present and rows is not None and rows["runs"][0]["final_status"] in OPEN_STATUSES:
            return []  # attested at its first approval, rollback, reset or at its close
        if present:
            return [Problem(run_id, "closed but never attested")]
        return []
    stored = _leaves(latest["leaves"])
    where = f"attestation #{latest['seq']}"
    if digest_of(stored) != latest["digest"] or len(stored) != latest["row_count"]:
        return [Problem(run_id, f"{where}: its row list was edited (does not give its digest)")]
    if not present:
        if latest["reason"] == "archived" and archived_ok:
            return []
        return [Problem(run_id, f"its rows are gone, yet {where} ({latest['reason']}) holds them")]
    assert rows is not None
    current = leaves_of(rows)
    if digest_of(current) == latest["digest"]:
        return []
    if rows["runs"][0]["final_status"] in OPEN_STATUSES:
        return violations(run_id, stored, current)
    return differences(run_id, stored, current)


_ENTRY_COLUMNS = [c for c in AttestationRow.__table__.c if c.key != "leaves"]


def verify(
    conn: Connection,
    run_ids: Sequence[str] | None,
    *,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 500,
) -> Verified:
    """Check attestations (hashes, signatures, chains) and every run's rows against its
    latest attestation: all runs, or the ones named."""
    keys = public_keys(conn.execute(select(MirrorKeyRow.__table__)).mappings())
    report = Verified(problems=[])
    problems = report.problems
    assert problems is not None
    if run_ids is None:
        attested = select(AttestationRow.run_id).distinct()
        ids = sorted(
            set(conn.execute(select(RunRow.run_id)).scalars())
            | set(conn.execute(attested).scalars())
        )
        entries = conn.execute(
            select(*_ENTRY_COLUMNS).order_by(AttestationRow.key_id, AttestationRow.seq)
        ).mappings()
        for row in entries:
            report.attestations += 1
            problems.extend(check_entry(row, keys))
        problems.extend(
            check_chain(
                conn.execute(
                    select(*_ENTRY_COLUMNS).order_by(AttestationRow.key_id, AttestationRow.seq)
                ).mappings()
            )
        )
    else:
        ids = list(run_ids)
        own = _own_entries(conn, ids)
        for row in own:
            report.attestations += 1
            problems.extend(check_entry(row, keys))
        problems.extend(_check_links(conn, own))
    for start in range(0, len(ids), batch):
        part = ids[start : start + batch]
        rows = runs_rows(conn, part)
        latest = _latest(conn, part)
        for run_id in part:
            problems.extend(check_run(run_id, rows[run_id], latest.get(run_id)))
        report.runs += len(part)
        if progress is not None:
            progress(report.runs, len(ids))
    return report


def _latest(conn: Connection, run_ids: Sequence[str], *columns: Any) -> dict[str, Any]:
    """Each run's latest attestation (``columns`` of it, or all), by run id."""
    newest = (
        select(func.max(AttestationRow.seq))
        .where(AttestationRow.run_id.in_(list(run_ids)))
        .group_by(AttestationRow.run_id)
    )
    wanted = [AttestationRow.run_id, *columns] if columns else [AttestationRow.__table__]
    found = conn.execute(select(*wanted).where(AttestationRow.seq.in_(newest))).mappings()
    return {row["run_id"]: row for row in found}


def _own_entries(conn: Connection, run_ids: Sequence[str]) -> list[Any]:
    return list(
        conn.execute(
            select(*_ENTRY_COLUMNS)
            .where(AttestationRow.run_id.in_(list(run_ids)))
            .order_by(AttestationRow.key_id, AttestationRow.seq)
        ).mappings()
    )


def _check_links(conn: Connection, entries: Sequence[Any]) -> list[Problem]:
    """Each of these attestations against the one before it on its key."""
    found = []
    for row in entries:
        before = previous_entry(conn, row)
        found.extend(check_chain([before, row] if before is not None else [row]))
    return found


def previous_entry(conn: Connection, row: Any) -> Any:
    """The attestation before ``row`` on its key (without its leaves), or None."""
    return (
        conn.execute(
            select(*_ENTRY_COLUMNS)
            .where(AttestationRow.key_id == row["key_id"], AttestationRow.seq < row["seq"])
            .order_by(AttestationRow.seq.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
