"""runrecord: a durable, queryable run record for every AI agent run on Temporal."""

from runrecord.activities import MCPServerSpec, MCPToolPolicy, Prompt, artifact, call_model, tool
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
