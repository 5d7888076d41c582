"""A package's public names, imported on first use (PEP 562).

``import runrecord`` and the CLI's start-up then pay only for what they touch: a query
command never loads temporalio or mcp, a workflow module never loads SQLAlchemy.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
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
