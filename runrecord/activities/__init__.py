"""Tool declarations, artifacts and model calls: what runs inside activities."""

from typing import TYPE_CHECKING

from runrecord._lazy import lazy_exports

if TYPE_CHECKING:  # the same names, for type checkers and IDEs
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

__getattr__, __dir__, _EXPORTS = lazy_exports(
    __name__,
    {
        "runrecord._pricing": ("load_prices", "price", "set_price"),
        "runrecord.activities._artifacts": ("CurrentCall", "artifact", "current_call"),
        "runrecord.activities._mcp": ("MCPServerSpec", "MCPToolPolicy"),
        "runrecord.activities._model": (
            "ModelRequest",
            "Prompt",
            "call_model",
            "register_script",
            "route_for",
        ),
        "runrecord.activities._tool": (
            "ToolSpec",
            "activity_name",
            "tool",
            "tool_spec",
            "undeclared",
        ),
    },
)
__all__ = list(_EXPORTS)
