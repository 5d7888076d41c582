"""`runrecord dev` runs the embedded stack in the foreground and stops all of it on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runrecord.worker import port_open


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def test_dev_serves_the_demo_and_stops_cleanly(cli_env: dict[str, str], home: Path) -> None:
    if port_open("127.0.0.1", 7233):
        pytest.fail("port 7233 is already taken; `runrecord dev` needs it", pytrace=False)
    env = {k: v for k, v in cli_env.items() if k != "TEMPORAL_ADDRESS"}
    dev = subprocess.Popen(
        [sys.executable, "-m", "runrecord.cli", "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        banner = []
        deadline = time.monotonic() + 90
        assert dev.stdout is not None
        while time.monotonic() < deadline:
            line = dev.stdout.readline()
            if not line:
                break
            banner.append(line.rstrip())
            if "Press Ctrl-C" in line:
                break
        text = "\n".join(banner)
        assert "Temporal gRPC:    127.0.0.1:7233" in text, text
        assert "Temporal UI:      http://127.0.0.1:8233" in text, text
        assert "Records database: postgresql+psycopg://" in text, text
        assert (home / "temporal.sqlite3").exists()

        # With the stack up, the demo uses it instead of starting another.
        demo = subprocess.run(
            [sys.executable, "-m", "runrecord.cli", "demo", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert demo.returncode == 0, demo.stderr
        root = json.loads(demo.stdout)[0]
        assert root["temporalUiUrl"].startswith("http://127.0.0.1:8233/namespaces/default/")
        assert len(_processes_mentioning(str(home / "temporal.sqlite3"))) == 1
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            code = dev.wait(timeout=30)
        finally:
            if dev.poll() is None:
                os.kill(dev.pid, signal.SIGKILL)
    assert code == 0, dev.stderr.read() if dev.stderr else ""
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(home / "temporal.sqlite3")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(home / "temporal.sqlite3")) == []
    assert not port_open("127.0.0.1", 7233)
