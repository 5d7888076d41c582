"""A LangGraph agent on Temporal, recorded by runrecord: a model that reads a note and then
writes one, the write gated behind a person's approval.

The graph is LangGraph's usual tool loop (model node, tools node, a route between them),
run by ``temporalio-langgraph``'s ``LangGraphPlugin``: each node is an activity. The model is
LangChain's offline ``FakeMessagesListChatModel`` answering as ``gpt-4o-mini`` would, with
token usage, so the example runs with no key and no network.

    PYTHONPATH=. runrecord worker -m examples.langgraph_agent      # from a checkout
    temporal workflow start --type NoteAssistant --task-queue runrecord-agents \
        --workflow-id notes-1 --input '"tidy my notes"'
    runrecord approvals            # the write waits: runrecord approve notes-1 CALL --as you
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

import runrecord

with workflow.unsafe.imports_passed_through():
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import (
        AIMessage,
        BaseMessage,
        HumanMessage,
        SystemMessage,
        convert_to_messages,
    )
    from langchain_core.tools import tool
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode
    from temporalio.langgraph import LangGraphPlugin
    from temporalio.langgraph import graph as registered_graph

GRAPH = "note-assistant"
MODEL = "gpt-4o-mini"
PROMPT = "You keep the user's notes tidy. Read before you write."
# Tokens each scripted answer reports, as a real model's usage would.
USAGE = [(120, 18), (180, 25), (230, 9)]

# The notes the tools read and write (in the worker's process).
NOTES: dict[str, str] = {"todo": "buy milk; call the plumber"}


@runrecord.tool("read")
@tool
def read_note(name: str) -> str:
    """Read the note called ``name``."""
    return NOTES.get(name, "")


@runrecord.tool("write", approval=True)
@tool
def write_note(name: str, text: str) -> str:
    """Write ``text`` to the note called ``name``."""
    NOTES[name] = text
    return f"saved {name}"


def _answer(turn: int) -> AIMessage:
    """The model's scripted answer at this turn of the conversation."""
    calls: list[Any] = [
        [{"name": "read_note", "args": {"name": "todo"}, "id": "call-read"}],
        [{"name": "write_note", "args": {"name": "summary", "text": "2 tasks"}, "id": "call-w"}],
        [],
    ][turn]
    tokens_in, tokens_out = USAGE[turn]
    return AIMessage(
        content="" if calls else "Your summary note is saved.",
        tool_calls=calls,
        usage_metadata={
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
        response_metadata={
            "model_name": MODEL,
            "model_provider": "openai",
            "finish_reason": "tool_calls" if calls else "stop",
        },
    )


async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
    """The model node: asks the model with the conversation so far."""
    messages = convert_to_messages(state["messages"])
    turn = min(sum(1 for m in messages if m.type == "tool"), len(USAGE) - 1)
    model = FakeMessagesListChatModel(responses=[_answer(turn)])
    return {"messages": [await model.ainvoke(messages)]}


_tool_node = ToolNode([read_note, write_note])


async def tools(state: MessagesState) -> Any:
    """The tools node: LangGraph's ToolNode, given messages (activities receive JSON)."""
    return await _tool_node.ainvoke({"messages": convert_to_messages(state["messages"])})


async def route(state: MessagesState) -> str:
    last = state["messages"][-1]
    return "tools" if getattr(last, "tool_calls", None) else END


def build() -> StateGraph[Any, Any, Any, Any]:
    node_options = {"execute_in": "activity", "start_to_close_timeout": timedelta(seconds=30)}
    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent, metadata={**node_options, "prompt_version": "notes@1"})
    builder.add_node("tools", tools, metadata=node_options)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["tools", END])
    builder.add_edge("tools", "agent")
    return builder


@workflow.defn
class NoteAssistant:
    @workflow.run
    async def run(self, request: str) -> str:
        app = registered_graph(GRAPH).compile()
        state = await app.ainvoke(
            {"messages": [SystemMessage(content=PROMPT), HumanMessage(content=request)]}
        )
        return str(state["messages"][-1].content)


WORKFLOWS = [NoteAssistant]
ACTIVITIES: list[Any] = []  # the graph's nodes: LangGraphPlugin registers them


def plugin() -> LangGraphPlugin:
    """A LangGraphPlugin with this module's graph (each worker needs one of its own)."""
    return LangGraphPlugin(graphs={GRAPH: build()})


PLUGINS = [plugin()]
