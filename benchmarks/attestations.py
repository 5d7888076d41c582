"""What evidence costs: attesting a 1,000-call run, and `verify --all` throughput.

Builds the records database of benchmarks/queries.py (same generator, by default 100,000
runs and 1,000,000 calls), attests every run once (as the mirror does at close), then times:
the attestation of one 1,000-call run (digest of its rows + signature + insert, rolled
back each time), and `verify --all` (every run's rows against its latest attestation and
every attestation's hash, signature and chain), in runs per second. Drops the database.

    python benchmarks/attestations.py [--runs 100000] [--calls 1000000] [--repeat 10]

On a loaded machine, run a smaller database (--runs 10000 --calls 100000): verification
is per run, so its runs/s carries over (the figure printed says which size it is from).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))
from queries import DEFAULT_ADMIN, Generator, Loader, libpq  # noqa: E402

from runrecord.recorder import open_engine, upgrade  # noqa: E402
from runrecord.recorder._attest import (  # noqa: E402
    attest,
    digest_of,
    leaves_of,
    mirror_key,
    runs_rows,
    verify,
)
from runrecord.recorder._tables import RunRow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--admin-url", default=os.environ.get("RUNRECORD_BENCH_ADMIN_URL", DEFAULT_ADMIN)
    )
    args = parser.parse_args()
    os.environ.setdefault("RUNRECORD_HOME", tempfile.mkdtemp(prefix="runrecord-bench-"))
    key = mirror_key()

    name = f"runrecord_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq(args.admin_url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    engine = open_engine(url)
    try:
        upgrade(engine)
        gen = Generator(args.runs, args.calls)
        started = time.perf_counter()
        with Loader(url) as load:
            gen.load(load)
        print(
            f"loaded {args.runs:,} runs / {args.calls:,} calls in "
            f"{time.perf_counter() - started:.0f} s"
        )

        # One 1,000-call run: digest alone, and a whole attestation (rolled back).
        with engine.connect() as conn:
            rows = runs_rows(conn, ["diff-bad"])["diff-bad"]
            count = sum(len(r) for r in rows.values())
            digests, attests = [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                digest_of(leaves_of(runs_rows(conn, ["diff-bad"])["diff-bad"]))
                digests.append(time.perf_counter() - t)
                conn.rollback()
                trans = conn.begin()
                t = time.perf_counter()
                attest(conn, "diff-bad", "close", key=key)
                attests.append(time.perf_counter() - t)
                trans.rollback()  # leave the database as built

        # Every run attested once, as the mirror does at close.
        t = time.perf_counter()
        with engine.connect() as conn:
            ids = list(conn.execute(select(RunRow.run_id).order_by(RunRow.run_id)).scalars())
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            with engine.begin() as conn:
                found = runs_rows(conn, part)
                for run_id in part:
                    attest(conn, run_id, "close", key=key, rows=found[run_id])
        attested = time.perf_counter() - t

        t = time.perf_counter()
        with engine.connect() as conn:
            report = verify(conn, None)
        verified = time.perf_counter() - t
        assert not report.problems, report.problems[:3]

        load_avg = os.getloadavg()
        print(
            f"machine load (1/5/15 min): {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f} "
            f"on {os.cpu_count()} cores"
        )
        print(
            f"1,000-call run ({count:,} rows): digest p50 "
            f"{statistics.median(digests) * 1000:.0f} ms, attestation (digest + sign + insert) "
            f"p50 {statistics.median(attests) * 1000:.0f} ms"
        )
        print(
            f"attesting all {len(ids):,} runs: {attested:.1f} s ({len(ids) / attested:,.0f} runs/s)"
        )
        print(
            f"verify --all on {report.runs:,} runs / {report.attestations:,} attestations: "
            f"{verified:.1f} s = {report.runs / verified:,.0f} runs/s"
            + (
                ""
                if args.runs >= 100_000
                else f"; at this rate 100,000 runs take ~{100_000 * verified / report.runs:.0f} s "
                "(extrapolated)"
            )
        )
    finally:
        engine.dispose()
        with psycopg.connect(libpq(args.admin_url), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


if __name__ == "__main__":
    main()
