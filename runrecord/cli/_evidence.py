"""``runrecord verify``, ``export`` and ``keys``: records as evidence.

``verify`` recomputes each run's digest from the rows and checks it against the run's
latest attestation, and checks every attestation's hash, signature and chain; it needs
no Temporal. ``export`` writes a run (or its tree) to one bundle file that ``verify
--bundle`` checks with no database at all.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from runrecord._settings import RunRecordError, Settings
from runrecord.cli._query import JSON_HELP, records


def verify(
    run_ids: list[str] = typer.Argument(None, metavar="[RUN]...", help="Runs to verify."),
    all_runs: bool = typer.Option(False, "--all", help="Verify every run and every attestation."),
    bundle: Path | None = typer.Option(
        None, "--bundle", help="Verify a bundle file from `runrecord export` (no database)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check run records against their signed attestations, with or without a database.

    Each run's rows against its latest signed attestation, and the attestations' chain and
    signatures. Prints every mismatch (run, table, row) and exits 1 if there is any. Works
    after Temporal's history is gone.

    Examples: `runrecord verify RUN`, `runrecord verify --all`,
    `runrecord verify --bundle run.json`.
    """
    chosen = sum([bool(run_ids), all_runs, bundle is not None])
    if chosen != 1:
        raise RunRecordError("name runs, or pass --all, or --bundle FILE (exactly one of them)")
    if bundle is not None:
        from runrecord.recorder._bundle import verify_bundle

        data = _read_bundle(bundle)
        try:
            report = verify_bundle(data)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise RunRecordError(f"{bundle} is not a valid runrecord bundle: {err}") from None
        return _report(report, as_json, what=str(bundle))
    from runrecord.recorder._attest import verify as verify_runs

    with records() as conn, _progress() as progress:
        if run_ids:
            from sqlalchemy import select

            from runrecord.recorder._tables import AttestationRow, RunRow

            known = set(
                conn.execute(select(RunRow.run_id).where(RunRow.run_id.in_(run_ids))).scalars()
            )
            known |= set(
                conn.execute(
                    select(AttestationRow.run_id).where(AttestationRow.run_id.in_(run_ids))
                ).scalars()
            )
            missing = [r for r in run_ids if r not in known]
            if missing:
                raise RunRecordError(f"no run {missing[0]!r} in the records")
        report = verify_runs(conn, None if all_runs else run_ids, progress=progress)
    _report(report, as_json, what="records")


class _progress:
    """A progress line on stderr while a long verification runs (a terminal only)."""

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("verifying runs", total=None)

        def advance(done: int, total: int) -> None:
            self._bar.update(self._task, completed=done, total=total)

        return advance

    def __exit__(self, *_: object) -> None:
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.stop()


def _report(report: Any, as_json: bool, *, what: str) -> None:
    problems = report.problems or []
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": not problems,
                    "runs": report.runs,
                    "attestations": report.attestations,
                    "problems": [p.to_json() for p in problems],
                }
            )
        )
    else:
        for problem in problems:
            typer.echo(str(problem))
        verdict = "OK" if not problems else f"FAILED: {len(problems)} problem(s)"
        typer.echo(
            f"{verdict}: {report.runs} run(s), {report.attestations} attestation(s) in {what}"
        )
    if problems:
        raise typer.Exit(1)


def _read_bundle(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RunRecordError(f"cannot read bundle {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunRecordError(f"{path} is not a runrecord bundle (not JSON: {err})") from None


def export(
    run_id: str = typer.Argument(..., help="The run to export."),
    out: Path = typer.Option(..., "--out", help="The bundle file to write."),
    tree: bool = typer.Option(False, "--tree", help="Include every sub-agent run under it."),
    payloads: bool = typer.Option(
        False, "--payloads", help="Include the redacted payload copies the blob store holds."
    ),
) -> None:
    """Write a run's evidence to one self-contained bundle file.

    The bundle holds its RunRecords (JSON), rows, attestations and the public keys that
    signed them. `runrecord verify --bundle FILE` checks it anywhere, with no database and
    no Temporal."""
    from runrecord.cli._stack import blob_store
    from runrecord.recorder._bundle import export_bundle

    blobs = blob_store(Settings.from_env()) if payloads else None
    with records() as conn:
        try:
            data = export_bundle(conn, run_id, tree=tree, blobs=blobs)
        except LookupError:
            raise RunRecordError(f"no run {run_id!r} in the records") from None
    write_bundle(out, data)
    typer.echo(
        f"wrote {len(data['records'])} run(s), {len(data['attestations'])} attestation(s) to {out}"
    )


def write_bundle(out: Path, data: dict[str, Any]) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".partial")
        tmp.write_text(json.dumps(data, ensure_ascii=False, sort_keys=True), encoding="utf-8")
        tmp.replace(out)
    except OSError as err:
        raise RunRecordError(f"cannot write bundle {out}: {err.strerror or err}") from None


def keys(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the public keys that sign attestations, and this process's own key.

    Keys are published in the records database; this process's own key comes from
    RUNRECORD_MIRROR_KEY or $RUNRECORD_HOME/mirror-key.pem."""
    from sqlalchemy import func, select

    from runrecord.recorder._attest import KEY_ENV, key_path, mirror_key
    from runrecord.recorder._tables import AttestationRow, MirrorKeyRow

    with records() as conn:
        rows = list(
            conn.execute(
                select(MirrorKeyRow.__table__).order_by(MirrorKeyRow.created_at)
            ).mappings()
        )
        counts = dict(
            conn.execute(
                select(AttestationRow.key_id, func.count()).group_by(AttestationRow.key_id)
            ).all()
        )
    # Never made here: a key is made by the mirror that first needs it.
    has_key = bool(os.environ.get(KEY_ENV)) or key_path().exists()
    own = mirror_key().key_id if has_key else None
    found = [
        {
            "keyId": r["key_id"],
            "publicKey": r["public_key"],
            "host": r["host"],
            "createdAt": r["created_at"].isoformat(),
            "attestations": counts.get(r["key_id"], 0),
            "thisProcess": r["key_id"] == own,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo(
            "no mirror key published yet (a mirror publishes its key with its first attestation)"
        )
    for k in found:
        mark = "  (this process's key)" if k["thisProcess"] else ""
        typer.echo(
            f"{k['keyId']}  ed25519 {k['publicKey']}  {k['host'] or ''}  "
            f"{k['attestations']} attestation(s){mark}"
        )
