"""Agent frameworks on Temporal: what runrecord recognises of their activities.

An agent written with a framework's Temporal integration (OpenAI Agents SDK, pydantic-ai,
LangGraph) runs its model requests and tools as that framework's own activities, under
generated names. An integration knows one framework's activity names and payload shapes —
and nothing of the framework's code, so nothing here imports a framework:

- on the workflow side, ``recognise`` reads a scheduled activity's arguments (the objects the
  framework built) and says which tool it really is, which agent called it and, for a model
  request, which model was asked with which parameters. It must be deterministic: it runs in
  the workflow, and again on the activity side with the decoded arguments, where the
  fail-closed check relies on it naming the same tool;
- on the mirror's side, ``usage`` reads a model request's result from history as JSON and
  returns what the model answered with: tokens, finish reason, the model that answered;
- where a framework's model calls happen inside other activities (LangGraph nodes), an
  optional ``model_answer`` tells from such an activity's input and result JSON that it
  asked a model, and which: the call is then recorded as a model call.

Each framework's integration is a private module here; ``register`` adds one of your own.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import Field

from runrecord._contract import RequestedModel
from runrecord.records import Record, SideEffect, TokenUsage

__all__ = [
    "Integration",
    "answers_in_results",
    "ModelUsage",
    "Recognised",
    "RequestedModel",
    "model_answer",
    "prompt_hash",
    "recognise",
    "register",
    "usage",
]

_log = logging.getLogger("runrecord.integrations")

# The integrations runrecord ships, imported on first use (none imports its framework).
_BUILTIN: tuple[str, ...] = (
    "runrecord.integrations._openai_agents",
    "runrecord.integrations._pydantic_ai",
    "runrecord.integrations._langgraph",
)


class Recognised(Record):
    """A framework activity, as a call of the run: the real tool, its agent, its model."""

    framework: str
    tool: str
    toolset: str | None = None
    agent_id: str | None = None
    agent_version: str | None = None
    # Set when one activity runs several tools (``tool`` then names them all): the call is
    # judged by all their declarations together.
    tools: list[str] = Field(default_factory=list)
    # What a person asked to approve the call is shown as its arguments, when the activity's
    # own arguments bury them (a LangGraph node's input is the whole conversation).
    arguments: list[Any] | None = None
    # Set for a model request: the call is recorded with side effect ``model``.
    model: RequestedModel | None = None
    # Tools this model request offers that run inside the workflow, not as activities
    # (OpenAI ``@function_tool`` tools, handoffs): listed in the run's tool registry.
    in_workflow_tools: list[str] = Field(default_factory=list)
    # Set for the framework's own plumbing (listing a toolset's tools, say): what it does,
    # known from the activity itself, so no declaration is looked up.
    side_effect: SideEffect | None = None
    # The framework itself asks a person to approve this call (pydantic-ai's
    # ``requires_approval``): runrecord's gate asks, whatever the tool's declaration says.
    approval: bool = False


class ModelUsage(TokenUsage):
    """What a model request's result says: its tokens and finish reason, and who answered
    (``provider``/``model`` override the requested ones when the response names them)."""

    provider: str | None = None
    model: str | None = None


class Integration(Protocol):
    """One framework's knowledge of its activities. ``framework`` names it in the record."""

    framework: str

    def recognise(self, activity: str, args: Sequence[Any]) -> Recognised | None:
        """The call an activity of this framework is, or None when it is not one of its own."""

    def usage(self, activity: str, result: Any) -> ModelUsage | None:
        """A model request's usage from its result's JSON, or None if the shape is unknown."""


_registered: dict[str, Integration] = {}
_loaded = False


def register(integration: Integration) -> None:
    """Recognise a framework's activities from now on (replacing one of the same name)."""
    _registered[integration.framework] = integration


def _integrations() -> list[Integration]:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN:
            found = importlib.import_module(module).INTEGRATION
            _registered.setdefault(found.framework, found)
    return list(_registered.values())


def recognise(activity: str, args: Sequence[Any]) -> Recognised | None:
    """What an activity is, if a framework integration recognises it.

    An integration that fails on unexpected arguments recognises nothing: the call is then
    recorded under its activity name, as any undeclared activity."""
    for integration in _integrations():
        try:
            found = integration.recognise(activity, args)
        except Exception:  # a framework's new payload shape must not stop the agent
            found = None
        if found is not None:
            return found
    return None


def usage(framework: str, activity: str, result: Any) -> ModelUsage | None:
    """A framework model request's usage, read from its result's JSON."""
    _integrations()
    integration = _registered.get(framework)
    if integration is None:
        return None
    try:
        return integration.usage(activity, result)
    except Exception:
        _log.warning("cannot read the usage of a %s model request %s", framework, activity)
        return None


def answers_in_results(framework: str) -> bool:
    """Whether a framework's activities may turn out to be model calls by their result."""
    _integrations()
    return callable(getattr(_registered.get(framework), "model_answer", None))


def model_answer(framework: str, activity: str, args: Any, result: Any) -> RequestedModel | None:
    """The model an activity asked, when its framework finds a model's answer in its result
    (``args`` and ``result`` as JSON from history); None when it asked none."""
    _integrations()
    find = getattr(_registered.get(framework), "model_answer", None)
    if not callable(find):
        return None
    try:
        found = find(activity, args, result)
    except Exception:
        _log.warning("cannot read a %s activity %s for a model's answer", framework, activity)
        return None
    return found if isinstance(found, RequestedModel) else None


def prompt_hash(instructions: str | None) -> str | None:
    """The prompt version of instructions nobody versioned: ``sha256:`` and 12 hex digits."""
    if not instructions:
        return None
    return "sha256:" + hashlib.sha256(instructions.encode()).hexdigest()[:12]
