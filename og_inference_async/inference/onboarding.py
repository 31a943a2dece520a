"""Onboarding: acknowledge a provider's TEE signer, and make a wallet ready to use a provider.

Both check everything they can first and send only what is missing. ``ensure_ready`` is
single-flight: concurrent callers with the same arguments share one run (one set of
transactions); every top-up holds the provider's lock (see ``_accounts``), so onboarding and
auto-funding never send two top-ups for the same shortfall.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from .._config import checksum
from .._exceptions import BelowMinimumError, ConfigError, InsufficientBalanceError
from .._singleflight import SingleFlight
from .._units import WEI_PER_OG, Amount, format_og, to_wei
from ..types.funding import AckResult, AckStatus, ReadyAction, ReadyActionKind, ReadyReport
from ._accounts import AccountKeeper

if TYPE_CHECKING:
    from .._chain import ChainReader

__all__ = ["DEFAULT_MIN_BALANCE", "PROVIDER_RESERVE", "OnboardingService"]

log = logging.getLogger(__name__)

#: ``ensure_ready``'s default spendable balance: 2 OG (the provider keeps 1 OG in reserve).
DEFAULT_MIN_BALANCE = 2 * WEI_PER_OG
#: What a provider keeps in reserve above the fees it serves (``MIN_LOCKED_BALANCE``, PROTOCOL 2.6):
#: it refuses a request (402) unless ``balance - pendingRefund >= unsettled + fee + 1 OG``.
PROVIDER_RESERVE = WEI_PER_OG


class OnboardingService:
    """Acknowledgement and readiness for one wallet.

    Args:
        contracts: the chain's contracts (on-chain minimums).
        keeper: sub-account reads, locks and the top-up transactions.
    """

    def __init__(self, contracts: ChainReader, keeper: AccountKeeper) -> None:
        self._contracts = contracts
        self._keeper = keeper
        self._flights: SingleFlight[tuple[str, int, bool, int | None], ReadyReport] = SingleFlight()

    async def acknowledge_provider_signer(
        self, provider: str, *, initial_amount: Amount | None = None
    ) -> AckResult:
        """Acknowledge ``provider``'s TEE signer for this wallet, opening the sub-account if needed.

        Idempotent: an acknowledged provider costs two reads and no transaction. Without a
        sub-account, one is opened from the ledger (one ``transferFund``; the contract
        acknowledges it in the same transaction, so no second one is sent) with:

        - by default, ``max(2 OG, MIN_TRANSFER_AMOUNT + 1 OG)``: the provider keeps a 1 OG
          reserve (it answers 402 unless ``balance - pendingRefund >= unsettled fees + fee +
          1 OG``), so the on-chain minimum alone (1 OG on mainnet and the devnet) would let no
          request through; 2 OG leaves 1 OG to spend, as the official TS SDK's inline top-up;
        - with ``initial_amount``, ``max(initial_amount, MIN_TRANSFER_AMOUNT)`` (less than
          minimum + 1 OG opens the account but the provider refuses requests until topped up).

        An existing, unacknowledged sub-account gets ``acknowledgeTEESigner(provider, true)``
        (its balance is left as it is). The cached account reads and session tokens for the
        provider are dropped afterwards.

        Args:
            provider: the provider address.
            initial_amount: what to fund a new sub-account with (``int`` wei, or ``Decimal`` /
                ``str`` OG); raised to the on-chain minimum; default: see above. Ignored when
                the account exists.

        Returns:
            The status (``created_account`` / ``acknowledged`` / ``already_acknowledged``), the
            transaction hashes, and a warning when 0G has not acknowledged the provider's signer.

        Raises:
            InvalidAddressError: malformed provider.
            InvalidAmountError: bad ``initial_amount``.
            ConfigError: the broker is read-only.
            ServiceNotFoundError: the provider has no service on this network.
            LedgerNotExistsError: a sub-account must be opened and there is no ledger.
            InsufficientBalanceError: the ledger cannot fund the new sub-account.
        """
        prov = checksum(provider, what="provider")
        initial = to_wei(initial_amount) if initial_amount is not None else None
        self._keeper.wallet.require_sender()  # fail early on a read-only broker
        async with self._keeper.lock(prov):
            return await self._acknowledge(prov, initial)

    async def _acknowledge(self, prov: str, initial: int | None) -> AckResult:
        service = await self._keeper.service(prov)
        warning = self._keeper.tee_warning(service)
        warnings = (warning,) if warning else ()
        account = await self._keeper.fresh_account(prov)
        status: AckStatus
        amount = 0
        if account is None:
            minimum = await self._contracts.min_transfer_amount()
            if initial is None:
                amount = max(DEFAULT_MIN_BALANCE, minimum + PROVIDER_RESERVE)
            else:
                amount = max(initial, minimum)
            receipt = await self._keeper.transfer(prov, amount)
            status = "created_account"
        elif account.acknowledged:
            await self._keeper.auth.read_account(prov, fresh=True)
            return AckResult(
                provider=prov,
                status="already_acknowledged",
                tee_signer_acknowledged=service.tee_signer_acknowledged,
                warnings=warnings,
            )
        else:
            receipt = await self._keeper.acknowledge(prov)
            status = "acknowledged"
        self._keeper.auth.forget(prov)
        log.info("provider %s: %s (%s)", prov, status, receipt.tx_hash)
        return AckResult(
            provider=prov,
            status=status,
            tx_hashes=(receipt.tx_hash,),
            amount=amount,
            tee_signer_acknowledged=service.tee_signer_acknowledged,
            warnings=warnings,
        )

    # -- ensure_ready ----------------------------------------------------------------------------

    async def ensure_ready(
        self,
        provider: str,
        *,
        min_balance: Amount = DEFAULT_MIN_BALANCE,
        create_ledger: bool = False,
        ledger_amount: Amount | None = None,
    ) -> ReadyReport:
        """Make this wallet ready to use ``provider``: ledger, funded sub-account, acknowledgement.

        Checks everything it can first, then sends only what is missing:

        1. the ledger, created only when ``create_ledger`` is true (with ``ledger_amount``,
           default ``max(MIN_ACCOUNT_BALANCE, what step 2 needs)``); an existing ledger is
           used as it is (``ledger_amount`` is then ignored; nothing is deposited);
        2. the sub-account's spendable balance (``balance - pendingRefund``) raised to
           ``min_balance``: a new sub-account gets ``max(min_balance, MIN_TRANSFER_AMOUNT)``, an
           existing one only the shortfall (pending refunds are cancelled first, so less may
           leave the ledger); transfers acknowledge on chain;
        3. an ``acknowledgeTEESigner`` transaction only if the account is still unacknowledged.

        Concurrent calls with the same arguments share one run (one set of transactions), and
        it never overlaps a top-up by auto-funding for the same provider. The unsettled fees
        are not considered here: use :meth:`start_auto_funding` to follow usage.

        Args:
            provider: the provider address.
            min_balance: the spendable balance to reach (``int`` wei or ``Decimal`` / ``str`` OG;
                default 2 OG).
            create_ledger: create the ledger when it does not exist.
            ledger_amount: the deposit for a new ledger.

        Returns:
            The transactions sent (kind, amount, hash) and the balances afterwards.

        Raises:
            InvalidAddressError: malformed provider.
            InvalidAmountError: bad ``min_balance`` or ``ledger_amount``.
            ConfigError: the broker is read-only.
            ServiceNotFoundError: the provider has no service on this network.
            LedgerNotExistsError: no ledger and ``create_ledger`` is false.
            BelowMinimumError: ``ledger_amount`` is below ``MIN_ACCOUNT_BALANCE``.
            InsufficientBalanceError: the ledger (or ``ledger_amount``, or the wallet) cannot
                cover what is needed.
        """
        prov = checksum(provider, what="provider")
        minimum = to_wei(min_balance)
        ledger_wei = to_wei(ledger_amount) if ledger_amount is not None else None
        if not isinstance(create_ledger, bool):
            raise ConfigError("create_ledger must be a bool")
        self._keeper.wallet.require_sender()  # fail early on a read-only broker
        key = (prov, minimum, create_ledger, ledger_wei)
        return await self._flights.run(
            key, lambda: self._ensure_ready(prov, minimum, create_ledger, ledger_wei)
        )

    async def _ensure_ready(
        self, prov: str, minimum: int, create_ledger: bool, ledger_wei: int | None
    ) -> ReadyReport:
        chain = self._contracts
        async with self._keeper.lock(prov):
            service = await self._keeper.service(prov)
            warning = self._keeper.tee_warning(service)
            ledger = await self._keeper.fresh_ledger()
            account = await self._keeper.fresh_account(prov)
            min_transfer = await chain.min_transfer_amount()
            # Plan: what goes into the sub-account, and what that takes from the ledger.
            if account is None:
                fund = max(minimum, min_transfer)
                ledger_need = fund
            elif account.spendable < minimum:
                fund = minimum - account.spendable
                ledger_need = fund - min(fund, account.pending_refund)
            else:
                fund = ledger_need = 0
            actions: list[ReadyAction] = []
            if ledger is None:
                if not create_ledger:
                    raise self._keeper.no_ledger(
                        "pass create_ledger=True (optionally ledger_amount=...) or call "
                        "broker.ledger.add_ledger(amount) first"
                    )
                min_account = await chain.min_account_balance()
                amount = ledger_wei if ledger_wei is not None else max(min_account, ledger_need)
                if amount < min_account:
                    raise BelowMinimumError(
                        f"a new ledger needs at least {format_og(min_account)} OG, "
                        f"got {format_og(amount)} OG",
                        amount=amount,
                        minimum=min_account,
                    )
                if amount < ledger_need:
                    raise InsufficientBalanceError(
                        f"ledger_amount {format_og(amount)} OG cannot cover the {format_og(ledger_need)} OG "
                        f"the sub-account needs",
                        required=ledger_need,
                        available=amount,
                        hint="raise ledger_amount or leave it out",
                    )
                async with self._keeper.ledger_lock():
                    ledger = await self._keeper.fresh_ledger()
                    if ledger is None:
                        with anyio.CancelScope(shield=True):
                            receipt = await self._keeper.ledger.add_ledger(amount)
                        actions.append(
                            ReadyAction(kind="created_ledger", amount=amount, tx_hash=receipt.tx_hash)
                        )
                        ledger = await self._keeper.fresh_ledger()
                        if ledger is None:  # pragma: no cover - the receipt says it exists
                            raise self._keeper.no_ledger("the ledger was created but cannot be read; retry")
            if ledger.available < ledger_need:
                raise InsufficientBalanceError(
                    f"the ledger has {format_og(ledger.available)} OG available, provider {prov} needs "
                    f"{format_og(ledger_need)} OG more",
                    required=ledger_need,
                    available=ledger.available,
                    hint="deposit more with broker.ledger.deposit_fund",
                )
            if fund:
                receipt = await self._keeper.transfer(prov, fund)
                kind: ReadyActionKind = "created_account" if account is None else "topped_up"
                actions.append(ReadyAction(kind=kind, amount=fund, tx_hash=receipt.tx_hash))
                account = await self._keeper.fresh_account(prov)
            if account is not None and not account.acknowledged:
                receipt = await self._keeper.acknowledge(prov)
                actions.append(ReadyAction(kind="acknowledged", amount=0, tx_hash=receipt.tx_hash))
                account = await self._keeper.fresh_account(prov)
            if actions:
                self._keeper.auth.forget(prov)
                ledger = await self._keeper.fresh_ledger()
                for action in actions:
                    log.info(
                        "ensure_ready %s: %s %d wei (%s)", prov, action.kind, action.amount, action.tx_hash
                    )
            assert ledger is not None and account is not None
            return ReadyReport(
                provider=prov,
                actions=tuple(actions),
                ledger_total=ledger.total,
                ledger_available=ledger.available,
                balance=account.balance,
                pending_refund=account.pending_refund,
                acknowledged=account.acknowledged,
                tee_signer_acknowledged=service.tee_signer_acknowledged,
                warnings=(warning,) if warning else (),
            )
