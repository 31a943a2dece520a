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

from .._redact import redact
from ..types.funding import AutoFundingStats, FeeSource, TopUpEvent

__all__ = ["AutoFunder", "AutoFundingConfig", "CheckOutcome", "describe_error", "plan_top_up"]

log = logging.getLogger(__name__)

ErrorCallback = Callable[[Exception], Any]
TopUpCallback = Callable[[TopUpEvent], Any]


def plan_top_up(
    *, unsettled: int, spendable: int, buffer: int, min_transfer: int, floor: int = 0
) -> tuple[int, int]:
    """Decide a top-up: ``(deficit, amount)`` in wei; ``amount`` is 0 when nothing is needed.

    ``deficit = unsettled + buffer - spendable``. When it is positive the amount is
    ``max(deficit, min_transfer, floor)``; ``floor`` is the on-chain minimum for opening a new
    sub-account (0 for an existing one).
    """
    deficit = unsettled + buffer - spendable
    if deficit <= 0:
        return max(deficit, 0), 0
    return deficit, max(deficit, min_transfer, floor)


def describe_error(exc: BaseException) -> str:
    """``"<Type>: <message>"`` cut to 300 characters, secrets redacted (the message may quote remote text)."""
    text = redact(str(exc))
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class AutoFundingConfig:
    """The settings of one loop (amounts in wei)."""

    interval: float
    buffer: int
    min_transfer: int


@dataclass(frozen=True)
class CheckOutcome:
    """What one successful check saw and did."""

    unsettled_fee: int
    fee_source: FeeSource
    spendable: int
    top_up: TopUpEvent | None = None


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
            self.errors += 1
            self.consecutive_errors += 1
            self.last_error = describe_error(exc)
            self.last_check_at = time.time()
            hint = getattr(exc, "hint", None)
            log.warning(
                "auto-funding check for provider %s failed (%d in a row): %s%s",
                self.provider,
                self.consecutive_errors,
                self.last_error,
                "" if not hint or hint in str(exc) else f" (hint: {hint})",
            )
            log.debug("auto-funding failure details", exc_info=True)
            await self._callback(self._on_error, exc)
            return
        self.consecutive_errors = 0
        self.last_check_at = time.time()
        self.last_unsettled_fee = outcome.unsettled_fee
        self.last_fee_source = outcome.fee_source
        self.last_spendable = outcome.spendable
        if outcome.fee_source == "local":
            self.fee_fallbacks += 1
        event = outcome.top_up
        if event is not None:
            self.top_ups += 1
            self.topped_up_total += event.amount
            self.last_top_up_at = self.last_check_at
            log.info(
                "auto-funding topped up provider %s by %d wei (deficit %d, unsettled %d from %s) in %s",
                self.provider,
                event.amount,
                event.deficit,
                event.unsettled_fee,
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
