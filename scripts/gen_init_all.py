"""Regenerate og_inference_async/__init__.py's name table ``_LAZY`` and its sorted ``__all__``.

The package's imports are the source: the eager ``from .x import ...`` statements at the top level
and the lazy ones inside ``if _typing.TYPE_CHECKING:`` (what mypy and IDEs read). Every name
imported in that block gets a ``_LAZY`` entry naming its submodule, which the module ``__getattr__``
imports on first access; ``__all__`` is every imported public name plus the error tree.

Run ``python scripts/gen_init_all.py`` after changing an import there; ``--check`` exits 1 without
writing when the file is not up to date (a unit test runs that).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

INIT = Path(__file__).resolve().parents[1] / "og_inference_async" / "__init__.py"


def _imported(nodes: list[ast.stmt]) -> dict[str, str]:
    """Public name -> relative module for every ``from .module import name`` among ``nodes``."""
    out: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            for alias in node.names:
                if alias.name != "*" and not alias.name.startswith("_"):
                    out[alias.asname or alias.name] = "." * node.level + (node.module or "")
    return out


def _replace_block(src: str, opening: str, body: str) -> str:
    """Swap what sits between ``opening`` and the next line holding only its closing bracket."""
    start = src.index(opening) + len(opening)
    end = src.index("\n" + {"[": "]", "{": "}"}[opening[-1]] + "\n", start) + 1
    return src[:start] + "\n" + body + src[end:]


def render(src: str) -> str:
    """The text of ``__init__.py`` with ``_LAZY`` and ``__all__`` regenerated from its imports."""
    tree = ast.parse(src)
    eager = _imported(tree.body)
    lazy: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            lazy |= _imported(node.body)
    from og_inference_async import _exceptions

    names = set(eager) | set(lazy) | set(_exceptions.__all__)
    table = "".join(f'    "{name}": "{module}",\n' for name, module in sorted(lazy.items()))
    src = _replace_block(src, "_LAZY: dict[str, str] = {", table)
    return _replace_block(src, "__all__ = [", "".join(f'    "{n}",\n' for n in sorted(names)))


def main() -> int:
    """Rewrite the file (or, with ``--check``, report whether it is up to date)."""
    src = INIT.read_text()
    new = render(src)
    if "--check" in sys.argv[1:]:
        if new != src:
            print(f"{INIT} is out of date: run python scripts/gen_init_all.py", file=sys.stderr)
            return 1
        return 0
    INIT.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
