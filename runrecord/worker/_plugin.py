"""``RunRecordPlugin``: install recording on a client and every worker made from it."""

from __future__ import annotations

import temporalio.worker
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.plugin import SimplePlugin
from temporalio.worker import WorkerConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from runrecord.worker._interceptor import RunRecordInterceptor
from runrecord.worker._journal import Journal


def _runner(existing: temporalio.worker.WorkflowRunner | None) -> temporalio.worker.WorkflowRunner:
    # runrecord's own modules are deterministic and hold the tool registry: share them.
    if isinstance(existing, SandboxedWorkflowRunner):
        return SandboxedWorkflowRunner(
            restrictions=existing.restrictions.with_passthrough_modules("runrecord")
        )
    if existing is None:
        return SandboxedWorkflowRunner(
            restrictions=SandboxedWorkflowRunner().restrictions.with_passthrough_modules(
                "runrecord"
            )
        )
    return existing


class RunRecordPlugin(SimplePlugin):
    """Pass to ``Client.connect(plugins=[...])``; workers made from that client record too.

    ``journal`` receives activity attempts and artifacts; without one, only what
    Temporal history holds is recorded.
    """

    def __init__(self, journal: Journal | None = None, *, identity: str | None = None) -> None:
        record = journal.record if journal is not None else None
        self.journal = journal
        self.interceptor = RunRecordInterceptor(record, identity=identity)
        super().__init__(
            "runrecord.RunRecordPlugin",
            data_converter=pydantic_data_converter,
            interceptors=[self.interceptor],
            workflow_runner=_runner,
        )

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        config = super().configure_worker(config)
        self.interceptor.add_tools(config.get("activities") or [])
        return config

    def use_journal(self, journal: Journal) -> None:
        """Send activity attempts and artifacts to ``journal`` from now on."""
        self.journal = journal
        self.interceptor.record = journal.record
