"""The examples run on the devnet."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_quickstart_runs_the_seed_flow(devnet: Any, providers: list[Any]) -> None:
    """The quickstart lists the four services, funds, transfers and requests the refund."""
    result = await load_example("quickstart").run(devnet)
    assert result["services"] == 4
    assert result["ledger"].locked == 2 * 10**18
    assert result["pending_refund"] == 2 * 10**18
