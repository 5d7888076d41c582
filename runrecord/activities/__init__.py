"""Tool declarations, artifacts and model calls: what runs inside activities."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

_EXPORTS = {
    "CurrentCall": "runrecord.activities._artifacts",
    "MCPServerSpec": "runrecord.activities._mcp",
    "MCPToolPolicy": "runrecord.activities._mcp",
    "ModelRequest": "runrecord.activities._model",
    "Prompt": "runrecord.activities._model",
    "ToolSpec": "runrecord.activities._tool",
    "activity_name": "runrecord.activities._tool",
    "artifact": "runrecord.activities._artifacts",
    "call_model": "runrecord.activities._model",
    "current_call": "runrecord.activities._artifacts",
    "load_prices": "runrecord._pricing",
    "price": "runrecord._pricing",
    "register_script": "runrecord.activities._model",
    "route_for": "runrecord.activities._model",
    "set_price": "runrecord._pricing",
    "tool": "runrecord.activities._tool",
    "tool_spec": "runrecord.activities._tool",
    "undeclared": "runrecord.activities._tool",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
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
