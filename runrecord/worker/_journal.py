"""The journal: the worker's local spool of what history cannot hold.

Activity attempts and artifacts are appended here first (one JSON line each, handed to
the OS before the activity goes on, fsynced in batches), then shipped to the records
database by the worker's shipper (``runrecord.recorder.Shipper``). A database outage
or a worker crash loses nothing: the lines wait for the next shipment, by this worker,
the next one started on this folder, or ``runrecord journal drain``. The journal is a
file on disk, so secrets are redacted before a line is written.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from runrecord._contract import JournalEntry
from runrecord._redaction import Redactor, default_redactor

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
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = directory / name
        self._lock = threading.Lock()
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open
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
            self._file.write(line.encode() + b"\n")
            self._file.flush()
        if not self._unsynced.is_set():  # set() takes a lock: skip it when already set
            self._unsynced.set()
        for listener in self._listeners:
            listener()

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


def journal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


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
