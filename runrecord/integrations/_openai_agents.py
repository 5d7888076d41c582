"""The OpenAI Agents SDK on Temporal (``temporalio-openai-agents``).

Model requests run as the plugin's ``invoke_model_activity``; its one argument carries the
model name, settings, system instructions, the prompt reference and the tools and handoffs
offered. Tools given to an agent with ``activity_as_tool`` are ordinary activities, scheduled
while the agents SDK holds a function span for them. The agent behind a call is read from the
SDK's span scope in the workflow (spans exist, as no-op spans, even with tracing off); the
SDK is imported only there, where the agent already imported it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from temporalio import workflow

from runrecord._contract import RequestedModel
from runrecord.integrations import ModelUsage, Recognised, prompt_hash

FRAMEWORK = "openai-agents"
MODEL_ACTIVITIES = frozenset({"invoke_model_activity", "invoke_model_activity_streaming"})
# The plugin's MCP tool call activity: ``<server>-call-tool-v2``.
_MCP_CALL = "-call-tool-v2"
# Prefixes of the SDK's multi-provider model names ("litellm/anthropic/claude-…").
_ROUTERS = ("litellm", "any-llm")
# Settings that say how the model was asked; anything else (headers, extra bodies) stays out.
_PARAMETERS = (
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "tool_choice",
    "parallel_tool_calls",
    "truncation",
    "max_tokens",
    "reasoning",
    "verbosity",
    "store",
    "top_logprobs",
)
# How far up the span scope the agent's own span is looked for.
_SCOPE_DEPTH = 8


def _get(value: Any, name: str) -> Any:
    """A field of the plugin's argument: a dict on one side, a dataclass on the other."""
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _provider_model(name: str | None) -> tuple[str, str]:
    if not name:
        return "openai", _default_model()
    prefix, _, rest = name.partition("/")
    if not rest:
        return "openai", name
    if prefix in _ROUTERS:
        provider, _, model = rest.partition("/")
        return (provider, model) if model else ("openai", rest)
    return prefix, rest


def _default_model() -> str:
    """The SDK's default model, which a request without a model name gets."""
    try:
        from agents.models import get_default_model

        return str(get_default_model())
    except Exception:
        return "default"


def _parameters(settings: Any) -> dict[str, Any]:
    if settings is None:
        return {}
    found: dict[str, Any] = {}
    for name in _PARAMETERS:
        value = _get(settings, name)
        if value is None:
            continue
        if hasattr(value, "__dataclass_fields__") or hasattr(value, "model_dump"):
            value = _plain(value)
        found[name] = value
    return found


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(exclude_none=True)
    return {k: v for k, v in vars(value).items() if v is not None and not k.startswith("_")}


def _is_function_tool(tool: Any) -> bool:
    """A function tool as the model sees it: a name and a JSON schema of its parameters."""
    return isinstance(_get(tool, "name"), str) and _get(tool, "params_json_schema") is not None


def _tool_name(tool: Any) -> str | None:
    name = _get(tool, "name")
    if isinstance(name, str) and name:
        return name
    config = _get(tool, "tool_config")
    for key in ("server_label", "name", "type"):
        found = _get(config, key) if config is not None else None
        if isinstance(found, str) and found:
            return found
    kind = _get(tool, "type")
    return kind if isinstance(kind, str) else None


def _prompt_version(request: Any, instructions: str | None) -> str | None:
    """``id@version`` of a prompt the model was given by reference, else the version the
    model settings' metadata declares (``prompt_version``), else a hash of the instructions."""
    prompt = _get(request, "prompt")
    prompt_id = _get(prompt, "id") if prompt is not None else None
    if isinstance(prompt_id, str) and prompt_id:
        version = _get(prompt, "version")
        return f"{prompt_id}@{version}" if version else prompt_id
    metadata = _get(_get(request, "model_settings"), "metadata")
    declared = _get(metadata, "prompt_version") if metadata is not None else None
    if isinstance(declared, str) and declared:
        return declared
    return prompt_hash(instructions)


_current_span: Any = None


def _scope() -> list[Any]:
    """The span data of the SDK's current span and those it replaced, innermost first.
    Empty outside a workflow's agent run (and on the activity side)."""
    global _current_span
    if not workflow.in_workflow():
        return []
    if _current_span is None:
        try:
            from agents.tracing import get_current_span
        except ImportError:
            return []
        _current_span = get_current_span
    found: list[Any] = []
    span = _current_span()
    while span is not None and len(found) < _SCOPE_DEPTH:
        found.append(span.span_data)
        token = getattr(span, "_prev_span_token", None)
        previous = getattr(token, "old_value", None)
        span = previous if hasattr(previous, "span_data") else None
    return found


def _agent(scope: Sequence[Any]) -> str | None:
    for data in scope:
        kind = getattr(data, "type", None)
        if kind == "agent":
            return str(data.name)
        if kind == "turn":
            return str(data.agent_name)
    return None


class OpenAIAgents:
    framework = FRAMEWORK

    def recognise(self, activity: str, args: Sequence[Any]) -> Recognised | None:
        if activity in MODEL_ACTIVITIES:
            return self._model_request(activity, args[0] if args else None)
        if activity.endswith(_MCP_CALL) and args:
            return self._mcp_call(activity, args[0])
        scope = _scope()
        # An activity scheduled while the SDK runs one of its tools: an ``activity_as_tool``.
        if scope and getattr(scope[0], "type", None) == "function":
            return Recognised(framework=FRAMEWORK, tool=activity, agent_id=_agent(scope))
        return None

    def _mcp_call(self, activity: str, call: Any) -> Recognised | None:
        """A tool of an MCP server the plugin runs (stateless or stateful): the tool by its
        name, the server as its toolset (``server:tool`` in declarations)."""
        tool = _get(call, "tool_name")
        server = activity[: -len(_MCP_CALL)]
        if not isinstance(tool, str) or not tool or not server:
            return None
        return Recognised(framework=FRAMEWORK, tool=tool, toolset=server, agent_id=_agent(_scope()))

    def _model_request(self, activity: str, request: Any) -> Recognised | None:
        if request is None:
            return None
        provider, model = _provider_model(_get(request, "model_name"))
        instructions = _get(request, "system_instructions")
        offered = [_tool_name(t) for t in _get(request, "tools") or []]
        offered += [_get(h, "tool_name") for h in _get(request, "handoffs") or []]
        requested = RequestedModel(
            provider=provider,
            model=model,
            parameters=_parameters(_get(request, "model_settings")),
            prompt_version=_prompt_version(request, instructions),
            tools_offered=[name for name in offered if isinstance(name, str) and name],
        )
        # Function tools and handoffs run in the workflow, unless a function tool is an
        # activity (``activity_as_tool``): the interceptor leaves the worker's activities out.
        in_workflow = [
            _get(t, "name") for t in _get(request, "tools") or [] if _is_function_tool(t)
        ]
        in_workflow += [_get(h, "tool_name") for h in _get(request, "handoffs") or []]
        return Recognised(
            framework=FRAMEWORK,
            tool=activity,
            agent_id=_agent(_scope()),
            model=requested,
            in_workflow_tools=[n for n in in_workflow if isinstance(n, str) and n],
        )

    def usage(self, activity: str, result: Any) -> ModelUsage | None:
        if activity not in MODEL_ACTIVITIES or not isinstance(result, dict | list):
            return None
        if isinstance(result, list):  # the streaming activity returns its events
            result = _completed_response(result)
            if result is None:
                return None
        used = result.get("usage")
        if not isinstance(used, dict):
            return None
        return ModelUsage(
            model=result.get("model") if isinstance(result.get("model"), str) else None,
            input_tokens=_int(used.get("input_tokens")),
            output_tokens=_int(used.get("output_tokens")),
            cache_read_tokens=_int(_get(used.get("input_tokens_details"), "cached_tokens")),
            cache_write_tokens=_int(_get(used.get("input_tokens_details"), "cache_write_tokens")),
            reasoning_tokens=_int(_get(used.get("output_tokens_details"), "reasoning_tokens")),
            finish_reason=_finish_reason(result.get("output")),
        )


def _completed_response(events: list[Any]) -> dict[str, Any] | None:
    for event in reversed(events):
        if isinstance(event, dict) and event.get("type") == "response.completed":
            response = event.get("response")
            return response if isinstance(response, dict) else None
    return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _finish_reason(output: Any) -> str | None:
    """Why the model stopped, read from what it answered: a tool call, a handoff, or a
    message (``stop``; ``length`` when the message is incomplete)."""
    if not isinstance(output, list):
        return None
    kinds = {item.get("type") for item in output if isinstance(item, dict)}
    if kinds & {"function_call", "custom_tool_call", "mcp_call", "computer_call"}:
        return "tool_calls"
    messages = [i for i in output if isinstance(i, dict) and i.get("type") == "message"]
    if any(m.get("status") == "incomplete" for m in messages):
        return "length"
    return "stop" if messages else None


INTEGRATION = OpenAIAgents()
