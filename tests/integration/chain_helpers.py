"""Helpers for integration tests: bare on-chain providers, and a bundle of running devnet providers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_account import Account

from og_inference_async._chain import inference_abi
from og_inference_async.devnet.provider import ProviderHandle


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
