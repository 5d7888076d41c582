"""Shared fixtures: a real Temporal dev server and a real PostgreSQL database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from runrecord.recorder import open_engine, upgrade
from runrecord.worker import SEARCH_ATTRIBUTES, Journal, RunRecordPlugin, temporal_binary
from runrecord.worker._devserver import DEV_SERVER_FLAGS
from tests._postgres import PrivateCluster, postgres_admin_url, scratch_database


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    try:
        binary = temporal_binary()
    except Exception as err:
        pytest.fail(f"no Temporal dev server binary: {err}", pytrace=False)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=list(DEV_SERVER_FLAGS),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    return temporal_env.client.service_client.config.target_host


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    try:
        return postgres_admin_url()
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of this test's own."""
    with scratch_database(pg_admin_url) as url:
        yield url


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of the test's own, which the test may stop and start."""
    try:
        cluster = PrivateCluster.create()
    except RuntimeError as err:
        pytest.fail(str(err).splitlines()[0], pytrace=False)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The test's database at the current schema."""
    eng = open_engine(database_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "runrecord-home"
    path.mkdir()
    return path


@pytest.fixture
def journal(home: Path) -> Iterator[Journal]:
    j = Journal(home / "journal")
    try:
        yield j
    finally:
        j.close()


@pytest.fixture
async def client(temporal_address: str, journal: Journal) -> Client:
    """A client with recording installed; workers made from it record too."""
    return await Client.connect(temporal_address, plugins=[RunRecordPlugin(journal)])


@pytest.fixture
def cli_env(home: Path, database_url: str, temporal_address: str) -> dict[str, str]:
    """Environment for running the `runrecord` command against the test's components."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNRECORD_", "TEMPORAL_"))}
    env.update(
        RUNRECORD_HOME=str(home),
        RUNRECORD_DATABASE_URL=database_url,
        TEMPORAL_ADDRESS=temporal_address,
    )
    return env
