"""Observability on the devnet: broker.stats(), event hooks, INFO lines; call options reach the provider."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from eth_utils import keccak

from og_inference_async import AsyncBroker, ConfigError, Hooks, og
from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle, start_provider

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


@pytest.fixture
async def on_demand(devnet: Devnet) -> AsyncIterator[ProviderHandle]:
    """An expensive chatbot that settles only when told to (registered after the snapshot)."""
    async with anyio.create_task_group() as tg:
        handle = await start_provider(
            devnet,
            tg,
            service_type="chatbot",
            model="test/observe-echo",
            input_price=10**17,
            output_price=10**17,
            private_key="0x" + keccak(b"og-inference-async:test-observe-provider").hex(),
            settle_interval=None,
        )
        yield handle
        tg.cancel_scope.cancel()


class Events:
    """Hook events by hook name; a test can wait for the first event matching a condition."""

    def __init__(self) -> None:
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self._changed = anyio.Event()

    def hook(self, name: str) -> Any:
        def record(event: dict[str, Any]) -> None:
            self.seen.setdefault(name, []).append(event)
            self._changed.set()
            self._changed = anyio.Event()

        return record

    async def first(self, name: str, kind: str) -> dict[str, Any]:
        with anyio.fail_after(10):
            while True:
                found = [e for e in self.seen.get(name, []) if e.get("kind") == kind]
                if found:
                    return found[0]
                await self._changed.wait()


async def test_top_up_and_settlement_progress_hooks(
    devnet: Devnet, on_demand: ProviderHandle, caplog: pytest.LogCaptureFixture
) -> None:
    """Auto-funding fires on_top_up and counts by provider; wait_settled reports progress until settled;
    the lines logged meanwhile (DEBUG included) and the events carry no secret."""
    caplog.set_level(logging.DEBUG, logger="og_inference_async")
    key = devnet.accounts[USER].private_key
    events = Events()
    hooks = Hooks(on_top_up=events.hook("top_up"), on_progress=events.hook("progress"))
    prov = on_demand.address
    async with AsyncBroker(devnet.accounts[USER].private_key, network=devnet.network, hooks=hooks) as broker:
        await broker.inference.ensure_ready(
            prov, min_balance=og("4"), create_ledger=True, ledger_amount=og("30")
        )
        token = (await broker.inference.get_request_headers(prov))["Authorization"].split(" ", 1)[1]
        broker.inference.verification = "background"
        result = await broker.inference.chat(prov, HELLO, max_tokens=8)
        stats = await broker.inference.start_auto_funding(prov, interval=60, buffer=og("5"))
        assert stats.top_ups == 1
        (top_up,) = events.seen["top_up"]
        assert top_up["provider"] == prov and top_up["reason"] == "check"
        assert top_up["amount_wei"] > 0 and top_up["tx_hash"].startswith("0x")
        assert broker.stats().top_ups == {prov: 1}

        reports: list[Any] = []

        async def wait() -> None:
            reports.append(await broker.inference.wait_settled(prov, timeout=30, poll_interval=0.05))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            first = await events.first("progress", "settlement")  # the wait has its baseline
            await on_demand.settle_now()
        assert first["provider"] == prov and first["polls"] >= 1 and first["elapsed"] >= 0
        (report,) = reports
        assert report.fee_settled > 0
        await result.verification  # the background check ends: its outcome is counted, not "pending"
        outcomes = broker.stats().verification
    assert "pending" not in outcomes and sum(outcomes.values()) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"auto-funding topped up provider {prov} by " in m and " OG (check;" in m for m in messages)
    texts = [*messages, repr(events.seen)]
    assert not any(key[2:] in t or token in t or "app-sk-" in t for t in texts)  # secrets never
