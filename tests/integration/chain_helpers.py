"""Helpers for integration tests: register bare on-chain providers (no HTTP server) on the devnet."""

from __future__ import annotations

import json
from typing import Any

from eth_account import Account

from og_inference_async._chain import inference_abi


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
