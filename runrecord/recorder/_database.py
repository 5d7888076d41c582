"""Opening the records database and keeping its schema at the code's revision."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from runrecord._settings import RunRecordError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def _display(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<malformed URL>"


def open_engine(url: str) -> Engine:
    """An engine for ``url``, or a RunRecordError naming what is wrong with it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise RunRecordError(
            "RUNRECORD_DATABASE_URL is malformed: expected e.g. "
            "postgresql+psycopg://user@host:5432/db or sqlite:///path/records.sqlite3"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise RunRecordError(
            f"unsupported records database {backend!r}: use postgresql+psycopg:// or sqlite://"
        )
    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs["connect_args"] = {"connect_timeout": 5}
    elif parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunRecordError(
                f"cannot create the folder {folder} of records database {_display(url)}: "
                f"{err.strerror or err}"
            ) from None
    try:
        engine = create_engine(parsed, **kwargs)  # type: ignore[arg-type]
    except (ArgumentError, NoSuchModuleError) as err:
        raise RunRecordError(f"cannot use records database {_display(url)}: {err}") from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def listen_url(engine: Engine) -> str | None:
    """The libpq connection string of a PostgreSQL records database (for ``LISTEN``, which
    needs a connection of its own outside the pool), or None for SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    from psycopg.conninfo import make_conninfo

    url = engine.url
    args = url.translate_connect_args(username="user", database="dbname")
    params = {k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()}
    return make_conninfo("", **{k: str(v) for k, v in args.items()}, **params)


def is_outage(err: BaseException) -> bool:
    """The database was unreachable or gave up (down, a lost connection, a deadlock, SQLite
    busy): worth trying everything again, unlike a row the database refuses."""
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, (OperationalError, InterfaceError))


def refusal(err: BaseException) -> str:
    """Why the database refused a write, in one line: the driver's error, not the statement."""
    cause = getattr(err, "orig", None) or err
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"[:500]


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def known_revisions() -> list[str]:
    """The schema revisions this code has, oldest first. Each migration file is named after its
    revision (``0007_mirror_cursors.py`` is ``0007``; a test holds the migrations to it), so a
    command can check the schema without loading alembic and every migration script."""
    versions = MIGRATIONS / "versions"
    return sorted(path.name.partition("_")[0] for path in versions.glob("[0-9]*_*.py"))


def head_revision() -> str:
    return known_revisions()[-1]


# Whether alembic's table is where an unqualified name finds it: one catalog lookup, where
# SQLAlchemy's reflection would build and compile a query of its own in every process.
_HAS_VERSION_TABLE = {
    "postgresql": text("select to_regclass('alembic_version') is not null"),
    "sqlite": text(
        "select count(*) from sqlite_master where type = 'table' and name = 'alembic_version'"
    ),
}


def current_revision(engine: Engine) -> str | None:
    """The revision alembic stamped the database with; None if it has no schema yet."""
    try:
        with engine.connect() as conn:
            if not conn.execute(_HAS_VERSION_TABLE[conn.dialect.name]).scalar():
                return None
            stamped = conn.execute(text("select version_num from alembic_version")).scalars()
            return max(stamped, default=None)
    except SQLAlchemyError as err:
        raise RunRecordError(
            f"records database {_display(str(engine.url))} is unreachable: "
            f"{str(getattr(err, 'orig', None) or err).strip().splitlines()[0]}"
        ) from None


def check_not_newer(engine: Engine, current: str | None = None) -> None:
    """Fail if the database is unreachable or at a schema revision this code does not know."""
    current = current if current is not None else current_revision(engine)
    if current is None:
        return
    if current not in known_revisions():
        raise RunRecordError(
            f"records database is at schema revision {current}, newer than this runrecord "
            f"knows (head {head_revision()}): upgrade runrecord"
        )


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply pending migrations; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    check_not_newer(engine, before)
    config = _alembic_config()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except SQLAlchemyError as err:
        raise RunRecordError(f"schema upgrade failed: {str(err).splitlines()[0]}") from None
    return before, head_revision()


def require_current(engine: Engine) -> None:
    """Refuse to read or write a database whose schema this code does not match."""
    current = current_revision(engine)
    check_not_newer(engine, current)
    if current != head_revision():
        raise RunRecordError("records database schema is not current: run `runrecord db upgrade`")
