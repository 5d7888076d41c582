"""``@runrecord.tool``: declare what an ordinary Temporal activity does to the world."""

from __future__ import annotations

import hashlib
import inspect
import json
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ConfigDict

from runrecord.records import SideEffect, ToolRegistryEntry, ToolTraits

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__runrecord_tool__"
_registry: dict[str, ToolSpec] = {}


class ToolSpec(ToolTraits):
    """A tool as declared: its traits, its name, and whether every call needs approval."""

    model_config = ConfigDict(frozen=True)

    name: str
    approval: bool = False

    def registry_entry(self) -> ToolRegistryEntry:
        return ToolRegistryEntry(**self.traits(), name=self.name, approval=self.approval)


def activity_name(fn: Callable[..., Any]) -> str:
    """The name Temporal schedules the activity under (its ``@activity.defn`` name), or the
    name a framework's tool object carries (an OpenAI ``FunctionTool``, a LangChain tool)."""
    defn = getattr(fn, "__temporal_activity_definition", None)
    name = getattr(defn, "name", None)
    if isinstance(name, str) and name:
        return name
    own = getattr(fn, "name", None)
    return own if isinstance(own, str) and own else fn.__name__


def schema_hash(fn: Callable[..., Any]) -> str:
    """sha256 of the tool's declared argument and return types (of a framework's tool
    object that is no function: of the JSON schema it offers models)."""
    if not callable(fn):
        offered = getattr(fn, "params_json_schema", None)
        text = json.dumps(offered, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations still deserve a stable hash
        hints = dict(getattr(fn, "__annotations__", {}))
    params = [
        [name, _type_schema(hints.get(name, Any))] for name in inspect.signature(fn).parameters
    ]
    doc = {"params": params, "returns": _type_schema(hints.get("return", Any))}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _type_schema(tp: Any) -> Any:
    schema = getattr(tp, "model_json_schema", None)
    if callable(schema):
        try:
            return schema()
        except Exception:
            pass
    return repr(tp)


def tool(
    side_effect: SideEffect | str,
    *,
    approval: bool = False,
    compensate: Callable[..., Any] | str | None = None,
    idempotent: bool = False,
    irreversible: bool = False,
) -> Callable[[F], F]:
    """Declare a Temporal activity as a tool with a side-effect class.

    Put it above or below ``@activity.defn``. ``compensate`` names the activity that
    undoes this one (used by rollback); ``irreversible`` says nothing can undo it.
    """
    effect = SideEffect(side_effect)
    if compensate is not None and irreversible:
        raise ValueError("a tool cannot be both irreversible and have a compensator")

    def declare(fn: F) -> F:
        compensator = (
            compensate
            if isinstance(compensate, str) or compensate is None
            else activity_name(compensate)
        )
        spec = ToolSpec(
            name=activity_name(fn),
            side_effect=effect,
            approval=approval,
            compensator=compensator,
            idempotent=idempotent,
            irreversible=irreversible,
            schema_hash=schema_hash(fn),
        )
        try:
            setattr(fn, _ATTR, spec)
        except (AttributeError, TypeError, ValueError):
            pass  # a frozen tool object: its declaration is found by name
        _registry[spec.name] = spec
        return fn

    return declare


def tool_spec(fn_or_name: Callable[..., Any] | str) -> ToolSpec | None:
    """The declaration of a tool, by function or activity name; None if undeclared."""
    if isinstance(fn_or_name, str):
        return _registry.get(fn_or_name)
    spec = getattr(fn_or_name, _ATTR, None)
    if isinstance(spec, ToolSpec):
        # @activity.defn may have run after @tool and named the activity differently.
        name = activity_name(fn_or_name)
        if name != spec.name:
            spec = spec.model_copy(update={"name": name})
            _registry[name] = spec
        return spec
    return None


def undeclared(name: str, fn: Callable[..., Any] | None = None) -> ToolSpec:
    """An activity declared nowhere: ``unknown``, the most dangerous class."""
    return ToolSpec(
        name=name,
        side_effect=SideEffect.UNKNOWN,
        schema_hash=schema_hash(fn) if fn is not None else None,
    )
