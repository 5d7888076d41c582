"""Putting the pieces together: a Temporal client, a recording worker, the mirror, a dev server."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runrecord._settings import RunRecordError, Settings
from runrecord.cli._cluster import Temporal, connect
from runrecord.cli._cluster import temporal_cluster as temporal_cluster  # its former home

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from temporalio.client import Client

    from runrecord.recorder import BlobStore, Mirror
    from runrecord.workflows import Policy

DEFAULT_UI = "http://127.0.0.1:8233"


def records_engine(settings: Settings) -> Engine:
    """The records database, checked (reachable, not newer than this code) without writing."""
    from runrecord.recorder import check_not_newer, open_engine

    engine = open_engine(settings.database_url)
    check_not_newer(engine)
    return engine


def blob_store(settings: Settings, engine: Engine | None = None) -> BlobStore:
    """The blob store ``RUNRECORD_BLOBS`` names, checked (bucket there, credentials taken,
    folder writable): a problem is one line, before anything runs."""
    from runrecord.recorder import open_blob_store

    store = open_blob_store(
        settings.blobs, engine=engine if engine is not None else (lambda: records_engine(settings))
    )
    store.check()
    return store


def check_redaction() -> None:
    """Compile the configured redaction patterns now, before anything is written."""
    from runrecord._redaction import PATTERNS_ENV, default_redactor

    try:
        default_redactor()
    except ValueError as err:
        raise RunRecordError(f"{PATTERNS_ENV}: {err}") from None


def load_policy(settings: Settings) -> Policy:
    """The approval policy: ``RUNRECORD_POLICY``, else ``$RUNRECORD_HOME/runrecord.toml``."""
    from runrecord.workflows import Policy, PolicyError

    path = settings.policy_file
    try:
        return Policy.load(path) if path is not None else Policy()
    except PolicyError as err:
        raise RunRecordError(str(err)) from None


async def ensure_search_attributes(client: Client) -> None:
    """Register runrecord's search attributes on a cluster that lacks them."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    from runrecord.worker import SEARCH_ATTRIBUTES

    request = AddSearchAttributesRequest(
        namespace=client.namespace,
        search_attributes={
            key.name: IndexedValueType.ValueType(key.indexed_value_type)
            for key in SEARCH_ATTRIBUTES
        },
    )
    try:
        await client.operator_service.add_search_attributes(request)
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise RunRecordError(
                f"cannot register search attributes on {client.namespace}: {err.message}"
            ) from None


def load_agents(module: str | None) -> ModuleType:
    """The module with WORKFLOWS and ACTIVITIES lists (and MCP_SERVERS, if its agents use MCP);
    the bundled examples by default."""
    from runrecord.activities import MCPServerSpec

    if module is None:
        examples = Path(os.environ.get("RUNRECORD_EXAMPLES") or _default_examples())
        if not (examples / "demo_agents.py").is_file():
            raise RunRecordError(
                f"example agents not found in {examples}: set RUNRECORD_EXAMPLES to the "
                "examples/ folder of a runrecord checkout"
            )
        if str(examples) not in sys.path:
            sys.path.insert(0, str(examples))
        module = "demo_agents"
    try:
        loaded = importlib.import_module(module)
    except ImportError as err:
        raise RunRecordError(f"cannot import agent module {module!r}: {err}") from None
    for name in ("WORKFLOWS", "ACTIVITIES"):
        if not isinstance(getattr(loaded, name, None), list):
            raise RunRecordError(f"agent module {module!r} has no {name} list")
    plugins = getattr(loaded, "PLUGINS", [])
    if not isinstance(plugins, list) or not all(isinstance(p, _plugin_types()) for p in plugins):
        raise RunRecordError(
            f"agent module {module!r}: PLUGINS must be a list of Temporal plugins "
            "(e.g. the OpenAI Agents or pydantic-ai plugin its agents run with)"
        )
    servers = getattr(loaded, "MCP_SERVERS", [])
    if not isinstance(servers, list) or not all(isinstance(s, MCPServerSpec) for s in servers):
        raise RunRecordError(
            f"agent module {module!r}: MCP_SERVERS must be a list of MCPServerSpec"
        )
    return loaded


def _plugin_types() -> tuple[type, ...]:
    """What a module's PLUGINS may hold: Temporal plugins for both client and worker."""
    import temporalio.client
    import temporalio.worker
    from temporalio.plugin import SimplePlugin

    return (SimplePlugin, temporalio.client.Plugin, temporalio.worker.Plugin)


def agent_plugins(agents: ModuleType) -> list[Any]:
    """The Temporal plugins an agent module's agents run with (its ``PLUGINS`` list), which
    workers and replays install next to runrecord's own."""
    return list(getattr(agents, "PLUGINS", []))


def _default_examples() -> Path:
    return Path(__file__).resolve().parents[2] / "examples"


@asynccontextmanager
async def recording_worker(
    settings: Settings,
    cluster: Temporal | str,
    agents: ModuleType,
    *,
    task_queue: str | None = None,
    mirror: bool = True,
    engine: Engine | None = None,
    copies: bool | None = None,
) -> AsyncIterator[tuple[Client, Mirror]]:
    """A worker for ``agents`` with recording installed: its journal shipped to the records by
    a shipper in this process (what earlier workers left on the folder first), and with
    ``mirror``, the mirror following its runs.

    ``copies``: the mirror keeps payload copies in the blob store (default: if it follows
    runs; a worker without a mirror needs no blob store)."""
    from temporalio.worker import Worker

    from runrecord.recorder import Mirror, Shipper, upgrade
    from runrecord.worker import Journal, RunRecordPlugin

    check_redaction()
    engine = engine or records_engine(settings)
    plugin = RunRecordPlugin(
        mcp_servers=getattr(agents, "MCP_SERVERS", []), policy=load_policy(settings)
    )
    namespace = settings.namespace if isinstance(cluster, str) else None
    client = await connect(
        cluster, namespace, [*agent_plugins(agents), plugin], payload_codec=settings.payload_codec
    )
    await ensure_search_attributes(client)
    # Temporal answered: only now write anything (schema, journal).
    await asyncio.to_thread(upgrade, engine)
    journal = Journal(settings.journal_dir)
    plugin.use_journal(journal)
    shipper = Shipper(engine, settings.journal_dir, journal=journal, namespace=client.namespace)
    follower = Mirror(
        client,
        engine,
        blobs=blob_store(settings, engine) if (mirror if copies is None else copies) else None,
    )
    worker = Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=agents.WORKFLOWS,
        activities=agents.ACTIVITIES,
    )
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    # Ships what earlier workers left in the folder first, then this worker's lines.
    shipper.start()
    try:
        async with worker:
            if mirror:
                tasks.append(asyncio.create_task(follower.run(stop)))
            yield client, follower
    finally:
        stop.set()
        for task in tasks:
            await task
        journal.close()
        await asyncio.to_thread(shipper.stop)
