"""The streaming and OpenAI SDK examples run on the devnet."""

from __future__ import annotations

from typing import Any

import pytest

from .example_loader import load_example as load

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_streaming_example(devnet: Any, chatbot: Any) -> None:
    """The streaming example streams a bound answer, stops one early and runs three at once."""
    out = await load("streaming").run(devnet, chatbot.address, quiet=True)
    assert out["content"].startswith("Echo: Tell me") and out["verification"] == "bound"
    assert out["drained"] == "Echo: a b c d e f" and out["drained"].startswith(out["early_content"])
    assert out["concurrent"] == {i: f"Echo: stream {i}" for i in range(3)}
    user = devnet.accounts[8].address
    assert out["local_fees"] == chatbot.unsettled_fee(user) > out["fee"] > 0


async def test_openai_sdk_example(devnet: Any, chatbot: Any) -> None:
    """The OpenAI SDK example works with session tokens and an API key, and binds a raw response."""
    pytest.importorskip("openai")
    out = await load("openai_sdk").run(devnet, chatbot.address, quiet=True)
    assert out["session"] == out["streamed"] == out["api_key"] == "Echo: Hello from the OpenAI SDK"
    assert out["verification"] == "bound" and out["revoked_refused"] is True
    assert out["local_fees"] > 0
