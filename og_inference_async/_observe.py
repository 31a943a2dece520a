"""Observability: the broker's counters (:class:`BrokerStats`) and the user's event hooks (:class:`Hooks`).

One :class:`Observer` per broker is handed to the layers that do the work: the provider
transport (requests by route, retries, ``on_request`` / ``on_response``), the request services
(fees by provider, verification outcomes), the transaction sender (``on_transaction``, receipt
waits for ``on_progress``), auto-funding (``on_top_up``) and settlement waits (``on_progress``).
The JSON-RPC calls by method are the RPC client's own counter, read when a snapshot is taken.

Counting is a dict increment; a hook that is not set costs one ``is None`` test. A hook that
raises is logged at WARNING and otherwise ignored: observing never breaks a request.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigError
from ._validate import shown

if TYPE_CHECKING:
    from .types.funding import TopUpEvent
    from .types.inference import VerificationHandle

__all__ = ["BrokerStats", "Hooks", "Observer", "combine_hooks"]

log = logging.getLogger(__name__)

Hook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Hooks:
    """Callbacks for the broker's events; each receives one ``dict`` describing the event.

    Hooks are plain (sync) functions called in the event loop: keep them quick, and hand slow
    work to a queue. Secrets (keys, session tokens, headers) are never in the events.

    Attributes:
        on_request: before each attempt of a provider request:
            ``{"provider", "route", "attempt"}``.
        on_response: after each answer: ``{"provider", "route", "status", "attempt"}``, or
            ``{"provider", "route", "error", "attempt"}`` when the attempt failed.
        on_transaction: after a transaction was mined: ``{"kind", "tx_hash", "value_wei", "block",
            "gas_used"}``.
        on_top_up: after auto-funding topped a sub-account up: ``{"provider", "amount_wei",
            "reason", "tx_hash", "deficit_wei", "unsettled_fee_wei", "fee_source"}``
            (``reason`` is ``"check"`` or ``"refusal"``).
        on_progress: while waiting, after each poll that found nothing yet:
            ``{"kind": "receipt", "tx_hash", "elapsed", "polls"}`` for a transaction's receipt,
            ``{"kind": "settlement", "provider", "elapsed", "polls"}`` in ``wait_settled``
            (``elapsed`` in seconds).
        on_billed: after a request's fee was counted locally (what ``local_fees`` adds up):
            ``{"provider", "fee_wei"}``; an async job fetched twice is billed once.

    Raises:
        ConfigError: a hook that is not callable.
    """

    on_request: Hook | None = None
    on_response: Hook | None = None
    on_transaction: Hook | None = None
    on_top_up: Hook | None = None
    on_progress: Hook | None = None
    on_billed: Hook | None = None

    def __post_init__(self) -> None:
        for name in HOOK_NAMES:
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigError(f"{name} must be callable, got {shown(value)}")


#: The event names of :class:`Hooks`, in declaration order.
HOOK_NAMES = ("on_request", "on_response", "on_transaction", "on_top_up", "on_progress", "on_billed")


def combine_hooks(*hooks: Hooks | None) -> Hooks:
    """One :class:`Hooks` running every given set's callback of each event, in the order given.

    A callback that raises is logged at WARNING and the others still run (as for a single hook).

    Args:
        *hooks: the sets to combine (``None`` entries are skipped).
    """
    sets = [h for h in hooks if h is not None]
    fields: dict[str, Hook | None] = {}
    for name in HOOK_NAMES:
        chain = [fn for fn in (getattr(h, name) for h in sets) if fn is not None]
        fields[name] = chain[0] if len(chain) == 1 else _chained(chain) if chain else None
    return Hooks(**fields)


def _chained(chain: list[Hook]) -> Hook:
    """A hook calling each of ``chain`` in turn, each failure logged and isolated."""

    def run(event: dict[str, Any]) -> None:
        for fn in chain:
            try:
                fn(event)
            except Exception:
                log.warning("an event hook raised; ignored", exc_info=True)

    return run


@dataclass(frozen=True)
class BrokerStats:
    """A snapshot of one broker's counters since it opened (``broker.stats()``).

    Attributes:
        rpc_calls: JSON-RPC requests by method (a batch counts as ``"batch"``).
        provider_requests: attempts of provider HTTP requests by route (``"chat"``,
            ``"image generation"``, ``"signature"``, ...), retries included.
        retries: provider requests sent again after a failed attempt.
        transactions: transactions mined, by kind (``"LedgerManager.depositFund"``, ...).
        fees: fees counted locally, wei by provider (as ``broker.inference.local_fees``).
        verification: verification outcomes by status (``"bound"``, ``"skipped"``, ...).
        session_token_hits: session-token cache hits (a token reused without signing).
        session_token_misses: session tokens signed.
        top_ups: auto-funding top-ups by provider (periodic checks and refills after a refusal).
    """

    rpc_calls: Mapping[str, int] = field(default_factory=dict)
    provider_requests: Mapping[str, int] = field(default_factory=dict)
    retries: int = 0
    transactions: Mapping[str, int] = field(default_factory=dict)
    fees: Mapping[str, int] = field(default_factory=dict)
    verification: Mapping[str, int] = field(default_factory=dict)
    session_token_hits: int = 0
    session_token_misses: int = 0
    top_ups: Mapping[str, int] = field(default_factory=dict)


class Observer:
    """The counters and hooks of one broker (internal; read through ``broker.stats()``).

    Args:
        hooks: the user's callbacks (default: none).
    """

    def __init__(self, hooks: Hooks | None = None) -> None:
        self.hooks = hooks or Hooks()
        self.requests: Counter[str] = Counter()
        self.retries = 0
        self.transactions: Counter[str] = Counter()
        self.verification: Counter[str] = Counter()
        self.top_ups: Counter[str] = Counter()

    def call(self, hook: Hook | None, event: dict[str, Any]) -> None:
        """Run ``hook`` on ``event``; a failing hook is logged, never raised."""
        if hook is None:
            return
        try:
            hook(event)
        except Exception:
            log.warning("an event hook raised; ignored", exc_info=True)

    def request(self, provider: str | None, route: str, attempt: int) -> None:
        """An attempt of a provider request is about to be sent."""
        self.requests[route] += 1
        if attempt > 1:
            self.retries += 1
        if self.hooks.on_request is not None:
            event = {"provider": provider, "route": route, "attempt": attempt}
            self.call(self.hooks.on_request, event)

    def response(
        self, provider: str | None, route: str, attempt: int, status: int | None, error: str | None
    ) -> None:
        """An attempt of a provider request ended (``status`` when answered, else ``error``)."""
        if self.hooks.on_response is not None:
            event: dict[str, Any] = {"provider": provider, "route": route, "attempt": attempt}
            event.update({"status": status} if error is None else {"error": error})
            self.call(self.hooks.on_response, event)

    def transaction(self, kind: str, tx_hash: str, value: int, block: int, gas_used: int) -> None:
        """A transaction was mined."""
        self.transactions[kind] += 1
        event = {"kind": kind, "tx_hash": tx_hash, "value_wei": value, "block": block, "gas_used": gas_used}
        self.call(self.hooks.on_transaction, event)

    def verified(self, status: str) -> None:
        """A verification outcome is known."""
        self.verification[status] += 1

    def verified_when_done(self, handle: VerificationHandle) -> None:
        """Count ``handle``'s outcome when it is known (now, or when a background check ends)."""
        handle.add_done_callback(lambda outcome: self.verified(outcome.status.value))

    def top_up(self, event: TopUpEvent) -> None:
        """Auto-funding topped a sub-account up."""
        self.top_ups[event.provider] += 1
        if self.hooks.on_top_up is not None:
            self.call(
                self.hooks.on_top_up,
                {
                    "provider": event.provider,
                    "amount_wei": event.amount,
                    "reason": event.reason,
                    "tx_hash": event.tx_hash,
                    "deficit_wei": event.deficit,
                    "unsettled_fee_wei": event.unsettled_fee,
                    "fee_source": event.fee_source,
                },
            )

    def billed(self, provider: str, fee: int) -> None:
        """A request's fee (wei) was counted locally for ``provider``."""
        if self.hooks.on_billed is not None:
            self.call(self.hooks.on_billed, {"provider": provider, "fee_wei": fee})

    @property
    def watching_progress(self) -> bool:
        """Whether an ``on_progress`` hook is set (waits build no event otherwise)."""
        return self.hooks.on_progress is not None

    def progress(self, kind: str, key: str, subject: str, elapsed: float, polls: int) -> None:
        """A wait of ``kind`` for ``subject`` (named ``key`` in the event) polled ``polls`` times
        in ``elapsed`` seconds and goes on."""
        if self.hooks.on_progress is not None:
            event = {"kind": kind, key: subject, "elapsed": elapsed, "polls": polls}
            self.call(self.hooks.on_progress, event)
