"""Agent-side machinery inside workflows: agents, approvals, the policy, run status, rollback."""

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
