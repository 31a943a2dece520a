"""Rewrite the static ``__all__`` of og_inference_async/__init__.py from its imports (keeps it sorted)."""

from __future__ import annotations

import ast
from pathlib import Path

INIT = Path(__file__).resolve().parents[1] / "og_inference_async" / "__init__.py"


def main() -> None:
    """Collect every name imported in __init__.py (and the error tree) and write a sorted __all__."""
    src = INIT.read_text()
    tree = ast.parse(src)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if alias.name != "*" and not alias.name.startswith("_"):
                    names.add(alias.asname or alias.name)
    from og_inference_async import _exceptions

    names |= set(_exceptions.__all__)
    start = src.index("__all__ = [")
    end = src.index("]\n", start) + 2
    body = "".join(f'    "{n}",\n' for n in sorted(names))
    INIT.write_text(src[:start] + "__all__ = [\n" + body + "]\n" + src[end:])


if __name__ == "__main__":
    main()
