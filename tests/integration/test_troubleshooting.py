"""Every error of the product page's troubleshooting section, reproduced on the devnet, with its fix."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from og_inference_async import (
    AsyncBroker,
    InsufficientBalanceError,
    ProviderAuthError,
    ProviderNotAcknowledgedError,
    ServiceNotFoundError,
    og,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HELLO = [{"role": "user", "content": "hello"}]


def _broker(dn: Any, index: int) -> AsyncBroker:
    return AsyncBroker(dn.accounts[index].private_key, network=dn.network)


async def test_403_without_v1_proxy_and_the_fix(devnet: Any, chatbot: Any) -> None:
    """403 Forbidden when the base URL lacks /v1/proxy; get_service_metadata's endpoint works."""
    async with _broker(devnet, 13) as broker:
        await broker.ledger.add_ledger(og("10"))
        await broker.ledger.transfer_fund(chatbot.address, og("5"))
        key = (await broker.inference.create_api_key(chatbot.address)).secret.get_secret_value()
        wrong = openai.AsyncOpenAI(base_url=chatbot.url, api_key=key, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError) as info:
            await wrong.chat.completions.create(model=chatbot.model, messages=HELLO)  # type: ignore[arg-type]
        assert info.value.status_code == 403 and "/v1/proxy" in str(info.value)
        meta = await broker.inference.get_service_metadata(chatbot.address)
        right = openai.AsyncOpenAI(base_url=meta.endpoint, api_key=key, max_retries=0)
        completion = await right.chat.completions.create(model=meta.model, messages=HELLO)  # type: ignore[arg-type]
        assert completion.choices[0].message.content == "Echo: hello"
        await wrong.close()
        await right.close()


async def test_401_unauthorized(devnet: Any, chatbot: Any) -> None:
    """401 for a revoked API key, and ProviderAuthError (with the provider's code) for a bad session token."""
    async with _broker(devnet, 14) as broker:
        await broker.ledger.add_ledger(og("10"))
        await broker.ledger.transfer_fund(chatbot.address, og("5"))
        key = await broker.inference.create_api_key(chatbot.address)
        await broker.inference.revoke_api_key(chatbot.address, key.token_id)
        client = await broker.inference.openai_client(chatbot.address, api_key=key.secret.get_secret_value())
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model=chatbot.model, messages=HELLO)  # type: ignore[arg-type]
        assert info.value.status_code == 401 and "token_revoked" in str(info.value.body)
    async with _broker(devnet, 14) as skewed:
        skewed.inference.auth._clock = lambda: time.time() + 3600  # a token from the future
        with pytest.raises(ProviderAuthError) as auth:
            await skewed.inference.chat(chatbot.address, HELLO)
        assert auth.value.status_code == 401 and "token_not_yet_valid" in str(auth.value)


async def test_insufficient_balance(devnet: Any, chatbot: Any) -> None:
    """'account balance too low': a 402 becomes InsufficientBalanceError with amounts; a top-up fixes it."""
    async with _broker(devnet, 15) as broker:
        await broker.ledger.add_ledger(og("10"))
        await broker.ledger.transfer_fund(chatbot.address, og("1"))  # below fee + the provider's 1 OG reserve
        with pytest.raises(InsufficientBalanceError) as info:
            await broker.inference.chat(chatbot.address, HELLO)
        assert info.value.required is not None and info.value.available == og("1")
        assert info.value.required > info.value.available
        assert chatbot.unsettled_fee(broker.address) == 0  # refused requests are not billed
        await broker.ledger.transfer_fund(chatbot.address, og("2"))
        assert (await broker.inference.chat(chatbot.address, HELLO)).content == "Echo: hello"


async def test_provider_not_acknowledged(devnet: Any, chatbot: Any) -> None:
    """ProviderNotAcknowledgedError before anything is sent; acknowledge_provider_signer fixes it."""
    async with _broker(devnet, 16) as broker:
        await broker.ledger.add_ledger(og("10"))
        with pytest.raises(ProviderNotAcknowledgedError):
            await broker.inference.chat(chatbot.address, HELLO)
        await broker.inference.acknowledge_provider_signer(chatbot.address, initial_amount=og("3"))
        assert (await broker.inference.chat(chatbot.address, HELLO)).content == "Echo: hello"


async def test_service_not_found(devnet: Any) -> None:
    """ServiceNotFoundError for an address with no service on this network."""
    stranger = devnet.accounts[17].address
    async with _broker(devnet, 16) as broker:
        with pytest.raises(ServiceNotFoundError):
            await broker.inference.chat(stranger, HELLO)
        with pytest.raises(ServiceNotFoundError):
            await broker.inference.get_service_metadata(stranger)
        with pytest.raises(ServiceNotFoundError):
            await broker.ledger.transfer_fund(stranger, og("1"))
