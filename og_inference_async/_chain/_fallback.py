"""Several JSON-RPC endpoints behind one web3 provider: health, cooldowns, read failover, pinned sends.

The broker builds a :class:`FallbackProvider` when it is given ``rpc_urls=[...]``: one
:class:`~og_inference_async._chain._provider.PooledHTTPProvider` per URL, all on the broker's
shared HTTP pool. Every URL must serve the broker's chain id; the broker checks each one in
``open()``.

Health (:class:`EndpointHealth`, plain sync bookkeeping with an injectable clock). Each endpoint
keeps a failure penalty that halves every ``penalty_half_life`` seconds, an exponentially weighted
latency of its good answers, a count of consecutive failures and a cooldown deadline. Its score,
in 0..1, is ``1 / (1 + penalty)`` times ``1 / (1 + latency / latency_scale)``. A failure is a
request that got no usable answer: a transport error, a timeout, an HTTP error status, a body that
is not JSON-RPC, or a JSON-RPC error that is about the endpoint rather than the request (a rate
limit, "try again", "timeout"). A JSON-RPC error that answers the request (a revert, bad params,
"nonce too low") is a good answer: every node would say the same.

* A transient failure cools the endpoint down for ``base_cooldown * 2**(n - 1)`` seconds, ``n``
  its consecutive failures, at most ``max_cooldown``.
* A rate limit (HTTP 429, JSON-RPC -32005 / -32029 / 429, "rate limit" in the message) cools it
  down for at least ``rate_limit_cooldown * 2**(n - 1)`` (capped the same way), or longer when
  the endpoint asked for longer with ``Retry-After`` (capped at ``max_cooldown``).
* A good answer ends the cooldown and resets the consecutive count; the penalty fades with time,
  so an endpoint that recovered ranks again after a while.

Reads. A request goes to the usable endpoint (not cooling down) with the best score (scores
within ``score_bucket`` of each other tie, and the earlier URL wins, so the first URL is the
primary while all are healthy). On a failure the request goes on at once to the next usable
endpoint, within the time the caller gave this attempt; when all have failed the last error is
raised, and :class:`~og_inference_async._chain._rpc.RpcClient`'s retry policy (backoff, honoured
``Retry-After``, bounded attempts and time) wraps the whole thing, as viem's ``fallback``
transport does. When every endpoint is cooling down the one whose cooldown ends first is tried
anyway (a probe), so the provider never fails a request without asking a node.

Sends. ``eth_sendRawTransaction`` and ``eth_sendTransaction`` are never failed over: without an
explicit endpoint they go to the best endpoint once, and an error comes back as it is. The
transaction sender (``_tx``) pins each signed transaction to one endpoint, and keeps this rule:

1. the first send of a transaction goes to the best endpoint, which becomes its pin;
2. every re-send of its identical bytes goes to the pin while the pin is usable;
3. when the pin is cooling down (it failed or rate-limits), the bytes are not re-sent elsewhere
   until the other endpoints have been asked, by hash and by the account's ``latest`` nonce:
   one of them has the transaction -> it is known, nothing is sent; none has it but the nonce is
   used -> "nonce used" (the sender resolves that as it resolves a node's "nonce too low"); none
   could be asked -> still ambiguous, nothing is sent (the sender asks again later); otherwise
   (the endpoints that answered do not have it and its nonce is free) it is pinned to the best
   other endpoint and sent there.

The same bytes have one hash and one nonce, so even a re-send to a node that already holds them
executes at most once; asking first keeps a transaction from being broadcast twice through two
endpoints while its first send is in doubt.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio

from .._exceptions import RPCError
from .._redact import REDACTED, redact
from ..types import RpcEndpointHealth
from ._provider import DirectProvider, PooledHTTPProvider, Poster, throttle_kind

__all__ = ["FallbackProvider", "EndpointHealth", "HealthTuning", "display_url"]

T = TypeVar("T")

#: Methods that are never failed over to another endpoint (a retried send may be a second broadcast).
NO_FAILOVER = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})
#: Another endpoint is not tried with less than this much of the attempt's time left (seconds).
_MIN_TRY = 0.05
#: Path segments at least this long are redacted when a URL is shown (they often hold API keys).
_LONG_SEGMENT = 16


def display_url(url: str) -> str:
    """``url`` as shown in messages: scheme, host, port and path, without credentials or query.

    Path segments of ``_LONG_SEGMENT`` characters or more (``/v2/<api key>``) are redacted.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    path = "/".join(REDACTED if len(seg) >= _LONG_SEGMENT else seg for seg in parts.path.split("/"))
    query = f"?{REDACTED}" if parts.query else ""
    return redact(f"{parts.scheme}://{host}{port}{path}{query}")


@dataclass(frozen=True)
class HealthTuning:
    """The constants of the health bookkeeping (see the module docstring); seconds unless said.

    Attributes:
        base_cooldown: cooldown after a first transient failure (doubles per consecutive failure).
        rate_limit_cooldown: cooldown after a first rate limit (doubles likewise).
        max_cooldown: the longest cooldown, ``Retry-After`` included.
        penalty_half_life: how fast past failures fade from the score.
        latency_scale: the latency that halves the score's latency factor.
        latency_weight: weight of a new answer in the latency average (0..1).
        score_bucket: scores this close rank as equal (the earlier URL wins).
    """

    base_cooldown: float = 1.0
    rate_limit_cooldown: float = 2.0
    max_cooldown: float = 30.0
    penalty_half_life: float = 30.0
    latency_scale: float = 1.0
    latency_weight: float = 0.2
    score_bucket: float = 0.1


class _State:
    """The mutable health of one endpoint."""

    __slots__ = (
        "consecutive",
        "cool_until",
        "failures",
        "last_error",
        "latency",
        "penalty",
        "penalty_at",
        "rate_limited",
        "requests",
        "url",
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.penalty = 0.0
        self.penalty_at = 0.0
        self.latency: float | None = None
        self.consecutive = 0
        self.cool_until = 0.0
        self.requests = 0
        self.failures = 0
        self.rate_limited = 0
        self.last_error: str | None = None


class EndpointHealth:
    """Health scores and cooldowns of a fixed list of endpoints (indexes 0..n-1); no I/O.

    Args:
        urls: the endpoints (shown through :func:`display_url`).
        tuning: the constants.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        tuning: HealthTuning | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tuning = tuning or HealthTuning()
        self._clock = clock
        self._states = [_State(display_url(u)) for u in urls]

    def __len__(self) -> int:
        return len(self._states)

    def _penalty(self, state: _State, now: float) -> float:
        if state.penalty == 0.0:
            return 0.0
        fade: float = 0.5 ** ((now - state.penalty_at) / self.tuning.penalty_half_life)
        return state.penalty * fade

    def score(self, index: int) -> float:
        """The endpoint's score in 0..1 (higher is healthier)."""
        state = self._states[index]
        latency = state.latency or 0.0
        return 1.0 / (1.0 + self._penalty(state, self._clock())) / (1.0 + latency / self.tuning.latency_scale)

    def is_usable(self, index: int) -> bool:
        """Whether the endpoint is not cooling down."""
        return self._states[index].cool_until <= self._clock()

    def ranked(self, *, exclude: int | None = None) -> list[int]:
        """The usable endpoints, best first; when none is, the one whose cooldown ends first.

        ``exclude`` leaves one endpoint out (the answer may then be empty).
        """
        now = self._clock()
        candidates = [i for i in range(len(self._states)) if i != exclude]
        usable = [i for i in candidates if self._states[i].cool_until <= now]
        if not usable:
            return sorted(candidates, key=lambda i: self._states[i].cool_until)[:1]
        bucket = self.tuning.score_bucket
        return sorted(usable, key=lambda i: (-round(self.score(i) / bucket), i))

    def best(self, *, exclude: int | None = None) -> int | None:
        """The endpoint a request should go to now (``None`` only when ``exclude`` was the only one)."""
        ranked = self.ranked(exclude=exclude)
        return ranked[0] if ranked else None

    def started(self, index: int) -> None:
        """Count a request sent to the endpoint."""
        self._states[index].requests += 1

    def succeeded(self, index: int, latency: float) -> None:
        """Record a good answer after ``latency`` seconds: the cooldown ends."""
        state = self._states[index]
        weight = self.tuning.latency_weight
        state.latency = latency if state.latency is None else (1 - weight) * state.latency + weight * latency
        state.consecutive = 0
        state.cool_until = 0.0

    def failed(self, index: int, error: RPCError, *, rate_limited: bool = False) -> float:
        """Record a failure (a rate limit when ``rate_limited``); returns the cooldown in seconds."""
        tuning = self.tuning
        now = self._clock()
        state = self._states[index]
        state.penalty = self._penalty(state, now) + 1.0
        state.penalty_at = now
        state.consecutive += 1
        state.failures += 1
        base = tuning.base_cooldown
        if rate_limited:
            state.rate_limited += 1
            base = tuning.rate_limit_cooldown
        cooldown = min(base * 2.0 ** (state.consecutive - 1), tuning.max_cooldown)
        if error.retry_after is not None:
            cooldown = max(cooldown, min(error.retry_after, tuning.max_cooldown))
        state.cool_until = max(state.cool_until, now + cooldown)
        state.last_error = error.message[:200]
        return cooldown

    def snapshot(self) -> list[RpcEndpointHealth]:
        """The public view, in the order the URLs were given."""
        now = self._clock()
        return [
            RpcEndpointHealth(
                url=state.url,
                score=round(self.score(i), 4),
                cooling_down=state.cool_until > now,
                cooldown_left=round(max(0.0, state.cool_until - now), 3),
                requests=state.requests,
                failures=state.failures,
                rate_limited=state.rate_limited,
                consecutive_failures=state.consecutive,
                latency=state.latency,
                last_error=state.last_error,
            )
            for i, state in enumerate(self._states)
        ]


def _is_rate_limit(error: RPCError) -> bool:
    return error.code == 429 or throttle_kind({"code": error.code, "message": error.message}) == "rate_limit"


def _throttle_in(answer: Any, method: str) -> RPCError | None:
    """The endpoint's own trouble carried in an answer (one response, or a batch's items), if any."""
    items = answer if isinstance(answer, list) else [answer]
    for item in items:
        err = item.get("error") if isinstance(item, dict) else None
        kind = throttle_kind(err)
        if kind is not None:
            assert isinstance(err, dict)
            code = err.get("code")
            return RPCError(
                f"{method}: {redact(str(err.get('message', ''))[:200])}",
                code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                retryable=True,
                method=method,
            )
    return None


class FallbackProvider(DirectProvider):
    """A web3 async provider over several JSON-RPC endpoints, with health scoring and read failover.

    The module docstring states the policy. ``AsyncWeb3(FallbackProvider(...))`` works; the SDK's
    own client calls :meth:`request` / :meth:`request_batch` directly.

    Args:
        endpoints: ``(url, post)`` pairs, one per endpoint (``post`` as for ``PooledHTTPProvider``).
        timeout: seconds one request may take when the caller gives none (failover included).
        tuning: health constants.
        clock: monotonic seconds for cooldowns (injectable for tests).

    Raises:
        ConfigError: no endpoint.
    """

    def __init__(
        self,
        endpoints: Sequence[tuple[str, Poster]],
        *,
        timeout: float = 10.0,
        tuning: HealthTuning | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from .._exceptions import ConfigError

        if not endpoints:
            raise ConfigError("a fallback provider needs at least one endpoint")
        super().__init__()
        self.urls = tuple(url for url, _ in endpoints)
        self.timeout = timeout
        self._providers = [PooledHTTPProvider(url, post, timeout=timeout) for url, post in endpoints]
        self.health = EndpointHealth(self.urls, tuning=tuning, clock=clock)
        self.endpoint_uri = self.urls[0]

    def __repr__(self) -> str:
        shown = ", ".join(repr(display_url(u)) for u in self.urls)
        return f"FallbackProvider([{shown}])"

    async def _try(
        self,
        index: int,
        what: str,
        call: Callable[[PooledHTTPProvider, float], Awaitable[T]],
        timeout: float,
        *,
        throttled_is_failure: bool,
    ) -> T:
        """One request on one endpoint, recorded in its health; the endpoint's trouble is raised."""
        health = self.health
        health.started(index)
        start = time.monotonic()
        cut = min(start + timeout, anyio.current_effective_deadline())
        try:
            with anyio.move_on_after(timeout) as scope:
                answer = await call(self._providers[index], timeout)
            if scope.cancelled_caught:
                raise RPCError(f"{what}: no answer within {timeout:g} s", retryable=True, method=what)
        except RPCError as exc:
            health.failed(index, exc, rate_limited=_is_rate_limit(exc))
            raise
        except BaseException:
            # The caller's scope (often with the same deadline) cut the request: a timeout all the same.
            if time.monotonic() >= cut:
                health.failed(index, RPCError(f"{what}: no answer within {timeout:g} s", retryable=True))
            raise
        problem = _throttle_in(answer, what)
        if problem is None:
            health.succeeded(index, time.monotonic() - start)
            return answer
        health.failed(index, problem, rate_limited=_is_rate_limit(problem))
        if throttled_is_failure:
            raise problem
        return answer

    async def _dispatch(
        self,
        what: str,
        call: Callable[[PooledHTTPProvider, float], Awaitable[T]],
        timeout: float | None,
        endpoint: int | None,
        *,
        failover: bool,
    ) -> T:
        budget = self.timeout if timeout is None else timeout
        if endpoint is not None or not failover:
            index = self.health.best() if endpoint is None else endpoint
            assert index is not None
            return await self._try(index, what, call, budget, throttled_is_failure=False)
        deadline = min(time.monotonic() + budget, anyio.current_effective_deadline())
        last: RPCError | None = None
        for index in self.health.ranked():
            left = deadline - time.monotonic()
            if last is not None and left < _MIN_TRY:
                break
            try:
                return await self._try(index, what, call, max(left, _MIN_TRY), throttled_is_failure=True)
            except RPCError as exc:
                last = exc
        assert last is not None
        raise last

    async def request(
        self, method: str, params: Any, *, timeout: float | None = None, endpoint: int | None = None
    ) -> dict[str, Any]:
        """Send one JSON-RPC request; reads fail over across endpoints (see the module docstring).

        Args:
            method: the JSON-RPC method.
            params: its parameters.
            timeout: seconds for the whole request, failover included.
            endpoint: send to this endpoint only (by index): no failover, and a rate-limit
                answer comes back as it is (recorded in the endpoint's health).

        Raises:
            RPCError: every endpoint tried failed (the last failure), or the one asked did.
        """
        return await self._dispatch(
            method,
            lambda provider, left: provider.request(method, params, timeout=left),
            timeout,
            endpoint,
            failover=method not in NO_FAILOVER,
        )

    async def request_batch(
        self,
        calls: list[tuple[str, Any]],
        *,
        timeout: float | None = None,
        endpoint: int | None = None,
    ) -> list[dict[str, Any]]:
        """Send a JSON-RPC batch (reads); it fails over as a whole. Arguments as for :meth:`request`.

        Raises:
            RPCError: every endpoint tried failed (the last failure), or the one asked did.
        """
        return await self._dispatch(
            "batch",
            lambda provider, left: provider.request_batch(calls, timeout=left),
            timeout,
            endpoint,
            failover=not any(m in NO_FAILOVER for m, _ in calls),
        )
