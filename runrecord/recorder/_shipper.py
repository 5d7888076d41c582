"""The shipper: the worker's journal (its local spool) to the records database.

The one writer of the attempt and artifact tables. It runs in the worker's process, in
a thread of its own, off every activity's path: the interceptor appends a line to the
journal and goes on; the shipper wakes, reads the new complete lines from the file's
stored cursor, and writes their rows and the new cursor in one transaction. While the
database is down the journal grows and the shipper retries with a doubling wait; when a
worker dies, the next one started on the same folder (or ``runrecord journal drain``)
ships what it left, because the cursor lives in the records database, not in memory.

Through the same connection it tells mirrors anywhere that a run started or moved on
(PostgreSQL ``NOTIFY`` on ``NOTIFY_CHANNEL``), so a mirror follows a new run at once
instead of at its next visibility poll.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, select, text

from runrecord.recorder._database import is_outage, refusal
from runrecord.recorder._store import apply_journal, journal_cursor, set_journal_cursor
from runrecord.recorder._tables import JournalCursorRow
from runrecord.worker._journal import (
    Journal,
    collect,
    journal_files,
    read_from,
    set_aside,
)
from runrecord.worker._nudge import listen

log = logging.getLogger("runrecord.shipper")

NOTIFY_CHANNEL = "runrecord_runs"
"""PostgreSQL channel on which workers announce runs: payload ``{"namespace", "workflowId",
"runId"}`` (JSON)."""
GATHER = 0.005
"""Seconds the shipper waits after a wake-up for more lines, so a burst is one transaction."""
SHIP_GAP = 0.05
"""Seconds from one shipment's end to the next one's start while lines keep coming, at most:
as long as the last shipment took, at least ``GATHER``. A line after a quiet spell ships at
once; under load the lines of that gap share one transaction (one transaction per line would
cost the worker's CPU what the agent needs)."""
RESCAN_INTERVAL = 30.0
"""Seconds between looks at the folder's other files (a dead worker's spool)."""
MAX_WAIT = 10.0
MAX_PAYLOAD = 7900  # bytes; PostgreSQL refuses a NOTIFY payload of 8000 or more


class Shipper:
    """Ships a journal folder to the records database; ``start`` runs it in a thread."""

    def __init__(
        self,
        engine: Engine,
        directory: Path,
        *,
        journal: Journal | None = None,
        namespace: str = "default",
    ) -> None:
        self.engine = engine
        self.directory = directory
        self.journal = journal
        self.namespace = namespace
        self.errors: list[str] = []
        self.lines_shipped = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._runs: dict[tuple[str, str], None] = {}
        self._runs_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._unsubscribe = lambda: None
        self._sizes: dict[str, int] = {}
        """Bytes of each file known to be shipped (skips a file that has not grown)."""
        self._notify = engine.dialect.name == "postgresql"
        self._kept: Connection | None = None
        """The shipper thread's connection, kept between shipments (see ``_connected``)."""
        self._keep = False

    @contextmanager
    def _connected(self) -> Iterator[Connection]:
        """A connection for one shipment. The shipper thread keeps one from shipment to
        shipment: taking one from the pool pings the database first, a round trip each time.
        A shipment that fails gives it back (a broken one is discarded)."""
        if not self._keep:
            with self.engine.connect() as conn:
                yield conn
            return
        if self._kept is None:
            self._kept = self.engine.connect()
        try:
            yield self._kept
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        conn, self._kept = self._kept, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a connection already broken has nothing left to give back
                pass

    # --- shipping once (worker start, `runrecord journal drain`, tests)

    def drain(self, files: Iterable[Path] | None = None) -> int:
        """Ship every new complete line of the folder's files (or of ``files``); returns how
        many were applied. Raises if the database is unreachable."""
        if files is None:
            files = journal_files(self.directory)
            self._known_cursors(files)
        applied = sum(self._ship_file(path) for path in files)
        for path in files:
            if self.journal is None or path != self.journal.path:
                self._collect(path)
        return applied

    def _collect(self, path: Path) -> None:
        """Remove a file once it is shipped and its writer is gone."""
        shipped = self._sizes.get(path.name)
        if shipped is not None and collect(path, shipped):
            self._sizes.pop(path.name, None)
            if self.journal is not None:
                self.journal.forget(path)

    def _known_cursors(self, files: list[Path]) -> None:
        """Read the cursors of files not seen yet in one query: a folder of old, shipped
        spools costs one round trip, not one transaction each."""
        unseen = [p.name for p in files if p.name not in self._sizes]
        if not unseen:
            return
        with self._connected() as conn, conn.begin():
            found = conn.execute(
                select(JournalCursorRow.file, JournalCursorRow.offset).where(
                    JournalCursorRow.file.in_(unseen)
                )
            )
            self._sizes.update({name: int(offset) for name, offset in found})

    def _ship_file(self, path: Path) -> int:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        if self._sizes.get(path.name, -1) >= size:
            return 0
        try:
            shipped = self._ship_in_one_transaction(path, line_by_line=False)
        except _Refused:
            # Some line's row is refused: the transaction is undone, and the lines go again
            # one by one, each in a savepoint, to find and set aside the refused ones.
            shipped = self._ship_in_one_transaction(path, line_by_line=True)
        if shipped is None:
            return 0  # another shipper has it now; it moves the cursor
        applied, offset = shipped
        self._sizes[path.name] = offset
        self.lines_shipped += applied
        return applied

    def _ship_in_one_transaction(self, path: Path, *, line_by_line: bool) -> tuple[int, int] | None:
        with self._connected() as conn, conn.begin():
            shipped = _ship(conn, path, line_by_line=line_by_line)
            if shipped is not None:
                self._send_notifications(conn)
            return shipped

    # --- shipping continuously (the worker)

    def start(self) -> None:
        """Ship in a background thread: what earlier workers left first, then this worker's
        new lines as they are written. Mirrors are told of runs as they start and move."""
        if self.journal is not None:
            self.journal.listen(self._woken)
        self._unsubscribe = listen(self._nudged)
        self._keep = True
        self._thread = threading.Thread(target=self._loop, name="runrecord-shipper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after one last shipment (if the database answers)."""
        self._unsubscribe()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _woken(self) -> None:
        if not self._wake.is_set():  # set() takes a lock: skip it when already set
            self._wake.set()

    def _nudged(self, workflow_id: str, temporal_run_id: str) -> None:
        if not self._notify or not temporal_run_id:
            return
        with self._runs_lock:
            self._runs[(workflow_id, temporal_run_id)] = None
        self._wake.set()

    def _loop(self) -> None:
        try:
            self._ship_until_stopped()
        finally:
            self._release()

    def _ship_until_stopped(self) -> None:
        wait = 0.0
        rescan_at = 0.0  # the first round ships every file of the folder
        shipped_at = gap = 0.0
        while True:
            stopping = self._stop.is_set()
            began = time.monotonic()
            try:
                if time.monotonic() >= rescan_at or stopping:
                    self.drain()
                    rescan_at = time.monotonic() + RESCAN_INTERVAL
                elif self.journal is not None:
                    self.drain(self.journal.files())
                if self._pending_runs():
                    with self._connected() as conn, conn.begin():
                        self._send_notifications(conn)
                if wait:
                    log.info("shipper: the records database answers again; spool shipped")
                wait = 0.0
            except Exception as err:
                self._error(err)
                wait = min(max(wait * 2, 0.1), MAX_WAIT)
            if stopping:
                return
            if wait:
                self._stop.wait(wait)
                continue
            shipped_at = time.monotonic()
            gap = min(max(shipped_at - began, GATHER), SHIP_GAP)
            self._wake.wait(RESCAN_INTERVAL)
            self._wake.clear()
            self._stop.wait(max(GATHER, shipped_at + gap - time.monotonic()))

    def _pending_runs(self) -> bool:
        with self._runs_lock:
            return bool(self._runs)

    def _send_notifications(self, conn: Connection) -> None:
        """NOTIFY the runs nudged since the last transaction; sent when ``conn`` commits."""
        if not self._notify:
            return
        with self._runs_lock:
            runs, self._runs = list(self._runs), {}
        if not runs:
            return
        payloads = [
            {"p": payload}
            for w, r in runs
            # ASCII JSON (a NUL or lone surrogate escaped); a payload past PostgreSQL's limit
            # is not sent, and visibility finds that run.
            if len(
                payload := json.dumps(
                    {"namespace": self.namespace, "workflowId": w, "runId": r},
                    separators=(",", ":"),
                )
            )
            < MAX_PAYLOAD
        ]
        if not payloads:
            return
        try:
            # In a savepoint: a refused notification never holds back the rows.
            with conn.begin_nested():
                conn.execute(text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', :p)"), payloads)
        except Exception as err:
            if not is_outage(err):
                log.warning("shipper: notifications not sent: %s", refusal(err))
                return
            with self._runs_lock:  # the transaction fails: tell them next time
                for key in runs:
                    self._runs[key] = None
            raise

    def _error(self, err: BaseException) -> None:
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if not self.errors or self.errors[-1] != message:
            log.warning("shipper: %s; the journal keeps the lines until it answers", message)
        self.errors = [*self.errors[-99:], message]


class _Refused(Exception):
    """The records refused a row of the lines shipped together (the transaction is undone)."""


# The file's lock and its cursor in one round trip (PostgreSQL).
_LOCK_AND_CURSOR = text(
    'SELECT pg_try_advisory_xact_lock(hashtextextended(:k, 0)), c."offset", '
    "c.lines_set_aside FROM (SELECT 1) AS one LEFT JOIN journal_cursors AS c ON c.file = :f"
)


def _locked_cursor(conn: Connection, name: str) -> tuple[int, int] | None:
    """The file's cursor (``journal_cursor``), with the file locked for this transaction:
    one shipper per file at a time. None if another shipper holds it (PostgreSQL; SQLite
    lets one writer in anyway)."""
    if conn.dialect.name != "postgresql":
        return journal_cursor(conn, name)
    locked, offset, aside = conn.execute(
        _LOCK_AND_CURSOR, {"k": f"runrecord:journal:{name}", "f": name}
    ).one()
    if not locked:
        return None
    return int(offset or 0), int(aside or 0)


def _ship(conn: Connection, path: Path, *, line_by_line: bool = False) -> tuple[int, int] | None:
    """Apply a file's lines past its stored cursor and move the cursor, in ``conn``'s
    transaction; returns the lines applied and the new offset, or None if another shipper
    holds the file.

    The lines go in one statement; if the records refuse a row, ``_Refused`` is raised and
    the caller ships again ``line_by_line``: each line in a savepoint of its own. A line
    that cannot be applied (not a journal entry, or a row the database refuses) is set
    aside: logged, copied to ``set-aside/<file>`` beside the journal, counted in the file's
    cursor, and passed over, so the lines after it are shipped."""
    cursor = _locked_cursor(conn, path.name)
    if cursor is None:
        return None
    offset, aside_count = cursor
    if path.stat().st_size <= offset:
        return 0, offset
    lines = list(read_from(path, offset))
    if not lines:
        return 0, offset
    readable = [(line, line.entry) for line in lines if line.entry is not None]
    problems = {line.start: line.problem for line in lines if line.problem is not None}
    if not line_by_line:
        try:
            applied = apply_journal(conn, [entry for _, entry in readable])
        except Exception as err:
            if is_outage(err):
                raise
            raise _Refused from err
    else:
        applied = 0
        for line, entry in readable:
            try:
                with conn.begin_nested():
                    applied += apply_journal(conn, [entry])
            except Exception as line_err:
                if is_outage(line_err):
                    raise
                problems[line.start] = f"the records refuse it: {refusal(line_err)}"
    last = None
    if problems:
        aside = [line for line in lines if line.start in problems]
        for line in aside:
            why = f"line at byte {line.start} set aside: {problems[line.start]}"
            set_aside(path, line.raw, why)
        aside_count += len(aside)
        last = f"byte {aside[-1].start}: {problems[aside[-1].start]}"
    set_journal_cursor(
        conn, path.name, lines[-1].end, lines_set_aside=aside_count, last_set_aside=last
    )
    return applied, lines[-1].end


def ship_journal(engine: Engine, directory: Path) -> int:
    """Ship a journal folder once (what a dead worker left, say); returns the lines applied."""
    return Shipper(engine, directory).drain()
