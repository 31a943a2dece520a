"""Issue 11's "Results" and "Surprises" reproductions on the devnet, each now passing."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from og_inference_async import AsyncBroker, ConfigError, LedgerNotExistsError, RequestRetryPolicy, og
from og_inference_async._tokens import decode_token
from og_inference_async.types.inference import VerificationStatus
from og_inference_devnet.provider import ProviderHandle

from .chain_helpers import register_provider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

OG = 10**18


def _broker(dn: Any, index: int) -> AsyncBroker:
    broker = AsyncBroker(dn.accounts[index].private_key, network=dn.network)
    broker.inference.retry_policy = RequestRetryPolicy.no_wait()
    return broker


async def test_api_key_lifetime_is_seconds_or_a_timedelta(devnet: Any) -> None:
    """expires_in=3600 lasts an hour (not 3.6 s); a timedelta too; expires_in_ms keeps the TS unit."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 6) as broker:
        await broker.ledger.add_ledger(og("5"))
        await broker.ledger.transfer_fund(provider, og("2"))
        lifetimes = []
        for kwargs in ({"expires_in": 3600}, {"expires_in": timedelta(hours=1)}, {"expires_in_ms": 3600}):
            key = await broker.inference.create_api_key(provider, **kwargs)
            claims = decode_token(key.secret.get_secret_value()).claims
            lifetimes.append(claims.expires_at - claims.timestamp)
        assert lifetimes == [3_600_000, 3_600_000, 3600]
        for bad in ({"expires_in": -1}, {"expires_in": 0.0001}, {"expires_in": 1, "expires_in_ms": 1}):
            with pytest.raises(ConfigError):
                await broker.inference.create_api_key(provider, **bad)


async def test_delete_ledger_after_a_full_refund_says_what_happened(devnet: Any) -> None:
    """After refunding everything, delete_ledger says the refund deleted the ledger (no add_ledger hint)."""
    async with _broker(devnet, 4) as broker:
        await broker.ledger.add_ledger(og("3"))
        refund = await broker.ledger.refund(og("3"))
        with pytest.raises(LedgerNotExistsError) as info:
            await broker.ledger.delete_ledger()
    text = str(info.value)
    assert refund.tx_hash in text and "deleted the ledger" in text
    assert "create one with ledger.add_ledger" not in text
    async with _broker(devnet, 4) as fresh:  # another broker knows no refund: it still explains
        with pytest.raises(LedgerNotExistsError) as info:
            await fresh.ledger.delete_ledger()
    assert "already deleted it" in str(info.value)


async def test_money_over_time_is_reachable_from_ledger(devnet: Any) -> None:
    """get_refunds, complete_refunds and wait_settled are on broker.ledger as on broker.inference."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 5) as broker:
        await broker.ledger.add_ledger(og("5"))
        await broker.ledger.transfer_fund(provider, og("2"))
        await broker.ledger.retrieve_fund("inference")  # the TS SDK's form
        refunds = await broker.ledger.get_refunds(provider)
        assert [r.amount for r in refunds] == [2 * OG]
        assert refunds == await broker.inference.get_refunds(provider)
        await devnet.increase_time(86400 + 1)
        await devnet.mine()
        done = await broker.ledger.complete_refunds(provider)
        assert done.returned == 2 * OG
        assert (await broker.ledger.get_ledger()).available == 5 * OG
        assert broker.ledger.wait_settled.__func__ is broker.inference.wait_settled.__func__


async def test_transfer_and_retrieve_accept_the_service_type(devnet: Any) -> None:
    """transfer_fund(p, "inference", n) and retrieve_fund("inference") work; other names are refused."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 7) as broker:
        await broker.ledger.add_ledger(og("5"))
        await broker.ledger.transfer_fund(provider, "inference", og("1"))
        await broker.ledger.transfer_fund(provider, "inference", amount=og("1"))
        await broker.ledger.transfer_fund(provider, amount=og("1"))
        assert (await broker.ledger.get_account(provider)).balance == 3 * OG
        assert [b.provider for b in await broker.ledger.get_providers_with_balance("inference")] == [provider]
        for call in (
            lambda: broker.ledger.transfer_fund(provider, "fine-tuning", og("1")),
            lambda: broker.ledger.transfer_fund(provider, "inference"),
            lambda: broker.ledger.retrieve_fund("fine-tuning"),
            lambda: broker.ledger.retrieve_fund(provider),  # an address alone is still not a list
        ):
            with pytest.raises(ConfigError):
                await call()
        receipts = await broker.ledger.retrieve_fund(service_type="inference")
        assert len(receipts) == 1


async def test_process_response_is_falsy_when_unavailable(devnet: Any, chatbot: ProviderHandle) -> None:
    """``if await process_response(p, "no-such-id"):`` takes the false branch (status unavailable)."""
    async with _broker(devnet, 8) as broker:
        await broker.ledger.add_ledger(og("5"))
        await broker.inference.acknowledge_provider_signer(chatbot.address)
        outcome = await broker.inference.process_response(chatbot.address, "no-such-id")
        assert outcome.status is VerificationStatus.UNAVAILABLE
        branch = "true" if outcome else "false"
        assert branch == "false"
        result = await broker.inference.chat(chatbot.address, [{"role": "user", "content": "hi"}])
        checked = await broker.inference.process_response(chatbot.address, result.chat_id)
        assert checked and checked.status is VerificationStatus.SIGNED
        data = json.loads(result.model_dump_json(wei_as_str=True))
        assert data["fee"] == str(result.fee) and data["content"] == result.content


async def test_an_async_job_waited_on_twice_is_counted_once(
    devnet: Any, providers: list[ProviderHandle]
) -> None:
    """Waiting on the same image job again returns its fee but counts it once in the local fee book."""
    image = providers[1]
    image.core.config.async_job_seconds = 0.02
    async with _broker(devnet, 9) as broker:
        await broker.ledger.add_ledger(og("5"))
        await broker.inference.acknowledge_provider_signer(image.address)
        first = await broker.inference.generate_image_async(image.address, "a cat", n=2)
        assert first.job_id is not None and first.fee > 0
        again = await broker.inference.wait_image_job(image.address, first.job_id, n=2)
        assert again.fee == first.fee
        assert broker.inference.local_fees(image.address) == first.fee
        assert image.unsettled_fee(broker.address) == first.fee
