"""Putting the pieces together: a Temporal client, a recording worker, the mirror, a dev server."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import temporalio.client
import temporalio.worker
from sqlalchemy import Engine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.plugin import SimplePlugin
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from runrecord._redaction import PATTERNS_ENV, default_redactor
from runrecord._settings import RunRecordError, Settings
from runrecord.activities import MCPServerSpec
from runrecord.recorder import (
    BlobStore,
    Mirror,
    Shipper,
    check_not_newer,
    open_blob_store,
    open_engine,
    upgrade,
)
from runrecord.worker import SEARCH_ATTRIBUTES, DevServer, Journal, RunRecordPlugin, port_open
from runrecord.workflows import Policy, PolicyError

# What a module's PLUGINS may hold: Temporal plugins for both client and worker.
_PLUGIN_TYPES = (SimplePlugin, temporalio.client.Plugin, temporalio.worker.Plugin)

DEFAULT_UI = "http://127.0.0.1:8233"


def records_engine(settings: Settings) -> Engine:
    """The records database, checked (reachable, not newer than this code) without writing."""
    engine = open_engine(settings.database_url)
    check_not_newer(engine)
    return engine


def blob_store(settings: Settings, engine: Engine | None = None) -> BlobStore:
    """The blob store ``RUNRECORD_BLOBS`` names, checked (bucket there, credentials taken,
    folder writable): a problem is one line, before anything runs."""
    store = open_blob_store(
        settings.blobs, engine=engine if engine is not None else (lambda: records_engine(settings))
    )
    store.check()
    return store


def check_redaction() -> None:
    """Compile the configured redaction patterns now, before anything is written."""
    try:
        default_redactor()
    except ValueError as err:
        raise RunRecordError(f"{PATTERNS_ENV}: {err}") from None


def load_policy(settings: Settings) -> Policy:
    """The approval policy: ``RUNRECORD_POLICY``, else ``$RUNRECORD_HOME/runrecord.toml``."""
    path = settings.policy_file
    try:
        return Policy.load(path) if path is not None else Policy()
    except PolicyError as err:
        raise RunRecordError(str(err)) from None


# A Temporal port that accepts and never answers must still get its one line within 10 s of
# the command starting, although imports alone take 2-4 s on a busy machine; a reachable
# cluster answers in well under a second.
ANSWER_WITHIN = 8.0
MIN_CONNECT_TIMEOUT = 3.0


def process_age() -> float:
    """Seconds since this process started (0 where ``/proc`` cannot tell)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


async def connect(
    address: str,
    namespace: str,
    plugins: Sequence[RunRecordPlugin] = (),
    timeout: float | None = None,
    identity: str | None = None,
    payload_codec: PayloadCodec | None = None,
) -> Client:
    """A client of ``address``; ``payload_codec`` is the codec the agents' clients use, and
    with one, headers (runrecord's included) are encoded too."""
    if timeout is None:
        timeout = max(MIN_CONNECT_TIMEOUT, ANSWER_WITHIN - process_age())
    try:
        return await asyncio.wait_for(
            Client.connect(
                address,
                namespace=namespace,
                plugins=list(plugins),
                identity=identity,
                data_converter=DataConverter(payload_codec=payload_codec),
                header_codec_behavior=(
                    HeaderCodecBehavior.CODEC
                    if payload_codec is not None
                    else HeaderCodecBehavior.NO_CODEC
                ),
            ),
            timeout,
        )
    except (TimeoutError, RuntimeError, RPCError, OSError, ValueError) as err:
        lines = str(err).strip().splitlines()
        detail = lines[0] if lines else type(err).__name__
        if isinstance(err, TimeoutError):
            detail = f"no answer within {timeout:.0f} s"
        raise RunRecordError(f"cannot reach Temporal at {address}: {detail}") from None


async def ensure_search_attributes(client: Client) -> None:
    """Register runrecord's search attributes on a cluster that lacks them."""
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
    if not isinstance(plugins, list) or not all(isinstance(p, _PLUGIN_TYPES) for p in plugins):
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


def agent_plugins(agents: ModuleType) -> list[Any]:
    """The Temporal plugins an agent module's agents run with (its ``PLUGINS`` list), which
    workers and replays install next to runrecord's own."""
    return list(getattr(agents, "PLUGINS", []))


def _default_examples() -> Path:
    return Path(__file__).resolve().parents[2] / "examples"


def checked_address(address: str) -> str:
    """``address`` if it has the ``host:port`` form a Temporal client needs."""
    host, _, port = address.strip().rpartition(":")
    if not (host and host.isprintable() and port.isdigit() and 0 < int(port) < 65536) or any(
        c.isspace() or c in "/@?#" for c in host
    ):
        raise RunRecordError(
            f"TEMPORAL_ADDRESS {address[:200]!r} is not host:port, e.g. 127.0.0.1:7233"
        )
    return address.strip()


@dataclass
class Temporal:
    address: str
    ui_url: str | None
    server: DevServer | None


@asynccontextmanager
async def temporal_cluster(
    settings: Settings,
    *,
    start_if_missing: bool,
    db_file: Path | None = None,
    port: int | None = None,
    ui_port: int | None = None,
) -> AsyncIterator[Temporal]:
    """TEMPORAL_ADDRESS if set; else a dev server already on ``port`` (7233); else start one
    there, its UI on ``ui_port`` (8233, or a free port if that one is taken)."""
    if settings.temporal_address:
        yield Temporal(checked_address(settings.temporal_address), settings.ui_url, None)
        return
    server = DevServer(
        db_file=db_file or settings.home / "temporal.sqlite3",
        port=port or DevServer.port,
        ui_port=ui_port or DevServer.ui_port,
    )
    if port_open(server.host, server.port):
        yield Temporal(server.address, settings.ui_url or server.ui_url, None)
        return
    if not start_if_missing:
        raise RunRecordError(
            f"no Temporal server at {server.address}: run `runrecord dev` or set TEMPORAL_ADDRESS"
        )
    if port_open(server.host, server.ui_port):
        if ui_port is not None:
            raise RunRecordError(f"UI port {ui_port} is taken: choose another with --ui-port")
        from runrecord.worker import free_port

        server.ui_port = free_port()
    await asyncio.to_thread(server.start)
    try:
        yield Temporal(server.address, server.ui_url, server)
    finally:
        await asyncio.to_thread(server.stop)


@asynccontextmanager
async def recording_worker(
    settings: Settings,
    address: str,
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
    check_redaction()
    engine = engine or records_engine(settings)
    plugin = RunRecordPlugin(
        mcp_servers=getattr(agents, "MCP_SERVERS", []), policy=load_policy(settings)
    )
    client = await connect(
        address,
        settings.namespace,
        [*agent_plugins(agents), plugin],
        payload_codec=settings.payload_codec,
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
