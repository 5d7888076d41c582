"""Agent-side machinery inside workflows: agents, approvals, the policy, run status, rollback."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

_EXPORTS = {
    "Action": "runrecord.workflows._policy",
    "AgentSpec": "runrecord.workflows._agent",
    "ApprovalExpired": "runrecord.workflows._approvals",
    "ApprovalGate": "runrecord.workflows._approvals",
    "CompletedCall": "runrecord.workflows._rollback",
    "Policy": "runrecord.workflows._policy",
    "PolicyError": "runrecord.workflows._policy",
    "Requirement": "runrecord.workflows._policy",
    "ToolDenied": "runrecord.workflows._approvals",
    "agent": "runrecord.workflows._agent",
    "agent_spec": "runrecord.workflows._agent",
    "roll_back": "runrecord.workflows._rollback",
    "sign": "runrecord.workflows._policy",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from runrecord.workflows._agent import AgentSpec, agent, agent_spec
    from runrecord.workflows._approvals import ApprovalExpired, ApprovalGate, ToolDenied
    from runrecord.workflows._policy import Action, Policy, PolicyError, Requirement, sign
    from runrecord.workflows._rollback import CompletedCall, roll_back

__all__ = [
    "Action",
    "AgentSpec",
    "ApprovalExpired",
    "ApprovalGate",
    "CompletedCall",
    "Policy",
    "PolicyError",
    "Requirement",
    "ToolDenied",
    "agent",
    "agent_spec",
    "roll_back",
    "sign",
]
