"""examples/agents.py on the devnet: 100 agents on one broker, one set of onboarding transactions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agents.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("example_agents", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_agents_example_serves_every_agent(devnet: Any, chatbot: Any) -> None:
    """All 100 agents get their own answer; onboarding sent two transactions; the billed fee settles."""
    result = await _load().run(devnet, chatbot, n_agents=100)
    assert result["answered"] == result["correct"] == 100 and result["failures"] == {}
    assert [a.kind for a in result["ready"].actions] == ["created_ledger", "created_account"]
    assert result["billed"] > 0 and result["settlement"].fee_settled == result["billed"]
    assert result["auto_funding"].errors == 0
