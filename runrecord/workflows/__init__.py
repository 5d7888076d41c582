"""Agent-side machinery inside workflows."""

from runrecord.workflows._agent import AgentSpec, agent, agent_spec

__all__ = ["AgentSpec", "agent", "agent_spec"]
