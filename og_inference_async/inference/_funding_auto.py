"""The auto-funding loop of one provider: top-up arithmetic, statistics and the task body.

The loop itself knows nothing about the chain: it calls a ``check`` coroutine (built by
:class:`~og_inference_async.inference.funding.AutoFundingService`) once per tick, records what
happened, and reports failures through logging, the ``on_error`` callback and the statistics.
A failed check never stops the loop; cancelling its scope (``stop``, broker close) does.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._exceptions import FundingCapError
from .._redact import redact
from .._units import format_og
from ..types.funding import AutoFundingStats, FeeSource, TopUpEvent

__all__ = [
    "FUND_AHEAD",
    "AutoFunder",
    "AutoFundingConfig",
    "CheckOutcome",
    "describe_error",
    "plan_top_up",
    "spend_headroom",
]

log = logging.getLogger(__name__)

ErrorCallback = Callable[[Exception], Any]
TopUpCallback = Callable[[TopUpEvent], Any]

#: Seconds of observed spending each top-up moves on top of the shortfall.
FUND_AHEAD = 10


def plan_top_up(
    *, unsettled: int, spendable: int, buffer: int, min_transfer: int, floor: int = 0, extra: int = 0
) -> tuple[int, int]:
    """Decide a top-up: ``(deficit, amount)`` in wei; ``amount`` is 0 when nothing is needed.

    ``deficit = unsettled + buffer - spendable``. When it is positive the amount is
    ``max(deficit + extra, min_transfer, floor)``; ``floor`` is the on-chain minimum for opening a
    new sub-account (0 for an existing one); ``extra`` is spending to fund ahead (see
    :func:`spend_headroom`).
    """
    deficit = unsettled + buffer - spendable
    if deficit <= 0:
        return max(deficit, 0), 0
    return deficit, max(deficit + extra, min_transfer, floor)


def spend_headroom(rate: int, interval: float, lag: float) -> tuple[int, int]:
    """``(buffer, extra)`` in wei that a spend ``rate`` (wei per second) needs.

    ``buffer``: what the swarm spends before the next check sees a shortfall and its top-up
    lands (``interval + lag`` seconds); ``extra``: the spending of :data:`FUND_AHEAD` more
    seconds, moved with each top-up so that one top-up lasts a while.
    """
    millis = int((interval + lag) * 1000)
    return rate * millis // 1000, rate * FUND_AHEAD


def describe_error(exc: BaseException) -> str:
    """``"<Type>: <message>"`` cut to 300 characters, secrets redacted (the message may quote remote text)."""
    text = redact(str(exc))
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class AutoFundingConfig:
    """The settings of one loop (amounts in wei; ``None`` caps are off)."""

    interval: float
    buffer: int
    min_transfer: int
    max_total: int | None = None
    max_per_hour: int | None = None
    spend_window: float = 30.0


@dataclass(frozen=True)
class CheckOutcome:
    """What one successful check saw and did."""

    unsettled_fee: int
    fee_source: FeeSource
    spendable: int
    top_up: TopUpEvent | None = None
    spend_rate: int = 0
    buffer: int = 0


class AutoFunder:
    """One provider's loop. Start :meth:`run` in the broker's task group; cancel :attr:`scope` to stop.

    Args:
        provider: the provider address (checksummed).
        config: interval, buffer and minimum transfer.
        check: one funding check; raises on failure.
        on_error: called with the exception of a failed check (sync or async).
        on_top_up: called with a :class:`TopUpEvent` after each top-up (sync or async).
    """

    def __init__(
        self,
        provider: str,
        config: AutoFundingConfig,
        check: Callable[[], Awaitable[CheckOutcome]],
        *,
        on_error: ErrorCallback | None = None,
        on_top_up: TopUpCallback | None = None,
    ) -> None:
        self.provider = provider
        self.config = config
        self._check = check
        self._on_error = on_error
        self._on_top_up = on_top_up
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.task_id: int | None = None
        self.running = False
        self.started_at = time.time()
        self.checks = 0
        self.top_ups = 0
        self.topped_up_total = 0
        self.errors = 0
        self.consecutive_errors = 0
        self.callback_errors = 0
        self.fee_fallbacks = 0
        self.last_check_at: float | None = None
        self.last_top_up_at: float | None = None
        self.last_error: str | None = None
        self.last_unsettled_fee: int | None = None
        self.last_fee_source: FeeSource | None = None
        self.last_spendable: int | None = None
        self.refills = 0
        self.cap_hits = 0
        self.spend_rate = 0
        self.effective_buffer = config.buffer

    def stats(self) -> AutoFundingStats:
        """A frozen snapshot of the statistics."""
        return AutoFundingStats(
            provider=self.provider,
            running=self.running,
            interval=self.config.interval,
            buffer=self.config.buffer,
            min_transfer=self.config.min_transfer,
            started_at=self.started_at,
            checks=self.checks,
            top_ups=self.top_ups,
            topped_up_total=self.topped_up_total,
            errors=self.errors,
            consecutive_errors=self.consecutive_errors,
            callback_errors=self.callback_errors,
            fee_fallbacks=self.fee_fallbacks,
            last_check_at=self.last_check_at,
            last_top_up_at=self.last_top_up_at,
            last_error=self.last_error,
            last_unsettled_fee=self.last_unsettled_fee,
            last_fee_source=self.last_fee_source,
            last_spendable=self.last_spendable,
            refills=self.refills,
            cap_hits=self.cap_hits,
            spend_rate=self.spend_rate,
            effective_buffer=self.effective_buffer,
            max_total=self.config.max_total,
            max_per_hour=self.config.max_per_hour,
        )

    def in_own_task(self) -> bool:
        """Whether the caller runs inside this loop's task (e.g. from one of its callbacks)."""
        return self.task_id is not None and anyio.get_current_task().id == self.task_id

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check now, report started, then check every ``interval`` seconds until cancelled."""
        self.task_id = anyio.get_current_task().id
        try:
            with self.scope:
                self.running = True
                try:
                    await self.tick()
                finally:
                    task_status.started()
                while True:
                    await anyio.sleep(self.config.interval)
                    await self.tick()
        finally:
            self.running = False
            self.done.set()

    async def tick(self) -> None:
        """Run one check and record its outcome; a failure is logged, counted and reported."""
        self.checks += 1
        try:
            outcome = await self._check()
        except Exception as exc:  # every failure is reported below; the loop goes on
            self.last_check_at = time.time()
            await self.report_error(exc, "check")
            return
        self.consecutive_errors = 0
        self.last_check_at = time.time()
        self.last_unsettled_fee = outcome.unsettled_fee
        self.last_fee_source = outcome.fee_source
        self.last_spendable = outcome.spendable
        self.spend_rate = outcome.spend_rate
        self.effective_buffer = outcome.buffer
        if outcome.fee_source == "local":
            self.fee_fallbacks += 1
        if outcome.top_up is not None:
            await self.report_top_up(outcome.top_up)

    async def report_error(self, exc: Exception, during: str) -> None:
        """Count, log and pass on a failure (of a check, or of a top-up after a refusal)."""
        self.errors += 1
        self.consecutive_errors += 1
        if isinstance(exc, FundingCapError):
            self.cap_hits += 1
        self.last_error = describe_error(exc)
        hint = getattr(exc, "hint", None)
        log.warning(
            "auto-funding %s for provider %s failed (%d in a row): %s%s",
            during,
            self.provider,
            self.consecutive_errors,
            self.last_error,
            "" if not hint or hint in str(exc) else f" (hint: {hint})",
        )
        log.debug("auto-funding failure details", exc_info=exc)
        await self._callback(self._on_error, exc)

    async def report_top_up(self, event: TopUpEvent) -> None:
        """Count, log and pass on a top-up (made by a check or after a refusal)."""
        self.top_ups += 1
        if event.reason == "refusal":
            self.refills += 1
        self.topped_up_total += event.amount
        self.last_top_up_at = time.time()
        if log.isEnabledFor(logging.INFO):  # format_og is not free: only when the line is kept
            log.info(
                "auto-funding topped up provider %s by %s OG (%s; deficit %s OG, unsettled %s OG from %s) "
                "in %s",
                self.provider,
                format_og(event.amount),
                event.reason,
                format_og(event.deficit),
                format_og(event.unsettled_fee),
                event.fee_source,
                event.tx_hash,
            )
        await self._callback(self._on_top_up, event)

    async def _callback(self, fn: Callable[[Any], Any] | None, arg: Any) -> None:
        if fn is None:
            return
        try:
            result = fn(arg)
            if inspect.isawaitable(result):
                await result
        except Exception:  # a user callback must not kill the loop; counted and logged
            self.callback_errors += 1
            log.warning("auto-funding callback for provider %s raised", self.provider, exc_info=True)
