"""``runrecord gc``: drop redacted payload copies past retention; records keep their hashes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import typer

from runrecord._settings import RunRecordError, Settings
from runrecord.recorder import BlobStore

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w``."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise RunRecordError(
            f"--older-than {text!r} is not a duration: use a number and a unit, "
            "e.g. 30d, 12h, 90m, 3600s or 2w"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def gc(
    older_than: str = typer.Option(
        ...,
        "--older-than",
        help="Retention: drop copies not written or used for this long (30d, 12h, 90m, 2w).",
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
    """Delete redacted payload copies from the blob store ($RUNRECORD_HOME/blobs); with
    --archive DIR, move old run records out of the database into bundles.

    Run records keep every ref's sha256, size and media type, so a record stays
    verifiable against the original payload after its copy is gone. Without --archive
    the records database is not read or written: records are kept until archived.
    Attestations are never removed; an archived run's bundle is checked with
    `runrecord verify --bundle FILE`.
    """
    age = parse_age(older_than)
    settings = Settings.from_env()
    archived = _archive(archive, age, dry_run) if archive is not None else None
    store = BlobStore(settings.blobs_dir)
    try:
        result = store.collect(age, dry_run=dry_run)
    except OSError as err:
        raise RunRecordError(f"cannot clean blob store {settings.blobs_dir}: {err}") from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "blobStore": str(settings.blobs_dir),
                    "olderThan": older_than,
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
    typer.echo(
        f"{verb} {result.removed} blob copies ({result.removed_bytes} bytes) older than "
        f"{older_than} from {settings.blobs_dir}; {result.kept} kept"
    )


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
