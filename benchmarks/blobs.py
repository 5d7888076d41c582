"""How fast each blob store backend keeps, dedupes, reads and collects payload copies.

Side by side in one run: a folder, the records database (a PostgreSQL database of its own,
created and dropped here) and S3 through obstore against a local S3-compatible server
(moto's ``moto_server``, started and stopped here; a Python server, so its figures bound
the client's cost from above, not a real S3's). Each backend gets the same payloads
(JSON of about 1 KB, half of them with a secret to redact), in batches like a mirror's
writes. Prints copies per second for each step and the machine load.

    python benchmarks/blobs.py [--copies 500] [--batch 50]
        [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runrecord.recorder import (  # noqa: E402
    BlobStore,
    DatabaseBlobStore,
    FolderBlobStore,
    S3BlobStore,
    open_engine,
    upgrade,
)
from runrecord.recorder._blobs import canonical_json  # noqa: E402

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def payloads(count: int) -> dict[str, tuple[bytes, str]]:
    bodies = {}
    for n in range(count):
        value = {"call": n, "text": f"row {n} " + "x" * 900, "token": TOKEN if n % 2 else None}
        data = canonical_json(value)
        bodies[hashlib.sha256(data).hexdigest()] = (data, "application/json")
    return bodies


def timed(label: str, count: int, job: Callable[[], object]) -> None:
    start = time.perf_counter()
    job()
    took = time.perf_counter() - start
    print(f"  {label:<22} {count / took:>10,.0f} copies/s  ({took * 1000:,.0f} ms)")


def measure(name: str, store: BlobStore, bodies: dict[str, tuple[bytes, str]], batch: int) -> None:
    print(f"{name}: {store.where}")
    items = list(bodies.items())
    batches = [dict(items[i : i + batch]) for i in range(0, len(items), batch)]
    timed("keep (new)", len(items), lambda: [store.keep_many(b) for b in batches])
    timed("keep (already there)", len(items), lambda: [store.keep_many(b) for b in batches])
    timed("read", len(items), lambda: [store.read(sha) for sha, _ in items])
    timed("gc (scan, keep all)", len(items), lambda: store.collect(timedelta(days=1)))
    timed("gc (remove all)", len(items), lambda: store.collect(timedelta(0)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=500)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    one, five, _ = os.getloadavg()
    print(f"load: {one:.2f} {five:.2f} (1, 5 min), {os.cpu_count()} cores")
    print(f"{args.copies} copies of ~1 KB JSON, batches of {args.batch}\n")
    bodies = payloads(args.copies)
    # Redaction is the same work in every backend: shown apart, it is most of "keep (new)".
    redactor = FolderBlobStore(Path("."))
    timed("redaction alone", len(bodies), lambda: [redactor.redacted(*b) for b in bodies.values()])
    print()

    with tempfile.TemporaryDirectory() as folder:
        measure("folder", FolderBlobStore(Path(folder)), bodies, args.batch)

    admin = make_url(args.admin_url)
    name = f"bench_blobs_{uuid.uuid4().hex[:8]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    engine = open_engine(admin.set(database=name).render_as_string(hide_password=False))
    try:
        upgrade(engine)
        measure("records database", DatabaseBlobStore(engine), bodies, args.batch)
    finally:
        engine.dispose()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'drop database "{name}"')

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.prefix) / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        urllib.request.urlopen(
            urllib.request.Request(f"{endpoint}/bench", method="PUT"), timeout=5
        ).close()
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
        )
        measure("S3 (local moto_server)", S3BlobStore("s3://bench/blobs"), bodies, args.batch)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
