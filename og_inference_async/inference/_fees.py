"""Client-side fee estimates (PROTOCOL 4.6 extractors) and the per-provider local fee counter.

Plain sync code. Counts follow the official TS SDK's extractors: chat bills
``prompt_tokens``/``completion_tokens``; image generation and editing bill ``n`` images at the
input price; speech-to-text bills billable seconds (rounded half up, at least 1) in duration
mode, or ``input_tokens``/``output_tokens`` in token mode. Service types the TS SDK does not know
fall back to whichever token pair the usage object carries, instead of failing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from ..types.inference import FeeBreakdown

__all__ = ["LocalFeeBook", "billable_seconds", "fee_breakdown", "priced", "usage_units"]

_IMAGE_TYPES = ("text-to-image", "image-editing")


def _count(value: Any) -> int:
    """A non-negative count from an int or a numeric string; anything else is 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value > 0 else 0
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.isdigit() else 0
    return 0


def _images(value: Any) -> int:
    """The ``n`` of an image request: a positive number or numeric string, else 1."""
    n = _count(value)
    return n if n > 0 else 1


def billable_seconds(seconds: Any) -> int:
    """Billable seconds of audio: rounded half up, at least 1 for any positive duration, else 0."""
    if isinstance(seconds, bool) or seconds is None:
        return 0
    try:
        dec = Decimal(str(seconds).strip())
    except InvalidOperation:
        return 0
    if not dec.is_finite() or dec <= 0:
        return 0
    return max(int(dec.quantize(Decimal(1), rounding=ROUND_HALF_UP)), 1)


def usage_units(service_type: str, usage: dict[str, Any] | None, *, n: Any = None) -> tuple[int, int] | None:
    """``(input units, output units)`` of one request, or ``None`` when they cannot be known.

    Args:
        service_type: the service's on-chain type (case-insensitive).
        usage: the response's ``usage`` object (chat, speech-to-text).
        n: the request's image count (image types); missing or invalid counts as 1.
    """
    kind = service_type.strip().lower()
    if kind in _IMAGE_TYPES:
        return _images(n), 0
    if not isinstance(usage, dict):
        return None
    if kind == "speech-to-text":
        mode = usage.get("type")
        seconds = billable_seconds(usage.get("seconds"))
        if mode == "duration" or (mode != "tokens" and seconds > 0):
            return seconds, 0
        return _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    if kind == "chatbot" or "prompt_tokens" in usage or "completion_tokens" in usage:
        return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    if "input_tokens" in usage or "output_tokens" in usage:
        return _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    return None


def fee_breakdown(
    service_type: str,
    input_price: int,
    output_price: int,
    usage: dict[str, Any] | None,
    *,
    n: Any = None,
) -> FeeBreakdown | None:
    """The fee of one request from its usage (or image count) and the on-chain prices, or ``None``."""
    units = usage_units(service_type, usage, n=n)
    if units is None:
        return None
    return priced(*units, input_price, output_price)


def priced(inputs: int, outputs: int, input_price: int, output_price: int) -> FeeBreakdown:
    """The fee of ``inputs`` and ``outputs`` units at the given prices."""
    return FeeBreakdown(
        input_units=inputs,
        output_units=outputs,
        input_price=input_price,
        output_price=output_price,
        fee=inputs * input_price + outputs * output_price,
    )


class LocalFeeBook:
    """Fees this broker estimated per provider since it started (or since the last reset), in wei.

    It is what the SDK knows locally about unsettled spending; the provider's own
    ``/v1/user/<addr>/unsettledfee`` is authoritative. A billed item with an identity (an async
    image job) is counted once however often its result is fetched; the last ``max_keys``
    identities are remembered. It also keeps the recent fees in one-second buckets (the last
    :attr:`RATE_HORIZON` seconds) so auto-funding can size top-ups from the observed spend rate
    (:meth:`rate`).

    Args:
        clock: a monotonic clock in seconds (tests pass their own).
        max_keys: how many billed identities are remembered.
        on_add: called with ``(provider, fee)`` for each fee counted (the broker's ``on_billed`` event).
    """

    #: Seconds of history kept for :meth:`rate`.
    RATE_HORIZON = 600

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 10_000,
        on_add: Callable[[str, int], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_add = on_add
        self._fees: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        self._recent: dict[str, deque[list[int]]] = {}
        self._first: dict[str, float] = {}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._max_keys = max_keys

    def totals(self) -> dict[str, int]:
        """The counted fees of every provider (wei by address), a copy."""
        return dict(self._fees)

    def record(self, provider: str, cost: FeeBreakdown | None, *, once: str | None = None) -> int:
        """Record one request's estimated cost (``None``: unknown, counted as 0); returns its fee.

        Args:
            provider: the provider (checksummed).
            cost: the estimated cost.
            once: the identity of what is billed (an async job id): a second record of the same
                identity for the same provider returns the fee without counting it again.
        """
        fee = cost.fee if cost is not None else 0
        if once is not None:
            key = (provider, once)
            if key in self._seen:
                self._seen.move_to_end(key)
                return fee
            self._seen[key] = None
            if len(self._seen) > self._max_keys:
                self._seen.popitem(last=False)
        self.add(provider, fee)
        return fee

    def add(self, provider: str, fee: int) -> None:
        """Record one request's fee (``provider`` checksummed)."""
        self._fees[provider] = self._fees.get(provider, 0) + fee
        self._counts[provider] = self._counts.get(provider, 0) + 1
        now = self._clock()
        second = int(now)
        buckets = self._recent.get(provider)
        if buckets is None:
            buckets = self._recent[provider] = deque()
            self._first[provider] = now
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += fee
        else:
            buckets.append([second, fee])
        while buckets and buckets[0][0] <= second - self.RATE_HORIZON:
            buckets.popleft()
        if self._on_add is not None:
            self._on_add(provider, fee)

    def total(self, provider: str) -> int:
        """Fees recorded for ``provider``."""
        return self._fees.get(provider, 0)

    def requests(self, provider: str) -> int:
        """Requests recorded for ``provider``."""
        return self._counts.get(provider, 0)

    def rate(self, provider: str, window: float) -> int:
        """The spend rate of ``provider`` in wei per second over the last ``window`` seconds.

        Fees recorded in the window are divided by the window, or by the time since the first
        fee when that is shorter (at least one second), so a swarm that just started is not
        under-estimated. Fees seen within a single second are a burst, not a rate: 0.
        """
        buckets = self._recent.get(provider)
        if not buckets:
            return 0
        now = self._clock()
        since = now - window
        recent = [fee for second, fee in buckets if second + 1 > since]
        if len(recent) < 2:
            return 0  # fees seen in one second only: a burst, not yet a rate
        spent = sum(recent)
        span_ms = max(int(min(window, now - self._first[provider]) * 1000), 1000)
        return -(-spent * 1000 // span_ms)

    def reset(self, provider: str | None = None) -> None:
        """Forget the fees of one provider, or of all (the spend-rate history is kept)."""
        if provider is None:
            self._fees.clear()
            self._counts.clear()
        else:
            self._fees.pop(provider, None)
            self._counts.pop(provider, None)
