"""``broker.ledger``: the prepaid ledger and the provider sub-accounts.

Every write checks what can be checked first (addresses, amounts, on-chain minimums, balances,
existence) and raises a typed error without sending anything. Amounts are ``int`` wei or
``Decimal`` / ``str`` OG (see :func:`og_inference_async.og`); floats are refused.

Other 0G SDKs name the service a sub-account belongs to (``transfer_fund(p, "inference", n)``,
``retrieve_fund("inference")``); this SDK serves inference only, so those forms are accepted with
``"inference"`` and mean the same as leaving the name out. The money-over-time methods of
``broker.inference`` (``wait_settled``, ``get_refunds``, ``complete_refunds``) are here too.

Every write that changes a provider sub-account (``transfer_fund``, ``retrieve_fund*``, a
``refund`` that deletes the ledger, ``delete_ledger``) drops what ``broker.inference`` cached
about that account (account reads, acknowledgement, "no sub-account", session tokens) once the
transaction was sent, whatever its outcome, so the next request sees the new state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

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
from .inference._facade import _Delegate
from .inference.settlement import SettlementService
from .types import Account, Ledger, ProviderBalance, TxReceipt

if TYPE_CHECKING:
    from ._chain import ChainReader
    from .inference import InferenceServices

__all__ = ["LedgerAPI", "ServiceType"]

#: The service a sub-account belongs to, as the TS SDK and 0g-inference-sdk name it.
ServiceType = Literal["inference"]

_NOT_SERVED = ("fine-tuning", "fineTuning", "fine_tuning")
_MISSING: Any = object()

MAX_ADDITIONAL_INFO = 4096
RETRIEVE_BATCH = 20

T = TypeVar("T")


def _check_service_type(value: Any) -> None:
    """Accept ``"inference"``; refuse other service names with a ``ConfigError``."""
    if value == "inference":
        return
    if isinstance(value, str) and value in _NOT_SERVED:
        raise ConfigError(
            f"og-inference-async serves inference only; {value!r} sub-accounts are not supported"
        )
    raise ConfigError(f"service_type must be 'inference', got {shown(value)}")


def _is_service_type(value: Any) -> bool:
    return isinstance(value, str) and (value == "inference" or value in _NOT_SERVED)


def _transfer_amount(args: tuple[Any, ...], amount: Any, service_type: Any) -> Amount:
    """The amount of ``transfer_fund(provider, [service_type,] amount)``, the service type checked."""
    if len(args) > 2:
        raise ConfigError(
            f"transfer_fund takes (provider, [service_type,] amount), got {len(args) + 1} arguments"
        )
    if len(args) == 2 or (len(args) == 1 and amount is not _MISSING):
        if service_type is not None:
            raise ConfigError("service_type is given twice")
        service_type, args = args[0], args[1:]
    if args:
        if amount is not _MISSING:
            raise ConfigError("amount is given twice")
        amount = args[0]
    if service_type is not None:
        _check_service_type(service_type)
    if amount is _MISSING:
        raise ConfigError("transfer_fund needs an amount: transfer_fund(provider, amount)")
    if _is_service_type(amount):
        raise ConfigError(f"transfer_fund(provider, {amount!r}) needs an amount after the service type")
    result: Amount = amount
    return result


def _no_services() -> InferenceServices:
    raise ConfigError("this ledger namespace was built without the inference services")


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
        services: returns the open broker's inference services (for the money-over-time
            methods shared with ``broker.inference``).
    """

    def __init__(
        self,
        contracts: ChainReader,
        wallet: Wallet,
        *,
        forget: Callable[[str | None], None],
        services: Callable[[], InferenceServices] | None = None,
    ) -> None:
        self._contracts = contracts
        self._wallet = wallet
        self._forget = forget
        self._s = services or _no_services
        self._state = self._s
        self._emptied_by: str | None = None  # the refund that emptied (and so deleted) the ledger

    # -- money over time (the same methods as broker.inference's) ------------------------------

    wait_settled = _Delegate("settlement", SettlementService.wait_settled)
    get_refunds = _Delegate("settlement", SettlementService.get_refunds)
    complete_refunds = _Delegate("settlement", SettlementService.complete_refunds)

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

    async def get_providers_with_balance(
        self, service_type: ServiceType = "inference"
    ) -> list[ProviderBalance]:
        """Every provider this wallet has an inference sub-account with, and what sits there.

        Args:
            service_type: ``"inference"`` (the TS SDK's argument; the only service served).
        """
        _check_service_type(service_type)
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
        receipt = await chain.add_ledger(sender, info, wei)
        self._emptied_by = None
        return receipt

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
        receipt = await self._contracts.deposit_fund(sender, wei)
        self._emptied_by = None
        return receipt

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

    @overload
    async def transfer_fund(self, provider: str, amount: Amount) -> TxReceipt: ...

    @overload
    async def transfer_fund(self, provider: str, service_type: ServiceType, amount: Amount) -> TxReceipt: ...

    async def transfer_fund(
        self, provider: str, *args: Any, amount: Any = _MISSING, service_type: Any = None
    ) -> TxReceipt:
        """Move funds from the ledger into ``provider``'s inference sub-account.

        The first transfer to a provider opens the sub-account (at least ``MIN_TRANSFER_AMOUNT``)
        and acknowledges its TEE signer. The service name is resolved on chain.

        Called as ``transfer_fund(provider, amount)``, or as the TS SDK and 0g-inference-sdk
        write it, ``transfer_fund(provider, "inference", amount)``.

        Raises:
            ConfigError: a service type other than ``"inference"``, or no amount.
            InvalidAddressError: malformed or zero provider, or the provider is this wallet.
            InvalidAmountError: float, negative or zero amount.
            ServiceNotFoundError: the provider has no inference service on this network.
            LedgerNotExistsError: this wallet has no ledger.
            BelowMinimumError: a new sub-account needs at least ``MIN_TRANSFER_AMOUNT``.
            InsufficientBalanceError: the ledger's available balance is too low.
        """
        prov = checksum(provider, what="provider")
        wei = _positive(_transfer_amount(args, amount, service_type))
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

    async def retrieve_fund(
        self, providers: list[str] | ServiceType | None = None, *, service_type: ServiceType | None = None
    ) -> list[TxReceipt]:
        """Request refunds from providers and collect matured ones (batches of 20 per transaction).

        Retrieving takes two calls separated by the lock time: the first schedules refunds of
        each sub-account's spendable balance, a later one pays matured refunds back into the
        ledger's available balance.

        Args:
            providers: the providers to retrieve from (default: every provider with a sub-account);
                ``"inference"`` (the TS SDK's ``retrieveFund('inference')``) means every provider.
            service_type: ``"inference"`` (0g-inference-sdk's keyword), the same as leaving it out.

        Returns:
            One receipt per batch (empty when there is nothing to retrieve).

        Raises:
            ConfigError: ``providers`` is not a list of distinct addresses.
            InvalidAddressError: a malformed provider address.
            LedgerNotExistsError: this wallet has no ledger.
            AccountNotExistsError: a provider given explicitly has no sub-account.
        """
        if service_type is not None:
            _check_service_type(service_type)
        if _is_service_type(providers):
            _check_service_type(providers)
            providers = None
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

    async def retrieve_fund_from_provider(
        self, provider: str, service_type: ServiceType = "inference"
    ) -> TxReceipt:
        """:meth:`retrieve_fund` for one provider (``service_type``: the TS SDK's argument, "inference")."""
        _check_service_type(service_type)
        (receipt,) = await self.retrieve_fund([provider])
        return receipt

    async def refund(self, amount: Amount) -> TxReceipt:
        """Withdraw from the ledger's available balance back to the wallet.

        What remains available must be zero or at least ``MIN_ACCOUNT_BALANCE``. A refund that
        empties the ledger's total deletes it together with its sub-accounts (no
        :meth:`delete_ledger` needed after it).

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
            receipt = await self._touching(None, send)
            self._emptied_by = receipt.tx_hash
            return receipt
        return await send

    async def delete_ledger(self) -> TxReceipt:
        """Delete this wallet's (empty) ledger.

        Raises:
            LedgerNotExistsError: no ledger; its message says whether a refund of the whole
                balance already deleted it (then there is nothing left to do).
            MustWithdrawAllFundsFirstError: the ledger still holds funds.
        """
        sender = self._wallet.require_sender()
        try:
            ledger = await self.get_ledger()
        except LedgerNotExistsError as exc:
            raise self._nothing_to_delete(sender.address, exc) from exc
        if ledger.total != 0:
            raise MustWithdrawAllFundsFirstError(
                f"the ledger still holds {format_og(ledger.total)} OG",
                error_args={"totalBalance": ledger.total},
            )
        return await self._touching(None, self._contracts.delete_ledger(sender))

    # -- checks ----------------------------------------------------------------------------------

    def _nothing_to_delete(self, user: str, cause: LedgerNotExistsError) -> LedgerNotExistsError:
        """The error of ``delete_ledger`` without a ledger: what happened, not how to create one."""
        if self._emptied_by is not None:
            message = (
                f"{user} has no ledger to delete: the refund {self._emptied_by} withdrew its whole "
                "balance, and the contract deleted the ledger with its sub-accounts then"
            )
        else:
            message = (
                f"{user} has no ledger to delete: it was never created, or a refund of its whole "
                "balance already deleted it (the contract deletes an emptied ledger)"
            )
        return LedgerNotExistsError(
            message,
            error_args=cause.error_args,
            selector=cause.selector,
            data=cause.data,
            hint="nothing is left to delete; ledger.add_ledger creates a new ledger when you need one",
        )

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
