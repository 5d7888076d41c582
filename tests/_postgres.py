"""A real PostgreSQL server for the test suite.

The run record is only as good as its storage, so the tests run against a real
PostgreSQL, never a mock.  `postgres_admin_url()` finds one (an explicit URL, a
local server, or a private throw-away cluster started from the installed
binaries) and `create_test_database()` / `drop_test_database()` give each test
run its own database on it.  `PrivateCluster` is also used directly by tests
that need to take the database away and bring it back mid-run.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

__all__ = [
    "PrivateCluster",
    "create_test_database",
    "drop_test_database",
    "find_postgres_bin_dir",
    "libpq_url",
    "postgres_admin_url",
]

ENV_URL = "RUNRECORD_TEST_DATABASE_URL"
LOCAL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NO_POSTGRES = (
    "no PostgreSQL available: set RUNRECORD_TEST_DATABASE_URL, start a server on "
    "127.0.0.1:5432, or install PostgreSQL binaries (apt-get install postgresql)"
)

# One module object whichever way it is imported (`_postgres` with tests/ on
# sys.path, or `tests._postgres`), so a process never starts two private clusters.
sys.modules.setdefault("_postgres", sys.modules[__name__])
sys.modules.setdefault("tests._postgres", sys.modules[__name__])

_DB_NAME = re.compile(r"[a-z0-9_]+")
# Users that may own a private cluster when we run as root (PostgreSQL refuses root).
_CLUSTER_USERS = ("postgres", "nobody")
_COMMAND_TIMEOUT = 120.0


# --------------------------------------------------------------------------- URLs


def libpq_url(url: str) -> str:
    """Turn an SQLAlchemy URL into one libpq/psycopg understands (no `+driver`)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _with_psycopg_driver(url: str) -> str:
    """Bare `postgresql://` would make SQLAlchemy pick psycopg2, which is not installed."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _answers(url: str, timeout: int = 3) -> bool:
    """Whether a server accepts us at `url`; any failure just means 'no'."""
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=timeout, autocommit=True) as conn:
            conn.execute("select 1")
        return True
    except (psycopg.Error, OSError):
        return False


# ------------------------------------------------------------------ test databases


def _check_name(name: str) -> None:
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"test database name must match [a-z0-9_]+, got {name!r}")


def create_test_database(admin_url: str, name: str, *, replace: bool = False) -> str:
    """Give a test run a database of its own; returns its SQLAlchemy URL.

    `replace=True` first drops a leftover database of that name (e.g. from a
    run that was killed before it could clean up).
    """
    _check_name(name)
    with psycopg.connect(libpq_url(admin_url), autocommit=True, connect_timeout=10) as conn:
        if replace:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_test_database(admin_url: str, name: str) -> None:
    """Remove a test database even if a leaked connection still holds it open."""
    _check_name(name)
    with psycopg.connect(libpq_url(admin_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A fresh, empty database under a random name, dropped when the block ends."""
    name = f"rr_test_{uuid.uuid4().hex[:12]}"
    url = create_test_database(admin_url, name)
    try:
        yield url
    finally:
        drop_test_database(admin_url, name)


# ------------------------------------------------------------- private clusters


def _version_key(path: Path) -> tuple[int, ...]:
    """Sort `/usr/lib/postgresql/<version>/bin` numerically, so 15 beats 9.6."""
    parts = re.findall(r"\d+", path.parent.name)
    return tuple(int(p) for p in parts) if parts else (-1,)


def find_postgres_bin_dir() -> Path | None:
    """The directory holding `initdb` and `pg_ctl` (PATH first, then newest Debian version)."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        candidates.append(Path(os.path.realpath(on_path)).parent)
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    )
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return directory
    return None


def _free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_env() -> dict[str, str]:
    """Drop PG* variables so a developer's PGDATA/PGPORT cannot redirect our commands."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


_user_prefix_cache: tuple[str, list[str]] | None = None
_user_prefix_lock = threading.Lock()


def _root_runner() -> tuple[str, list[str]]:
    """How to run PostgreSQL tools as an unprivileged user when we are root.

    Returns the user name and the command prefix.  Each way is tried with
    `true` first, because `runuser`/`su` can fail in stripped-down containers
    (missing PAM config, no such user) and we would rather find out here.
    """
    global _user_prefix_cache
    with _user_prefix_lock:
        if _user_prefix_cache is not None:
            return _user_prefix_cache
        tried: list[str] = []
        for user in _CLUSTER_USERS:
            try:
                pwd.getpwnam(user)
            except KeyError:
                tried.append(f"no user {user}")
                continue
            prefixes: list[list[str]] = []
            if shutil.which("runuser"):
                prefixes.append(["runuser", "-u", user, "--"])
            if shutil.which("su"):
                prefixes.append(["su", "-s", "/bin/sh", user, "-c"])
            for prefix in prefixes:
                probe = _wrap(prefix, ["true"])
                try:
                    done = subprocess.run(
                        probe, capture_output=True, timeout=30, stdin=subprocess.DEVNULL
                    )
                    ok = done.returncode == 0
                except (OSError, subprocess.TimeoutExpired):
                    ok = False
                if ok:
                    _user_prefix_cache = (user, prefix)
                    return _user_prefix_cache
                tried.append(f"{prefix[0]} as {user} failed")
        raise RuntimeError(
            "running as root, and PostgreSQL refuses root, but could not switch to an "
            "unprivileged user: " + "; ".join(tried or ["neither runuser nor su found"])
        )


def _wrap(prefix: list[str], cmd: list[str]) -> list[str]:
    """`su -c` takes one shell string; `runuser --` takes the argv as is."""
    if prefix and prefix[0] == "su":
        return [*prefix, shlex.join(cmd)]
    return [*prefix, *cmd]


class PrivateCluster:
    """A throw-away PostgreSQL cluster in a temp dir, on a free port, trust auth.

    Tests that must see the database vanish and come back (a worker surviving
    a PostgreSQL outage) need a server they own; the shared one cannot be
    stopped under other tests.  Use `create()`, then `start()` / `stop()` as
    often as needed, and `destroy()` (also registered with atexit) at the end.
    """

    def __init__(self, base_dir: Path, bin_dir: Path, port: int, owner: str | None) -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_file = base_dir / "postgres.log"
        self.bin_dir = bin_dir
        self.port = port
        self._owner = owner  # unprivileged user the server runs as, when we are root
        self._started_once = False
        self._destroyed = False

    # -- construction -------------------------------------------------------

    @classmethod
    def create(cls) -> PrivateCluster:
        """initdb a new cluster; does not start it."""
        bin_dir = find_postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in "
                "/usr/lib/postgresql/*/bin; install them (apt-get install postgresql)"
            )
        owner: str | None = None
        parent: str | None = None
        if os.geteuid() == 0:
            owner, _ = _root_runner()
            # The unprivileged owner must be able to reach the directory: a root
            # TMPDIR such as /root/tmp would not do, /tmp always does.
            parent = "/tmp"
        base_dir = Path(tempfile.mkdtemp(prefix="runrecord-pg-", dir=parent))
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(base_dir, entry.pw_uid, entry.pw_gid)
        cluster = cls(base_dir, bin_dir, _free_port(), owner)
        atexit.register(cluster.destroy)
        try:
            cluster._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(cluster.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                what="initdb",
            )
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    # -- public API -------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the maintenance database `postgres`."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def is_running(self) -> bool:
        """pg_ctl status: 0 running, 3 stopped, 4 no data dir."""
        if self._destroyed:
            return False
        result = subprocess.run(
            self._cmd([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"]),
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.base_dir,
            env=_clean_env(),
        )
        return result.returncode == 0

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if self._destroyed:
            raise RuntimeError("cluster was destroyed")
        if self.is_running():
            return
        # Before the first start the port may have been taken since create();
        # pick another then.  After that the URL must stay the same.
        attempts = 1 if self._started_once else 3
        for attempt in range(attempts):
            try:
                self._pg_ctl_start()
                break
            except RuntimeError:
                if attempt == attempts - 1 or not self._port_in_use_logged():
                    raise
                self.port = _free_port()
        self._started_once = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` by default; `immediate` simulates a crash)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown pg_ctl stop mode {mode!r}")
        if not self.is_running():
            return
        self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"],
            what="pg_ctl stop",
        )

    def destroy(self) -> None:
        """Stop the server and delete every file; safe to call twice."""
        if self._destroyed:
            return
        try:
            if self.data_dir.exists():
                self.stop("fast")
        except (RuntimeError, OSError, subprocess.SubprocessError):
            pass  # removing the directory below still frees the disk space
        finally:
            self._destroyed = True
            shutil.rmtree(self.base_dir, ignore_errors=True)
            atexit.unregister(self.destroy)

    def __enter__(self) -> PrivateCluster:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    def __repr__(self) -> str:
        return f"PrivateCluster(port={self.port}, base_dir={str(self.base_dir)!r})"

    # -- helpers ----------------------------------------------------------------

    def _pg_ctl_start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {shlex.quote(str(self.base_dir))}",
                "-c listen_addresses=127.0.0.1",
                # Safe against the server process dying (the OS keeps the
                # pages); only an OS crash could lose data, and that takes
                # the test run with it anyway.
                "-c fsync=off",
            ]
        )
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "start",
            ],
            what="pg_ctl start",
        )

    def _port_in_use_logged(self) -> bool:
        try:
            return "already in use" in self.log_file.read_text(errors="replace")
        except OSError:
            return False

    def _cmd(self, cmd: list[str]) -> list[str]:
        if self._owner is None:
            return cmd
        _, prefix = _root_runner()
        return _wrap(prefix, cmd)

    def _run(self, cmd: list[str], what: str) -> None:
        """Run a PostgreSQL tool as the cluster's owner; fail with its output and log tail."""
        result = subprocess.run(
            self._cmd(cmd),
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.base_dir,  # the owner may not be allowed into our cwd
            env=_clean_env(),
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{what} failed (exit {result.returncode}) for {self!r}:\n"
                f"{result.stdout}{result.stderr}{self._log_tail()}"
            )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "--- server log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------- resolution

_admin_url: str | None = None
_admin_error: str | None = None
_admin_lock = threading.Lock()


def _local_server_url() -> str | None:
    """The machine's own server on 5432, creating its `test` database if missing."""
    if _answers(LOCAL_URL):
        return LOCAL_URL
    maintenance = make_url(LOCAL_URL).set(database="postgres").render_as_string(hide_password=False)
    if not _answers(maintenance):
        return None
    try:
        create_test_database(maintenance, "test")
    except psycopg.Error:
        pass  # a concurrent run may have created it in the meantime
    return LOCAL_URL if _answers(LOCAL_URL) else None


def _resolve_admin_url() -> str:
    explicit = os.environ.get(ENV_URL, "").strip()
    if explicit:
        return _with_psycopg_driver(explicit)
    local = _local_server_url()
    if local is not None:
        return local
    if find_postgres_bin_dir() is None:
        raise RuntimeError(NO_POSTGRES)
    try:
        cluster = PrivateCluster.create()
        cluster.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(f"{NO_POSTGRES} (private cluster failed: {first_line})") from exc
    return cluster.url


def postgres_admin_url() -> str:
    """SQLAlchemy URL of a maintenance database the tests may CREATE/DROP DATABASE on.

    Resolved once per process: RUNRECORD_TEST_DATABASE_URL, else a server on
    127.0.0.1:5432, else a private cluster (stopped and removed at exit).
    A failure is remembered too, so a missing server costs one attempt, not
    one per test.
    """
    global _admin_url, _admin_error
    with _admin_lock:
        if _admin_url is not None:
            return _admin_url
        if _admin_error is not None:
            raise RuntimeError(_admin_error)
        try:
            _admin_url = _resolve_admin_url()
        except RuntimeError as exc:
            _admin_error = str(exc)
            raise
        return _admin_url
