"""Observability on the devnet: broker.stats(), event hooks, INFO lines; call options reach the provider."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from og_inference_async import AsyncBroker, ConfigError, Hooks, og
from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

USER = 8
HELLO = [{"role": "user", "content": "hello observer"}]


async def test_stats_hooks_and_info_lines(
    devnet: Devnet, chatbot: ProviderHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """A funded chat counts RPC calls, requests, transactions, fees, outcomes; hooks and INFO lines fire."""
    events: list[tuple[str, dict[str, Any]]] = []
    hooks = Hooks(
        on_request=lambda e: events.append(("request", e)),
        on_response=lambda e: events.append(("response", e)),
        on_transaction=lambda e: events.append(("transaction", e)),
    )
    caplog.set_level(logging.INFO, logger="og_inference_async")
    key = devnet.accounts[USER].private_key
    async with AsyncBroker(key, network=devnet.network, hooks=hooks) as broker:
        await broker.inference.ensure_ready(chatbot.address, create_ledger=True, ledger_amount=og("3"))
        broker.inference.verification = "required"
        result = await broker.inference.chat(chatbot.address, HELLO, max_tokens=8, timeout=30)
        stats = broker.stats()
    assert (
        stats.rpc_calls.get("eth_chainId", 0) >= 1 and stats.rpc_calls.get("eth_sendRawTransaction", 0) >= 1
    )
    assert stats.provider_requests["chat"] == 1 and stats.retries == 0
    assert stats.transactions and all(kind.count(".") == 1 for kind in stats.transactions)
    assert stats.fees[chatbot.address] == result.fee > 0
    assert sum(stats.verification.values()) == 1
    kinds = [kind for kind, _ in events]
    assert "transaction" in kinds and kinds.count("request") >= 1 and kinds.count("response") >= 1
    tx = next(e for kind, e in events if kind == "transaction")
    assert tx["tx_hash"].startswith("0x") and isinstance(tx["value_wei"], int)
    messages = [r.getMessage() for r in caplog.records]
    assert any(" mined: 0x" in m and " OG" in m for m in messages)
    assert any(
        f"{chatbot.address} answered {result.chat_id}: fee" in m and " OG, verification " in m
        for m in messages
    )
    assert not any(key[2:] in m for m in messages)  # secrets never


async def test_call_options_on_the_devnet(devnet: Devnet, chatbot: ProviderHandle) -> None:
    """extra_body is sent, options are not; an unknown keyword is refused before anything is sent."""
    async with AsyncBroker(devnet.accounts[USER].private_key, network=devnet.network) as broker:
        await broker.inference.ensure_ready(chatbot.address, create_ledger=True, ledger_amount=og("3"))
        view = broker.inference.with_options(timeout=30, max_retries=0, extra_headers={"X-Trace": "t"})
        result = await view.chat(chatbot.address, HELLO, extra_body={"top_k": 2})
        assert result.content
        before = broker.stats().provider_requests.get("chat", 0)
        with pytest.raises(ConfigError, match="extra_body"):
            await broker.inference.chat(chatbot.address, HELLO, top_k=2)
        assert broker.stats().provider_requests.get("chat", 0) == before
