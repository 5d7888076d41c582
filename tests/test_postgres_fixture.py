"""The test PostgreSQL itself must work, or every storage test downstream is noise."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

try:  # `tests` is a package when run from the repo root with `python -m pytest`
    from tests import _postgres as pg
except ImportError:  # plain `pytest` puts tests/ itself on sys.path
    import _postgres as pg  # type: ignore[no-redef]

PrivateCluster = pg.PrivateCluster
create_test_database = pg.create_test_database
drop_test_database = pg.drop_test_database
libpq_url = pg.libpq_url
postgres_admin_url = pg.postgres_admin_url


def _database_exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        row = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
    return row is not None


def test_admin_url_answers_select_1_through_sqlalchemy() -> None:
    url = postgres_admin_url()
    assert url.startswith("postgresql+psycopg://")
    assert postgres_admin_url() == url  # resolved once per process
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_create_and_drop_test_database() -> None:
    admin = postgres_admin_url()
    name = f"rr_fixture_{uuid.uuid4().hex[:12]}"
    url = create_test_database(admin, name)
    try:
        assert _database_exists(admin, name)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            assert conn.execute("select current_database()").fetchone() == (name,)
            # a connection left open must not block the drop (WITH (FORCE))
            drop_test_database(admin, name)
        assert not _database_exists(admin, name)
    finally:
        drop_test_database(admin, name)


@pytest.mark.parametrize("bad", ["", "Upper", "semi;colon", "with space", 'quo"te', "dash-ed"])
def test_database_names_are_validated(bad: str) -> None:
    with pytest.raises(ValueError):
        create_test_database("postgresql+psycopg://nobody@127.0.0.1:1/x", bad)
    with pytest.raises(ValueError):
        drop_test_database("postgresql+psycopg://nobody@127.0.0.1:1/x", bad)


def test_bare_postgresql_scheme_gets_the_psycopg_driver() -> None:
    assert pg._with_psycopg_driver("postgresql://u:p@h:1/d") == "postgresql+psycopg://u:p@h:1/d"
    kept = "postgresql+psycopg://u:p@h:1/d?sslmode=disable"
    assert pg._with_psycopg_driver(kept) == kept
    assert libpq_url(kept) == "postgresql://u:p@h:1/d?sslmode=disable"


def test_private_cluster_survives_stop_and_start() -> None:
    if pg.find_postgres_bin_dir() is None:
        pytest.fail("PostgreSQL binaries (initdb, pg_ctl) not installed", pytrace=False)
    cluster = PrivateCluster.create()
    try:
        cluster.start()
        conninfo = libpq_url(cluster.url)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("create table kept (v int)")
            conn.execute("insert into kept values (42)")

        cluster.stop()
        assert not cluster.is_running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(conninfo, connect_timeout=3).close()

        url_before = cluster.url
        cluster.start()
        assert cluster.url == url_before  # clients reconnect to the same address
        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert conn.execute("select v from kept").fetchone() == (42,)
    finally:
        cluster.destroy()
    assert not cluster.base_dir.exists()
    assert not cluster.is_running()
    cluster.destroy()  # idempotent
