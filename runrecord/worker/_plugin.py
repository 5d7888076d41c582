"""``RunRecordPlugin``: install recording on a client and every worker made from it."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import temporalio.worker
from temporalio.client import ClientConfig, WorkflowHistory
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, DefaultPayloadConverter
from temporalio.mcp import MCPPlugin
from temporalio.plugin import SimplePlugin
from temporalio.worker import Replayer, ReplayerConfig, Worker, WorkerConfig, WorkflowReplayResult
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from runrecord._redaction import redact_logs
from runrecord.activities._mcp import MCPServerSpec
from runrecord.worker._interceptor import RunRecordInterceptor, RunStartInterceptor
from runrecord.worker._journal import Journal
from runrecord.workflows import Policy

# runrecord's own modules are deterministic and hold the tool registry and the policy;
# cryptography verifies signed approvals inside the workflow.
_PASSTHROUGH = ("runrecord", "cryptography")


def _runner(existing: temporalio.worker.WorkflowRunner | None) -> temporalio.worker.WorkflowRunner:
    runner = existing or SandboxedWorkflowRunner()
    if isinstance(runner, SandboxedWorkflowRunner):
        # replace, not rebuild: the user's runner class and other settings stay.
        return dataclasses.replace(
            runner, restrictions=runner.restrictions.with_passthrough_modules(*_PASSTHROUGH)
        )
    return runner


class RunRecordPlugin(SimplePlugin):
    """Pass to ``Client.connect(plugins=[...])``; workers made from that client record too.

    ``journal`` receives activity attempts and artifacts; without one, only what
    Temporal history holds is recorded. ``mcp_servers`` are the MCP servers agents on
    these workers may use: temporalio-mcp's ``MCPPlugin`` is installed for them, and
    every call to them is recorded with its server, schema and derived side effect.
    Temporal's own log lines about failed activities and workflows are redacted.
    ``policy`` decides which calls wait for a person's approval (default: tools
    declared ``approval=True``, anyone may decide).

    The client's data converter is kept: its payload codec, failure converter and
    payload converter. Only Temporal's plain default payload converter is upgraded
    to pydantic's, and not even that when a plugin later in the list sets the
    converter itself (OpenAI Agents, pydantic-ai). Each worker gets its own
    recording interceptor, so a run's tool registry lists its own worker's tools.
    """

    def __init__(
        self,
        journal: Journal | None = None,
        *,
        identity: str | None = None,
        mcp_servers: Sequence[MCPServerSpec] = (),
        policy: Policy | None = None,
    ) -> None:
        redact_logs()
        self.journal = journal
        names = [s.name for s in mcp_servers]
        if len(set(names)) != len(names):
            raise ValueError(f"MCP server names must be unique, got {names}")
        self.identity = identity
        self.mcp_servers = tuple(mcp_servers)
        self.policy = policy
        # Interceptors are unhashable: keyed by id, forgotten with their worker.
        self._workers: weakref.WeakValueDictionary[int, RunRecordInterceptor] = (
            weakref.WeakValueDictionary()
        )
        self._converter_set_later = False
        self.mcp = MCPPlugin({s.name: s.client for s in mcp_servers}) if mcp_servers else None
        super().__init__(
            "runrecord.RunRecordPlugin",
            data_converter=self._data_converter,
            # Client side only: a worker interceptor on the client would be shared by
            # every worker of the client; configure_worker gives each its own.
            interceptors=[RunStartInterceptor()],
            workflow_runner=_runner,
        )

    def _data_converter(self, existing: DataConverter | None) -> DataConverter:
        converter = existing or DataConverter.default
        if (
            converter.payload_converter_class is not DefaultPayloadConverter
            or self._converter_set_later
        ):
            return converter
        return dataclasses.replace(converter, payload_converter_class=PydanticPayloadConverter)

    def configure_client(self, config: ClientConfig) -> ClientConfig:
        plugins = list(config.get("plugins") or [])
        later = plugins[plugins.index(self) + 1 :] if self in plugins else []
        self._converter_set_later = any(
            isinstance(p, SimplePlugin) and p.data_converter is not None for p in later
        )
        return super().configure_client(config)

    def recording_interceptor(self) -> RunRecordInterceptor:
        """A new worker-side interceptor with this plugin's journal, identity, servers, policy."""
        interceptor = RunRecordInterceptor(
            self.journal.record if self.journal is not None else None,
            identity=self.identity,
            mcp_servers=self.mcp_servers,
            policy=self.policy,
        )
        self._workers[id(interceptor)] = interceptor
        return interceptor

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        config = super().configure_worker(config)
        if self.mcp is not None:
            config = self.mcp.configure_worker(config)
        interceptor = self.recording_interceptor()
        interceptor.add_tools(config.get("activities") or [])
        config["interceptors"] = [interceptor, *(config.get("interceptors") or [])]
        return config

    async def run_worker(self, worker: Worker, next: Callable[[Worker], Awaitable[None]]) -> None:
        mcp = self.mcp
        if mcp is None:
            await super().run_worker(worker, next)
            return

        async def with_mcp(w: Worker) -> None:
            await mcp.run_worker(w, next)

        await super().run_worker(worker, with_mcp)

    def configure_replayer(self, config: ReplayerConfig) -> ReplayerConfig:
        config = super().configure_replayer(config)
        if self.mcp is not None:
            config = self.mcp.configure_replayer(config)
        config["interceptors"] = [self.recording_interceptor(), *(config.get("interceptors") or [])]
        return config

    @asynccontextmanager
    async def run_replayer(
        self,
        replayer: Replayer,
        histories: AsyncIterator[WorkflowHistory],
        next: Callable[
            [Replayer, AsyncIterator[WorkflowHistory]],
            AbstractAsyncContextManager[AsyncIterator[WorkflowReplayResult]],
        ],
    ) -> AsyncIterator[AsyncIterator[WorkflowReplayResult]]:
        if self.mcp is None:
            async with super().run_replayer(replayer, histories, next) as results:
                yield results
            return
        async with self.mcp.run_replayer(replayer, histories, next) as results:
            yield results

    def use_journal(self, journal: Journal) -> None:
        """Send activity attempts and artifacts to ``journal`` from now on."""
        self.journal = journal
        for interceptor in list(self._workers.values()):
            interceptor.record = journal.record
