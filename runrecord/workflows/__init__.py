"""Agent-side machinery inside workflows: agents, approvals, the policy, run status, rollback."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and IDEs
    from runrecord.workflows._agent import AgentSpec, agent, agent_spec
    from runrecord.workflows._approvals import ApprovalExpired, ApprovalGate, ToolDenied
    from runrecord.workflows._policy import Action, Policy, PolicyError, Requirement, sign
    from runrecord.workflows._rollback import CompletedCall, roll_back

__getattr__, __dir__, _EXPORTS = lazy_exports(
    __name__,
    {
        "runrecord.workflows._agent": ("AgentSpec", "agent", "agent_spec"),
        "runrecord.workflows._approvals": ("ApprovalExpired", "ApprovalGate", "ToolDenied"),
        "runrecord.workflows._policy": ("Action", "Policy", "PolicyError", "Requirement", "sign"),
        "runrecord.workflows._rollback": ("CompletedCall", "roll_back"),
    },
)
__all__ = list(_EXPORTS)
