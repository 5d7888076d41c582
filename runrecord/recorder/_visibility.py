"""Temporal's visibility, read raw: temporalio 1.35 cannot decode a paused run's status (8), so
``Client.list_workflows`` raises as soon as a listing holds one paused run."""

from __future__ import annotations

from collections.abc import AsyncIterator

from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client

from runrecord._contract import AGENT_ATTR

OPEN = (
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING,
    WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_PAUSED,
)
OPEN_QUERY = "(ExecutionStatus = 'Running' OR ExecutionStatus = 'Paused')"


async def list_executions(client: Client, query: str) -> AsyncIterator[WorkflowExecutionInfo]:
    """Every execution visibility finds for ``query``, newest first, paused ones included."""
    token = b""
    while True:
        page = await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(
                namespace=client.namespace, query=query, next_page_token=token
            )
        )
        for info in page.executions:
            yield info
        token = page.next_page_token
        if not token:
            return


def is_agent_run(info: WorkflowExecutionInfo) -> bool:
    """Whether the execution is an agent run: it set runrecord's agent search attribute."""
    return AGENT_ATTR.name in info.search_attributes.indexed_fields


def is_open(info: WorkflowExecutionInfo) -> bool:
    return info.status in OPEN
