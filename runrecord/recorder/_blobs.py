"""The blob store: redacted copies of payloads, named by the sha256 of the unredacted payload.

A ref in a record says which payload a call saw (hash, size, media type). The blob
keeps a redacted copy for as long as retention allows; ``gc`` deletes old copies and
the refs keep their hashes, so a record stays verifiable without keeping content.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from runrecord._redaction import Redactor, default_redactor

TEXT_TYPES = ("application/json", "text/plain")


@dataclass(frozen=True)
class Collected:
    """What ``BlobStore.collect`` removed."""

    removed: int
    removed_bytes: int
    kept: int


class BlobStore:
    """Content-addressed files ``<root>/<sha[:2]>/<sha>``, each written once, atomically."""

    def __init__(self, root: Path, redactor: Redactor | None = None) -> None:
        self.root = root
        self.redactor = redactor or default_redactor()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def keep(self, sha256: str, canonical: bytes, media_type: str) -> bool:
        """Store the redacted copy of a payload; True if it was written now.

        A copy already there only has its time renewed, so retention counts from its
        last use. Binary payloads are not kept: they cannot be checked for secrets.
        """
        target = self.path(sha256)
        if target.exists():
            os.utime(target)
            return False
        copy = self.redacted(canonical, media_type)
        if copy is None:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(copy)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def redacted(self, canonical: bytes, media_type: str) -> bytes | None:
        if media_type == "application/json":
            try:
                value = json.loads(canonical)
            except ValueError:
                return None
            return canonical_json(self.redactor.value(value))
        if media_type in TEXT_TYPES or media_type.startswith("text/"):
            try:
                return self.redactor.text(canonical.decode("utf-8")).encode("utf-8")
            except UnicodeDecodeError:
                return None
        return None

    def read(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def collect(self, older_than: timedelta, *, dry_run: bool = False) -> Collected:
        """Delete copies not written or used within ``older_than``."""
        cutoff = time.time() - older_than.total_seconds()
        removed = removed_bytes = kept = 0
        if not self.root.is_dir():
            return Collected(0, 0, 0)
        for shard in self.root.iterdir():
            if not shard.is_dir():
                continue
            for blob in shard.iterdir():
                stat = blob.stat()
                if stat.st_mtime < cutoff:
                    if not dry_run:
                        blob.unlink(missing_ok=True)
                    removed += 1
                    removed_bytes += stat.st_size
                else:
                    kept += 1
        return Collected(removed, removed_bytes, kept)


def canonical_json(value: object) -> bytes:
    """The canonical form refs hash: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
