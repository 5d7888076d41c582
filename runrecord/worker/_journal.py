"""The journal: the worker's local spool of what history cannot hold.

Activity attempts and artifacts are appended here first (one JSON line each, handed to
the OS before the activity goes on, fsynced in batches), then shipped to the records
database by the worker's shipper (``runrecord.recorder.Shipper``). A database outage
or a worker crash loses nothing: the lines wait for the next shipment, by this worker,
the next one started on this folder, or ``runrecord journal drain``. The journal is a
file on disk, so secrets are redacted before a line is written.

A writer holds an exclusive ``flock`` on its file while it is open and starts a new file
past ``ROTATE_BYTES``; a shipper removes a file once every line of it is shipped and no
writer holds it (``collect``), so a long-lived worker's disk holds only what is unshipped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from runrecord._contract import JournalEntry
from runrecord._redaction import Redactor, default_redactor

log = logging.getLogger("runrecord.journal")

ROTATE_BYTES = 64 * 1024 * 1024
"""A journal file past this size is closed and a new one started (its shipper removes the
old one once it is shipped)."""
SUFFIX = ".spool.jsonl"
"""Files whose writer holds a lock on them while open: only these are ever removed (a file
from an older writer, which took no lock, might still be written to)."""
FSYNC_INTERVAL = 0.05
"""Seconds between fsyncs of a journal that has new lines: a machine that loses power
loses at most this much of what was written and not yet shipped."""


class Journal:
    """One writer per process; files are named so that many processes can share a folder.

    ``record`` writes the line to the OS at once (a killed process loses nothing) and a
    background thread fsyncs new lines every ``FSYNC_INTERVAL`` (a power loss loses at
    most that much): one fsync per batch, never one per line on the activity's path."""

    def __init__(self, directory: Path, redactor: Redactor | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.redactor = redactor or default_redactor()
        self._lock = threading.Lock()
        self.path, self._file = _new_file(directory)
        self._size = 0
        self._retired: list[Path] = []
        self._listeners: list[Callable[[], None]] = []
        self._unsynced = threading.Event()
        self._closed = False
        self._syncer = threading.Thread(
            target=self._sync_in_batches, name="runrecord-journal-fsync", daemon=True
        )
        self._syncer.start()

    def record(self, entry: JournalEntry) -> None:
        line = self.redacted(entry).model_dump_json(by_alias=True, exclude_none=True)
        with self._lock:
            if self._closed:
                raise ValueError(f"journal {self.path.name} is closed")
            data = line.encode() + b"\n"
            self._file.write(data)
            self._file.flush()
            self._size += len(data)
            if self._size >= ROTATE_BYTES:
                self._rotate()
        if not self._unsynced.is_set():  # set() takes a lock: skip it when already set
            self._unsynced.set()
        for listener in self._listeners:
            listener()

    def _rotate(self) -> None:
        """Go on in a new file (under ``self._lock``); the old one is synced and released."""
        old = self._file
        self._retired.append(self.path)
        self.path, self._file = _new_file(self.directory)
        self._size = 0
        old.flush()
        os.fsync(old.fileno())
        old.close()  # releases its lock: a shipper may remove it once it is shipped

    def files(self) -> list[Path]:
        """This journal's files that may hold unshipped lines: those it rotated out (until
        ``forget``), then the current one."""
        with self._lock:
            return [*self._retired, self.path]

    def forget(self, path: Path) -> None:
        """``path`` is shipped and removed."""
        with self._lock:
            if path in self._retired:
                self._retired.remove(path)

    def listen(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every line written (a shipper's wake-up; must be cheap)."""
        self._listeners.append(listener)

    def _sync_in_batches(self) -> None:
        while True:
            self._unsynced.wait()
            with self._lock:
                if self._closed:
                    return
                self._unsynced.clear()
                fd = self._file.fileno()
            try:
                os.fsync(fd)
            except OSError:
                pass  # closed meanwhile: close() synced
            threading.Event().wait(FSYNC_INTERVAL)

    def redacted(self, entry: JournalEntry) -> JournalEntry:
        """The entry with its free texts (error, artifact URI) redacted."""
        update: dict[str, object] = {}
        if entry.attempt is not None and entry.attempt.error:
            error = _utf8(self.redactor.text(entry.attempt.error))
            update["attempt"] = entry.attempt.model_copy(update={"error": error})
        if entry.artifact is not None:
            uri = _utf8(self.redactor.text(entry.artifact.uri))
            update["artifact"] = entry.artifact.model_copy(update={"uri": uri})
        return entry.model_copy(update=update) if update else entry

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        self._unsynced.set()  # lets the fsync thread end


def _utf8(text: str) -> str:
    """A lone surrogate (an undecodable file name, say) is no UTF-8, so no line could hold it:
    it is written as its escape, ``\\udcff``, the way the records show it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _new_file(directory: Path) -> tuple[Path, BinaryIO]:
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
    path = directory / name
    file = open(path, "ab")  # noqa: SIM115 - kept open
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)  # a new name: nobody else holds it
    return path, file


def journal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def collect(path: Path, shipped: int) -> bool:
    """Remove a journal file whose lines are shipped up to byte ``shipped`` once no writer
    holds it; returns whether it is gone. A torn last line (a writer killed mid-write)
    can never complete: it is copied to ``set-aside/`` first, so nothing is lost."""
    if not path.name.endswith(SUFFIX):
        return False
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # its writer is alive
            f.seek(shipped)
            tail = f.read()
            if b"\n" in tail:
                return False  # complete lines not shipped yet
            if tail:
                set_aside(path, tail, f"a torn last line at byte {shipped} (its writer died)")
            path.unlink()
    except FileNotFoundError:
        return True  # another shipper removed it
    except OSError as err:
        log.warning("journal %s: cannot remove it once shipped: %s", path.name, err)
        return False
    return True


def set_aside(path: Path, raw: bytes, why: str) -> None:
    """Keep lines that cannot be shipped byte for byte in ``set-aside/<file>``, where an
    operator finds them."""
    folder = path.parent / "set-aside"
    log.warning("journal %s: %s; copied to %s", path.name, why, folder / path.name)
    try:
        folder.mkdir(exist_ok=True)
        with open(folder / path.name, "ab") as f:
            f.write(raw)
    except OSError as err:
        log.warning("journal %s: cannot copy set-aside lines: %s", path.name, err)


@dataclass(frozen=True)
class JournalLine:
    """One complete line of a journal file: its entry, or why it is none."""

    start: int
    """Byte offset of the line in its file."""
    end: int
    """Byte offset just past it: where the next read begins."""
    raw: bytes
    entry: JournalEntry | None = None
    problem: str | None = None


def read_from(path: Path, offset: int) -> Iterator[JournalLine]:
    """Complete lines after ``offset``; a line that is no journal entry (invalid UTF-8 or JSON,
    a wrong shape) comes with its problem instead, so that one bad line stops nothing.

    A torn last line (a writer killed mid-write) is left for a later read.
    """
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            if not raw.endswith(b"\n"):
                return
            start, offset = offset, offset + len(raw)
            text = raw.strip()
            if not text:
                continue
            try:
                entry = JournalEntry.model_validate_json(text)
            except ValidationError as err:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
                    for e in err.errors()[:3]
                )
                yield JournalLine(start, offset, raw, problem=f"not a journal entry: {problems}")
                continue
            yield JournalLine(start, offset, raw, entry=entry)
