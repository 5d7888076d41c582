"""pydantic-ai's Temporal durability: its model requests and tool calls, as runrecord sees them.

An agent made durable with ``TemporalDurability`` (or the older ``TemporalAgent``) runs as
activities named after the agent:

- ``agent__<agent>__model_request`` (``_stream``): one ``_RequestParams`` (messages, model
  settings, model request parameters with the tools offered, the serialized run context,
  ``model_id`` when the run picked a model other than the agent's own) and the deps; the
  result is the ``ModelResponse`` (usage, model and provider names, finish reason);
- ``agent__<agent>__<kind>__<toolset id>__call_tool``: one ``CallToolParams`` (the real tool
  ``name`` and its arguments) and the deps. The agent's own tools are in the toolset
  ``<agent>``: they are recorded with no toolset. A toolset's ``get_tools``,
  ``get_instructions`` and ``validate_args`` activities are recorded as ``read``. A tool
  declared ``requires_approval=True`` (its ``tool_def.kind`` is ``unapproved``) waits in
  runrecord's gate for a person's decision.

The model an agent asks for is not in a request's arguments when it is the agent's own: it
is read from the workflow's ``__pydantic_ai_agents__`` (as ``PydanticAIPlugin`` reads it),
and the model that answered, from the response. An agent's ``metadata`` may declare
``prompt_version`` and ``agent_version``. Nothing here imports pydantic-ai.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from runrecord._contract import RequestedModel
from runrecord._redaction import default_redactor
from runrecord.integrations import ModelUsage, Recognised, prompt_hash
from runrecord.records import SideEffect

FRAMEWORK = "pydantic-ai"
# The toolset pydantic-ai keeps an agent's own tools (``@agent.tool``) in.
AGENT_TOOLSET = "<agent>"
# The tool name of a model request in the record (the model is in its model call).
MODEL_REQUEST = "model_request"
# The kind of a tool declared ``requires_approval=True``.
UNAPPROVED = "unapproved"
PROMPT_VERSION_KEY = "prompt_version"
AGENT_VERSION_KEY = "agent_version"

_MODEL = re.compile(r"^agent__(?P<agent>.+)__model_request(?:_stream)?$")
_TOOL = re.compile(
    r"^agent__(?P<agent>.+?)__(?:toolset|mcp_server|[a-z]+_toolset)__(?P<toolset>.+)__call_tool$"
)


# A toolset's own activities, which read what it offers: recorded as ``read``.
_PLUMBING = re.compile(
    r"^agent__(?P<agent>.+?)__(?:toolset|mcp_server|[a-z]+_toolset)__(?P<toolset>.+)__"
    r"(?P<operation>get_tools|get_instructions|validate_args)$"
)


def _field(value: Any, name: str) -> Any:
    """A field of a dataclass the workflow built, or of its JSON form."""
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _metadata(params: Any) -> Mapping[str, Any]:
    found = _field(_field(params, "serialized_run_context"), "metadata")
    return found if isinstance(found, Mapping) else {}


def _version(metadata: Mapping[str, Any], key: str) -> str | None:
    value = metadata.get(key)
    return str(value) if isinstance(value, str | int | float) and str(value) else None


def _split(model: str) -> tuple[str, str]:
    provider, _, name = model.partition(":")
    return (provider, name) if name else ("unknown", model)


def _agent_model(agent_name: str) -> tuple[str, str] | None:
    """The model the agent ``agent_name`` of the running workflow was made with, if known."""
    try:
        from temporalio import workflow

        agents = getattr(type(workflow.instance()), "__pydantic_ai_agents__", None) or ()
    except Exception:  # not in a workflow (the activity side needs no model)
        return None
    for agent in agents:
        if getattr(agent, "name", None) != agent_name:
            continue
        model = getattr(agent, "model", None)
        if isinstance(model, str):
            return _split(model)
        system, name = getattr(model, "system", None), getattr(model, "model_name", None)
        if isinstance(system, str) and isinstance(name, str):
            return system, name
    return None


def _instructions(messages: Any) -> str | None:
    """The instructions and system prompts the model was given, as one text."""
    texts: list[str] = []
    for message in messages or ():
        for part in _field(message, "parts") or ():
            if _field(part, "part_kind") == "system-prompt":
                texts.append(str(_field(part, "content")))
    last = [m for m in messages or () if _field(m, "kind") == "request"]
    instructions = _field(last[-1], "instructions") if last else None
    if instructions:
        texts.append(str(instructions))
    return "\n".join(texts) or None


def _parameters(settings: Any) -> dict[str, Any]:
    """The model settings that configure the model (temperature, max tokens, ...), redacted:
    they travel in a header. Transport settings (extra headers, extra body) are left out."""
    if not isinstance(settings, Mapping):
        return {}
    kept = {
        str(key): value
        for key, value in settings.items()
        if isinstance(value, str | int | float | bool | None)
        or (isinstance(value, list) and all(isinstance(v, str | int | float) for v in value))
    }
    return dict(default_redactor().value(kept))


def _offered(parameters: Any) -> list[str]:
    names: list[str] = []
    for key in ("function_tools", "output_tools"):
        for tool in _field(parameters, key) or ():
            name = _field(tool, "name")
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


class PydanticAIIntegration:
    framework = FRAMEWORK

    def recognise(self, activity: str, args: Sequence[Any]) -> Recognised | None:
        if not activity.startswith("agent__") or not args:
            return None
        params = args[0]
        model = _MODEL.match(activity)
        if model is not None:
            agent = model["agent"]
            metadata = _metadata(params)
            model_id = _field(params, "model_id")
            asked = (
                _split(model_id)
                if isinstance(model_id, str) and model_id
                else _agent_model(agent) or ("unknown", "default")
            )
            return Recognised(
                framework=FRAMEWORK,
                tool=MODEL_REQUEST,
                agent_id=agent,
                agent_version=_version(metadata, AGENT_VERSION_KEY),
                model=RequestedModel(
                    provider=asked[0],
                    model=asked[1],
                    parameters=_parameters(_field(params, "model_settings")),
                    prompt_version=_version(metadata, PROMPT_VERSION_KEY)
                    or prompt_hash(_instructions(_field(params, "messages"))),
                    tools_offered=_offered(_field(params, "model_request_parameters")),
                ),
            )
        plumbing = _PLUMBING.match(activity)
        if plumbing is not None:
            return Recognised(
                framework=FRAMEWORK,
                tool=plumbing["operation"],
                toolset=plumbing["toolset"],
                agent_id=plumbing["agent"],
                side_effect=SideEffect.READ,
            )
        tool = _TOOL.match(activity)
        name = _field(params, "name")
        if tool is None or not isinstance(name, str) or not name:
            return None
        toolset = tool["toolset"]
        return Recognised(
            framework=FRAMEWORK,
            tool=name,
            toolset=None if toolset == AGENT_TOOLSET else toolset,
            agent_id=tool["agent"],
            agent_version=_version(_metadata(params), AGENT_VERSION_KEY),
            approval=_field(_field(params, "tool_def"), "kind") == UNAPPROVED,
        )

    def usage(self, activity: str, result: Any) -> ModelUsage | None:
        if not isinstance(result, Mapping):
            return None
        if "usage" not in result and isinstance(result.get("response"), Mapping):
            result = result["response"]  # a streamed request's result wraps its response
        used = result.get("usage")
        if not isinstance(used, Mapping):
            return None

        def count(*keys: str) -> int:
            return sum(int(used.get(k) or 0) for k in keys)

        details = used.get("details")
        if not isinstance(details, Mapping):
            details = {}
        reasoning = count("output_reasoning_tokens") or int(details.get("reasoning_tokens") or 0)
        provider = result.get("provider_name")
        model = result.get("model_name")
        finish = result.get("finish_reason")
        return ModelUsage(
            provider=provider if isinstance(provider, str) and provider else None,
            model=model if isinstance(model, str) and model else None,
            input_tokens=count("input_tokens"),
            output_tokens=count("output_tokens"),
            cache_read_tokens=count("cache_read_tokens"),
            cache_write_tokens=count("cache_write_tokens"),  # includes the 1h writes
            reasoning_tokens=reasoning,
            finish_reason=finish if isinstance(finish, str) else None,
        )


INTEGRATION = PydanticAIIntegration()
