"""The retry policy of provider requests and the one function that decides each retry.

Which calls are repeated, and on what (a billed call is never repeated when the provider may
already have served it):

=====================================  =====  =====  ===========  =======================  ==========
call                                   429    503    500/502/504  failed before sending    read error
=====================================  =====  =====  ===========  =======================  ==========
GET (signature, quote, job polls)      retry  retry  retry        retry                    retry
POST inference (chat, images, edits,   retry  retry  no           retry                    no
transcriptions, async job submission)
a stream after its headers arrived     --     --     --           --                       no
=====================================  =====  =====  ===========  =======================  ==========

Only 429 and 503 say "not served" (the provider refused before doing the work). A 502 or 504
comes from a gateway in front of the provider, which may have forwarded the request and timed
out or lost the answer after the provider served and billed it, so a billed POST is not sent
again; "failed before sending" means a connection that was never established (refused, connect
timeout, no free pooled connection).

``Retry-After`` (or ``retry-after-ms``) is honoured: the SDK never retries sooner than asked. A
wait longer than ``max_retry_after``, or one that would overrun the total time budget, is not
waited for: the error is raised at once with its ``retry_after`` so the caller can reschedule.
A 401 for a stale session token (``token_expired``, ``generation_mismatch``) is not counted here:
the token is re-signed and the request resent once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._exceptions import OGError, ProviderRateLimitError, ProviderServerError, TransportFailure
from ._validate import check_int, check_seconds

__all__ = ["RequestRetryPolicy", "provably_not_served", "retry_delay"]

#: Server errors that mean "not served": safe to repeat even for a billed call. 502/504 are not
#: here: a gateway may have timed out after the provider served (and billed) the request.
_NOT_SERVED = frozenset({503})


def provably_not_served(error: OGError) -> bool:
    """Whether a failed billed call provably did not reach the model, so sending it again is safe.

    True for a 429, a 503 and a connection that was never established; false for everything
    else (a 502/504/500 or a read error may come after the provider served and billed it).
    """
    if isinstance(error, ProviderRateLimitError):
        return True
    if isinstance(error, ProviderServerError):
        return error.status_code in _NOT_SERVED
    if isinstance(error, TransportFailure):
        return error.not_sent
    return False


@dataclass(frozen=True)
class RequestRetryPolicy:
    """Bounded retries of provider requests: both the attempts and the total time are bounded.

    Set it per broker: ``broker.inference.retry_policy = RequestRetryPolicy(attempts=5)``.

    Attributes:
        attempts: most attempts per call, the first included (>= 1).
        max_elapsed: total seconds a call may spend, waits included, before it stops retrying.
        initial_backoff: first backoff in seconds when no ``Retry-After`` was sent.
        max_backoff: cap of one backoff (exponential with full jitter in between).
        max_retry_after: the longest ``Retry-After`` the SDK waits for.
        wait_scale: multiplies every wait; ``0`` makes all waits zero (tests).

    Raises:
        ConfigError: ``attempts`` is not an int in 1..1000, or another field is not a finite
            number 0 or more.
    """

    attempts: int = 3
    max_elapsed: float = 60.0
    initial_backoff: float = 0.25
    max_backoff: float = 4.0
    max_retry_after: float = 30.0
    wait_scale: float = 1.0

    def __post_init__(self) -> None:
        check_int("attempts", self.attempts, minimum=1, maximum=1000)
        for name in ("max_elapsed", "initial_backoff", "max_backoff", "max_retry_after", "wait_scale"):
            check_seconds(name, getattr(self, name), allow_zero=True)

    @classmethod
    def no_wait(cls, attempts: int = 3) -> RequestRetryPolicy:
        """A policy for tests: the same decisions, zero waits."""
        return cls(attempts=attempts, wait_scale=0.0)

    @classmethod
    def never(cls) -> RequestRetryPolicy:
        """One attempt, no retries."""
        return cls(attempts=1)

    def backoff(self, retry: int) -> float:
        """The jittered backoff before retry number ``retry`` (1-based), in seconds."""
        ceiling = min(self.max_backoff, self.initial_backoff * (2 ** (retry - 1)))
        return random.uniform(ceiling / 2, ceiling) if ceiling > 0 else 0.0


def retry_delay(
    policy: RequestRetryPolicy,
    error: OGError,
    *,
    attempt: int,
    elapsed: float,
    idempotent: bool,
    retry_after: float | None,
) -> float | None:
    """Seconds to wait before repeating a failed call, or ``None`` to raise ``error`` now.

    Args:
        policy: the bounds.
        error: the failure of attempt number ``attempt`` (1-based).
        attempt: how many attempts were made.
        elapsed: seconds spent on the call so far.
        idempotent: whether the call is safe to repeat after the provider may have served it.
        retry_after: the provider's ``Retry-After``, in seconds, when it sent one.
    """
    if attempt >= policy.attempts:
        return None
    if not isinstance(error, (ProviderRateLimitError, ProviderServerError, TransportFailure)):
        return None
    if not idempotent and not provably_not_served(error):
        return None
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return None
        wait = max(retry_after, 0.0)
    else:
        wait = policy.backoff(attempt)
    if elapsed + wait * policy.wait_scale > policy.max_elapsed:
        return None
    return wait * policy.wait_scale
