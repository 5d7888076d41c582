"""How long redaction takes on hostile values: long runs of what a secret pattern starts with.

Every free text runrecord records (arguments, results, error texts, reasons, keys of JSON
objects) goes through the redactor, so a value an attacker controls must not cost time that
grows with the square of its length. For each fragment below (what some pattern may start
a match at: ``eyJ``, ``sk-``, ``api_key``, ``//``, …), with a few separators, a value of
``--size`` characters made of that fragment repeated is redacted; the benchmark prints the
CPU time of the worst values, the median, and the growth when the size doubles (about 2
for linear time, about 4 for quadratic), with the load average.

    python benchmarks/redaction.py [--size 20000] [--worst 8]

Target: no 20 KB value costs more than 0.25 s of CPU, and doubling the size at most
triples the worst time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runrecord._redaction import Redactor  # noqa: E402

FRAGMENTS = (
    "sk-",
    "sk-ant-",
    "ghp_",
    "gh",
    "xoxb-",
    "AKIA",
    "LTAI",
    "EAAA",
    "AIza",
    "ya29.",
    "hv",
    "dp.pt.",
    "1aQ~",
    "1//0",
    "dop_v1_",
    "glsa_",
    "PMAK-",
    "NRAK-",
    "npm_",
    "T3BlbkFJ",
    "eyJ",
    "-----BEGIN ",
    "Basic ",
    "Bearer ",
    "https://",
    "https://a:",
    "https://u:p@",
    "://",
    "//",
    "/:_authToken=",
    "x:y@",
    "a:",
    "a.",
    "a=",
    "@",
    "\\",
    "-",
    "_",
    "aA1",
    '"',
    "'",
    ":",
    "=",
    "password",
    "api_key",
    "secret",
    "token",
    "key=",
    "sig=",
    "AccountKey=",
    "SharedAccessKey=",
    "aws_secret_access_key",
    "secret access key ",
)
SEPARATORS = ("", "a", "1", " ", "-", "=", ".")


def hostile(size: int) -> list[tuple[str, str]]:
    values = []
    for fragment in FRAGMENTS:
        for separator in SEPARATORS:
            unit = fragment + separator
            values.append((repr(unit), unit * (size // len(unit))))
    return values


def cpu_seconds(redactor: Redactor, value: str) -> float:
    started = time.process_time()
    redactor.text(value)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, help="characters per value")
    parser.add_argument("--worst", type=int, default=8, help="how many of the worst to print")
    args = parser.parse_args()

    redactor = Redactor()
    timed = sorted(
        ((cpu_seconds(redactor, value), name) for name, value in hostile(args.size)),
        reverse=True,
    )
    print(f"load average {os.getloadavg()[0]:.2f}; {len(timed)} hostile values of {args.size:,}")
    print(f"median CPU {statistics.median(t for t, _ in timed) * 1000:.1f} ms")
    for seconds, name in timed[: args.worst]:
        print(f"  {seconds * 1000:8.1f} ms  {name}")
    doubled = dict(hostile(args.size * 2))
    worst_seconds, worst_name = timed[0]
    growth = cpu_seconds(redactor, doubled[worst_name]) / max(worst_seconds, 1e-9)
    print(f"worst value at twice the size: x{growth:.1f} (linear ~2, quadratic ~4)")
    ok = worst_seconds <= 0.25 and growth <= 3.0
    print(f"target (worst <= 250 ms, growth <= x3): {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
