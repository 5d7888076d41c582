"""The journal: an append-only local file of what history cannot hold.

Activity attempts and artifacts are appended here first (one JSON line each, flushed
to the OS before the activity goes on), then drained into the records database. A
database outage or a worker crash loses nothing: the lines wait for the next drain.
The journal is a file on disk, so secrets are redacted before a line is written.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from runrecord._redaction import Redactor, default_redactor
from runrecord.records import JournalEntry


class Journal:
    """One writer per process; files are named so that many processes can share a folder."""

    def __init__(self, directory: Path, redactor: Redactor | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.redactor = redactor or default_redactor()
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = directory / name
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open

    def record(self, entry: JournalEntry) -> None:
        line = self.redacted(entry).model_dump_json(by_alias=True, exclude_none=True)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def redacted(self, entry: JournalEntry) -> JournalEntry:
        """The entry with its free texts (error, artifact URI) redacted."""
        update: dict[str, object] = {}
        if entry.attempt is not None and entry.attempt.error:
            error = self.redactor.text(entry.attempt.error)
            update["attempt"] = entry.attempt.model_copy(update={"error": error})
        if entry.artifact is not None:
            uri = self.redactor.text(entry.artifact.uri)
            update["artifact"] = entry.artifact.model_copy(update={"uri": uri})
        return entry.model_copy(update=update) if update else entry

    def close(self) -> None:
        with self._lock:
            self._file.close()


def journal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def read_from(path: Path, offset: int) -> Iterator[tuple[int, JournalEntry]]:
    """Complete lines after ``offset``, each with the offset just past it.

    A torn last line (a writer killed mid-write) is left for a later read.
    """
    with open(path, "rb") as f:
        f.seek(offset)
        for raw in f:
            if not raw.endswith(b"\n"):
                return
            offset += len(raw)
            text = raw.strip()
            if text:
                yield offset, JournalEntry.model_validate_json(text)
