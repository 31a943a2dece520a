"""``broker.ledger``: the prepaid ledger and the provider sub-accounts.

Every write checks what can be checked first (addresses, amounts, on-chain minimums, balances,
existence) and raises a typed error without sending anything. Amounts are ``int`` wei or
``Decimal`` / ``str`` OG (see :func:`og_inference_async.og`); floats are refused.

Every write that changes a provider sub-account (``transfer_fund``, ``retrieve_fund*``, a
``refund`` that deletes the ledger, ``delete_ledger``) drops what ``broker.inference`` cached
about that account (account reads, acknowledgement, "no sub-account", session tokens) once the
transaction was sent, whatever its outcome, so the next request sees the new state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ._config import checksum
from ._exceptions import (
    AccountNotExistsError,
    BelowMinimumError,
    ConfigError,
    InsufficientBalanceError,
    InvalidAddressError,
    InvalidAmountError,
    LedgerExistsError,
    LedgerNotExistsError,
    MustWithdrawAllFundsFirstError,
)
from ._runtime import Wallet
from ._units import Amount, format_og, to_wei
from ._validate import shown
from .types import Account, Ledger, ProviderBalance, TxReceipt

if TYPE_CHECKING:
    from ._chain import ChainReader

__all__ = ["LedgerAPI"]

MAX_ADDITIONAL_INFO = 4096
RETRIEVE_BATCH = 20

T = TypeVar("T")


def _positive(amount: Amount, what: str = "amount") -> int:
    wei = to_wei(amount)
    if wei == 0:
        raise InvalidAmountError(f"{what} must be greater than zero")
    return wei


class LedgerAPI:
    """Ledger operations of one broker. Get it as ``broker.ledger``.

    Args:
        contracts: the chain's contracts.
        wallet: the user's wallet (address, transaction sender).
        forget: drops what the inference caches hold about one provider's sub-account (``None``:
            all); called after every write that may have changed one.
    """

    def __init__(
        self, contracts: ChainReader, wallet: Wallet, *, forget: Callable[[str | None], None]
    ) -> None:
        self._contracts = contracts
        self._wallet = wallet
        self._forget = forget

    async def _touching(self, providers: Iterable[str] | None, send: Awaitable[T]) -> T:
        """Await the write ``send``, then drop the inference caches of ``providers`` (``None``: all).

        The caches are dropped whatever the outcome (mined, reverted, unknown): a transaction
        that may have changed an account must not leave a stale answer behind.
        """
        try:
            return await send
        finally:
            if providers is None:
                self._forget(None)
            else:
                for provider in providers:
                    self._forget(provider)

    # -- reads ---------------------------------------------------------------------------------

    async def get_ledger(self, user: str | None = None) -> Ledger:
        """The ledger of ``user`` (default: this wallet) with named balances.

        Raises:
            LedgerNotExistsError: the user has no ledger.
        """
        who = checksum(user, what="user") if user is not None else self._wallet.address
        return await self._contracts.get_ledger(who)

    async def has_ledger(self, user: str | None = None) -> bool:
        """Whether ``user`` (default: this wallet) has a ledger."""
        try:
            await self.get_ledger(user)
        except LedgerNotExistsError:
            return False
        return True

    async def get_min_balances(self) -> tuple[int, int]:
        """``(MIN_ACCOUNT_BALANCE, MIN_TRANSFER_AMOUNT)`` read from the chain, in wei."""
        chain = self._contracts
        return await chain.min_account_balance(), await chain.min_transfer_amount()

    async def get_providers_with_balance(self) -> list[ProviderBalance]:
        """Every provider this wallet has an inference sub-account with, and what sits there."""
        return await self._contracts.get_provider_balances(self._wallet.address)

    async def get_account(self, provider: str) -> Account:
        """This wallet's sub-account with ``provider``.

        Raises:
            AccountNotExistsError: there is no sub-account yet.
        """
        return await self._contracts.get_account(self._wallet.address, checksum(provider, what="provider"))

    # -- writes --------------------------------------------------------------------------------

    async def add_ledger(self, amount: Amount, additional_info: str = "") -> TxReceipt:
        """Create this wallet's ledger with an initial deposit (at least ``MIN_ACCOUNT_BALANCE``).

        Raises:
            InvalidAmountError: float, negative or zero amount.
            BelowMinimumError: below the on-chain minimum.
            LedgerExistsError: the ledger already exists (use :meth:`deposit_fund`).
            InsufficientBalanceError: the wallet cannot pay it.
        """
        wei = _positive(amount)
        info = self._check_info(additional_info)
        sender = self._wallet.require_sender()
        chain = self._contracts
        minimum = await chain.min_account_balance()
        if wei < minimum:
            raise BelowMinimumError(
                f"a new ledger needs at least {format_og(minimum)} OG, got {format_og(wei)} OG",
                amount=wei,
                minimum=minimum,
            )
        if await self.has_ledger():
            raise LedgerExistsError(
                f"the ledger of {sender.address} already exists", error_args={"user": sender.address}
            )
        await self._check_wallet(wei)
        return await chain.add_ledger(sender, info, wei)

    async def deposit_fund(self, amount: Amount) -> TxReceipt:
        """Add funds to this wallet's ledger (creating it when the amount reaches the minimum).

        Raises:
            InvalidAmountError: float, negative or zero amount.
            BelowMinimumError: there is no ledger yet and the amount is below ``MIN_ACCOUNT_BALANCE``.
            InsufficientBalanceError: the wallet cannot pay it.
        """
        wei = _positive(amount)
        sender = self._wallet.require_sender()
        await self._check_new_ledger_minimum(sender.address, wei)
        await self._check_wallet(wei)
        return await self._contracts.deposit_fund(sender, wei)

    async def deposit_fund_for(self, recipient: str, amount: Amount) -> TxReceipt:
        """Deposit into another address's ledger (creating it when the amount reaches the minimum).

        Raises:
            InvalidAddressError: malformed or zero recipient.
            InvalidAmountError: float, negative or zero amount.
            BelowMinimumError: the recipient has no ledger and the amount is below the minimum.
            InsufficientBalanceError: the wallet cannot pay it.
        """
        to = checksum(recipient, what="recipient")
        wei = _positive(amount)
        sender = self._wallet.require_sender()
        await self._check_new_ledger_minimum(to, wei)
        await self._check_wallet(wei)
        return await self._contracts.deposit_fund_for(sender, to, wei)

    async def transfer_fund(self, provider: str, amount: Amount) -> TxReceipt:
        """Move funds from the ledger into ``provider``'s inference sub-account.

        The first transfer to a provider opens the sub-account (at least ``MIN_TRANSFER_AMOUNT``)
        and acknowledges its TEE signer. The service name is resolved on chain.

        Raises:
            InvalidAddressError: malformed or zero provider, or the provider is this wallet.
            InvalidAmountError: float, negative or zero amount.
            ServiceNotFoundError: the provider has no inference service on this network.
            LedgerNotExistsError: this wallet has no ledger.
            BelowMinimumError: a new sub-account needs at least ``MIN_TRANSFER_AMOUNT``.
            InsufficientBalanceError: the ledger's available balance is too low.
        """
        prov = checksum(provider, what="provider")
        wei = _positive(amount)
        sender = self._wallet.require_sender()
        if prov == sender.address:
            raise InvalidAddressError("the provider must not be this wallet's own address")
        chain = self._contracts
        minimum = await chain.min_transfer_amount()
        state = await chain.transfer_state(sender.address, prov)
        ledger = state.ledger
        cancel = 0
        if state.account is None:
            if wei < minimum:
                raise BelowMinimumError(
                    f"the first transfer to a provider needs at least {format_og(minimum)} OG, "
                    f"got {format_og(wei)} OG",
                    amount=wei,
                    minimum=minimum,
                )
        else:
            cancel = min(wei, state.account.pending_refund)
        needed = wei - cancel
        if ledger.available < needed:
            raise InsufficientBalanceError(
                f"the ledger has {format_og(ledger.available)} OG available, the transfer needs "
                f"{format_og(needed)} OG",
                required=needed,
                available=ledger.available,
                hint="deposit more with broker.ledger.deposit_fund",
            )
        return await self._touching([prov], chain.transfer_fund(sender, prov, wei))

    async def retrieve_fund(self, providers: list[str] | None = None) -> list[TxReceipt]:
        """Request refunds from providers and collect matured ones (batches of 20 per transaction).

        Retrieving takes two calls separated by the lock time: the first schedules refunds of
        each sub-account's spendable balance, a later one pays matured refunds back into the
        ledger's available balance.

        Args:
            providers: the providers to retrieve from (default: every provider with a sub-account).

        Returns:
            One receipt per batch (empty when there is nothing to retrieve).

        Raises:
            ConfigError: ``providers`` is not a list of distinct addresses.
            InvalidAddressError: a malformed provider address.
            LedgerNotExistsError: this wallet has no ledger.
            AccountNotExistsError: a provider given explicitly has no sub-account.
        """
        sender = self._wallet.require_sender()
        chain = self._contracts
        if providers is None:
            await self.get_ledger()
            targets = await chain.get_ledger_providers(sender.address)
        else:
            if isinstance(providers, (str, bytes, bytearray)) or not isinstance(providers, (list, tuple)):
                raise ConfigError(f"providers must be a list of addresses (or None), got {shown(providers)}")
            targets = [checksum(p, what="provider") for p in providers]
            if len(set(targets)) != len(targets):
                raise ConfigError("the provider list contains duplicates")
            for p in targets:
                if not await chain.account_exists(sender.address, p):
                    raise AccountNotExistsError(
                        f"no sub-account with provider {p}",
                        error_args={"user": sender.address, "provider": p},
                    )
        receipts: list[TxReceipt] = []
        for i in range(0, len(targets), RETRIEVE_BATCH):
            batch = targets[i : i + RETRIEVE_BATCH]
            send = chain.retrieve_fund(sender, batch)
            receipts.append(await self._touching(batch, send))
        return receipts

    async def retrieve_fund_from_provider(self, provider: str) -> TxReceipt:
        """:meth:`retrieve_fund` for one provider."""
        (receipt,) = await self.retrieve_fund([provider])
        return receipt

    async def refund(self, amount: Amount) -> TxReceipt:
        """Withdraw from the ledger's available balance back to the wallet.

        What remains available must be zero or at least ``MIN_ACCOUNT_BALANCE``. A refund that
        empties the ledger's total deletes it together with its sub-accounts.

        Raises:
            InvalidAmountError: float, negative or zero amount.
            LedgerNotExistsError: no ledger.
            InsufficientBalanceError: more than the available balance.
            BelowMinimumError: what would remain is below the minimum but not zero.
        """
        wei = _positive(amount)
        sender = self._wallet.require_sender()
        chain = self._contracts
        ledger = await self.get_ledger()
        if ledger.available < wei:
            raise InsufficientBalanceError(
                f"the ledger has {format_og(ledger.available)} OG available, "
                f"cannot refund {format_og(wei)} OG",
                required=wei,
                available=ledger.available,
                hint="retrieve funds from providers first (retrieve_fund), then wait for the lock time",
            )
        minimum = await chain.min_account_balance()
        remaining = ledger.available - wei
        if remaining != 0 and remaining < minimum:
            raise BelowMinimumError(
                f"the refund would leave {format_og(remaining)} OG available; leave 0 or at least "
                f"{format_og(minimum)} OG",
                amount=remaining,
                minimum=minimum,
            )
        send = chain.refund(sender, wei)
        if ledger.total == wei:  # the ledger empties: the contract deletes it with its sub-accounts
            return await self._touching(None, send)
        return await send

    async def delete_ledger(self) -> TxReceipt:
        """Delete this wallet's (empty) ledger.

        Raises:
            LedgerNotExistsError: no ledger.
            MustWithdrawAllFundsFirstError: the ledger still holds funds.
        """
        sender = self._wallet.require_sender()
        ledger = await self.get_ledger()
        if ledger.total != 0:
            raise MustWithdrawAllFundsFirstError(
                f"the ledger still holds {format_og(ledger.total)} OG",
                error_args={"totalBalance": ledger.total},
            )
        return await self._touching(None, self._contracts.delete_ledger(sender))

    # -- checks ----------------------------------------------------------------------------------

    @staticmethod
    def _check_info(info: Any) -> str:
        if not isinstance(info, str):
            raise ConfigError("additional_info must be a str")
        if len(info.encode("utf-8")) > MAX_ADDITIONAL_INFO:
            raise ConfigError(f"additional_info is longer than {MAX_ADDITIONAL_INFO} bytes")
        return info

    async def _check_new_ledger_minimum(self, user: str, wei: int) -> None:
        if await self.has_ledger(user):
            return
        minimum = await self._contracts.min_account_balance()
        if wei < minimum:
            raise BelowMinimumError(
                f"{user} has no ledger yet; the first deposit needs at least {format_og(minimum)} OG, "
                f"got {format_og(wei)} OG",
                amount=wei,
                minimum=minimum,
            )

    async def _check_wallet(self, wei: int) -> None:
        balance = await self._contracts.wallet_balance(self._wallet.address)
        if balance < wei:
            raise InsufficientBalanceError(
                f"the wallet holds {format_og(balance)} OG, needs {format_og(wei)} OG plus gas",
                required=wei,
                available=balance,
                hint="fund the wallet with native 0G",
            )
