"""``runrecord gc`` and ``runrecord blob``: the redacted payload copies in the blob store."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

import typer

from runrecord._settings import RunRecordError, Settings

if TYPE_CHECKING:
    from runrecord.recorder import BlobStore

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SHA = re.compile(r"^[0-9a-fA-F]{64}$")
T = TypeVar("T")


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w``."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise RunRecordError(
            f"--older-than {text!r} is not a duration: use a number and a unit, "
            "e.g. 30d, 12h, 90m, 3600s or 2w"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _store(settings: Settings) -> BlobStore:
    from runrecord.cli._stack import blob_store

    return _guarded(settings, lambda: blob_store(settings))


def _guarded(settings: Settings, job: Callable[[], T]) -> T:
    """Run ``job``; the records database's errors become one line naming the store."""
    from sqlalchemy.exc import SQLAlchemyError

    from runrecord.recorder._database import refusal

    try:
        return job()
    except SQLAlchemyError as err:
        raise RunRecordError(f"blob store {settings.blobs}: {refusal(err)}") from None
    except OSError as err:
        raise RunRecordError(f"blob store {settings.blobs}: {err.strerror or err}") from None


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """Counts on stderr while gc walks the store (a live line on a terminal)."""
    if not enabled:
        yield lambda seen, removed: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("looking at blob copies")

        def report(seen: int, removed: int) -> None:
            bar.update(task, description=f"looked at {seen} copies, {removed} to remove")

        yield report


def gc(
    older_than: str = typer.Option(
        None,
        "--older-than",
        help="Retention: drop copies not written or used for this long (30d, 12h, 90m, 2w).",
    ),
    unreferenced: bool = typer.Option(
        False,
        "--unreferenced",
        help="Also drop copies no record refers to (last used over an hour ago).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
    archive: Path | None = typer.Option(
        None,
        "--archive",
        help="Also archive closed runs that ended longer ago than --older-than to one bundle "
        "per run tree in this folder, then delete their rows (attestations are kept).",
    ),
) -> None:
    """Delete old payload copies; with --archive DIR, move old runs into bundles.

    Copies are deleted from the blob store; --archive DIR moves old run records out of the
    records database into bundle files.

    The store is RUNRECORD_BLOBS: 'postgres' (the records database, the
    default on PostgreSQL), a folder ($RUNRECORD_HOME/blobs, the default on
    SQLite) or s3://bucket/prefix (AWS_* variables give endpoint and keys).

    Records keep every ref's sha256, size and media type, so a record stays
    verifiable after its copy is gone. A copy's age counts from its last use
    (renewed at most hourly while mirrors write the payload again).
    --unreferenced reads the records' refs; otherwise records are not read.
    Without --archive, records are kept until archived. Attestations are never
    removed; an archived run's bundle is checked with `runrecord verify --bundle FILE`.

    \b
    Examples:
      runrecord gc --older-than 30d
      runrecord gc --older-than 90d --unreferenced --dry-run --json
      runrecord gc --older-than 180d --archive /archive/runrecord
    """
    if older_than is None and not unreferenced:
        raise RunRecordError("gc: give --older-than (e.g. 30d), --unreferenced, or both")
    age = parse_age(older_than) if older_than is not None else None
    if archive is not None and age is None:
        raise RunRecordError("gc --archive needs --older-than: archive runs that ended before it")
    settings = Settings.from_env()
    archived = _archive(archive, age, dry_run) if archive is not None and age is not None else None
    store = _store(settings)
    referenced: set[str] | None = None
    if unreferenced:
        from runrecord.cli._stack import records_engine
        from runrecord.recorder import referenced_blobs, require_current

        def refs() -> set[str]:
            engine = records_engine(settings)
            require_current(engine)
            return referenced_blobs(engine)

        referenced = _guarded(settings, refs)
    with _progress(sys.stderr.isatty()) as progress:
        result = _guarded(
            settings,
            lambda: store.collect(age, referenced=referenced, dry_run=dry_run, progress=progress),
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "blobStore": store.where,
                    "olderThan": older_than,
                    "unreferenced": unreferenced,
                    "dryRun": dry_run,
                    "removed": result.removed,
                    "removedBytes": result.removed_bytes,
                    "kept": result.kept,
                    **({"archivedRuns": archived} if archived is not None else {}),
                }
            )
        )
        return
    verb = "would remove" if dry_run else "removed"
    if archived is not None:
        typer.echo(
            f"{'would archive' if dry_run else 'archived'} {len(archived)} run tree(s) to {archive}"
        )
    why = " or ".join(
        reason
        for reason, wanted in (
            (f"older than {older_than}", older_than is not None),
            ("referred to by no record", unreferenced),
        )
        if wanted
    )
    typer.echo(
        f"{verb} {result.removed} blob copies ({result.removed_bytes} bytes) {why} "
        f"from {store.where}; {result.kept} kept"
    )


def blob(
    sha256: str = typer.Argument(..., help="The sha256 of a ref (inputRefs / outputRefs)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print {sha256, size, blobStore, text} as JSON."
    ),
) -> None:
    """Print the redacted copy of a payload, by its ref's sha256.

    Reads the blob store the mirrors write to (RUNRECORD_BLOBS, see
    `runrecord gc --help`): any machine naming the same store, or the same
    PostgreSQL records database, sees the same copies.

    \b
    Examples:
      runrecord show RUN --json | jq -r '.toolCalls[0].inputRefs[0].sha256'
      runrecord blob 0eda86...  (the full 64 hex digits)
    """
    if not _SHA.match(sha256.strip()):
        raise RunRecordError(f"{sha256[:80]!r} is not a sha256 (64 hex digits)")
    settings = Settings.from_env()
    store = _store(settings)
    copy = _guarded(settings, lambda: store.read(sha256))
    if copy is None:
        raise RunRecordError(
            f"no copy of {sha256.strip().lower()} in blob store {store.where} "
            "(collected by gc, a binary payload, or not mirrored yet)"
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "sha256": sha256.strip().lower(),
                    "size": len(copy),
                    "blobStore": store.where,
                    "text": copy.decode("utf-8", errors="replace"),
                },
                ensure_ascii=False,
            )
        )
        return
    sys.stdout.buffer.write(copy)
    if not copy.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()


def _archive(folder: Path, age: timedelta, dry_run: bool) -> list[str]:
    """Each old closed run tree to ``folder/<run id>.json``, then its rows deleted, one tree
    per transaction (a bundle is on disk before its rows go)."""
    from runrecord.cli._evidence import write_bundle
    from runrecord.cli._query import records
    from runrecord.recorder._bundle import archivable, archive_tree, export_bundle

    done: list[str] = []
    with records() as conn:
        roots = archivable(conn, datetime.now(UTC) - age)
        conn.rollback()  # ends the read: each tree is archived in a transaction of its own
        if dry_run:
            return roots
        for i, run_id in enumerate(roots, 1):
            with conn.begin():
                bundle = export_bundle(conn, run_id, tree=True)
                write_bundle(folder / f"{quote(run_id, safe='')}.json", bundle)
                archive_tree(conn, run_id, bundle)
            done.append(run_id)
            if i % 100 == 0:
                typer.echo(f"archived {i}/{len(roots)} run trees", err=True)
    return done
