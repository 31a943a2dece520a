"""The devnet distribution uses the SDK's public API only; the public modules it needs are documented."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import og_inference_devnet

DEVNET_PACKAGE = Path(og_inference_devnet.__file__).resolve().parent
PUBLIC_MODULES = ("og_inference_async", "og_inference_async.tokens", "og_inference_async.abi")


def _sdk_imports() -> list[tuple[str, str, str]]:
    """``(file, module, name)`` for every name the devnet imports from the SDK."""
    found = []
    for path in sorted(DEVNET_PACKAGE.rglob("*.py")):
        where = str(path.relative_to(DEVNET_PACKAGE))
        for node in ast.walk(ast.parse(path.read_text(), filename=where)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("og_inference_async"):
                found += [(where, node.module or "", alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(where, a.name, "") for a in node.names if a.name.startswith("og_inference_async")]
    return found


def test_the_devnet_imports_public_sdk_names_only() -> None:
    """Every SDK import of the devnet names a public module and a name in that module's ``__all__``."""
    imports = _sdk_imports()
    assert imports, "the devnet imports nothing from the SDK?"
    wrong = []
    for where, module, name in imports:
        if module not in PUBLIC_MODULES:
            wrong.append(f"{where}: {module}")
        elif name and name not in importlib.import_module(module).__all__:
            wrong.append(f"{where}: {module}.{name}")
    assert wrong == []


@pytest.mark.parametrize("module", PUBLIC_MODULES[1:])
def test_public_modules_export_documented_names(module: str) -> None:
    """The token codec and the ABI codec export what they list, each class and function documented."""
    mod = importlib.import_module(module)
    assert (mod.__doc__ or "").strip()
    undocumented = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
            undocumented.append(name)
    assert undocumented == []
    assert len(set(mod.__all__)) == len(mod.__all__)
