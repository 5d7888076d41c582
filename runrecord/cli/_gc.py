"""``runrecord gc``: drop redacted payload copies past retention; records keep their hashes."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import typer

from runrecord._settings import RunRecordError, Settings

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
) -> None:
    """Delete redacted payload copies from the blob store ($RUNRECORD_HOME/blobs).

    Run records keep every ref's sha256, size and media type, so a record stays
    verifiable against the original payload after its copy is gone. Only the blob
    store is touched; the records database is not read or written.
    """
    from runrecord.recorder import BlobStore

    age = parse_age(older_than)
    settings = Settings.from_env()
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
                }
            )
        )
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(
        f"{verb} {result.removed} blob copies ({result.removed_bytes} bytes) older than "
        f"{older_than} from {settings.blobs_dir}; {result.kept} kept"
    )
