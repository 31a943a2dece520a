"""Lazy exports of a package (PEP 562): a name is imported from its submodule on first access.

A package keeps its imports for mypy and IDEs under ``if TYPE_CHECKING:`` and a table of name ->
submodule; ``__getattr__, __dir__ = lazy_exports(__name__, table)`` then serves each name at run
time, so importing one light submodule of the package does not import the heavy others.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_exports(
    package: str, table: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` serving the names of ``table``."""
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> object:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
