"""A package's public names, imported on first use (PEP 562).

``import runrecord`` and the CLI's start-up then pay only for what they touch: a query
command never loads temporalio or mcp, a workflow module never loads SQLAlchemy.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any


def lazy_exports(
    package: str, by_module: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], dict[str, str]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose public names ``by_module`` lists
    under the module defining them; and each name's module."""
    exports = {name: module for module, names in by_module.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        # builtins.__import__, not importlib: inside Temporal's workflow sandbox the call
        # must go through the sandbox's importer, which passes runrecord through.
        value = getattr(__import__(module, fromlist=(name,)), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__, exports


class _Deferred(ModuleType):
    """Stands in ``sys.modules`` for a module not imported yet; the first attribute asked of
    it imports the module, which then replaces it there."""

    def __getattr__(self, attribute: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        module = importlib.import_module(name)
        return getattr(module, attribute)


def defer_import(name: str) -> None:
    """Let ``import name`` succeed at once and import the module when an attribute of it is
    first used: for a dependency's dependency that runrecord never calls. A module already
    imported, or not installed, is left as it is.

    (``importlib.util.LazyLoader`` cannot serve here: the import statement itself reads the
    module's ``__spec__``, which loads it.)"""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = _Deferred(name)
    stand_in.__spec__ = spec
    sys.modules[name] = stand_in
