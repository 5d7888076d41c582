"""Which Temporal cluster the CLI, workers and mirrors use, and how they connect to it.

The connection is Temporal's own client configuration, read with ``temporalio.envconfig``
exactly as Temporal's CLI and SDKs read it: a profile of ``temporal.toml``
(``TEMPORAL_CONFIG_FILE``, default ``~/.config/temporalio/temporal.toml``; profile
``TEMPORAL_PROFILE``, default ``default``) with ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
``TEMPORAL_API_KEY``, ``TEMPORAL_TLS_*`` and ``TEMPORAL_GRPC_META_*`` overriding it. mTLS and
API-key clusters (Temporal Cloud included) need no runrecord setting. Without an address from
either, the embedded dev server on 127.0.0.1:7233 is the cluster.

temporalio is imported only when a command connects, so query commands start fast.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runrecord._settings import RunRecordError, Settings

if TYPE_CHECKING:
    from temporalio.client import Client, Plugin
    from temporalio.converter import PayloadCodec

    from runrecord.worker import DevServer

CONFIG_FILE_ENV = "TEMPORAL_CONFIG_FILE"
PROFILE_ENV = "TEMPORAL_PROFILE"
ADDRESS_ENV = "TEMPORAL_ADDRESS"

# A Temporal port that accepts and never answers must still get its one line within 10 s of
# the command starting, although imports alone take 2-4 s on a busy machine; a reachable
# cluster answers in well under a second.
ANSWER_WITHIN = 8.0
MIN_CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True)
class TemporalProfile:
    """A Temporal client profile with the environment's overrides applied."""

    address: str | None
    namespace: str
    api_key: str | None = None
    # bool | temporalio.service.TLSConfig | None, as Client.connect takes it
    tls: Any = None
    rpc_metadata: Mapping[str, str] = field(default_factory=dict)
    source: str = ADDRESS_ENV

    @classmethod
    def load(cls) -> TemporalProfile:
        """The profile Temporal's own tools would use in this environment."""
        from temporalio.envconfig import ClientConfigProfile

        named = os.environ.get(PROFILE_ENV) or None
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file and not Path(config_file).expanduser().is_file():
            raise RunRecordError(f"{CONFIG_FILE_ENV} {config_file[:200]!r}: no such file")
        try:
            profile = ClientConfigProfile.load(profile=named)
        except Exception as err:  # the bridge's ConfigError: a bad file or unknown profile
            lines = str(err).strip().splitlines()
            raise RunRecordError(
                f"Temporal client configuration: {lines[0] if lines else type(err).__name__}"
            ) from None
        try:
            config = profile.to_client_connect_config()
        except OSError as err:
            raise RunRecordError(
                f"Temporal client configuration: cannot read TLS file {err.filename}: "
                f"{err.strerror}"
            ) from None
        if os.environ.get(ADDRESS_ENV):
            source = ADDRESS_ENV
        else:
            source = f"profile {named or 'default'!r} of {config_file or 'temporal.toml'}"
        return cls(
            address=(config.get("target_host") or "").strip() or None,
            namespace=config.get("namespace") or "default",
            api_key=config.get("api_key"),
            tls=config.get("tls"),
            rpc_metadata=dict(config.get("rpc_metadata") or {}),
            source=source,
        )


@dataclass
class Temporal:
    """The cluster a command uses: its address, UI, and the dev server if runrecord started
    one."""

    address: str
    ui_url: str | None
    server: DevServer | None
    profile: TemporalProfile = field(default_factory=lambda: TemporalProfile(None, "default"))

    @property
    def namespace(self) -> str:
        return self.profile.namespace


def process_age() -> float:
    """Seconds since this process started (0 where ``/proc`` cannot tell)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


async def connect(
    cluster: Temporal | str,
    namespace: str | None = None,
    plugins: Sequence[Plugin] = (),
    timeout: float | None = None,
    identity: str | None = None,
    payload_codec: PayloadCodec | None = None,
) -> Client:
    """A client of ``cluster`` with its profile's namespace, TLS, API key and gRPC metadata
    (a bare ``host:port`` is a plain connection); ``payload_codec`` is the codec the agents'
    clients use, and with one, headers (runrecord's included) are encoded too."""
    from temporalio.client import Client
    from temporalio.common import HeaderCodecBehavior
    from temporalio.converter import DataConverter
    from temporalio.service import RPCError

    if isinstance(cluster, str):
        cluster = Temporal(cluster, None, None)
    profile = cluster.profile
    if timeout is None:
        timeout = max(MIN_CONNECT_TIMEOUT, ANSWER_WITHIN - process_age())
    try:
        return await asyncio.wait_for(
            Client.connect(
                cluster.address,
                namespace=namespace or profile.namespace,
                api_key=profile.api_key,
                tls=profile.tls,
                rpc_metadata=profile.rpc_metadata,
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
        raise RunRecordError(f"cannot reach Temporal at {cluster.address}: {detail}") from None


def checked_address(address: str, source: str = ADDRESS_ENV) -> str:
    """``address`` if it has the ``host:port`` form a Temporal client needs."""
    host, _, port = address.strip().rpartition(":")
    if not (host and host.isprintable() and port.isdigit() and 0 < int(port) < 65536) or any(
        c.isspace() or c in "/@?#" for c in host
    ):
        where = source if source == ADDRESS_ENV else f"address of Temporal {source}"
        raise RunRecordError(f"{where} {address[:200]!r} is not host:port, e.g. 127.0.0.1:7233")
    return address.strip()


@asynccontextmanager
async def temporal_cluster(
    settings: Settings,
    *,
    start_if_missing: bool,
    db_file: Path | None = None,
    port: int | None = None,
    ui_port: int | None = None,
    profile: TemporalProfile | None = None,
) -> AsyncIterator[Temporal]:
    """The configured cluster (Temporal's profile and environment) if it names an address;
    else a dev server already on ``port`` (7233); else start one there, its UI on
    ``ui_port`` (8233, or a free port if that one is taken)."""
    from runrecord.worker import DevServer, port_open

    profile = profile or TemporalProfile.load()
    if profile.address:
        address = checked_address(profile.address, profile.source)
        yield Temporal(address, settings.ui_url, None, profile)
        return
    server = DevServer(
        db_file=db_file or settings.home / "temporal.sqlite3",
        port=port or DevServer.port,
        ui_port=ui_port or DevServer.ui_port,
    )
    if port_open(server.host, server.port):
        yield Temporal(server.address, settings.ui_url or server.ui_url, None, profile)
        return
    if not start_if_missing:
        raise RunRecordError(
            f"no Temporal server at {server.address}: run `runrecord dev`, or set "
            f"{ADDRESS_ENV} or a {PROFILE_ENV} with an address"
        )
    if port_open(server.host, server.ui_port):
        if ui_port is not None:
            raise RunRecordError(f"UI port {ui_port} is taken: choose another with --ui-port")
        from runrecord.worker import free_port

        server.ui_port = free_port()
    await asyncio.to_thread(server.start)
    try:
        yield Temporal(server.address, server.ui_url, server, profile)
    finally:
        await asyncio.to_thread(server.stop)
