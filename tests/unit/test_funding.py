"""Funding with fakes: top-up arithmetic, loop reporting, single-flight, locking, fallbacks, close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from eth_account import Account as EthAccount
from eth_utils import to_checksum_address

from og_inference_async import (
    AsyncBroker,
    ConfigError,
    InsufficientBalanceError,
    LedgerNotExistsError,
    ProviderResponseError,
    ServiceNotExistError,
    og,
)
from og_inference_async._runtime import Wallet
from og_inference_async.inference._funding_auto import (
    AutoFunder,
    AutoFundingConfig,
    CheckOutcome,
    describe_error,
    plan_top_up,
)
from og_inference_async.inference.funding import parse_fee as _parse_fee
from og_inference_async.types import Account, Ledger, Service, TxReceipt
from og_inference_async.types.funding import TopUpEvent

from .fakes import FakeProvider, FakeWeb3, wire_inference

pytestmark = pytest.mark.anyio

OG = 10**18
KEY = "0x" + "42" * 32
PROVIDER = to_checksum_address("0x" + "11" * 20)


# -- pure arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unsettled", "spendable", "buffer", "min_transfer", "floor", "expected"),
    [
        (0, 2 * OG, 2 * OG, OG, 0, (0, 0)),  # exactly covered
        (0, 5 * OG, 2 * OG, OG, 0, (0, 0)),  # surplus: no negative deficit reported
        (OG, 2 * OG, 2 * OG, OG, 0, (OG, OG)),
        (og("0.3"), 2 * OG, 2 * OG, OG, 0, (og("0.3"), OG)),  # small deficit -> min_transfer
        (og("0.3"), 2 * OG, 2 * OG, og("0.1"), 0, (og("0.3"), og("0.3"))),
        (0, 0, og("0.5"), og("0.1"), OG, (og("0.5"), OG)),  # new account -> on-chain minimum
        (7, 0, 0, 0, 0, (7, 7)),
    ],
)
def test_plan_top_up(
    unsettled: int, spendable: int, buffer: int, min_transfer: int, floor: int, expected: tuple[int, int]
) -> None:
    """deficit = unsettled + buffer - spendable; a positive one moves max(deficit, min_transfer, floor)."""
    assert (
        plan_top_up(
            unsettled=unsettled, spendable=spendable, buffer=buffer, min_transfer=min_transfer, floor=floor
        )
        == expected
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [({"unsettledFee": "123"}, 123), ({"unsettledFee": 5}, 5), ({"unsettledFee": ""}, 0), ({}, 0)],
)
def test_parse_fee_accepts_the_protocol_shapes(body: Any, expected: int) -> None:
    """The unsettled fee is a decimal string or an int; missing or empty means 0."""
    assert _parse_fee(body) == expected


@pytest.mark.parametrize("body", [[], {"unsettledFee": "1.5"}, {"unsettledFee": -1}, {"unsettledFee": True}])
def test_parse_fee_refuses_anything_else(body: Any) -> None:
    """Non-objects, fractions, negatives and booleans raise ProviderResponseError (the caller falls back)."""
    with pytest.raises(ProviderResponseError):
        _parse_fee(body)


def test_describe_error_is_short() -> None:
    """Error descriptions carry the type and a message cut to 300 characters."""
    text = describe_error(ValueError("x" * 1000))
    assert text.startswith("ValueError: ") and len(text) < 320


# -- the loop on its own -----------------------------------------------------------------------


def _event(amount: int) -> TopUpEvent:
    return TopUpEvent(
        provider=PROVIDER,
        amount=amount,
        deficit=amount,
        unsettled_fee=0,
        fee_source="provider",
        spendable_before=0,
        tx_hash="0x" + "ab" * 32,
    )


async def test_loop_reports_failures_and_continues() -> None:
    """A failing check is counted, passed to async and sync callbacks, and the next tick still runs."""
    outcomes: list[Any] = [
        RuntimeError("boom"),
        InsufficientBalanceError("empty", hint="deposit"),
        CheckOutcome(unsettled_fee=3, fee_source="local", spendable=9, top_up=_event(OG)),
    ]
    seen: list[Exception] = []
    top_ups: list[TopUpEvent] = []

    async def check() -> CheckOutcome:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, CheckOutcome)
        return item

    async def on_error(exc: Exception) -> None:
        seen.append(exc)

    funder = AutoFunder(
        PROVIDER, AutoFundingConfig(0.01, 0, 0), check, on_error=on_error, on_top_up=top_ups.append
    )
    await funder.tick()
    await funder.tick()
    stats = funder.stats()
    assert stats.errors == 2 and stats.consecutive_errors == 2 and stats.checks == 2
    assert stats.last_error == "InsufficientBalanceError: empty (hint: deposit)"
    assert [type(e) for e in seen] == [RuntimeError, InsufficientBalanceError]
    await funder.tick()
    stats = funder.stats()
    assert stats.consecutive_errors == 0 and stats.top_ups == 1 and stats.topped_up_total == OG
    assert stats.fee_fallbacks == 1 and stats.last_unsettled_fee == 3 and stats.last_spendable == 9
    assert top_ups == [_event(OG)]


async def test_loop_survives_callback_errors() -> None:
    """An exception in on_error is counted as a callback error and does not stop the loop."""

    async def check() -> CheckOutcome:
        raise RuntimeError("boom")

    calls = 0
    third = anyio.Event()

    def bad_callback(exc: Exception) -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            third.set()
        raise ValueError("callback bug")

    funder = AutoFunder(PROVIDER, AutoFundingConfig(0.01, 0, 0), check, on_error=bad_callback)
    async with anyio.create_task_group() as tg:
        await tg.start(funder.run)
        with anyio.fail_after(5):
            await third.wait()
        funder.scope.cancel()
    assert funder.callback_errors >= 3 and funder.done.is_set() and not funder.running


async def test_loop_checks_before_reporting_started() -> None:
    """run() reports started only after the first check, then waits an interval before the next."""
    calls: list[float] = []

    async def check() -> CheckOutcome:
        calls.append(anyio.current_time())
        return CheckOutcome(unsettled_fee=0, fee_source="provider", spendable=0)

    funder = AutoFunder(PROVIDER, AutoFundingConfig(60.0, 0, 0), check)
    async with anyio.create_task_group() as tg:
        await tg.start(funder.run)
        assert len(calls) == 1 and funder.running
        funder.scope.cancel()
    assert len(calls) == 1 and funder.done.is_set()


# -- the services against a fake world ------------------------------------------------------------


def _account(balance: int, *, pending: int = 0, acknowledged: bool = True, nonce: int = 0) -> Account:
    return Account(
        user="0x" + "00" * 20,
        provider=PROVIDER,
        nonce=nonce,
        balance=balance,
        pending_refund=pending,
        refunds=(),
        additional_info="",
        acknowledged=acknowledged,
        generation=0,
        revoked_bitmap=0,
    )


class World:
    """The chain as the funding code sees it, with slow transfers so that overlaps would show."""

    def __init__(self, *, ledger: int | None = 10 * OG, account: Account | None = None) -> None:
        self.ledger = (
            Ledger(user="0x" + "00" * 20, total=ledger, available=ledger) if ledger is not None else None
        )
        self.account = account
        self.transfers: list[int] = []
        self.ledgers: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.fee_status = 200
        self.fee = 0
        self.fee_requests = 0
        self.fee_growth = 0
        self.service = Service(
            provider=PROVIDER,
            service_type="chatbot",
            url="http://provider.test",
            input_price=1,
            output_price=1,
            updated_at=0,
            model="m",
            verifiability="TeeML",
            additional_info="",
            tee_signer_address="0x" + "22" * 20,
            tee_signer_acknowledged=True,
        )

    def receipt(self) -> TxReceipt:
        n = len(self.transfers) + len(self.ledgers)
        return TxReceipt(tx_hash="0x" + f"{n:064x}", block_number=n, gas_used=1, status=1)

    async def get_service(self, provider: str) -> Service:
        if provider != PROVIDER:
            raise ServiceNotExistError("no service", error_args={"provider": provider})
        return self.service

    async def get_ledger(self, user: str) -> Ledger:
        if self.ledger is None:
            raise LedgerNotExistsError("no ledger")
        return self.ledger

    async def get_ledger_or_none(self, user: str) -> Ledger | None:
        return self.ledger

    async def account_at(self, user: str, provider: str, block: int | None = None) -> Account | None:
        return self.account

    async def min_transfer_amount(self) -> int:
        return OG

    async def min_account_balance(self) -> int:
        return 3 * OG

    async def add_ledger(self, amount: int) -> TxReceipt:
        await anyio.sleep(0.01)
        self.ledgers.append(amount)
        self.ledger = Ledger(user="0x" + "00" * 20, total=amount, available=amount)
        return self.receipt()

    async def transfer_fund(self, provider: str, amount: int) -> TxReceipt:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.sleep(0.02)
        finally:
            self.in_flight -= 1
        assert self.ledger is not None
        if self.ledger.available < amount:
            raise InsufficientBalanceError("ledger too low", required=amount, available=self.ledger.available)
        self.transfers.append(amount)
        self.ledger = self.ledger.model_copy(update={"available": self.ledger.available - amount})
        old = self.account or _account(0)
        self.account = old.model_copy(update={"balance": old.balance + amount, "acknowledged": True})
        return self.receipt()

    def http_handler(self, request: httpx.Request) -> httpx.Response:
        self.fee_requests += 1
        assert request.url.path.endswith("/unsettledfee")
        assert request.headers["authorization"] == "Bearer fake"
        self.fee += self.fee_growth
        return httpx.Response(self.fee_status, json={"unsettledFee": str(self.fee)})

    async def get_request_headers(self, provider: str) -> dict[str, str]:
        return {"Authorization": "Bearer fake"}

    def forget(self, provider: str | None = None) -> None:
        return None


@dataclass
class Wired:
    """The funding services built on the fake world, in an open broker's task group."""

    broker: AsyncBroker
    inference: Any
    services: Any

    async def aclose(self) -> None:
        await self.broker.aclose()


@pytest.fixture
async def world_broker() -> AsyncIterator[tuple[World, Wired]]:
    """Funding services whose chain, ledger writes, auth and provider endpoint are the fake world."""
    world = World()
    http = httpx.AsyncClient(transport=httpx.MockTransport(world.http_handler))
    broker = AsyncBroker(KEY, network="hardhat", web3=FakeWeb3(FakeProvider()), http_client=http)  # type: ignore[arg-type]
    async with broker:
        wallet = Wallet(EthAccount.from_key(KEY), sender=object())  # type: ignore[arg-type]
        inference, services = wire_inference(broker, contracts=world, auth=world, ledger=world, wallet=wallet)
        yield world, Wired(broker, inference, services)
    await http.aclose()


async def test_ensure_ready_single_flight_with_fakes(world_broker: tuple[World, Wired]) -> None:
    """100 concurrent ensure_ready calls create the ledger once and transfer once."""
    world, broker = world_broker
    world.ledger = None
    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(lambda: broker.inference.ensure_ready(PROVIDER, create_ledger=True))
    assert world.ledgers == [3 * OG] and world.transfers == [2 * OG]


async def test_ensure_ready_and_auto_funding_never_overlap(world_broker: tuple[World, Wired]) -> None:
    """Top-ups by the loop and by ensure_ready for one provider run one at a time."""
    world, broker = world_broker
    world.account = _account(0)
    world.ledger = Ledger(user="0x" + "00" * 20, total=1000 * OG, available=1000 * OG)
    world.fee_growth = OG  # every fee read sees 1 OG more: every tick wants a top-up

    async def ready(i: int) -> None:
        await broker.inference.ensure_ready(PROVIDER, min_balance=50 * OG + i)

    await broker.inference.start_auto_funding(PROVIDER, interval=0.005, buffer=OG)
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(ready, i)
    await broker.inference.stop_auto_funding()
    assert world.max_in_flight == 1 and len(world.transfers) >= 20


async def test_auto_funding_falls_back_to_the_local_counter(world_broker: tuple[World, Wired]) -> None:
    """When the fee endpoint fails, the local fee counter decides the top-up and stats say so."""
    world, broker = world_broker
    world.account = _account(2 * OG)
    world.fee_status = 500
    broker.services.fees.add(PROVIDER, 5 * OG)  # what the request methods counted locally
    stats = await broker.inference.start_auto_funding(PROVIDER, interval=60, buffer=2 * OG)
    assert world.fee_requests == 1
    assert (
        stats.last_fee_source == "local" and stats.fee_fallbacks == 1 and stats.last_unsettled_fee == 5 * OG
    )
    assert world.transfers == [5 * OG]  # 5 + 2 - 2

    world.fee_status = 200
    world.fee = 8 * OG
    stats = await broker.inference.start_auto_funding(PROVIDER, interval=60, buffer=2 * OG)
    assert stats.last_fee_source == "provider" and world.transfers == [5 * OG, 3 * OG]  # 8 + 2 - 7


async def test_auto_funding_creates_a_missing_account_with_the_minimum(
    world_broker: tuple[World, Wired],
) -> None:
    """A missing sub-account is opened with at least MIN_TRANSFER_AMOUNT; the fee read falls back to 0."""
    world, broker = world_broker
    world.fee_status = 404
    stats = await broker.inference.start_auto_funding(
        PROVIDER, interval=60, buffer=og("0.2"), min_transfer=og("0.1")
    )
    assert world.transfers == [OG] and stats.top_ups == 1 and stats.last_unsettled_fee == 0


async def test_auto_funding_argument_checks(world_broker: tuple[World, Wired]) -> None:
    """Bad arguments and unknown providers raise at start; nothing runs."""
    _, broker = world_broker
    with pytest.raises(ConfigError):
        await broker.inference.start_auto_funding(PROVIDER, interval=0)
    with pytest.raises(ConfigError):
        await broker.inference.start_auto_funding(PROVIDER, buffer=1.5)  # type: ignore[arg-type]
    with pytest.raises(ServiceNotExistError):
        await broker.inference.start_auto_funding("0x" + "33" * 20)
    assert not broker.inference.has_auto_funding(PROVIDER)
    assert broker.inference.auto_funding_stats(PROVIDER) is None
    await broker.inference.stop_auto_funding(PROVIDER)  # nothing to stop: no error


async def test_stop_all_and_close_leave_no_task(world_broker: tuple[World, Wired]) -> None:
    """stop_auto_funding() ends the loop and waits for it; closing the broker ends a running one."""
    world, broker = world_broker
    world.account = _account(100 * OG)

    def tasks() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("og-auto-funding:")]

    await broker.inference.start_auto_funding(PROVIDER, interval=0.01)
    assert len(tasks()) == 1
    await broker.inference.stop_auto_funding()
    assert not broker.inference.has_auto_funding(PROVIDER) and tasks() == []
    await broker.inference.start_auto_funding(PROVIDER, interval=0.01)
    await broker.aclose()
    assert not broker.inference.has_auto_funding(PROVIDER) and tasks() == []


async def test_read_only_broker_cannot_fund() -> None:
    """A broker without a wallet refuses funding calls with ConfigError before any I/O."""
    async with AsyncBroker(network="hardhat", web3=FakeWeb3(FakeProvider())) as broker:  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            await broker.inference.ensure_ready(PROVIDER)
        with pytest.raises(ConfigError):
            await broker.inference.acknowledge_provider_signer(PROVIDER)
        with pytest.raises(ConfigError):
            await broker.inference.start_auto_funding(PROVIDER)
