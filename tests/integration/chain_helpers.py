"""Helpers for integration tests: bare on-chain providers, and a bundle of running devnet providers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_account import Account

from og_inference_async import AsyncBroker, RequestRetryPolicy, RetryPolicy, TxPolicy, og
from og_inference_async._chain import inference_abi
from og_inference_devnet.provider import ProviderHandle

#: Short read bounds for chaos tests (the defaults wait tens of seconds).
FAST_RETRY = RetryPolicy(
    attempts=4, max_delay=3.0, initial_backoff=0.01, max_backoff=0.2, attempt_timeout=1.0
)
#: Short transaction bounds for chaos tests.
FAST_TX = TxPolicy(
    receipt_timeout=10.0,
    receipt_poll_interval=0.01,
    rebroadcast_interval=0.2,
    send_timeout=5.0,
    cancel_timeout=5.0,
    gap_heal_after=0.3,
)


async def register_provider(
    dn: Any,
    *,
    service_type: str = "chatbot",
    model: str = "devnet/echo-1",
    input_price: int = 10**9,
    output_price: int = 2 * 10**9,
    url: str = "http://127.0.0.1:9",
) -> str:
    """Register a fresh, impersonated provider address with a TEE signer acknowledged by the owner."""
    provider = Account.create().address
    tee = Account.create().address
    abi = inference_abi()
    await dn.rpc("anvil_impersonateAccount", [provider])
    await dn.set_balance(provider, 10**24)
    params = (
        service_type,
        url,
        model,
        "TeeML",
        input_price,
        output_price,
        json.dumps({"ProviderType": "decentralized"}),
        tee,
    )
    await dn.send_as(provider, dn.inference, abi.fn("addOrUpdateService").encode(params), value=100 * 10**18)
    await dn.send_as(dn.owner.address, dn.inference, abi.fn("acknowledgeTEESignerByOwner").encode(provider))
    return provider


@dataclass
class Providers:
    """One running devnet provider of each kind (plus per-token speech-to-text) for a test module."""

    chat: ProviderHandle
    image: ProviderHandle
    edit: ProviderHandle
    audio: ProviderHandle
    audio_tokens: ProviderHandle

    def all(self) -> list[ProviderHandle]:
        """Every handle, in a fixed order."""
        return [self.chat, self.image, self.edit, self.audio, self.audio_tokens]


async def funded_broker(dn: Any, index: int, provider: ProviderHandle, *, network: Any = None) -> AsyncBroker:
    """An unopened broker for ``dn.accounts[index]``: a 5 OG ledger, 3 OG in a sub-account with ``provider``.

    Its requests retry with no waits and skip verification. ``network`` (default ``dn.network``) is
    the one the returned broker uses; the funding always goes straight to the devnet.
    """
    key = dn.accounts[index].private_key
    async with AsyncBroker(key, network=dn.network) as setup:
        await setup.ledger.add_ledger(og("5"))
        await setup.ledger.transfer_fund(provider.address, og("3"))
    broker = AsyncBroker(key, network=network or dn.network)
    broker.inference.retry_policy = RequestRetryPolicy.no_wait()
    broker.inference.verification = "off"
    return broker
