"""broker.ledger on the devnet: the full ledger flow, concurrency from one wallet, and bad input."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anyio
import pytest

from og_inference_async import (
    AccountNotExistsError,
    AsyncBroker,
    BelowMinimumError,
    ConfigError,
    InsufficientBalanceError,
    InvalidAddressError,
    InvalidAmountError,
    LedgerExistsError,
    LedgerNotExistsError,
    MustWithdrawAllFundsFirstError,
    OGError,
    ServiceNotFoundError,
    og,
)

from .chain_helpers import register_provider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

OG = 10**18


def _broker(dn: Any, index: int = 1) -> AsyncBroker:
    return AsyncBroker(dn.accounts[index].private_key, network=dn.network)


async def _nonce(dn: Any, address: str) -> int:
    return int(await dn.rpc("eth_getTransactionCount", [address, "latest"]), 16)


async def test_ledger_lifecycle(devnet: Any) -> None:
    """Create, deposit, transfer, retrieve after the lock time, refund, and read named balances."""
    provider = await register_provider(devnet)
    async with _broker(devnet) as broker:
        receipt = await broker.ledger.add_ledger(og("3"))
        assert receipt.status == 1 and receipt.gas_used > 0
        ledger = await broker.ledger.get_ledger()
        assert (ledger.total, ledger.available, ledger.locked) == (3 * OG, 3 * OG, 0)

        await broker.ledger.deposit_fund(Decimal("1.5"))
        assert (await broker.ledger.get_ledger()).total == og("4.5")

        receipt = await broker.ledger.transfer_fund(provider, og("2"))
        assert receipt.events_named("BalanceUpdated")
        ledger = await broker.ledger.get_ledger()
        assert (ledger.available, ledger.locked) == (og("2.5"), 2 * OG)
        account = await broker.ledger.get_account(provider)
        assert account.acknowledged and account.balance == 2 * OG and account.generation == 0
        balances = await broker.ledger.get_providers_with_balance()
        assert [(b.provider, b.balance) for b in balances] == [(provider, 2 * OG)]

        (first,) = await broker.ledger.retrieve_fund()
        assert first.events_named("RefundRequested")
        account = await broker.ledger.get_account(provider)
        assert account.pending_refund == 2 * OG and len(account.refunds) == 1

        await devnet.increase_time(86400 + 1)
        await devnet.mine()
        await broker.ledger.retrieve_fund_from_provider(provider)
        ledger = await broker.ledger.get_ledger()
        assert ledger.available == og("4.5")

        await broker.ledger.refund(og("1.5"))
        assert (await broker.ledger.get_ledger()).available == 3 * OG


async def test_deposit_for_another_address_and_delete(devnet: Any) -> None:
    """deposit_fund_for creates the recipient's ledger; an empty ledger can be deleted."""
    recipient = devnet.accounts[3]
    async with _broker(devnet) as broker:
        await broker.ledger.deposit_fund_for(recipient.address, og("3"))
        assert (await broker.ledger.get_ledger(recipient.address)).total == 3 * OG
    async with _broker(devnet, 3) as other:
        with pytest.raises(MustWithdrawAllFundsFirstError):
            await other.ledger.delete_ledger()
        await other.ledger.refund(og("3"))  # empties the total: the contract deletes the ledger
        assert not await other.ledger.has_ledger()


async def test_minimums_are_read_from_chain(devnet: Any) -> None:
    """MIN_ACCOUNT_BALANCE and MIN_TRANSFER_AMOUNT come from the contract."""
    async with _broker(devnet) as broker:
        assert await broker.ledger.get_min_balances() == (3 * OG, 1 * OG)


async def test_twenty_concurrent_transfers_from_one_wallet(devnet: Any) -> None:
    """20 coroutines transfer to 20 providers from ONE wallet at once; all land, no nonce error."""
    providers = [await register_provider(devnet) for _ in range(20)]
    async with _broker(devnet, 2) as broker:
        await broker.ledger.add_ledger(og("25"))
        results: dict[str, Any] = {}

        async def send(p: str) -> None:
            results[p] = await broker.ledger.transfer_fund(p, og("1"))

        async with anyio.create_task_group() as tg:
            for p in providers:
                tg.start_soon(send, p)
        assert len(results) == 20 and all(r.status == 1 for r in results.values())
        ledger = await broker.ledger.get_ledger()
        assert ledger.available == 5 * OG and ledger.locked == 20 * OG
        assert len(await broker.ledger.get_providers_with_balance()) == 20


async def test_bad_input_is_refused_before_sending(devnet: Any) -> None:
    """Every bad input raises a typed error and the account nonce proves nothing was sent."""
    provider = await register_provider(devnet)
    me = devnet.accounts[4]
    async with _broker(devnet, 4) as broker:
        ledger = broker.ledger
        cases: list[tuple[Any, type[OGError]]] = [
            (lambda: ledger.add_ledger(3.0), InvalidAmountError),
            (lambda: ledger.add_ledger(-1), InvalidAmountError),
            (lambda: ledger.add_ledger(0), InvalidAmountError),
            (lambda: ledger.add_ledger("three"), InvalidAmountError),
            (lambda: ledger.add_ledger("2.99"), BelowMinimumError),
            (lambda: ledger.add_ledger(og("3"), "x" * 5000), ConfigError),
            (lambda: ledger.add_ledger(og("2000000")), InsufficientBalanceError),
            (lambda: ledger.deposit_fund(og("1")), BelowMinimumError),
            (lambda: ledger.deposit_fund_for("0x1234", og("3")), InvalidAddressError),
            (lambda: ledger.deposit_fund_for("0x" + "00" * 20, og("3")), InvalidAddressError),
            (lambda: ledger.transfer_fund(provider, og("1")), LedgerNotExistsError),
            (lambda: ledger.refund(og("1")), LedgerNotExistsError),
            (lambda: ledger.delete_ledger(), LedgerNotExistsError),
            (lambda: ledger.transfer_fund("not-an-address", og("1")), InvalidAddressError),
            (lambda: ledger.transfer_fund(me.address, og("1")), InvalidAddressError),
            (lambda: ledger.add_ledger(True), InvalidAmountError),
            (lambda: ledger.add_ledger("0.0000000000000000001"), InvalidAmountError),
        ]
        before = await _nonce(devnet, me.address)
        for make, expected in cases:
            with pytest.raises(expected):
                await make()
        assert await _nonce(devnet, me.address) == before

        await ledger.add_ledger(og("4"))
        after_create = await _nonce(devnet, me.address)
        more: list[tuple[Any, type[OGError]]] = [
            (lambda: ledger.add_ledger(og("3")), LedgerExistsError),
            (lambda: ledger.transfer_fund(provider, og("0.5")), BelowMinimumError),
            (lambda: ledger.transfer_fund(provider, og("5")), InsufficientBalanceError),
            (lambda: ledger.transfer_fund(devnet.accounts[5].address, og("1")), ServiceNotFoundError),
            (lambda: ledger.refund(og("5")), InsufficientBalanceError),
            (lambda: ledger.refund(og("2")), BelowMinimumError),
            (lambda: ledger.retrieve_fund_from_provider(provider), AccountNotExistsError),
            (lambda: ledger.retrieve_fund([provider, provider]), ConfigError),
            (lambda: ledger.delete_ledger(), MustWithdrawAllFundsFirstError),
        ]
        for make, expected in more:
            with pytest.raises(expected):
                await make()
        assert await _nonce(devnet, me.address) == after_create
