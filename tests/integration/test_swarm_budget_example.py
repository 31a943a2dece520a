"""examples/swarm_budget.py on the devnet: funding keeps up with a swarm, and a budget holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from og_inference_async import og
from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle, start_provider

from .example_loader import load_example

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
async def two_chatbots(devnet: Devnet) -> AsyncIterator[list[ProviderHandle]]:
    """Two chatbots priced so that a swarm spends several OG (registered after the snapshot)."""
    async with anyio.create_task_group() as tg:
        handles = [
            await start_provider(
                devnet,
                tg,
                service_type="chatbot",
                model=f"test/swarm-{i}",
                input_price=10**15,
                output_price=10**15,
                account_index=22 + i,
            )
            for i in range(2)
        ]
        yield handles
        tg.cancel_scope.cancel()


async def test_swarm_budget_example(devnet: Devnet, two_chatbots: list[ProviderHandle]) -> None:
    """No balance error reaches an agent; the budget is never overspent and refused chats are never sent."""
    result: dict[str, Any] = await load_example("swarm_budget").run(
        devnet, two_chatbots, n_agents=300, chats=3, limit=og("3")
    )
    swarm, budget = result["swarm"], result["budget"]
    assert swarm["balance_errors"] == 0 and swarm["failures"] == {} and swarm["answered"] == 900
    assert swarm["top_ups"] >= 1
    assert budget["spent"] <= budget["limit"] and budget["reserved"] == 0
    assert budget["spent"] == budget["billed"] == sum(budget["by_tag"].values())
    assert budget["answered"] == budget["sent"] and budget["answered"] + budget["refused"] == 300
    assert budget["refused"] > 0
