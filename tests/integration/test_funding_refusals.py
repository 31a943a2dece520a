"""Refusals for balance on the devnet: one shared top-up and one retry; caps reach the callers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from og_inference_async import AsyncBroker, FundingCapError, ProviderInsufficientBalanceError, og
from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle, start_provider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

#: 0.01 OG per token: a devnet chat of about ten tokens costs about 0.1 OG.
PRICE = 10**16


@pytest.fixture
async def pricey(devnet: Devnet) -> AsyncIterator[ProviderHandle]:
    """A chatbot that settles only on demand (registered after the snapshot)."""
    async with anyio.create_task_group() as tg:
        handle = await start_provider(
            devnet,
            tg,
            service_type="chatbot",
            model="test/refusals",
            input_price=PRICE,
            output_price=PRICE,
            account_index=24,
            settle_interval=None,
        )
        yield handle
        tg.cancel_scope.cancel()


async def _nonce(dn: Devnet, address: str) -> int:
    return int(await dn.rpc("eth_getTransactionCount", [address, "latest"]), 16)


async def _at_minimum(dn: Devnet, index: int, provider: str) -> AsyncBroker:
    broker = AsyncBroker(dn.accounts[index].private_key, network=dn.network)
    await broker.__aenter__()
    broker.inference.verification = "off"
    await broker.ledger.add_ledger(og("20"))
    await broker.inference.acknowledge_provider_signer(provider, initial_amount=og("1"))
    return broker


async def test_refused_callers_share_one_top_up_then_retry(devnet: Devnet, pricey: ProviderHandle) -> None:
    """Ten chats refused at the minimum balance: one top-up for all, all answered, none billed twice."""
    broker = await _at_minimum(devnet, 13, pricey.address)
    try:
        with pytest.raises(ProviderInsufficientBalanceError):
            await broker.inference.chat(pricey.address, [{"role": "user", "content": "no funding"}])
        me = broker.address
        assert me is not None
        n0 = await _nonce(devnet, me)
        fees: list[int] = []

        async def ask(i: int) -> None:
            result = await broker.inference.chat(
                pricey.address, [{"role": "user", "content": f"agent {i}"}], auto_fund=True
            )
            fees.append(result.fee)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(ask, i)
        assert len(fees) == 10 and await _nonce(devnet, me) == n0 + 1
        assert pricey.total_billed == sum(fees)
    finally:
        await broker.__aexit__(None, None, None)


async def test_a_cap_reaches_the_callers_and_the_stats(devnet: Devnet, pricey: ProviderHandle) -> None:
    """A top-up above max_total is not sent: the refused caller gets FundingCapError, the stats count it."""
    broker = await _at_minimum(devnet, 14, pricey.address)
    errors: list[Exception] = []
    try:
        await broker.inference.start_auto_funding(
            pricey.address, interval=3600, max_total=og("0.5"), on_error=errors.append
        )
        with pytest.raises(FundingCapError) as info:
            await broker.inference.chat(pricey.address, [{"role": "user", "content": "over the cap"}])
        assert info.value.cap == "max_total" and info.value.limit == og("0.5")
        stats = broker.inference.auto_funding_stats(pricey.address)
        assert stats is not None and stats.cap_hits >= 1 and stats.max_total == og("0.5")
        assert any(isinstance(e, FundingCapError) for e in errors)
    finally:
        await broker.__aexit__(None, None, None)
