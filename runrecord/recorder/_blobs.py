"""The blob store: redacted copies of payloads, named by the sha256 of the unredacted payload.

A ref in a record says which payload a call saw (hash, size, media type). The blob
keeps a redacted copy for as long as retention allows; ``gc`` deletes old copies and
the refs keep their hashes, so a record stays verifiable without keeping content.

Three backends share one interface, chosen by ``RUNRECORD_BLOBS``: the records database
(``postgres``, the default on a PostgreSQL records database), a local folder (a path, the
default on SQLite) and S3-compatible object storage (``s3://bucket/prefix``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runrecord._redaction import Redactor, default_redactor
from runrecord._settings import RunRecordError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

TEXT_TYPES = ("application/json", "text/plain")
DATABASE_NAMES = ("postgres", "postgresql", "db")
RENEW_AFTER = 3600.0
"""A copy in use has its time renewed at most once an hour: retention counts from last use."""
UNREFERENCED_GRACE = timedelta(hours=1)
"""A mirror writes copies just before the rows that refer to them: ``gc --unreferenced``
leaves copies younger than this alone."""
_SHA = re.compile(r"^[0-9a-f]{64}$")
_DELETE_BATCH = 1000

Body = tuple[bytes, str]
Progress = Callable[[int, int], None]
"""Called with (copies looked at, copies removed) while ``collect`` runs."""


class BlobStoreError(RunRecordError):
    """The blob store refused or could not be reached; the message is one line."""


@dataclass(frozen=True)
class Collected:
    """What ``BlobStore.collect`` removed."""

    removed: int
    removed_bytes: int
    kept: int


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int
    used_at: float  # seconds since the epoch of the last write or renewal


class BlobStore(ABC):
    """Content-addressed redacted copies, each written once; backends say where bytes live."""

    where: str
    """The store as people read it in messages (never with credentials)."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or default_redactor()

    # --- what backends provide

    @abstractmethod
    def _present(self, shas: list[str]) -> dict[str, bool]:
        """The shas already stored, their time renewed if older than ``RENEW_AFTER``; True for
        a copy that must be written again to be renewed."""

    @abstractmethod
    def _write(self, copies: dict[str, bytes]) -> None: ...

    @abstractmethod
    def _get(self, sha256: str) -> bytes | None: ...

    @abstractmethod
    def _entries(self) -> Iterator[Entry]: ...

    @abstractmethod
    def _delete(self, shas: list[str], unused_since: float) -> None:
        """Delete these copies, sparing (where the backend can tell) any used again at or
        after ``unused_since``: a mirror may renew a copy while gc walks the store."""

    @abstractmethod
    def check(self) -> None:
        """Fail with one line if the store cannot be used (missing bucket, refused
        credentials, an unwritable folder)."""

    # --- the interface

    def keep(self, sha256: str, canonical: bytes, media_type: str) -> bool:
        """Store the redacted copy of a payload; True if it was written now."""
        return self.keep_many({sha256: (canonical, media_type)}) == 1

    def keep_many(self, bodies: Mapping[str, Body]) -> int:
        """Store the redacted copies of payloads, by sha256; returns how many were written.

        A copy already there only has its time renewed, so retention counts from its
        last use. Binary payloads are not kept: they cannot be checked for secrets.
        """
        shas = [sha for sha in bodies if _SHA.match(sha)]
        if not shas:
            return 0
        with self._batch():
            present = self._present(shas)
            copies: dict[str, bytes] = {}
            for sha in shas:
                if present.get(sha, True):
                    copy = self.redacted(*bodies[sha])
                    if copy is not None:
                        copies[sha] = copy
            if copies:
                self._write(copies)
        return sum(1 for sha in copies if sha not in present)

    def _batch(self) -> AbstractContextManager[object]:
        """Around one ``keep_many``: a backend may look and write in one session."""
        return nullcontext()

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
        """The redacted copy, or None if the store has none (never kept, or collected)."""
        sha = sha256.strip().lower()
        if not _SHA.match(sha):
            return None
        return self._get(sha)

    def collect(
        self,
        older_than: timedelta | None,
        *,
        referenced: set[str] | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> Collected:
        """Delete copies not written or used within ``older_than`` and, given the shas the
        records still refer to, copies no record refers to (past a grace period)."""
        now = time.time()
        cutoff = now - older_than.total_seconds() if older_than is not None else None
        grace = now - UNREFERENCED_GRACE.total_seconds()
        unused_since = max(cutoff or 0.0, grace if referenced is not None else 0.0)
        removed = removed_bytes = kept = seen = 0
        doomed: list[str] = []
        for entry in self._entries():
            seen += 1
            old = cutoff is not None and entry.used_at < cutoff
            orphan = (
                referenced is not None and entry.sha256 not in referenced and entry.used_at < grace
            )
            if old or orphan:
                doomed.append(entry.sha256)
                removed += 1
                removed_bytes += entry.size
            else:
                kept += 1
            if len(doomed) >= _DELETE_BATCH:
                if not dry_run:
                    self._delete(doomed, unused_since)
                doomed = []
            if progress is not None and seen % _DELETE_BATCH == 0:
                progress(seen, removed)
        if doomed and not dry_run:
            self._delete(doomed, unused_since)
        if progress is not None:
            progress(seen, removed)
        return Collected(removed, removed_bytes, kept)


# --- a local folder


class FolderBlobStore(BlobStore):
    """Files ``<root>/<sha[:2]>/<sha>``, each written once, atomically."""

    def __init__(self, root: Path, redactor: Redactor | None = None) -> None:
        super().__init__(redactor)
        self.root = root
        self.where = str(root)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BlobStoreError(f"blob store {self.where}: {err.strerror or err}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise BlobStoreError(f"blob store {self.where}: folder is not writable")

    def _present(self, shas: list[str]) -> dict[str, bool]:
        now = time.time()
        present = {}
        for sha in shas:
            target = self.path(sha)
            try:
                if now - target.stat().st_mtime > RENEW_AFTER:
                    os.utime(target)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise self._failed(err) from None
            present[sha] = False
        return present

    def _write(self, copies: dict[str, bytes]) -> None:
        for sha, copy in copies.items():
            target = self.path(sha)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            except OSError as err:
                raise self._failed(err) from None
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(copy)
                os.replace(tmp, target)
            except OSError as err:
                Path(tmp).unlink(missing_ok=True)
                raise self._failed(err) from None
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def _get(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._failed(err) from None

    def _entries(self) -> Iterator[Entry]:
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for blob in shard.iterdir():
                if not _SHA.match(blob.name):
                    continue
                try:
                    stat = blob.stat()
                except FileNotFoundError:
                    continue
                yield Entry(blob.name, stat.st_size, stat.st_mtime)

    def _delete(self, shas: list[str], unused_since: float) -> None:
        for sha in shas:
            target = self.path(sha)
            try:
                if target.stat().st_mtime < unused_since:
                    target.unlink()
            except FileNotFoundError:
                continue

    def _failed(self, err: OSError) -> BlobStoreError:
        return BlobStoreError(f"blob store {self.where}: {err.strerror or err}")


# --- the records database


class DatabaseBlobStore(BlobStore):
    """Rows of the ``blobs`` table in the records database, one per sha256.

    Errors are the database's own: the mirror treats an outage as it treats one of its
    rows (it retries the whole write), so copies and rows come back together.
    """

    def __init__(self, engine: Engine, redactor: Redactor | None = None) -> None:
        super().__init__(redactor)
        self.engine = engine
        self.where = f"records database {engine.url.render_as_string(hide_password=True)}"
        self._session = threading.local()

    @contextmanager
    def _batch(self) -> Iterator[object]:
        """One transaction for a ``keep_many``: looking and writing cost one connection."""
        if getattr(self._session, "conn", None) is not None:
            yield self._session.conn  # the caller's transaction (``within``)
            return
        with self.engine.begin() as conn, self.within(conn):
            yield conn

    def shares_database(self, engine: Engine) -> bool:
        """Whether this store is in ``engine``'s database (the records' own)."""
        return self.engine is engine or self.engine.url == engine.url

    @contextmanager
    def within(self, conn: Connection) -> Iterator[None]:
        """Keep copies in ``conn``'s transaction, not one of the store's own: a writer of
        rows that point at the copies commits both at once, or neither."""
        self._session.conn = conn
        try:
            yield
        finally:
            self._session.conn = None

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        conn = getattr(self._session, "conn", None)
        if conn is not None:
            yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    def check(self) -> None:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from runrecord.recorder._database import refusal
        from runrecord.recorder._tables import BlobRow

        try:
            with self.engine.connect() as conn:
                conn.execute(select(BlobRow.sha256).limit(1)).all()
        except SQLAlchemyError as err:
            raise BlobStoreError(
                f"blob store {self.where}: {refusal(err)} (is the schema current? "
                "`runrecord db upgrade`)"
            ) from None

    def _present(self, shas: list[str]) -> dict[str, bool]:
        from sqlalchemy import select, update

        from runrecord.recorder._tables import BlobRow

        now = datetime.now(UTC)
        stale = now - timedelta(seconds=RENEW_AFTER)
        with self._transaction() as conn:
            query = select(BlobRow.sha256).where(BlobRow.sha256.in_(shas))
            found = set(conn.execute(query).scalars())
            if found:
                conn.execute(
                    update(BlobRow)
                    .where(BlobRow.sha256.in_(found), BlobRow.used_at < stale)
                    .values(used_at=now)
                )
        return dict.fromkeys(found, False)

    def _write(self, copies: dict[str, bytes]) -> None:
        from runrecord.recorder._tables import BlobRow

        now = datetime.now(UTC)
        rows = [
            {"sha256": sha, "content": copy, "size": len(copy), "created_at": now, "used_at": now}
            for sha, copy in sorted(copies.items())
        ]
        insert: Any
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        # Two mirrors may write the same copy at once: the first one wins, both succeed.
        statement = insert(BlobRow).on_conflict_do_nothing(index_elements=["sha256"])
        with self._transaction() as conn:
            conn.execute(statement, rows)

    def _get(self, sha256: str) -> bytes | None:
        from sqlalchemy import select

        from runrecord.recorder._tables import BlobRow

        with self.engine.connect() as conn:
            content = conn.execute(
                select(BlobRow.content).where(BlobRow.sha256 == sha256)
            ).scalar_one_or_none()
        return bytes(content) if content is not None else None

    def _entries(self) -> Iterator[Entry]:
        from sqlalchemy import select

        from runrecord.recorder._tables import BlobRow

        # Keyset pages, each read in a short transaction: gc deletes between pages.
        after = ""
        while True:
            with self.engine.connect() as conn:
                page = conn.execute(
                    select(BlobRow.sha256, BlobRow.size, BlobRow.used_at)
                    .where(BlobRow.sha256 > after)
                    .order_by(BlobRow.sha256)
                    .limit(_DELETE_BATCH)
                ).all()
            for sha, size, used_at in page:
                yield Entry(sha, size, _epoch(used_at))
            if len(page) < _DELETE_BATCH:
                return
            after = page[-1][0]

    def _delete(self, shas: list[str], unused_since: float) -> None:
        from sqlalchemy import delete

        from runrecord.recorder._tables import BlobRow

        since = datetime.fromtimestamp(unused_since, UTC)
        with self.engine.begin() as conn:
            conn.execute(delete(BlobRow).where(BlobRow.sha256.in_(shas), BlobRow.used_at < since))


def _epoch(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


# --- S3-compatible object storage


class S3BlobStore(BlobStore):
    """Objects ``<prefix>/<sha[:2]>/<sha>`` in an S3-compatible bucket, through obstore.

    Endpoint, region and credentials come from the standard AWS environment variables
    (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ...); an ``http://`` endpoint is allowed as given.
    """

    def __init__(self, url: str, redactor: Redactor | None = None) -> None:
        super().__init__(redactor)
        try:
            from obstore.store import S3Store
        except ImportError:
            raise BlobStoreError(
                f"blob store {url}: S3 support is not installed: pip install 'runrecord[s3]'"
            ) from None
        self.where = url.rstrip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        client: dict[str, Any] = {"connect_timeout": timedelta(seconds=5)}
        client["timeout"] = timedelta(seconds=30)
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True
        retry: dict[str, Any] = {"max_retries": 3, "retry_timeout": timedelta(seconds=15)}
        try:
            self.store = S3Store.from_url(
                self.where,
                client_options=client,  # type: ignore[arg-type]
                retry_config=retry,  # type: ignore[arg-type]
            )
        except Exception as err:
            raise BlobStoreError(f"blob store {self.where}: {_s3_problem(err)}") from None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="runrecord-s3")

    @staticmethod
    def key(sha256: str) -> str:
        return f"{sha256[:2]}/{sha256}"

    def check(self) -> None:
        import obstore

        try:
            obstore.list_with_delimiter(self.store, "00")
        except Exception as err:
            raise self._failed(err) from None

    def _present(self, shas: list[str]) -> dict[str, bool]:
        import obstore

        def stale(sha: str) -> bool | None:
            try:
                meta = obstore.head(self.store, self.key(sha))
            except FileNotFoundError:
                return None
            # S3 cannot renew an object's time in place: a stale copy is written again.
            return time.time() - meta["last_modified"].timestamp() > RENEW_AFTER

        found = zip(shas, self._each(stale, shas), strict=True)
        return {sha: again for sha, again in found if again is not None}

    def _write(self, copies: dict[str, bytes]) -> None:
        import obstore

        def put(item: tuple[str, bytes]) -> None:
            obstore.put(self.store, self.key(item[0]), item[1])

        list(self._each(put, list(copies.items())))

    def _get(self, sha256: str) -> bytes | None:
        import obstore

        try:
            return bytes(obstore.get(self.store, self.key(sha256)).bytes())
        except FileNotFoundError as err:
            if "NoSuchBucket" in str(err):
                raise self._failed(err) from None
            return None
        except Exception as err:
            raise self._failed(err) from None

    def _entries(self) -> Iterator[Entry]:
        import obstore

        try:
            for batch in obstore.list(self.store, chunk_size=_DELETE_BATCH):
                for meta in batch:
                    name = meta["path"].rsplit("/", 1)[-1]
                    if _SHA.match(name) and meta["path"] == self.key(name):
                        yield Entry(name, meta["size"], meta["last_modified"].timestamp())
        except Exception as err:
            raise self._failed(err) from None

    def _delete(self, shas: list[str], unused_since: float) -> None:
        import obstore

        try:
            obstore.delete(self.store, [self.key(sha) for sha in shas])
        except Exception as err:
            raise self._failed(err) from None

    def _each(self, job: Callable[[Any], Any], items: list[Any]) -> Iterable[Any]:
        try:
            return list(self._pool.map(job, items))
        except Exception as err:
            raise self._failed(err) from None

    def _failed(self, err: BaseException) -> BlobStoreError:
        return BlobStoreError(f"blob store {self.where}: {_s3_problem(err)}")


_S3_REQUEST = re.compile(r"Error performing \w+ (\w+://[^/?\s]+)")
_S3_CODE = re.compile(r"<Code>([^<]+)</Code>(?:\s*<Message>([^<]*)</Message>)?")
_S3_HINTS = {
    "NoSuchBucket": "the bucket does not exist",
    "InvalidAccessKeyId": "the credentials are refused (AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": "the credentials are refused (AWS_SECRET_ACCESS_KEY)",
    "AccessDenied": "access denied to the bucket",
}


def _s3_problem(err: BaseException) -> str:
    """An obstore error in one line: S3's error code and message when it sent one."""
    text = str(err)
    found = _S3_CODE.search(text)
    if found:
        code, message = found.group(1), (found.group(2) or "").strip()
        hint = _S3_HINTS.get(code)
        return f"{hint} ({code})" if hint else f"{code}: {message}"[:300]
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    if "error sending request" in text or "connection" in text.lower():
        target = _S3_REQUEST.search(first)
        return "unreachable" + (f": no answer from {target.group(1)}" if target else "")
    return default_redactor().text(first)[:300]


# --- choosing one


def open_blob_store(spec: str, *, engine: Callable[[], Engine] | Engine | None) -> BlobStore:
    """The store ``spec`` names: ``postgres``/``db`` (the records database), ``s3://bucket/
    prefix``, or a folder path; ``engine`` gives the records database when one is needed."""
    value = spec.strip()
    if value.lower() in DATABASE_NAMES:
        if engine is None:
            raise BlobStoreError("blob store in the records database needs the records database")
        return DatabaseBlobStore(engine() if callable(engine) else engine)
    if value.lower().startswith(("s3://", "s3a://")):
        bucket = value.split("://", 1)[1].split("/", 1)[0]
        if not bucket:
            raise BlobStoreError(f"RUNRECORD_BLOBS {value!r}: no bucket: use s3://bucket/prefix")
        return S3BlobStore(value)
    if "://" in value:
        raise BlobStoreError(
            f"RUNRECORD_BLOBS {value!r}: unsupported store: use a folder path, "
            "'postgres' (the records database) or s3://bucket/prefix"
        )
    if not value:
        raise BlobStoreError("RUNRECORD_BLOBS is empty")
    return FolderBlobStore(Path(value).expanduser())


def canonical_json(value: object) -> bytes:
    """The canonical form refs hash: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def referenced_blobs(engine: Engine) -> set[str]:
    """Every sha256 a record's input or output ref names."""
    from sqlalchemy import select

    from runrecord.recorder._tables import ToolCallRow

    shas: set[str] = set()
    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=5000).execute(
            select(ToolCallRow.input_refs, ToolCallRow.output_refs)
        )
        for input_refs, output_refs in rows:
            for ref in [*(input_refs or []), *(output_refs or [])]:
                sha = ref.get("sha256") if isinstance(ref, dict) else None
                if isinstance(sha, str):
                    shas.add(sha)
    return shas
