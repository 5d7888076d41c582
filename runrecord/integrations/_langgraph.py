"""LangGraph on Temporal (``temporalio-langgraph``): graph nodes as calls of the run.

``LangGraphPlugin`` runs each node of a registered graph as an activity named
``<graph>.<node>``, called with one ``ActivityInput`` (``args`` = the node's input state,
``langgraph_config`` = its config, ``metadata.langgraph_node`` naming the node) and
answering an ``ActivityOutput`` (``result`` = the node's state update). A node is one call:

- a node whose input ends with a model's pending tool calls runs those tools (LangGraph's
  ``ToolNode``, or a node of the user's own that answers them): the call is named after the
  tool, or after the tools in call order joined by ``,`` when it ran several, in the node
  as toolset;
- any other node is named after the node, and the graph's name is the agent. Which model a
  node asks is known only once it answered: a result holding an AI message with usage is a
  model's answer (``model_answer``), read on the mirror's side.

Messages are LangChain message objects in the workflow and their JSON dicts everywhere
else; both are read the same way, and nothing here imports LangGraph.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from runrecord._contract import RequestedModel
from runrecord.integrations import ModelUsage, Recognised, prompt_hash

FRAMEWORK = "langgraph"
# Node metadata key a user may set to name the prompt a model node uses (name@version).
PROMPT_VERSION_KEY = "prompt_version"


def _get(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return value.get(key)
    return getattr(value, key, None)


def _node_input(args: Sequence[Any]) -> Any:
    """The ``ActivityInput`` of a node activity (an object in the workflow, a dict in JSON)."""
    if len(args) != 1:
        return None
    found = args[0]
    if _get(found, "langgraph_config") is None or _get(found, "args") is None:
        return None
    return found


def _metadata(node_input: Any) -> dict[str, Any]:
    meta = _get(_get(node_input, "langgraph_config"), "metadata")
    return meta if isinstance(meta, dict) else {}


def _messages(state: Any) -> list[Any]:
    found = _get(state, "messages")
    return list(found) if isinstance(found, (list, tuple)) else []


def _kind(message: Any) -> str | None:
    kind = _get(message, "type")
    return kind if isinstance(kind, str) else None


def _text(message: Any) -> str:
    content = _get(message, "content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(str(_get(b, "text") or "") if not isinstance(b, str) else b for b in content)
    return ""


def _pending_calls(state: Any) -> list[tuple[str, Any]]:
    """The tool calls (name, arguments) a model asked for in the state's last message."""
    messages = _messages(state)
    if not messages or _kind(messages[-1]) not in ("ai", "AIMessageChunk"):
        return []
    calls = _get(messages[-1], "tool_calls")
    if not isinstance(calls, (list, tuple)):
        return []
    return [(str(_get(c, "name")), _get(c, "args")) for c in calls if _get(c, "name")]


def _split(activity: str, node_input: Any) -> tuple[str, str] | None:
    """(graph, node) of a node activity ``<graph>.<node>``."""
    node = _metadata(node_input).get("langgraph_node")
    if isinstance(node, str) and node and activity.endswith("." + node):
        graph = activity[: -len(node) - 1]
    else:
        graph, _, node = activity.rpartition(".")
    return (graph, node) if graph and node else None


def _answers(result: Any) -> Iterator[dict[str, Any]]:
    """The AI messages with usage in a node's state update (JSON from history)."""
    update = _get(result, "result") if isinstance(result, dict) else None
    if update is None and isinstance(result, dict):
        update = _get(_get(result, "langgraph_command"), "update")
    values = update.values() if isinstance(update, dict) else [update]
    for value in values:
        for message in value if isinstance(value, list) else [value]:
            if (
                isinstance(message, dict)
                and message.get("type") in ("ai", "AIMessageChunk")
                and isinstance(message.get("usage_metadata"), dict)
            ):
                yield message


def _int(value: Any) -> int:
    return max(value, 0) if isinstance(value, int) and not isinstance(value, bool) else 0


class LangGraphIntegration:
    framework = FRAMEWORK

    def recognise(self, activity: str, args: Sequence[Any]) -> Recognised | None:
        node_input = _node_input(args)
        if node_input is None or "." not in activity:
            return None
        split = _split(activity, node_input)
        if split is None:
            return None
        graph, node = split
        inputs = _get(node_input, "args")
        state = inputs[0] if isinstance(inputs, (list, tuple)) and inputs else None
        calls = _pending_calls(state)
        if calls:
            # One activity runs every pending tool call: one call, named after what it runs,
            # shown to an approver as those calls' arguments.
            tools = [name for name, _ in calls]
            if len(calls) == 1:
                return Recognised(
                    framework=FRAMEWORK,
                    tool=tools[0],
                    toolset=node,
                    agent_id=graph,
                    arguments=[calls[0][1]],
                )
            return Recognised(
                framework=FRAMEWORK,
                tool=tools[0] if len(set(tools)) == 1 else ",".join(tools),
                tools=tools if len(set(tools)) > 1 else [],
                toolset=node,
                agent_id=graph,
                arguments=[{name: args} for name, args in calls],
            )
        return Recognised(framework=FRAMEWORK, tool=node, agent_id=graph)

    def model_answer(self, activity: str, args: Any, result: Any) -> RequestedModel | None:
        """The model a node asked, if its result holds a model's answer: provider and model
        from the answer, the prompt version from the node's metadata or input."""
        answers = list(_answers(result))
        if not answers:
            return None
        meta = answers[-1].get("response_metadata") or {}
        model = meta.get("model_name") or meta.get("model")
        if not isinstance(model, str) or not model:
            return None
        node_input = _node_input(args) if isinstance(args, list) else None
        return RequestedModel(
            provider=str(meta.get("model_provider") or meta.get("ls_provider") or ""),
            model=model,
            prompt_version=self._prompt_version(node_input),
        )

    @staticmethod
    def _prompt_version(node_input: Any) -> str | None:
        if node_input is None:
            return None
        declared = _metadata(node_input).get(PROMPT_VERSION_KEY)
        if isinstance(declared, str) and declared:
            return declared
        inputs = _get(node_input, "args")
        state = inputs[0] if isinstance(inputs, list) and inputs else None
        system = [_text(m) for m in _messages(state) if _kind(m) == "system"]
        return prompt_hash("\n".join(system)) if system else None

    def usage(self, activity: str, result: Any) -> ModelUsage | None:
        """Tokens summed over the node's model answers; model and finish reason of the last."""
        answers = list(_answers(result))
        if not answers:
            return None
        used = ModelUsage()
        for answer in answers:
            tokens = answer["usage_metadata"]
            cached = tokens.get("input_token_details") or {}
            thought = tokens.get("output_token_details") or {}
            used.input_tokens += _int(tokens.get("input_tokens"))
            used.output_tokens += _int(tokens.get("output_tokens"))
            used.cache_read_tokens += _int(cached.get("cache_read"))
            used.cache_write_tokens += _int(cached.get("cache_creation"))
            used.reasoning_tokens += _int(thought.get("reasoning"))
        meta = answers[-1].get("response_metadata") or {}
        model = meta.get("model_name") or meta.get("model")
        used.model = model if isinstance(model, str) and model else None
        used.provider = meta.get("model_provider") or meta.get("ls_provider") or None
        reason = meta.get("finish_reason") or meta.get("stop_reason") or meta.get("done_reason")
        used.finish_reason = str(reason) if reason else None
        return used


INTEGRATION = LangGraphIntegration()
