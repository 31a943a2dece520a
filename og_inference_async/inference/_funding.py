"""Onboarding and money over time: acknowledgement, ensure_ready, auto-funding, settlement, refunds.

Concurrency rules kept here:

* Every operation that moves money into (or acknowledges) one provider's sub-account holds that
  provider's lock, so ``ensure_ready``, ``acknowledge_provider_signer`` and auto-funding never
  send two top-ups for the same shortfall. Ledger creation holds a wallet-wide lock.
* ``ensure_ready`` is single-flight: concurrent callers with the same arguments share one run.
* Transactions are sent inside shielded scopes: a cancelled caller (or a stopped loop) never
  abandons a transaction between nonce allocation and its receipt. A stop therefore waits for a
  top-up already on its way.
* Auto-funding loops run only in the broker's task group, each in its own cancel scope.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

from .._config import checksum
from .._exceptions import (
    AccountNotExistsError,
    BelowMinimumError,
    ConfigError,
    ContractRevertError,
    InsufficientBalanceError,
    LedgerNotExistsError,
    ProviderResponseError,
    RPCError,
    SettlementTimeoutError,
    TransactionOutcomeUnknownError,
)
from .._http import send as http_send
from .._singleflight import SingleFlight
from .._units import WEI_PER_OG, Amount, format_og, to_wei
from .._validate import check_callable
from ..types import Account, Ledger, Service, TxReceipt
from ..types.funding import (
    AckResult,
    AckStatus,
    AutoFundingStats,
    FeeSource,
    ProviderRefundResult,
    ReadyAction,
    ReadyActionKind,
    ReadyReport,
    RefundCompletion,
    RefundStatus,
    SettlementReport,
    TopUpEvent,
)
from ._funding_auto import AutoFunder, AutoFundingConfig, CheckOutcome, describe_error, plan_top_up

if TYPE_CHECKING:
    from .._broker import AsyncBroker
    from ._auth import AuthManager

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_MIN_BALANCE",
    "DEFAULT_MIN_TRANSFER",
    "PROVIDER_RESERVE",
    "FundingMixin",
    "SettlementTimeoutError",
]

log = logging.getLogger(__name__)

#: ``ensure_ready``'s default spendable balance: 2 OG (the provider keeps 1 OG in reserve).
DEFAULT_MIN_BALANCE = 2 * WEI_PER_OG
#: What a provider keeps in reserve above the fees it serves (``MIN_LOCKED_BALANCE``, PROTOCOL 2.6):
#: it refuses a request (402) unless ``balance - pendingRefund >= unsettled + fee + 1 OG``.
PROVIDER_RESERVE = WEI_PER_OG
#: Auto-funding's default margin above the unsettled fee: 2 OG (2 x the provider's 1 OG reserve).
DEFAULT_BUFFER = 2 * WEI_PER_OG
#: Auto-funding's smallest top-up: 1 OG (the TS SDK's ``MIN_LOCKED_BALANCE``).
DEFAULT_MIN_TRANSFER = WEI_PER_OG
#: Seconds allowed for the provider's ``unsettledfee`` endpoint before falling back.
FEE_ENDPOINT_TIMEOUT = 10.0


def _positive_seconds(value: float, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{what} must be a positive number of seconds")
    return float(value)


class FundingMixin:
    """Acknowledgement, readiness, auto-funding, settlement waits and refunds for :class:`InferenceAPI`."""

    _b: AsyncBroker
    auth: AuthManager

    def _init_funding(self) -> None:
        """Set up this mixin's per-broker state (called from ``InferenceAPI.__init__``)."""
        self._money_locks: dict[str, anyio.Lock] = {}
        self._wallet_lock: anyio.Lock | None = None
        self._ready_flights: SingleFlight[tuple[str, int, bool, int | None], ReadyReport] = SingleFlight()
        self._funders: dict[str, AutoFunder] = {}
        self._funder_locks: dict[str, anyio.Lock] = {}
        self._in_doubt: dict[str, TransactionOutcomeUnknownError] = {}

    # -- shared helpers ----------------------------------------------------------------------------

    def _money_lock(self, provider: str) -> anyio.Lock:
        lock = self._money_locks.get(provider)
        if lock is None:
            lock = self._money_locks[provider] = anyio.Lock()
        return lock

    def _ledger_lock(self) -> anyio.Lock:
        if self._wallet_lock is None:
            self._wallet_lock = anyio.Lock()
        return self._wallet_lock

    async def _funding_service(self, provider: str) -> Service:
        return await self._b._chain_reader.get_service(provider)

    async def _fresh_account(self, provider: str) -> Account | None:
        """The sub-account as the chain has it now; every top-up plan starts here.

        A top-up whose outcome was unknown is resolved first: if it was mined (or the node never
        had it, so its nonce will be reused and it can never land) the plan goes ahead on fresh
        state; while the node still holds it pending, planning stops with the same error, so the
        amount is never sent twice.
        """
        await self._resolve_in_doubt(provider)
        return await self._b._chain_reader.account_at(self._b._user, provider)

    async def _resolve_in_doubt(self, provider: str) -> None:
        pending = self._in_doubt.get(provider)
        if pending is None:
            return
        mined, known = await self._b._chain_reader.transaction_status(pending.tx_hash)
        if mined or not known:
            log.info("earlier top-up %s to %s resolved (mined: %s)", pending.tx_hash, provider, mined)
            del self._in_doubt[provider]
            return
        raise TransactionOutcomeUnknownError(
            f"an earlier top-up to {provider} ({pending.tx_hash}) is still pending; not sending another",
            tx_hash=pending.tx_hash,
            nonce=pending.nonce,
        )

    async def _fresh_ledger(self) -> Ledger | None:
        try:
            return await self._b._chain_reader.get_ledger(self._b._user)
        except LedgerNotExistsError:
            return None

    def _tee_warning(self, service: Service) -> str | None:
        if service.tee_signer_acknowledged:
            return None
        text = (
            f"0G has not acknowledged the TEE signer of provider {service.provider}: it cannot settle "
            "fees, and discovery hides it by default"
        )
        log.warning(text)
        return text

    def _no_ledger(self, hint: str) -> LedgerNotExistsError:
        user = self._b._user
        return LedgerNotExistsError(f"{user} has no ledger", error_args={"user": user}, hint=hint)

    async def _send_transfer(self, provider: str, amount: int) -> TxReceipt:
        with anyio.CancelScope(shield=True):
            try:
                receipt = await self._b.ledger.transfer_fund(provider, amount)
            except TransactionOutcomeUnknownError as exc:
                self._in_doubt[provider] = exc  # resolved before the next plan for this provider
                raise
        return receipt

    async def _send_ack(self, provider: str) -> TxReceipt:
        chain = self._b._chain_reader
        sender = self._b._sender
        with anyio.CancelScope(shield=True):
            try:
                receipt = await chain.acknowledge_tee_signer(sender, provider, True)
            finally:
                self.auth.forget(provider)  # whatever the outcome: the cached "unacknowledged" is stale
        return receipt

    # -- acknowledgement ---------------------------------------------------------------------------

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
        self._b._sender  # noqa: B018 - fail early on a read-only or closed broker
        async with self._money_lock(prov):
            return await self._acknowledge(prov, initial)

    async def _acknowledge(self, prov: str, initial: int | None) -> AckResult:
        service = await self._funding_service(prov)
        warning = self._tee_warning(service)
        warnings = (warning,) if warning else ()
        account = await self._fresh_account(prov)
        status: AckStatus
        amount = 0
        if account is None:
            minimum = await self._b._chain_reader.min_transfer_amount()
            if initial is None:
                amount = max(DEFAULT_MIN_BALANCE, minimum + PROVIDER_RESERVE)
            else:
                amount = max(initial, minimum)
            receipt = await self._send_transfer(prov, amount)
            status = "created_account"
        elif account.acknowledged:
            await self.auth.read_account(prov, fresh=True)
            return AckResult(
                provider=prov,
                status="already_acknowledged",
                tee_signer_acknowledged=service.tee_signer_acknowledged,
                warnings=warnings,
            )
        else:
            receipt = await self._send_ack(prov)
            status = "acknowledged"
        self.auth.forget(prov)
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
        self._b._sender  # noqa: B018 - fail early on a read-only or closed broker
        key = (prov, minimum, create_ledger, ledger_wei)
        return await self._ready_flights.run(
            key, lambda: self._ensure_ready(prov, minimum, create_ledger, ledger_wei)
        )

    async def _ensure_ready(
        self, prov: str, minimum: int, create_ledger: bool, ledger_wei: int | None
    ) -> ReadyReport:
        chain = self._b._chain_reader
        async with self._money_lock(prov):
            service = await self._funding_service(prov)
            warning = self._tee_warning(service)
            ledger = await self._fresh_ledger()
            account = await self._fresh_account(prov)
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
                    raise self._no_ledger(
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
                async with self._ledger_lock():
                    ledger = await self._fresh_ledger()
                    if ledger is None:
                        with anyio.CancelScope(shield=True):
                            receipt = await self._b.ledger.add_ledger(amount)
                        actions.append(
                            ReadyAction(kind="created_ledger", amount=amount, tx_hash=receipt.tx_hash)
                        )
                        ledger = await self._fresh_ledger()
                        if ledger is None:  # pragma: no cover - the receipt says it exists
                            raise self._no_ledger("the ledger was created but cannot be read; retry")
            if ledger.available < ledger_need:
                raise InsufficientBalanceError(
                    f"the ledger has {format_og(ledger.available)} OG available, provider {prov} needs "
                    f"{format_og(ledger_need)} OG more",
                    required=ledger_need,
                    available=ledger.available,
                    hint="deposit more with broker.ledger.deposit_fund",
                )
            if fund:
                receipt = await self._send_transfer(prov, fund)
                kind: ReadyActionKind = "created_account" if account is None else "topped_up"
                actions.append(ReadyAction(kind=kind, amount=fund, tx_hash=receipt.tx_hash))
                account = await self._fresh_account(prov)
            if account is not None and not account.acknowledged:
                receipt = await self._send_ack(prov)
                actions.append(ReadyAction(kind="acknowledged", amount=0, tx_hash=receipt.tx_hash))
                account = await self._fresh_account(prov)
            if actions:
                self.auth.forget(prov)
                ledger = await self._fresh_ledger()
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

    # -- auto-funding ----------------------------------------------------------------------------

    async def start_auto_funding(
        self,
        provider: str,
        *,
        interval: float = 30.0,
        buffer: Amount = DEFAULT_BUFFER,
        min_transfer: Amount = DEFAULT_MIN_TRANSFER,
        on_error: Callable[[Exception], Any] | None = None,
        on_top_up: Callable[[TopUpEvent], Any] | None = None,
    ) -> AutoFundingStats:
        """Keep ``provider``'s sub-account funded in the background.

        Every check reads the provider's unsettled fee for this wallet
        (``GET /v1/user/{me}/unsettledfee`` with the session header; when that fails, the local
        fee counter of the request methods, else 0), computes
        ``deficit = unsettled + buffer - spendable`` and, when positive, transfers
        ``max(deficit, min_transfer)`` from the ledger (at least ``MIN_TRANSFER_AMOUNT`` when the
        sub-account does not exist yet). Top-ups for one provider never overlap, also not with
        :meth:`ensure_ready`.

        The loop runs in the broker's task group and stops when the broker closes. Starting it
        again for the same provider replaces the old loop. The first check runs before this
        method returns; like every later one, a failing first check does **not** raise: it is
        logged, passed to ``on_error`` and counted in the returned statistics (look at
        ``errors`` / ``last_error``), and the loop keeps going. Only bad arguments and an unknown
        provider raise here. Do not start or stop a provider's loop from inside its own
        callbacks' ``await`` chain expecting it to finish first.

        Args:
            provider: the provider address.
            interval: seconds between checks (default 30).
            buffer: margin kept above the unsettled fee (default 2 OG).
            min_transfer: the smallest top-up (default 1 OG).
            on_error: called with the exception of each failed check (sync or async function).
            on_top_up: called with a :class:`TopUpEvent` after each top-up (sync or async).

        Returns:
            The statistics after the first check.

        Raises:
            InvalidAddressError: malformed provider.
            InvalidAmountError: bad ``buffer`` or ``min_transfer``.
            ConfigError: bad ``interval`` or a read-only broker.
            BrokerStateError: the broker is not open.
            ServiceNotFoundError: the provider has no service on this network.
        """
        prov = checksum(provider, what="provider")
        check_callable("on_error", on_error)
        check_callable("on_top_up", on_top_up)
        config = AutoFundingConfig(
            interval=_positive_seconds(interval, "interval"),
            buffer=to_wei(buffer),
            min_transfer=to_wei(min_transfer),
        )
        self._b._sender  # noqa: B018 - fail early on a read-only or closed broker
        task_group = self._b.task_group
        await self._funding_service(prov)
        lock = self._funder_locks.get(prov)
        if lock is None:
            lock = self._funder_locks[prov] = anyio.Lock()
        async with lock:
            await self._stop_funder(prov)
            funder = AutoFunder(
                prov,
                config,
                lambda: self._auto_check(prov, config),
                on_error=on_error,
                on_top_up=on_top_up,
            )
            self._funders[prov] = funder
            await task_group.start(funder.run, name=f"og-auto-funding:{prov}")
            return funder.stats()

    async def stop_auto_funding(self, provider: str | None = None) -> None:
        """Stop auto-funding for ``provider``, or for every provider when ``None``.

        Returns once the loops have ended (a top-up already sent is waited for, not abandoned).
        Stopping a provider without a loop does nothing.
        """
        if provider is None:
            targets = list(self._funders)
        else:
            targets = [checksum(provider, what="provider")]
        for prov in targets:
            funder = self._funders.get(prov)
            if funder is not None:
                funder.scope.cancel()
        for prov in targets:
            await self._stop_funder(prov)

    async def _stop_funder(self, prov: str) -> None:
        funder = self._funders.get(prov)
        if funder is None:
            return
        funder.scope.cancel()
        if funder.task_id is not None and not funder.in_own_task():
            await funder.done.wait()

    def has_auto_funding(self, provider: str) -> bool:
        """Whether an auto-funding loop is running for ``provider``."""
        funder = self._funders.get(checksum(provider, what="provider"))
        return funder is not None and funder.running

    def auto_funding_stats(self, provider: str) -> AutoFundingStats | None:
        """Statistics of ``provider``'s latest auto-funding loop (kept after it stops).

        Returns:
            A snapshot, or ``None`` when auto-funding was never started for the provider.
        """
        funder = self._funders.get(checksum(provider, what="provider"))
        return funder.stats() if funder is not None else None

    async def _auto_check(self, prov: str, config: AutoFundingConfig) -> CheckOutcome:
        chain = self._b._chain_reader
        service = await self._funding_service(prov)
        unsettled, source = await self._unsettled_fee(prov, service)
        async with self._money_lock(prov):
            account = await self._fresh_account(prov)
            spendable = account.spendable if account is not None else 0
            floor = await chain.min_transfer_amount() if account is None else 0
            deficit, amount = plan_top_up(
                unsettled=unsettled,
                spendable=spendable,
                buffer=config.buffer,
                min_transfer=config.min_transfer,
                floor=floor,
            )
            if amount == 0:
                return CheckOutcome(unsettled_fee=unsettled, fee_source=source, spendable=spendable)
            receipt = await self._send_transfer(prov, amount)
            if account is None or not account.acknowledged:
                self.auth.forget(prov)
        event = TopUpEvent(
            provider=prov,
            amount=amount,
            deficit=deficit,
            unsettled_fee=unsettled,
            fee_source=source,
            spendable_before=spendable,
            tx_hash=receipt.tx_hash,
        )
        return CheckOutcome(unsettled_fee=unsettled, fee_source=source, spendable=spendable, top_up=event)

    async def _unsettled_fee(self, prov: str, service: Service) -> tuple[int, FeeSource]:
        """The provider's unsettled fee for this wallet, or the local counter when that fails."""
        url = f"{service.url.rstrip('/')}/v1/user/{self._b._user}/unsettledfee"
        why: str
        try:
            headers = await self.auth.get_request_headers(prov)
            with anyio.fail_after(FEE_ENDPOINT_TIMEOUT):
                reply = await http_send(
                    self._b.http, "GET", url, headers=headers, provider=prov, what="unsettledfee"
                )
            if reply.status == 200:
                return _parse_fee(reply.json()), "provider"
            why = f"HTTP {reply.status}"
        except Exception as exc:  # any failure falls back to the local counter (as the TS SDK does)
            why = describe_error(exc)
        log.info("unsettled fee of provider %s unavailable (%s); using the local counter", prov, why)
        return await self._local_fee(prov), "local"

    async def _local_fee(self, prov: str) -> int:
        counter: Callable[[str], int | Awaitable[int]] | None = getattr(self, "local_fees", None)
        if counter is None:
            return 0
        value = counter(prov)
        if inspect.isawaitable(value):
            value = await value
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    # -- settlement ------------------------------------------------------------------------------

    async def wait_settled(
        self,
        provider: str,
        *,
        timeout: float = 120.0,  # noqa: ASYNC109 - a bounded poll; the bound is part of the API
        poll_interval: float = 1.0,
    ) -> SettlementReport:
        """Wait until ``provider`` settles this wallet's fees on chain, and report the change.

        The baseline is read when the call starts: a settlement counts when the account's
        settlement ``nonce`` moves past its value then, or its balance drops below it. So call
        this before the settlement can land (right after your requests, or concurrently with
        whatever triggers it). The chain is polled every ``poll_interval`` seconds, bounded in
        attempts and in time.

        Args:
            provider: the provider address.
            timeout: the most seconds to wait (default 120).
            poll_interval: seconds between reads (default 1).

        Returns:
            Nonce and balance before and after, the fee settled (from the ledger's ``FundSpent``
            events in the provider's settlement transactions; the balance drop when the node
            cannot serve logs) and the settlement transactions.

        Raises:
            SettlementTimeoutError: nothing landed within ``timeout``.
            AccountNotExistsError: there is no sub-account with the provider.
            ConfigError: bad ``timeout`` or ``poll_interval``, or a read-only broker.
        """
        prov = checksum(provider, what="provider")
        limit = _positive_seconds(timeout, "timeout")
        every = _positive_seconds(poll_interval, "poll_interval")
        user = self._b._user
        chain = self._b._chain_reader
        start_block = await chain.block_number()
        try:
            before = await chain.account_at(user, prov, start_block)
        except RPCError:  # a load-balanced node may lag behind the block number just read
            before = await chain.account_at(user, prov)
        if before is None:
            raise AccountNotExistsError(
                f"no sub-account with provider {prov}; nothing to settle",
                error_args={"user": user, "provider": prov},
            )
        started = anyio.current_time()

        def landed(account: Account | None) -> bool:
            return account is None or account.nonce > before.nonce or account.balance < before.balance

        after: Account | None = None
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(max(1, math.ceil(limit / every)) + 1) | stop_after_delay(limit),
                wait=wait_fixed(every),
                retry=retry_if_result(lambda a: not landed(a)),
                sleep=anyio.sleep,
            ):
                with attempt:
                    after = await chain.account_at(user, prov)
                if attempt.retry_state.outcome is not None and not attempt.retry_state.outcome.failed:
                    attempt.retry_state.set_result(after)
        except RetryError:
            waited = anyio.current_time() - started
            raise SettlementTimeoutError(
                f"provider {prov} settled nothing for {user} within {waited:.1f} s "
                f"(settlement nonce still {before.nonce})",
                provider=prov,
                nonce=before.nonce,
                waited=waited,
            ) from None
        if after is None:
            raise AccountNotExistsError(
                f"the sub-account with provider {prov} was deleted while waiting",
                error_args={"user": user, "provider": prov},
            )
        try:
            fee, hashes = await chain.settled_fees(user, prov, start_block + 1)
        except (RPCError, ContractRevertError) as exc:
            log.info("could not read settlement logs (%s); reporting the balance drop", describe_error(exc))
            fee, hashes = max(before.balance - after.balance, 0), ()
        return SettlementReport(
            provider=prov,
            nonce_before=before.nonce,
            nonce_after=after.nonce,
            balance_before=before.balance,
            balance_after=after.balance,
            fee_settled=fee,
            tx_hashes=hashes,
            waited=anyio.current_time() - started,
        )

    # -- refunds ---------------------------------------------------------------------------------

    async def get_refunds(self, provider: str | None = None) -> list[RefundStatus]:
        """Pending refunds of this wallet's sub-accounts, judged by the chain's clock.

        A refund unlocks ``lockTime`` seconds (read on chain) after it was requested; the
        chain's clock is the latest block's timestamp, so a devnet that moves time forward is
        followed.

        Args:
            provider: one provider (default: every provider this wallet has a sub-account with).
                A provider without a sub-account has no refunds.

        Returns:
            One entry per active refund, in chain order.
        """
        chain = self._b._chain_reader
        user = self._b._user
        if provider is not None:
            account = await chain.account_at(user, checksum(provider, what="provider"))
            accounts = [account] if account is not None else []
        else:
            accounts = []
            offset = 0
            while True:
                page, total = await chain.get_accounts_by_user(user, offset, 50)
                accounts.extend(page)
                offset += len(page)
                if not page or offset >= total:
                    break
        if not any(a.refunds for a in accounts):
            return []
        lock_time = await chain.lock_time()
        now = await chain.chain_time()
        out: list[RefundStatus] = []
        for account in accounts:
            for refund in account.refunds:
                unlocks = refund.created_at + lock_time
                out.append(
                    RefundStatus(
                        provider=account.provider,
                        index=refund.index,
                        amount=refund.amount,
                        requested_at=refund.created_at,
                        unlocks_at=unlocks,
                        is_unlocked=now >= unlocks,
                        remaining=max(unlocks - now, 0),
                    )
                )
        return out

    async def complete_refunds(self, provider: str | None = None) -> RefundCompletion:
        """Collect the unlocked refunds back into the ledger's available balance.

        Runs ``retrieveFund`` (batches of 20) for the providers that have at least one
        unlocked refund; nothing is sent when none has. Note that the contract's
        ``retrieveFund`` also requests a refund of whatever spendable balance remains in each of
        those sub-accounts (reported as ``newly_requested``); stop auto-funding for a provider
        you are withdrawing from.

        Args:
            provider: one provider (default: all of this wallet's providers).

        Returns:
            Per provider what came back and what was newly requested, the ledger's available
            balance before and after, and the transaction hashes.

        Raises:
            LedgerNotExistsError: this wallet has no ledger.
        """
        chain = self._b._chain_reader
        user = self._b._user
        self._b._sender  # noqa: B018 - fail early on a read-only or closed broker
        statuses = await self.get_refunds(provider)
        targets = list(dict.fromkeys(s.provider for s in statuses if s.is_unlocked))
        ledger_before = await self._fresh_ledger()
        if ledger_before is None:
            raise self._no_ledger("there is nothing to retrieve without a ledger")
        if not targets:
            return RefundCompletion(
                ledger_available_before=ledger_before.available,
                ledger_available_after=ledger_before.available,
            )
        before = {p: await chain.account_at(user, p) for p in targets}
        with anyio.CancelScope(shield=True):
            receipts = await self._b.ledger.retrieve_fund(targets)
        after = {p: await chain.account_at(user, p) for p in targets}
        ledger_after = await self._fresh_ledger()
        results: list[ProviderRefundResult] = []
        for p in targets:
            b, a = before[p], after[p]
            returned = (b.balance - a.balance) if b is not None and a is not None else 0
            newly = (
                (a.pending_refund - (b.pending_refund - returned)) if b is not None and a is not None else 0
            )
            results.append(
                ProviderRefundResult(provider=p, returned=max(returned, 0), newly_requested=max(newly, 0))
            )
            self.auth.forget(p)
        available_after = ledger_after.available if ledger_after is not None else 0
        log.info(
            "completed refunds from %d provider(s): %d wei back in the ledger",
            len(targets),
            available_after - ledger_before.available,
        )
        return RefundCompletion(
            providers=tuple(results),
            returned=available_after - ledger_before.available,
            ledger_available_before=ledger_before.available,
            ledger_available_after=available_after,
            tx_hashes=tuple(r.tx_hash for r in receipts),
        )


def _parse_fee(data: Any) -> int:
    """``{"unsettledFee": "<wei>"}`` (a decimal string or an int; missing or empty = 0)."""
    if not isinstance(data, dict):
        raise ProviderResponseError("unsettledfee: the answer is not a JSON object")
    raw = data.get("unsettledFee")
    if raw is None or raw == "":
        return 0
    if isinstance(raw, bool):
        raise ProviderResponseError("unsettledfee: not an amount")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    else:
        raise ProviderResponseError("unsettledfee: not a whole number of wei")
    if value < 0:
        raise ProviderResponseError("unsettledfee: negative")
    return value
