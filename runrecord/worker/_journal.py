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
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from runrecord._contract import JournalEntry
from runrecord._redaction import Redactor, default_redactor


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
            error = _utf8(self.redactor.text(entry.attempt.error))
            update["attempt"] = entry.attempt.model_copy(update={"error": error})
        if entry.artifact is not None:
            uri = _utf8(self.redactor.text(entry.artifact.uri))
            update["artifact"] = entry.artifact.model_copy(update={"uri": uri})
        return entry.model_copy(update=update) if update else entry

    def close(self) -> None:
        with self._lock:
            self._file.close()


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
