"""Tool declarations, artifacts and model calls: what runs inside activities."""

from runrecord._pricing import load_prices, price, set_price
from runrecord.activities._artifacts import CurrentCall, artifact, current_call
from runrecord.activities._mcp import MCPServerSpec, MCPToolPolicy
from runrecord.activities._model import (
    ModelRequest,
    Prompt,
    call_model,
    register_script,
    route_for,
)
from runrecord.activities._tool import ToolSpec, activity_name, tool, tool_spec, undeclared

__all__ = [
    "CurrentCall",
    "MCPServerSpec",
    "MCPToolPolicy",
    "ModelRequest",
    "Prompt",
    "ToolSpec",
    "activity_name",
    "artifact",
    "call_model",
    "current_call",
    "load_prices",
    "price",
    "register_script",
    "route_for",
    "set_price",
    "tool",
    "tool_spec",
    "undeclared",
]
