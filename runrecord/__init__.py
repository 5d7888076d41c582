"""runrecord: a durable, queryable run record for every AI agent run on Temporal."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and IDEs
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

__getattr__, __dir__, _EXPORTS = lazy_exports(
    __name__,
    {
        "runrecord.activities": (
            "MCPServerSpec",
            "MCPToolPolicy",
            "Prompt",
            "artifact",
            "call_model",
            "tool",
        ),
        "runrecord.records": ("ModelSpec", "RunRecord", "SideEffect"),
        "runrecord.worker": ("RunRecordInterceptor", "RunRecordPlugin", "turn"),
        "runrecord.workflows": ("ApprovalExpired", "Policy", "ToolDenied", "agent"),
    },
)
__all__ = list(_EXPORTS)
__version__ = "0.1.0"
