"""Auto-funding: keep a provider's sub-account funded while requests run up unsettled fees.

Each provider's loop (:class:`~og_inference_async.inference._funding_auto.AutoFunder`) runs in
the broker's task group, in its own cancel scope. Every check reads the provider's unsettled
fee for this wallet through the provider transport (falling back to the local fee book), plans
a top-up, and sends it holding the provider's lock (see ``_accounts``): a stop therefore waits
for a top-up already on its way. Top-ups are sized from the observed spend rate (the local fee
book) and the time a top-up takes to land, not only from the fixed buffer.

When the provider refuses a request for balance anyway, :meth:`AutoFundingService.refill` sends
ONE top-up that every refused caller shares (single flight), after which each retries once.
Every top-up, periodic or not, passes the caps (``max_total``, ``max_per_hour``) first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio

from .._config import checksum
from .._exceptions import FundingCapError, ProviderInsufficientBalanceError, ProviderResponseError
from .._observe import Observer
from .._runtime import Background
from .._singleflight import SingleFlight
from .._transport import ProviderTransport
from .._units import WEI_PER_OG, Amount, to_wei
from .._validate import check_bool, check_callable, check_seconds
from ..types import Service, TxReceipt
from ..types.funding import AutoFundingStats, FeeSource, TopUpEvent, TopUpReason
from ._accounts import AccountKeeper
from ._fees import LocalFeeBook
from ._funding_auto import (
    AutoFunder,
    AutoFundingConfig,
    CheckOutcome,
    describe_error,
    plan_top_up,
    spend_headroom,
)

if TYPE_CHECKING:
    from .._chain import ChainReader

__all__ = ["DEFAULT_BUFFER", "DEFAULT_MIN_TRANSFER", "AutoFundingService", "parse_fee"]

log = logging.getLogger(__name__)

#: Auto-funding's default margin above the unsettled fee: 2 OG (2 x the provider's 1 OG reserve).
DEFAULT_BUFFER = 2 * WEI_PER_OG
#: Auto-funding's smallest top-up: 1 OG (the TS SDK's ``MIN_LOCKED_BALANCE``).
DEFAULT_MIN_TRANSFER = WEI_PER_OG
#: Seconds allowed for the provider's ``unsettledfee`` endpoint before falling back.
FEE_ENDPOINT_TIMEOUT = 10.0
#: Seconds a top-up is assumed to take to land before one was measured.
DEFAULT_TOP_UP_LAG = 2.0
#: The settings of a top-up after a refusal for a provider without a running loop.
_REFILL_DEFAULTS = AutoFundingConfig(interval=30.0, buffer=DEFAULT_BUFFER, min_transfer=DEFAULT_MIN_TRANSFER)


class AutoFundingService:
    """The auto-funding loops of one wallet, one per provider.

    Args:
        contracts: the chain's contracts (on-chain minimums).
        keeper: sub-account reads, locks and the top-up transactions.
        transport: reads the provider's unsettled fee.
        fees: the local fee book (the fallback when the provider cannot say).
        background: the broker's task group the loops run in.
        observer: the broker's counters and ``on_top_up`` hook (``None``: not observed).
    """

    def __init__(
        self,
        contracts: ChainReader,
        keeper: AccountKeeper,
        transport: ProviderTransport,
        fees: LocalFeeBook,
        background: Background,
        observer: Observer | None = None,
    ) -> None:
        self._contracts = contracts
        self._keeper = keeper
        self._transport = transport
        self._fees = fees
        self._background = background
        self._observer = observer
        self._funders: dict[str, AutoFunder] = {}
        self._funder_locks: dict[str, anyio.Lock] = {}
        self._refills: SingleFlight[str, None] = SingleFlight()
        self._moves: dict[str, deque[tuple[float, int]]] = {}
        self._moved_total: dict[str, int] = {}
        self._lag: dict[str, float] = {}
        #: refusals for balance per provider (tickets), and the last one a planned top-up covered
        self._tickets: dict[str, int] = {}
        self._covered: dict[str, int] = {}
        #: requests on their way to each provider (they will draw on the balance soon)
        self._in_flight: dict[str, int] = {}

    async def start_auto_funding(
        self,
        provider: str,
        *,
        interval: float = 30.0,
        buffer: Amount = DEFAULT_BUFFER,
        min_transfer: Amount = DEFAULT_MIN_TRANSFER,
        on_error: Callable[[Exception], Any] | None = None,
        on_top_up: Callable[[TopUpEvent], Any] | None = None,
        max_total: Amount | None = None,
        max_per_hour: Amount | None = None,
        spend_window: float = 30.0,
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
            max_total: the most auto-funding may move into this provider's sub-account while
                the broker is open (default: no cap).
            max_per_hour: the most it may move in any sliding hour (default: no cap).
            spend_window: seconds of recent fees the spend rate is measured over (default 30).

        Returns:
            The statistics after the first check.

        Raises:
            InvalidAddressError: malformed provider.
            InvalidAmountError: bad ``buffer``, ``min_transfer`` or caps.
            ConfigError: bad ``interval`` or ``spend_window``, or a read-only broker.
            BrokerStateError: the broker is not open.
            ServiceNotFoundError: the provider has no service on this network.
        """
        prov = checksum(provider, what="provider")
        check_callable("on_error", on_error)
        check_callable("on_top_up", on_top_up)
        config = AutoFundingConfig(
            interval=check_seconds("interval", interval),
            buffer=to_wei(buffer),
            min_transfer=to_wei(min_transfer),
            max_total=None if max_total is None else to_wei(max_total),
            max_per_hour=None if max_per_hour is None else to_wei(max_per_hour),
            spend_window=check_seconds("spend_window", spend_window),
        )
        self._keeper.wallet.require_sender()  # fail early on a read-only broker
        await self._keeper.service(prov)
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
            await self._background.start(funder.run, name=f"og-auto-funding:{prov}")
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

    # -- refusals for balance --------------------------------------------------------------------

    def covers(self, provider: str, auto_fund: bool | None) -> bool:
        """Whether a refusal for balance of ``provider`` is answered by a top-up and one retry.

        ``auto_fund=None`` follows the provider's auto-funding loop (on while it runs).

        Raises:
            ConfigError: ``auto_fund`` is not a bool or ``None``.
        """
        if auto_fund is None:
            funder = self._funders.get(provider)
            return funder is not None and funder.running
        return check_bool("auto_fund", auto_fund)

    @contextlib.contextmanager
    def sending(self, provider: str) -> Iterator[None]:
        """Count a request on its way to ``provider`` (a top-up after a refusal funds these too)."""
        self._in_flight[provider] = self._in_flight.get(provider, 0) + 1
        try:
            yield
        finally:
            self._in_flight[provider] -= 1

    async def refill(self, provider: str, refusal: ProviderInsufficientBalanceError) -> None:
        """Top ``provider``'s sub-account up after ``refusal``, once for every caller refused together.

        Each refusal takes a ticket; a top-up is planned for every ticket taken before it was
        planned and every request still on its way to the provider: twice the refused request's
        fee (the provider's figure, else this broker's average fee) for each, on top of the usual
        plan. Concurrent callers share that top-up
        (single flight); a caller refused after a plan was made waits for it and then shares the
        next one, so every caller retries after a top-up that counted it. A refused request was
        not billed (the provider checks the balance before billing, and the SDK never retries a
        request the provider may have served), so the caller's single retry cannot bill twice.

        Raises:
            FundingCapError: the top-up would pass ``max_total`` / ``max_per_hour``.
            InsufficientBalanceError: the ledger cannot pay it.
            ChainError: the top-up transaction failed.
        """
        ticket = self._tickets[provider] = self._tickets.get(provider, 0) + 1
        while self._covered.get(provider, 0) < ticket:
            await self._refills.run(provider, lambda: self._refill(provider, refusal))

    async def _refill(self, prov: str, refusal: ProviderInsufficientBalanceError) -> None:
        funder = self._funders.get(prov)
        config = funder.config if funder is not None and funder.running else _REFILL_DEFAULTS
        try:
            source: FeeSource = "provider"
            unsettled = refusal.required  # the provider's own figure: unsettled + this fee + its reserve
            if unsettled is None:
                unsettled, source = await self._unsettled_fee(prov, await self._keeper.service(prov))
            outcome = await self._top_up(prov, config, unsettled, source, "refusal", refusal=refusal)
        except Exception as exc:
            if funder is not None:
                await funder.report_error(exc, "top-up after a refusal")
            raise
        if funder is not None and outcome.top_up is not None:
            await funder.report_top_up(outcome.top_up)

    # -- checks and top-ups ----------------------------------------------------------------------

    async def _auto_check(self, prov: str, config: AutoFundingConfig) -> CheckOutcome:
        service = await self._keeper.service(prov)
        unsettled, source = await self._unsettled_fee(prov, service)
        return await self._top_up(prov, config, unsettled, source, "check")

    async def _top_up(
        self,
        prov: str,
        config: AutoFundingConfig,
        unsettled: int,
        source: FeeSource,
        reason: TopUpReason,
        *,
        refusal: ProviderInsufficientBalanceError | None = None,
    ) -> CheckOutcome:
        """Plan a top-up on fresh state and send it (holding the provider's lock), within the caps."""
        rate = self._fees.rate(prov, config.spend_window)
        # a check must last until the next one; a refill answers refusals now (they size it below)
        until_next = config.interval if refusal is None else 0.0
        margin, ahead = spend_headroom(rate, until_next, self._lag.get(prov, DEFAULT_TOP_UP_LAG))
        buffer = max(config.buffer, margin)
        async with self._keeper.lock(prov):
            if refusal is not None:  # every refusal so far waits on this top-up: fund them all
                served = self._fees.requests(prov)
                each = max(refusal.fee or 0, self._fees.total(prov) // served if served else 0)
                upto = self._tickets.get(prov, 0)
                waiting = upto - self._covered.get(prov, 0) + self._in_flight.get(prov, 0)
                ahead += 2 * each * waiting
            account = await self._keeper.fresh_account(prov)
            spendable = account.spendable if account is not None else 0
            floor = await self._contracts.min_transfer_amount() if account is None else 0
            deficit, amount = plan_top_up(
                unsettled=unsettled,
                spendable=spendable,
                buffer=buffer,
                min_transfer=config.min_transfer,
                floor=floor,
                extra=ahead,
            )
            seen = CheckOutcome(
                unsettled_fee=unsettled,
                fee_source=source,
                spendable=spendable,
                spend_rate=rate,
                buffer=buffer,
            )
            if amount == 0:
                if refusal is not None:
                    self._covered[prov] = upto
                return seen
            amount = self._within_caps(prov, config, deficit, amount, floor)
            if amount > max(deficit, floor):  # funding ahead is never worth failing over
                ledger = await self._keeper.fresh_ledger()
                if ledger is not None:
                    amount = max(min(amount, ledger.available), deficit, floor)
            receipt = await self._send(prov, amount)
            if refusal is not None:
                self._covered[prov] = upto
            if account is None or not account.acknowledged:
                self._keeper.auth.forget(prov)
        event = TopUpEvent(
            provider=prov,
            amount=amount,
            deficit=deficit,
            unsettled_fee=unsettled,
            fee_source=source,
            spendable_before=spendable,
            tx_hash=receipt.tx_hash,
            reason=reason,
            spend_rate=rate,
        )
        if self._observer is not None:
            self._observer.top_up(event)
        return dataclasses.replace(seen, top_up=event)

    def _within_caps(
        self, prov: str, config: AutoFundingConfig, deficit: int, amount: int, floor: int
    ) -> int:
        """``amount`` cut to what the caps allow, when that still covers the need.

        Raises:
            FundingCapError: the caps do not allow even ``max(deficit, floor)``.
        """
        need = max(deficit, floor)
        moves = self._moves.setdefault(prov, deque())
        hour_ago = time.monotonic() - 3600
        while moves and moves[0][0] <= hour_ago:
            moves.popleft()
        caps = (
            ("max_total", config.max_total, self._moved_total.get(prov, 0)),
            ("max_per_hour", config.max_per_hour, sum(moved for _, moved in moves)),
        )
        for name, limit, moved in caps:
            if limit is None:
                continue
            allowed = limit - moved
            if allowed < need:
                raise FundingCapError(
                    f"provider {prov} needs a top-up of {need} wei but {name} ({limit} wei) allows "
                    f"{max(allowed, 0)} more ({moved} wei moved); nothing was sent",
                    provider=prov,
                    cap=name,
                    limit=limit,
                    moved=moved,
                    required=need,
                    hint=f"raise {name} in start_auto_funding(), or top up with ledger.transfer_fund()",
                )
            amount = min(amount, allowed)
        return amount

    async def _send(self, prov: str, amount: int) -> TxReceipt:
        """Send one top-up, then count it (caps, landed top-ups, how long it took)."""
        started = time.monotonic()
        receipt = await self._keeper.transfer(prov, amount)
        now = time.monotonic()
        lag = self._lag.get(prov)
        self._lag[prov] = now - started if lag is None else (lag + now - started) / 2
        self._moves.setdefault(prov, deque()).append((now, amount))
        self._moved_total[prov] = self._moved_total.get(prov, 0) + amount
        return receipt

    async def _unsettled_fee(self, prov: str, service: Service) -> tuple[int, FeeSource]:
        """The provider's unsettled fee for this wallet, or the local counter when that fails."""
        url = f"{service.url.rstrip('/')}/v1/user/{self._keeper.wallet.address}/unsettledfee"
        why: str
        try:
            reply = await self._transport.request(
                prov,
                "GET",
                url,
                what="unsettledfee",
                idempotent=True,
                retry=False,
                deadline=FEE_ENDPOINT_TIMEOUT,
            )
            if reply.status == 200:
                return parse_fee(reply.json()), "provider"
            why = f"HTTP {reply.status}"
        except Exception as exc:  # any failure falls back to the local counter (as the TS SDK does)
            why = describe_error(exc)
        log.info("unsettled fee of provider %s unavailable (%s); using the local counter", prov, why)
        return max(self._fees.total(prov), 0), "local"


def parse_fee(data: Any) -> int:
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
