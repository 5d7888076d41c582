"""How fast the console's pages render on a realistic records database.

Builds the database `benchmarks/queries.py` builds (by default 100,000 runs, 1,000,000 tool
calls; PostgreSQL, COPY), or uses one it kept (`--url`), then requests each page through the
console app in this process (Starlette's test client: no network, no browser) and prints the
server time per page, p50/p95 in milliseconds, with the load average. The approvals inbox is
timed for its database part (the decided history); its pending list comes from Temporal's
visibility, as `runrecord approvals` reads it.

    python benchmarks/console.py [--runs 100000] [--calls 1000000] [--repeat 30] [--url URL]

Target: every page p95 < 150 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from queries import DEFAULT_ADMIN, Generator, build, libpq, new_database, percentile  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from runrecord.console import ConsoleConfig, create_app  # noqa: E402
from runrecord.console._app import _decided_calls  # noqa: E402
from runrecord.recorder import open_engine, upgrade  # noqa: E402


def pages(sample: Any) -> list[tuple[str, Any]]:
    pick = random.Random.choice
    return [
        ("runs (newest 25)", lambda r: "/runs"),
        ("runs that wrote", lambda r: "/runs?side_effect=write"),
        ("runs with denied approvals", lambda r: "/runs?approval=denied"),
        ("failed runs", lambda r: "/runs?status=failed"),
        ("runs of an agent", lambda r: f"/runs?agent={quote(pick(r, sample.agents))}"),
        ("runs of a turn", lambda r: f"/runs?turn={quote(pick(r, sample.turns))}"),
        ("runs in the last 24 h", lambda r: "/runs?since=24h"),
        ("run inspector (a tree)", lambda r: f"/runs/{quote(pick(r, sample.roots))}"),
        ("diff of two 1,000-call runs", lambda r: "/diff?bad=diff-bad&good=diff-good"),
        ("lineage of an artifact", lambda r: f"/lineage/{quote(pick(r, sample.consumed))}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--url", help="an existing database built by queries.py --keep")
    parser.add_argument(
        "--admin-url", default=os.environ.get("RUNRECORD_BENCH_ADMIN_URL", DEFAULT_ADMIN)
    )
    args = parser.parse_args()

    gen = Generator(args.runs, args.calls)
    name = None
    url = args.url
    if url is None:
        name, url = new_database(args.admin_url, "runrecord_console_bench")
    engine = open_engine(url)
    try:
        if name is not None:
            build(engine, url, gen)
        else:
            upgrade(engine)
            with engine.connect() as conn:
                gen.sample.read(conn)

        async def no_temporal() -> Any:
            raise RuntimeError("the timed pages read only the records database")

        app = create_app(ConsoleConfig(engine=engine, client=no_temporal))
        print(f"load average before timing: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        print(f"{'page':<34} {'p50 ms':>8} {'p95 ms':>8}")
        worst = 0.0
        with TestClient(app) as http:
            for title, path in pages(gen.sample):
                rng = random.Random(1)
                times = []
                for i in range(args.repeat + 3):
                    target = path(rng)
                    started = time.perf_counter()
                    response = http.get(target)
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        raise SystemExit(f"{target}: HTTP {response.status_code}")
                    if i >= 3:
                        times.append(elapsed)
                p50, p95 = percentile(times, 0.5), percentile(times, 0.95)
                worst = max(worst, p95)
                print(f"{title:<34} {p50:8.1f} {p95:8.1f}")
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                with engine.connect() as conn:
                    _decided_calls(conn, 50)
                times.append((time.perf_counter() - started) * 1000)
            p95 = percentile(times, 0.95)
            worst = max(worst, p95)
            print(
                f"{'inbox: decided history (DB part)':<34} {percentile(times, 0.5):8.1f} {p95:8.1f}"
            )
        print(f"load average after timing: {os.getloadavg()[0]:.2f}")
        print(f"worst page p95: {worst:.1f} ms (target < 150 ms)")
    finally:
        engine.dispose()
        if name is not None:
            with psycopg.connect(libpq(args.admin_url), autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
