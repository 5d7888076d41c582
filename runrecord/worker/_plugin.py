"""``RunRecordPlugin``: install recording on a client and every worker made from it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import temporalio.worker
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.mcp import MCPPlugin
from temporalio.plugin import SimplePlugin
from temporalio.worker import Replayer, ReplayerConfig, Worker, WorkerConfig, WorkflowReplayResult
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from runrecord._redaction import redact_logs
from runrecord.activities._mcp import MCPServerSpec
from runrecord.worker._interceptor import RunRecordInterceptor
from runrecord.worker._journal import Journal
from runrecord.workflows import Policy

# runrecord's own modules are deterministic and hold the tool registry and the policy;
# cryptography verifies signed approvals inside the workflow.
_PASSTHROUGH = ("runrecord", "cryptography")


def _runner(existing: temporalio.worker.WorkflowRunner | None) -> temporalio.worker.WorkflowRunner:
    if isinstance(existing, SandboxedWorkflowRunner):
        return SandboxedWorkflowRunner(
            restrictions=existing.restrictions.with_passthrough_modules(*_PASSTHROUGH)
        )
    if existing is None:
        return SandboxedWorkflowRunner(
            restrictions=SandboxedWorkflowRunner().restrictions.with_passthrough_modules(
                *_PASSTHROUGH
            )
        )
    return existing


class RunRecordPlugin(SimplePlugin):
    """Pass to ``Client.connect(plugins=[...])``; workers made from that client record too.

    ``journal`` receives activity attempts and artifacts; without one, only what
    Temporal history holds is recorded. ``mcp_servers`` are the MCP servers agents on
    these workers may use: temporalio-mcp's ``MCPPlugin`` is installed for them, and
    every call to them is recorded with its server, schema and derived side effect.
    Temporal's own log lines about failed activities and workflows are redacted.
    ``policy`` decides which calls wait for a person's approval (default: tools
    declared ``approval=True``, anyone may decide).
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
        record = journal.record if journal is not None else None
        self.journal = journal
        names = [s.name for s in mcp_servers]
        if len(set(names)) != len(names):
            raise ValueError(f"MCP server names must be unique, got {names}")
        self.interceptor = RunRecordInterceptor(
            record, identity=identity, mcp_servers=mcp_servers, policy=policy
        )
        self.mcp = MCPPlugin({s.name: s.client for s in mcp_servers}) if mcp_servers else None
        super().__init__(
            "runrecord.RunRecordPlugin",
            data_converter=pydantic_data_converter,
            interceptors=[self.interceptor],
            workflow_runner=_runner,
        )

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        config = super().configure_worker(config)
        if self.mcp is not None:
            config = self.mcp.configure_worker(config)
        self.interceptor.add_tools(config.get("activities") or [])
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
        return self.mcp.configure_replayer(config) if self.mcp is not None else config

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
        self.interceptor.record = journal.record
