"""``@runrecord.agent``: declare which agent a workflow is, and what it decides with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from runrecord.activities._model import Prompt
from runrecord.records import ModelSpec

T = TypeVar("T", bound=type)

_ATTR = "__runrecord_agent__"


@dataclass(frozen=True)
class AgentSpec:
    agent_id: str
    version: str | None = None
    model: ModelSpec | None = None
    prompt: Prompt | None = None
    mcp_servers: tuple[str, ...] = ()
    rollback_on_failure: bool = False


def agent(
    agent_id: str,
    *,
    version: str | None = None,
    model: ModelSpec | None = None,
    prompt: Prompt | None = None,
    mcp: Sequence[str] = (),
    rollback_on_failure: bool = False,
) -> Callable[[T], T]:
    """Mark a workflow class as an agent; its runs get a run record under ``agent_id``.

    ``mcp`` names the MCP servers (registered on the worker) the agent uses: their tools
    are listed when each run starts, and that listing is the run's registry snapshot.
    With ``rollback_on_failure``, a run that fails has its completed side-effecting calls
    compensated before it ends (``rolled_back`` or ``rollback_incomplete``).
    """
    if isinstance(mcp, str):
        raise TypeError("mcp takes a list of MCP server names, e.g. mcp=['git']")

    def declare(cls: T) -> T:
        setattr(
            cls, _ATTR, AgentSpec(agent_id, version, model, prompt, tuple(mcp), rollback_on_failure)
        )
        return cls

    return declare


def agent_spec(cls: type) -> AgentSpec | None:
    spec = getattr(cls, _ATTR, None)
    return spec if isinstance(spec, AgentSpec) else None
