"""Funding on the devnet: acknowledge, ensure_ready, auto-funding, settlement waits and refunds."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel
import pytest
from eth_utils import keccak

from og_inference_async import (
    AsyncBroker,
    InsufficientBalanceError,
    LedgerNotExistsError,
    ServiceNotFoundError,
    SettlementTimeoutError,
    og,
)
from og_inference_async._chain import inference_abi
from og_inference_async.types.funding import TopUpEvent
from og_inference_devnet import Devnet
from og_inference_devnet.faultproxy import RpcFaultProxy
from og_inference_devnet.provider import ProviderHandle, start_provider

from .chain_helpers import register_provider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

OG = 10**18
#: 0.1 OG per token in and out: a short chat costs about 0.7 OG, so fees grow fast.
PRICE = 10**17
PROVIDER_KEY = "0x" + keccak(b"og-inference-async:test-funding-provider").hex()

T = TypeVar("T")


class Seen(Generic[T]):
    """A callback that records its argument and lets a test wait for the n-th call."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._waiters: list[tuple[int, anyio.Event]] = []

    def __call__(self, item: T) -> None:
        self.items.append(item)
        for n, event in self._waiters:
            if len(self.items) >= n:
                event.set()

    async def wait_for(self, n: int) -> None:
        with anyio.fail_after(10):
            if len(self.items) < n:
                event = anyio.Event()
                self._waiters.append((n, event))
                await event.wait()


def _broker(dn: Devnet, index: int, *, rpc_url: str | None = None) -> AsyncBroker:
    network = dn.network if rpc_url is None else dataclasses.replace(dn.network, rpc_url=rpc_url)
    return AsyncBroker(dn.accounts[index].private_key, network=network)


async def _nonce(dn: Devnet, address: str) -> int:
    return int(await dn.rpc("eth_getTransactionCount", [address, "latest"]), 16)


@pytest.fixture
async def chat(devnet: Devnet) -> AsyncIterator[ProviderHandle]:
    """An expensive chatbot provider that settles only on demand (registered after the snapshot)."""
    async with anyio.create_task_group() as tg:
        handle = await start_provider(
            devnet,
            tg,
            service_type="chatbot",
            model="test/funding-echo",
            input_price=PRICE,
            output_price=PRICE,
            private_key=PROVIDER_KEY,
            settle_interval=None,
        )
        yield handle
        tg.cancel_scope.cancel()


async def _chat_once(broker: AsyncBroker, provider: ProviderHandle, text: str = "one two three") -> None:
    headers = await broker.inference.get_request_headers(provider.address)
    response = await broker.http.post(
        provider.url + "/v1/proxy/chat/completions",
        headers=headers,
        json={"model": provider.model, "messages": [{"role": "user", "content": text}]},
    )
    assert response.status_code == 200, response.text


async def _unacknowledge(dn: Devnet, broker: AsyncBroker, provider: str) -> None:
    """Leave an existing sub-account with balance 0 and acknowledged = false."""
    await broker.ledger.retrieve_fund_from_provider(provider)
    await dn.increase_time(dn.lock_time + 1)
    await broker.ledger.retrieve_fund_from_provider(provider)
    chain = broker._chain_reader
    await chain.acknowledge_tee_signer(broker._sender, provider, False)
    account = await broker.ledger.get_account(provider)
    assert account.balance == 0 and not account.acknowledged


# -- acknowledge_provider_signer ---------------------------------------------------------------


async def test_acknowledge_opens_the_account_once_then_is_idempotent(devnet: Devnet) -> None:
    """Without a sub-account one transfer opens and acknowledges it; a second call sends nothing."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 16) as broker:
        await broker.ledger.add_ledger(og("5"))
        me = broker.address
        assert me is not None
        n0 = await _nonce(devnet, me)
        first = await broker.inference.acknowledge_provider_signer(provider, initial_amount=og("2.5"))
        assert first.status == "created_account" and first.amount == og("2.5")
        assert len(first.tx_hashes) == 1 and first.warnings == () and first.tee_signer_acknowledged
        assert await _nonce(devnet, me) == n0 + 1
        account = await broker.ledger.get_account(provider)
        assert account.acknowledged and account.balance == og("2.5")

        again = await broker.inference.acknowledge_provider_signer(provider)
        assert again.status == "already_acknowledged" and again.tx_hashes == ()
        assert await _nonce(devnet, me) == n0 + 1


async def test_acknowledge_raises_a_small_amount_to_the_onchain_minimum(devnet: Devnet) -> None:
    """An initial amount below MIN_TRANSFER_AMOUNT is raised to it (the default is 2 OG: test_safety)."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 16) as broker:
        await broker.ledger.add_ledger(og("3"))
        result = await broker.inference.acknowledge_provider_signer(provider, initial_amount=og("0.1"))
        assert result.amount == await broker._chain_reader.min_transfer_amount() == OG


async def test_acknowledge_sends_acknowledgement_for_an_unacknowledged_account(devnet: Devnet) -> None:
    """An existing, unacknowledged account gets one acknowledgeTEESigner tx and headers work after it."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 17) as broker:
        await broker.ledger.add_ledger(og("4"))
        await broker.ledger.transfer_fund(provider, og("1"))
        await _unacknowledge(devnet, broker, provider)
        cached = await broker.inference.auth.read_account(provider)  # caches "not acknowledged"
        assert cached is not None and not cached.acknowledged
        result = await broker.inference.acknowledge_provider_signer(provider)
        assert result.status == "acknowledged" and len(result.tx_hashes) == 1 and result.amount == 0
        assert (await broker.ledger.get_account(provider)).acknowledged
        assert "Authorization" in await broker.inference.get_request_headers(provider)


async def test_acknowledge_checks_before_sending(devnet: Devnet) -> None:
    """No ledger, a ledger too small, or an unknown provider raise typed errors and send nothing."""
    provider = await register_provider(devnet)
    other = await register_provider(devnet)
    async with _broker(devnet, 18) as broker:
        me = broker.address
        assert me is not None
        with pytest.raises(LedgerNotExistsError):
            await broker.inference.acknowledge_provider_signer(provider)
        with pytest.raises(ServiceNotFoundError):
            await broker.inference.acknowledge_provider_signer(devnet.accounts[5].address)
        await broker.ledger.add_ledger(og("3"))
        await broker.ledger.transfer_fund(other, og("2.5"))
        n0 = await _nonce(devnet, me)
        with pytest.raises(InsufficientBalanceError) as info:
            await broker.inference.acknowledge_provider_signer(provider)
        # changed: a new sub-account now opens with 2 OG by default (was the 1 OG on-chain minimum)
        assert info.value.required == 2 * OG and info.value.available == og("0.5")
        assert await _nonce(devnet, me) == n0


async def test_acknowledge_warns_when_0g_has_not_acknowledged_the_signer(
    devnet: Devnet, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider whose TEE signer the owner revoked yields a warning (field and log)."""
    provider = await register_provider(devnet)
    revoke = inference_abi().fn("revokeTEESignerAcknowledgement").encode(provider)
    await devnet.send_as(devnet.owner.address, devnet.inference, revoke)
    async with _broker(devnet, 19) as broker:
        await broker.ledger.add_ledger(og("3"))
        with caplog.at_level(logging.WARNING, logger="og_inference_async"):
            result = await broker.inference.acknowledge_provider_signer(provider)
        assert result.status == "created_account" and not result.tee_signer_acknowledged
        assert result.warnings and "cannot settle" in result.warnings[0]
        assert any("cannot settle" in r.getMessage() for r in caplog.records)


# -- ensure_ready ----------------------------------------------------------------------------


async def test_ensure_ready_from_zero_is_single_flight(devnet: Devnet) -> None:
    """100 concurrent ensure_ready calls on a fresh wallet send exactly two transactions."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 16) as broker:
        me = broker.address
        assert me is not None
        n0 = await _nonce(devnet, me)
        reports: list[Any] = []

        async def one() -> None:
            reports.append(await broker.inference.ensure_ready(provider, create_ledger=True))

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(one)
        assert await _nonce(devnet, me) == n0 + 2
        assert len(reports) == 100 and all(r == reports[0] for r in reports)
        report = reports[0]
        assert [a.kind for a in report.actions] == ["created_ledger", "created_account"]
        assert [a.amount for a in report.actions] == [3 * OG, 2 * OG]
        assert (report.ledger_total, report.ledger_available, report.spendable) == (3 * OG, OG, 2 * OG)
        assert report.acknowledged and report.changed

        again = await broker.inference.ensure_ready(provider, create_ledger=True)
        assert again.actions == () and not again.changed and again.spendable == 2 * OG
        assert await _nonce(devnet, me) == n0 + 2


async def test_ensure_ready_without_a_ledger_raises_with_a_hint(devnet: Devnet) -> None:
    """No ledger and create_ledger=False raise LedgerNotExistsError with a hint; nothing is sent."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 17) as broker:
        me = broker.address
        assert me is not None
        n0 = await _nonce(devnet, me)
        with pytest.raises(LedgerNotExistsError) as info:
            await broker.inference.ensure_ready(provider)
        assert info.value.hint and "create_ledger=True" in info.value.hint
        with pytest.raises(InsufficientBalanceError):
            await broker.inference.ensure_ready(
                provider, min_balance=og("5"), create_ledger=True, ledger_amount=og("4")
            )
        assert await _nonce(devnet, me) == n0


async def test_ensure_ready_tops_up_only_the_shortfall(devnet: Devnet) -> None:
    """An existing account gets just the shortfall; pending refunds are cancelled before the ledger pays."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 18) as broker:
        await broker.ledger.add_ledger(og("10"))
        await broker.ledger.transfer_fund(provider, og("1"))
        report = await broker.inference.ensure_ready(provider, min_balance=og("2.5"))
        assert [(a.kind, a.amount) for a in report.actions] == [("topped_up", og("1.5"))]
        assert report.spendable == og("2.5") and report.ledger_available == og("7.5")

        await broker.ledger.retrieve_fund_from_provider(provider)  # all 2.5 OG now pending refund
        report = await broker.inference.ensure_ready(provider, min_balance=og("2.5"))
        assert [(a.kind, a.amount) for a in report.actions] == [("topped_up", og("2.5"))]
        assert report.spendable == og("2.5") and report.pending_refund == 0
        assert report.ledger_available == og("7.5")  # the refund was cancelled, the ledger paid nothing


async def test_ensure_ready_only_acknowledges_when_funds_suffice(devnet: Devnet) -> None:
    """A funded-enough but unacknowledged account gets only the acknowledgement."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 19) as broker:
        await broker.ledger.add_ledger(og("4"))
        await broker.ledger.transfer_fund(provider, og("1"))
        await _unacknowledge(devnet, broker, provider)
        report = await broker.inference.ensure_ready(provider, min_balance=0)
        assert [a.kind for a in report.actions] == ["acknowledged"] and report.acknowledged


# -- auto-funding ----------------------------------------------------------------------------


async def test_auto_funding_tops_up_as_unsettled_fees_grow(devnet: Devnet, chat: ProviderHandle) -> None:
    """Each check transfers exactly unsettled + buffer - spendable, read from the provider's endpoint."""
    seen: Seen[TopUpEvent] = Seen()
    events = seen.items
    async with _broker(devnet, 16) as broker:
        me = broker.address
        assert me is not None
        await broker.inference.ensure_ready(
            chat.address, min_balance=og("4"), create_ledger=True, ledger_amount=og("30")
        )
        for _ in range(2):
            await _chat_once(broker, chat)
        unsettled = chat.unsettled_fee(me)
        assert unsettled > og("1")
        stats = await broker.inference.start_auto_funding(
            chat.address, interval=0.1, buffer=og("3"), min_transfer=og("0.1"), on_top_up=seen
        )
        assert stats.checks == 1 and stats.top_ups == 1 and stats.errors == 0
        assert stats.last_fee_source == "provider" and stats.last_unsettled_fee == unsettled
        assert events[0].amount == events[0].deficit == unsettled + og("3") - og("4")
        account = await broker.ledger.get_account(chat.address)
        assert account.spendable == unsettled + og("3")

        await _chat_once(broker, chat)
        grown = chat.unsettled_fee(me)
        await seen.wait_for(2)
        assert events[1].amount == grown - unsettled and events[1].unsettled_fee == grown
        assert (await broker.ledger.get_account(chat.address)).spendable == grown + og("3")
        final = broker.inference.auto_funding_stats(chat.address)
        assert final is not None and final.top_ups == 2 and final.topped_up_total == grown + og("3") - og("4")
        await broker.inference.stop_auto_funding(chat.address)
        assert not broker.inference.has_auto_funding(chat.address)


async def test_auto_funding_reports_failures_and_keeps_going(devnet: Devnet) -> None:
    """An empty ledger makes every check fail: on_error sees it, stats count it, the loop continues."""
    provider = await register_provider(devnet)  # no HTTP server: the fee endpoint fails -> local counter
    failed: Seen[Exception] = Seen()
    topped: Seen[TopUpEvent] = Seen()
    errors = failed.items
    async with _broker(devnet, 17) as broker:
        await broker.inference.ensure_ready(provider, min_balance=og("3"), create_ledger=True)
        assert (await broker.ledger.get_ledger()).available == 0
        stats = await broker.inference.start_auto_funding(
            provider, interval=0.05, buffer=og("5"), on_error=failed, on_top_up=topped
        )
        assert stats.errors == 1 and stats.top_ups == 0 and stats.running
        assert stats.last_error is not None and stats.last_error.startswith("InsufficientBalanceError")
        assert isinstance(errors[0], InsufficientBalanceError)
        await failed.wait_for(3)
        later = broker.inference.auto_funding_stats(provider)
        assert later is not None and later.errors >= 3 and later.consecutive_errors >= 3
        assert later.running and later.last_fee_source is None
        await broker.ledger.deposit_fund(og("10"))
        await topped.wait_for(1)
        last = broker.inference.auto_funding_stats(provider)
        assert last is not None and last.consecutive_errors == 0 and last.last_fee_source == "local"


async def test_auto_funding_stops_when_the_broker_closes(devnet: Devnet) -> None:
    """Loops live in the broker's task group: restart replaces, close ends them, no task is left."""
    provider = await register_provider(devnet)

    def loop_tasks() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("og-auto-funding:")]

    async with _broker(devnet, 18) as broker:
        await broker.inference.ensure_ready(provider, create_ledger=True)
        await broker.inference.start_auto_funding(provider, interval=0.05, buffer=0)
        await broker.inference.start_auto_funding(provider, interval=0.05, buffer=0)
        assert broker.inference.has_auto_funding(provider) and len(loop_tasks()) == 1
        inference = broker.inference
    assert not inference.has_auto_funding(provider)
    stats = inference.auto_funding_stats(provider)
    assert stats is not None and not stats.running and stats.errors == 0
    await anyio.lowlevel.checkpoint()
    assert loop_tasks() == []


# -- wait_settled ----------------------------------------------------------------------------


async def test_wait_settled_reports_the_billed_fee(
    devnet: Devnet, chat: ProviderHandle, rpc_fault_proxy: RpcFaultProxy
) -> None:
    """After settle_now the balance drops by exactly the billed fee and the settlement nonce advances."""
    # the broker reads the chain through the proxy (faults off): its counters tell when wait_settled polls
    async with _broker(devnet, 19, rpc_url=rpc_fault_proxy.url) as broker:
        me = broker.address
        assert me is not None
        await broker.inference.ensure_ready(
            chat.address, min_balance=og("5"), create_ledger=True, ledger_amount=og("10")
        )
        for text in ("one two three", "four five"):
            await _chat_once(broker, chat, text)
        billed = chat.unsettled_fee(me)
        report_box: list[Any] = []

        async def wait() -> None:
            report_box.append(
                await broker.inference.wait_settled(chat.address, timeout=10, poll_interval=0.05)
            )

        reads = rpc_fault_proxy.calls["eth_call"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            # settle once wait_settled has its baseline: its first poll (a second read) follows that read
            with anyio.fail_after(10):
                while rpc_fault_proxy.calls["eth_call"] < reads + 2:  # noqa: ASYNC110 - counters, no events
                    await anyio.sleep(0.005)
            await chat.settle_now()
        (report,) = report_box
        assert report.fee_settled == billed > 0
        assert report.balance_before - report.balance_after == billed
        assert report.nonce_after > report.nonce_before and len(report.tx_hashes) == 1


async def test_wait_settled_times_out(devnet: Devnet) -> None:
    """Without a settlement, wait_settled raises SettlementTimeoutError within the bound."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 5) as broker:
        await broker.inference.ensure_ready(provider, create_ledger=True)
        with anyio.fail_after(5), pytest.raises(SettlementTimeoutError) as info:
            await broker.inference.wait_settled(provider, timeout=0.3, poll_interval=0.05)
        assert info.value.provider == provider and info.value.nonce == 0


# -- refunds ---------------------------------------------------------------------------------


async def test_refund_lifecycle_by_chain_time(devnet: Devnet) -> None:
    """A requested refund is locked until lockTime passes on chain; completing it restores the ledger."""
    provider = await register_provider(devnet)
    async with _broker(devnet, 5) as broker:
        await broker.ledger.add_ledger(og("5"))
        await broker.ledger.transfer_fund(provider, og("2"))
        assert await broker.inference.get_refunds() == []
        await broker.ledger.retrieve_fund_from_provider(provider)
        (refund,) = await broker.inference.get_refunds(provider)
        assert refund.amount == 2 * OG and not refund.is_unlocked
        assert refund.unlocks_at == refund.requested_at + devnet.lock_time
        assert 0 < refund.remaining <= devnet.lock_time
        nothing = await broker.inference.complete_refunds()
        assert nothing.providers == () and nothing.tx_hashes == () and nothing.returned == 0

        await devnet.increase_time(devnet.lock_time)
        (refund,) = await broker.inference.get_refunds()
        assert refund.is_unlocked and refund.remaining == 0
        done = await broker.inference.complete_refunds()
        assert done.returned == 2 * OG and len(done.tx_hashes) == 1
        assert [(p.provider, p.returned, p.newly_requested) for p in done.providers] == [
            (provider, 2 * OG, 0)
        ]
        assert done.ledger_available_after == (await broker.ledger.get_ledger()).available == og("5")
        assert await broker.inference.get_refunds() == []


async def test_unknown_top_up_is_never_sent_twice(devnet: Devnet) -> None:
    """A top-up with no receipt blocks further top-ups while pending; once mined, nothing is resent."""
    from og_inference_async import TransactionOutcomeUnknownError, TxPolicy

    provider = await register_provider(devnet)
    user = devnet.accounts[5]
    fast = TxPolicy(
        receipt_timeout=0.3, receipt_poll_interval=0.01, receipt_attempts=50, cancel_on_timeout=False
    )
    async with AsyncBroker(user.private_key, network=devnet.network, tx_policy=fast) as broker:
        await broker.ledger.add_ledger(og("10"))
        await devnet.rpc("evm_setAutomine", [False])
        try:
            with pytest.raises(TransactionOutcomeUnknownError) as first:
                await broker.inference.ensure_ready(provider, min_balance=og("2"))
            pending = int(await devnet.rpc("eth_getTransactionCount", [user.address, "pending"]), 16)
            with pytest.raises(TransactionOutcomeUnknownError, match="still pending") as again:
                await broker.inference.ensure_ready(provider, min_balance=og("2"))
            assert again.value.tx_hash == first.value.tx_hash
            assert int(await devnet.rpc("eth_getTransactionCount", [user.address, "pending"]), 16) == pending
            await devnet.rpc("evm_mine", [])
        finally:
            await devnet.rpc("evm_setAutomine", [True])
        report = await broker.inference.ensure_ready(provider, min_balance=og("2"))
        assert report.actions == ()  # the pending top-up landed: nothing more to send
        assert (await broker.ledger.get_account(provider)).balance == og("2")
