"""Recording LangGraph agents that run on Temporal through ``temporalio-langgraph``.

Add ``RunRecordPlugin`` next to ``LangGraphPlugin`` (either order); nothing else changes in
the agent. Each node activity ``<graph>.<node>`` is one call of the run, the graph's name
is the run's agent id:

- a node that runs a model's tool calls is recorded under the tool's real name, declared
  as any tool: ``runrecord.tool("write", approval=True)(write_file)`` on the LangChain tool;
- a node whose result is a model's answer is a ``model`` call (provider, model, tokens,
  finish reason from the answer; cost from the price table). Name its prompt version in
  the node's metadata, ``{"prompt_version": "triage@3"}``, else a hash of the system
  message in its input is used;
- any other node is named after itself: ``declare_node`` says what it does.
"""

from __future__ import annotations

from typing import Any, cast

from runrecord.activities._tool import tool
from runrecord.integrations._langgraph import PROMPT_VERSION_KEY
from runrecord.records import SideEffect

__all__ = ["PROMPT_VERSION_KEY", "declare_node"]


class _Node:
    """A node's name, for a declaration made by name."""

    def __init__(self, name: str) -> None:
        self.name = name


def declare_node(
    name: str,
    side_effect: SideEffect | str,
    *,
    approval: bool = False,
    idempotent: bool = False,
    irreversible: bool = False,
) -> None:
    """Declare what a graph node that runs no tool calls does, by the node's name, as
    ``@runrecord.tool`` declares a tool (a node that calls a model: ``"model"``)."""
    if not name or not name.strip():
        raise ValueError("a node declaration needs the node's name")
    tool(side_effect, approval=approval, idempotent=idempotent, irreversible=irreversible)(
        cast(Any, _Node(name))
    )
