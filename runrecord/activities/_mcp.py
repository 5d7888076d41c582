"""MCP servers a worker reaches through ``temporalio-mcp``, and the rules for recording them.

``MCPServerSpec`` registers a server by name, transport and trust level. The worker side
hands temporalio-mcp's ``MCPPlugin`` one ``mcp.Client`` factory per server; the client it
makes adds what temporalio-mcp does not record: who answered a tools listing, whether a
tool changed since the run's snapshot (schema drift), and clear failures for a server that
will not start or answers with an invalid schema. The workflow interceptor uses the same
hashing and side-effect rules, so both sides agree on what a tool's schema hash is.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import PurePath
from typing import IO, Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.types import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    CallToolResult,
    Implementation,
    ListToolsResult,
    Tool,
)
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from runrecord._contract import ErrorType
from runrecord._redaction import default_redactor
from runrecord.activities._artifacts import current_call
from runrecord.records import (
    MCPServerInfo,
    SchemaDrift,
    SideEffect,
    ToolAnnotations,
    ToolRegistryEntry,
)

ACTIVITY_PREFIX = "temporalio.mcp."
SERVER_META = "runrecord/server"
"""``_meta`` key stamped on every tools listing: which server answered, and how."""
CALL_META = "runrecord/call"
"""``_meta`` key stamped on a tool result the drift policy let through."""

WORST_CASE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
"""The MCP spec's defaults for absent hints: what an untrusted server's tools are taken to be."""

DriftAction = Literal["refuse", "allow"]
_DRIFT_ACTIONS = ("refuse", "allow")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


CLIENT_INFO = Implementation(name="runrecord", version=_version("runrecord"))
CLIENT_IDENTITY = f"runrecord/{CLIENT_INFO.version} (temporalio-mcp {_version('temporalio-mcp')})"
"""The MCP client that sends every call: recorded as the initiating client."""


@dataclass(frozen=True)
class MCPToolPolicy:
    """Overrides for what runrecord derives from a tool's annotations; None keeps the derived value.

    ``on_drift`` says what happens when the tool's definition at call time differs from the
    snapshot taken when the run listed it: ``refuse`` (the call fails, the tool is not called)
    or ``allow`` (the call goes ahead and the drift is recorded).
    """

    side_effect: SideEffect | str | None = None
    network: bool | None = None
    approval: bool | None = None
    on_drift: DriftAction | None = None

    def __post_init__(self) -> None:
        if self.side_effect is not None:
            object.__setattr__(self, "side_effect", SideEffect(self.side_effect))
        if self.on_drift is not None and self.on_drift not in _DRIFT_ACTIONS:
            raise ValueError(f"on_drift must be 'refuse' or 'allow', not {self.on_drift!r}")


@dataclass(frozen=True)
class ToolDefinition:
    """Hashes of one MCP tool's definition, as listed."""

    name: str
    schema_hash: str
    input_schema_hash: str
    output_schema_hash: str | None
    annotations: ToolAnnotations | None
    schema_error: str | None

    def changes_from(self, other: ToolDefinitionParts) -> list[str]:
        changed = []
        if self.input_schema_hash != other.input_schema_hash:
            changed.append("inputSchema")
        if self.output_schema_hash != other.output_schema_hash:
            changed.append("outputSchema")
        if self.annotations != other.annotations:
            changed.append("annotations")
        if not changed and self.schema_hash != other.schema_hash:
            changed.append("description")
        return changed


@dataclass(frozen=True)
class ToolDefinitionParts:
    """What a call's header says of the tool's definition in the run's snapshot."""

    schema_hash: str | None
    input_schema_hash: str | None
    output_schema_hash: str | None
    annotations: ToolAnnotations | None


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _schema_error(label: str, schema: Mapping[str, Any] | None) -> str | None:
    if schema is None:
        return None
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as err:
        path = "/".join(str(p) for p in err.absolute_path)
        return f"{label} is not a valid JSON Schema: {err.message}" + (
            f" at {path}" if path else ""
        )
    return None


def tool_definition(tool: Tool | Mapping[str, Any]) -> ToolDefinition:
    """Hash a listed tool: name, title, description, input and output schema, annotations.

    The same tool hashes the same whichever side reads it (the worker's ``Tool`` or the
    workflow's JSON copy of it), so a changed hash is a changed definition.
    """
    parsed = tool if isinstance(tool, Tool) else Tool.model_validate(tool)
    wire = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    input_schema = wire.get("inputSchema") or {}
    output_schema = wire.get("outputSchema")
    hints = wire.get("annotations")
    annotations = (
        ToolAnnotations.model_validate({k: v for k, v in hints.items() if k in _HINTS})
        if isinstance(hints, dict)
        else None
    )
    whole = {
        k: wire.get(k)
        for k in ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
    }
    return ToolDefinition(
        name=parsed.name,
        schema_hash=_digest(whole),
        input_schema_hash=_digest(input_schema),
        output_schema_hash=_digest(output_schema) if output_schema is not None else None,
        annotations=annotations,
        schema_error=_schema_error("inputSchema", input_schema)
        or _schema_error("outputSchema", output_schema),
    )


def derive_side_effect(hints: ToolAnnotations) -> tuple[SideEffect, bool, bool]:
    """(side effect, network flag, idempotent) from effective hints, per the MCP spec's meaning."""
    if hints.read_only_hint:
        effect = SideEffect.READ
    elif hints.destructive_hint is not False:
        effect = SideEffect.DELETE
    else:
        effect = SideEffect.WRITE
    return effect, hints.open_world_hint is not False, bool(hints.idempotent_hint)


def effective_hints(annotations: ToolAnnotations | None, trusted: bool) -> ToolAnnotations:
    """A trusted server's hints with the spec's defaults filled in; worst case for anyone else."""
    if not trusted or annotations is None:
        return WORST_CASE
    return ToolAnnotations(
        read_only_hint=bool(annotations.read_only_hint),
        destructive_hint=annotations.destructive_hint is not False,
        idempotent_hint=bool(annotations.idempotent_hint),
        open_world_hint=annotations.open_world_hint is not False,
    )


def registry_entry(
    server: str, definition: ToolDefinition, *, trusted: bool, policy: MCPToolPolicy
) -> ToolRegistryEntry:
    """What the run's registry says of a listed tool: derived side effect, then overrides."""
    effect, network, idempotent = derive_side_effect(
        effective_hints(definition.annotations, trusted)
    )
    return ToolRegistryEntry(
        name=definition.name,
        side_effect=SideEffect(policy.side_effect) if policy.side_effect else effect,
        network=network if policy.network is None else policy.network,
        idempotent=idempotent,
        approval=bool(policy.approval),
        schema_hash=definition.schema_hash,
        input_schema_hash=definition.input_schema_hash,
        output_schema_hash=definition.output_schema_hash,
        annotations=definition.annotations,
        trusted=trusted,
        schema_error=definition.schema_error,
        server=server,
    )


@dataclass(frozen=True)
class MCPServerSpec:
    """An MCP server registered with runrecord: name, transport, trust level and policy.

    Give ``command`` (stdio: the server is started as a subprocess) or ``url`` (streamable
    HTTP). Annotations of a server not marked ``trusted`` are ignored in favour of the MCP
    spec's worst case (every tool deletes and reaches the network). ``timeout`` bounds each
    MCP request in seconds; ``max_attempts`` bounds retries of a failing call when the
    workflow sets no retry policy. ``required`` servers that cannot be listed when a run
    starts stop the run; others leave it going without their tools. ``defaults`` and
    ``tools`` override what is derived, for every tool or for one tool by name.
    """

    name: str
    command: Sequence[str] = ()
    url: str | None = None
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    trusted: bool = False
    timeout: float = 30.0
    max_attempts: int = 3
    required: bool = True
    defaults: MCPToolPolicy = field(default_factory=MCPToolPolicy)
    tools: Mapping[str, MCPToolPolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"MCP server name {self.name!r} must be letters, digits, '_' or '-' "
                "(it becomes part of Temporal activity names)"
            )
        object.__setattr__(self, "command", tuple(self.command))
        if bool(self.command) == bool(self.url):
            raise ValueError(f"MCP server {self.name!r}: give either command (stdio) or url")
        if self.timeout <= 0:
            raise ValueError(f"MCP server {self.name!r}: timeout must be positive")
        if self.max_attempts < 1:
            raise ValueError(f"MCP server {self.name!r}: max_attempts must be at least 1")

    @classmethod
    def stdio(cls, name: str, command: str, *args: str, **options: Any) -> MCPServerSpec:
        """A server started as ``command args...`` and spoken to over stdin/stdout."""
        return cls(name, command=(command, *args), **options)

    @classmethod
    def http(cls, name: str, url: str, **options: Any) -> MCPServerSpec:
        """A server reached over streamable HTTP at ``url``."""
        return cls(name, url=url, **options)

    @property
    def transport(self) -> str:
        return "streamable-http" if self.url else "stdio"

    @property
    def target(self) -> str:
        """Where the server is, without anything that may be a secret (arguments, credentials)."""
        if self.url:
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        program = PurePath(self.command[0]).name
        if len(self.command) > 2 and self.command[1] == "-m":
            return f"{program} -m {self.command[2]}"
        return program

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(milliseconds=200), maximum_attempts=self.max_attempts
        )

    def policy(self, tool: str) -> MCPToolPolicy:
        """The server's defaults with the tool's own overrides on top."""
        own = self.tools.get(tool, MCPToolPolicy())
        base = self.defaults
        return MCPToolPolicy(
            side_effect=own.side_effect if own.side_effect is not None else base.side_effect,
            network=own.network if own.network is not None else base.network,
            approval=own.approval if own.approval is not None else base.approval,
            on_drift=own.on_drift or base.on_drift,
        )

    def on_drift(self, tool: str) -> DriftAction:
        return self.policy(tool).on_drift or "refuse"

    def registry_entry(self, definition: ToolDefinition) -> ToolRegistryEntry:
        return registry_entry(
            self.name, definition, trusted=self.trusted, policy=self.policy(definition.name)
        )

    def info(self) -> MCPServerInfo:
        return MCPServerInfo(
            name=self.name, transport=self.transport, target=self.target, trusted=self.trusted
        )

    def client(self) -> Client:
        """A fresh MCP client for this server: the factory given to temporalio-mcp's plugin."""
        if self.url:
            return _RecordingClient(
                self.url, spec=self, read_timeout_seconds=self.timeout, client_info=CLIENT_INFO
            )
        # The server's stderr is kept so a server that will not start can say why.
        errlog = tempfile.TemporaryFile("w+")
        params = StdioServerParameters(
            command=self.command[0],
            args=list(self.command[1:]),
            env=dict(self.env) if self.env else None,
            cwd=self.cwd,
        )
        return _RecordingClient(
            stdio_client(params, errlog=cast(Any, errlog)),
            spec=self,
            errlog=errlog,
            read_timeout_seconds=self.timeout,
            client_info=CLIENT_INFO,
        )


def parse_activity(name: str) -> tuple[str, str] | None:
    """(server, operation) of a temporalio-mcp activity name, else None."""
    if not name.startswith(ACTIVITY_PREFIX):
        return None
    server, _, operation = name.removeprefix(ACTIVITY_PREFIX).rpartition(".")
    return (server, operation) if server and operation else None


def _leaf(err: BaseException) -> BaseException:
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return err


@dataclass
class _RecordingClient(Client):
    """``mcp.Client`` for temporalio-mcp's activities, recording what they do not."""

    spec: MCPServerSpec | None = None
    errlog: IO[str] | None = None

    async def __aenter__(self) -> _RecordingClient:
        try:
            await super().__aenter__()
        except Exception as err:
            failure = self._start_failure(err)
            self._close_errlog()
            raise failure from None
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            self._close_errlog()

    @property
    def _name(self) -> str:
        return self.spec.name if self.spec else "?"

    def _close_errlog(self) -> None:
        if self.errlog is not None:
            self.errlog.close()
            self.errlog = None

    def _stderr_tail(self) -> str:
        if self.errlog is None or self.errlog.closed:
            return ""
        try:
            self.errlog.seek(0)
            lines = [line.strip() for line in self.errlog.read()[-4000:].splitlines()]
        except (OSError, ValueError):
            return ""
        last = next((line for line in reversed(lines) if line), "")
        return default_redactor().text(last, 300)

    def _start_failure(self, err: Exception) -> ApplicationError:
        leaf = _leaf(err)
        spec = self.spec
        where = f"{spec.transport} {spec.target}" if spec else "?"
        if isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
            reason = "it closed the connection before the MCP handshake finished"
        elif isinstance(leaf, MCPError) and leaf.code == REQUEST_TIMEOUT:
            reason = f"no answer to the MCP handshake within {spec.timeout if spec else '?'}s"
        else:
            reason = f"{type(leaf).__name__}: {leaf}"
        tail = self._stderr_tail()
        message = f"MCP server {self._name!r} failed to start ({where}): {reason}"
        if tail:
            message += f"; its stderr ends: {tail}"
        # A missing or non-executable command stays missing: retrying cannot help.
        permanent = isinstance(leaf, FileNotFoundError | PermissionError | NotADirectoryError)
        return ApplicationError(
            message, type=ErrorType.MCP_SERVER_UNAVAILABLE, non_retryable=permanent
        )

    def _request_failure(self, err: MCPError, what: str) -> MCPError:
        # Keep the JSON-RPC code: temporalio-mcp decides retries and reconnects by it.
        if err.code == REQUEST_TIMEOUT:
            timeout = self.spec.timeout if self.spec else self.read_timeout_seconds
            message = f"MCP server {self._name!r} did not answer {what} within {timeout}s"
        elif err.code == CONNECTION_CLOSED:
            message = f"MCP server {self._name!r} closed the connection during {what}"
            tail = self._stderr_tail()
            if tail:
                message += f"; its stderr ends: {tail}"
        else:
            return err
        return MCPError(err.code, message, err.data)

    async def list_tools(
        self, *, cursor: str | None = None, meta: Any = None, cache_mode: Any = "use"
    ) -> ListToolsResult:
        try:
            result = await super().list_tools(cursor=cursor, meta=meta, cache_mode=cache_mode)
        except MCPError as err:
            raise self._request_failure(err, "tools/list") from None
        info = self.server_info
        stamp = {
            "serverName": info.name if info else None,
            "serverVersion": info.version if info else None,
            "protocolVersion": self.protocol_version,
        }
        return result.model_copy(update={"meta": {**(result.meta or {}), SERVER_META: stamp}})

    async def _current_definition(self, name: str) -> ToolDefinition | None:
        listing = await self.list_tools(cache_mode="bypass")
        tools = list(listing.tools)
        cursor = listing.next_cursor
        while cursor is not None and not any(t.name == name for t in tools):
            page = await self.list_tools(cursor=cursor, cache_mode="bypass")
            tools.extend(page.tools)
            cursor = page.next_cursor
        tool = next((t for t in tools if t.name == name), None)
        return tool_definition(tool) if tool is not None else None

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        read_timeout_seconds: float | None = None,
        progress_callback: Any = None,
        *,
        input_responses: Any = None,
        request_state: str | None = None,
        meta: Any = None,
    ) -> CallToolResult:
        call = current_call.get()
        mcp = call.header.mcp if call is not None else None
        drift: SchemaDrift | None = None
        if call is not None and mcp is not None:
            header = call.header
            current = await self._current_definition(name)
            if current is not None and current.schema_error:
                raise ApplicationError(
                    f"MCP server {self._name!r} lists tool {name!r} with an invalid schema: "
                    f"{current.schema_error}",
                    type=ErrorType.MCP_INVALID_SCHEMA,
                    non_retryable=True,
                )
            current_hash = current.schema_hash if current is not None else None
            if current_hash != header.schema_hash:
                drift = SchemaDrift(
                    registry_hash=header.schema_hash,
                    current_hash=current_hash,
                    changed=(
                        current.changes_from(
                            ToolDefinitionParts(
                                header.schema_hash,
                                mcp.input_schema_hash,
                                mcp.output_schema_hash,
                                mcp.annotations,
                            )
                        )
                        if current is not None and header.schema_hash is not None
                        else []
                    ),
                    refused=mcp.on_drift != "allow",
                )
                if drift.refused:
                    raise ApplicationError(
                        _drift_message(self._name, name, drift),
                        drift.to_json_dict(),
                        type=ErrorType.MCP_SCHEMA_DRIFT,
                        non_retryable=True,
                    )
        try:
            result = await super().call_tool(
                name,
                arguments,
                read_timeout_seconds,
                progress_callback,
                input_responses=input_responses,
                request_state=request_state,
                meta=meta,
            )
        except MCPError as err:
            raise self._request_failure(err, f"tools/call {name!r}") from None
        except RuntimeError as err:
            # The SDK checks structured output against the tool's output schema; a server
            # that breaks its own schema will break it again, so no retry.
            raise ApplicationError(
                f"MCP server {self._name!r}, tool {name!r}: {err}",
                type=ErrorType.MCP_INVALID_RESULT,
                non_retryable=True,
            ) from None
        if drift is not None:
            meta = {**(result.meta or {}), CALL_META: {"drift": drift.to_json_dict()}}
            result = result.model_copy(update={"meta": meta})
        return result


def _drift_message(server: str, tool: str, drift: SchemaDrift) -> str:
    if drift.registry_hash is None:
        return (
            f"MCP tool {tool!r} of server {server!r} is not in this run's registry snapshot: "
            "list the server's tools first (declare it with @runrecord.agent(mcp=[...]))"
        )
    if drift.current_hash is None:
        return f"MCP server {server!r} no longer offers tool {tool!r} (schema drift)"
    what = ", ".join(drift.changed) or "definition"
    return (
        f"MCP tool {tool!r} of server {server!r} changed since the run listed it ({what}): "
        f"schema {drift.registry_hash[:12]} -> {drift.current_hash[:12]}; refused by policy"
    )


def server_info(spec: MCPServerSpec | None, server: str, listing: ListToolsResult) -> MCPServerInfo:
    """The run's view of a server, from its stamped tools listing."""
    base = spec.info() if spec else MCPServerInfo(name=server, transport="unknown", target="")
    stamp = (listing.meta or {}).get(SERVER_META)
    if isinstance(stamp, dict):
        base = base.model_copy(
            update={
                "server_name": stamp.get("serverName"),
                "server_version": stamp.get("serverVersion"),
                "protocol_version": stamp.get("protocolVersion"),
            }
        )
    return base.model_copy(update={"tools": len(listing.tools)})
