"""Fault knobs of a devnet provider, mutable at runtime through ``handle.faults``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .._checks import need_bool, need_int, need_probability, need_seconds

__all__ = ["ProviderFaults"]


@dataclass
class ProviderFaults:
    """Misbehaviours a devnet provider can be told to show. Change the attributes at any time.

    The error knobs apply to the billed inference routes (``POST /v1/proxy/...`` and
    ``POST /v1/async/...``); a request refused by a fault is never billed. ``latency`` applies to
    every route.

    Attributes:
        latency: seconds added before answering any request.
        error_rate: probability (0..1) that an inference request answers ``500``
            (``{"error": {"code": "internal_error"}}``); drawn from a RNG seeded with ``seed``.
        seed: seed of that RNG (reseeded by :meth:`reset` and when assigned through :meth:`reseed`).
        rate_limit: answer ``429`` with ``Retry-After`` to the next N inference requests
            (``-1``: to all of them until changed).
        retry_after: the ``Retry-After`` value, in whole seconds, sent with those 429s (and 503s).
        unavailable: answer ``503`` to the next N inference requests (``-1``: all).
        cut_stream_after: when set, streamed responses stop after this many SSE events: the
            connection is closed without the final usage chunk and without ``[DONE]``; such a
            response is not billed and has no signature.
        wrong_signature: the signature endpoint signs with a key that is not the TEE signer.
        tamper: change every signed response body AFTER its signature text was taken (a
            man-in-the-middle as the client sees it): the signature stays genuine but covers the
            original bytes. Chat text ``Echo`` becomes ``Evil`` (JSON and SSE), transcription
            text gets an ``Evil: `` prefix, images are replaced by another PNG (sync answers and
            async job results).
        echo_headers: every error answer quotes the request's headers (``Authorization``
            included) in its message, as a misconfigured gateway does: for testing that clients
            keep no secret from remote text.

    Raises:
        ConfigError: (at construction) a knob of the wrong type or out of range.
    """

    latency: float = 0.0
    error_rate: float = 0.0
    seed: int = 0
    rate_limit: int = 0
    retry_after: int = 1
    unavailable: int = 0
    cut_stream_after: int | None = None
    wrong_signature: bool = False
    tamper: bool = False
    echo_headers: bool = False
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def __post_init__(self) -> None:
        need_seconds("latency", self.latency, zero_ok=True)
        need_probability("error_rate", self.error_rate)
        need_int("seed", self.seed)
        need_int("rate_limit", self.rate_limit, -1)
        need_int("retry_after", self.retry_after, 0)
        need_int("unavailable", self.unavailable, -1)
        if self.cut_stream_after is not None:
            need_int("cut_stream_after", self.cut_stream_after, 0)
        for name in ("wrong_signature", "tamper", "echo_headers"):
            need_bool(name, getattr(self, name))
        self._rng = random.Random(self.seed)

    def reseed(self, seed: int) -> None:
        """Restart the error RNG from ``seed``."""
        self.seed = seed
        self._rng = random.Random(seed)

    def reset(self) -> None:
        """Turn every fault off (and reseed the RNG)."""
        self.latency = 0.0
        self.error_rate = 0.0
        self.rate_limit = 0
        self.retry_after = 1
        self.unavailable = 0
        self.cut_stream_after = None
        self.wrong_signature = False
        self.tamper = False
        self.echo_headers = False
        self._rng = random.Random(self.seed)

    def draw(self) -> tuple[int, str, str] | None:
        """Decide the fault for one inference request.

        Returns:
            ``(status, code, message)`` for a refused request, or ``None`` to serve it.
        """
        if self.unavailable:
            if self.unavailable > 0:
                self.unavailable -= 1
            return (503, "service_unavailable", "devnet fault: provider temporarily unavailable")
        if self.rate_limit:
            if self.rate_limit > 0:
                self.rate_limit -= 1
            return (429, "rate_limited", "devnet fault: too many requests")
        if self.error_rate > 0 and self._rng.random() < self.error_rate:
            return (500, "internal_error", "devnet fault: random internal error")
        return None
