"""runrecord: a durable, queryable run record for every AI agent run on Temporal."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

# Each public name and the module that defines it, imported on first use.
_EXPORTS = {
    "ApprovalExpired": "runrecord.workflows",
    "MCPServerSpec": "runrecord.activities",
    "MCPToolPolicy": "runrecord.activities",
    "ModelSpec": "runrecord.records",
    "Policy": "runrecord.workflows",
    "Prompt": "runrecord.activities",
    "RunRecord": "runrecord.records",
    "RunRecordInterceptor": "runrecord.worker",
    "RunRecordPlugin": "runrecord.worker",
    "SideEffect": "runrecord.records",
    "ToolDenied": "runrecord.workflows",
    "agent": "runrecord.workflows",
    "artifact": "runrecord.activities",
    "call_model": "runrecord.activities",
    "tool": "runrecord.activities",
    "turn": "runrecord.worker",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from runrecord.activities import (
        MCPServerSpec,
        MCPToolPolicy,
        Prompt,
        artifact,
        call_model,
        tool,
    )
    from runrecord.records import ModelSpec, RunRecord, SideEffect
    from runrecord.worker import RunRecordInterceptor, RunRecordPlugin, turn
    from runrecord.workflows import ApprovalExpired, Policy, ToolDenied, agent

__all__ = [
    "ApprovalExpired",
    "MCPServerSpec",
    "MCPToolPolicy",
    "ModelSpec",
    "Policy",
    "Prompt",
    "RunRecord",
    "RunRecordInterceptor",
    "RunRecordPlugin",
    "SideEffect",
    "ToolDenied",
    "agent",
    "artifact",
    "call_model",
    "tool",
    "turn",
]
__version__ = "0.1.0"
