"""Provider failover: :class:`ProviderRouter` sends each request to one of several providers of a model.

``broker.inference.router(model=...)`` builds one. Per request it ranks the candidates (cheapest
first, or fastest first), skips those whose circuit is open, prepares a provider the first time it
is picked (``ensure_ready``: sub-account, funds, acknowledgement) and sends the request through the
ordinary request services. What happens on a failure is decided by what the failure proves:

======================================================  ==========  ===============  ================
failure                                                 fail over   counts against   billed?
                                                                    the provider
======================================================  ==========  ===============  ================
connection never established (``not_sent``)             yes         yes              no
429, 503 (a refusal before the model ran)               yes         yes              no
402, not acknowledged, 401/403 (refusals)               yes         no               no
preparing the provider failed (nothing sent to it)      yes         yes              no
``ResponseVerificationError`` under ``required``        yes         yes              yes (both fees)
500, 502, 504, a read error, a malformed answer         no (raised) yes              maybe
bad input (``ConfigError``)                             no (raised) no               no
======================================================  ==========  ===============  ================

So a request the provider may have billed is never sent again; a verification failure is the one
billed case that fails over (the issue's rule: the answer cannot be used, so another provider is
asked and both fees are counted in the local fee book). A stream fails over only until its
response headers arrive. :class:`CircuitBreaker` holds one provider's health (consecutive
failures, a cooldown, one trial request after it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

from .._exceptions import (
    ConfigError,
    NoProviderAvailableError,
    NotAcknowledgedError,
    OGError,
    ProviderAuthError,
    ProviderError,
    ProviderInsufficientBalanceError,
    ResponseVerificationError,
    ServiceNotFoundError,
)
from .._http import HttpStream, RawReply, handler_client
from .._options import CallOptions
from .._retry import provably_not_served
from .._runtime import Background
from .._units import Amount, to_wei
from .._validate import check_int, check_seconds, check_str, shown
from ..types import Service
from ..types.inference import ChatResult, ImageResult, RouteStats, TranscriptionResult
from ._common import provider_address
from ._stream import ChatStream
from ._verify import VerificationPolicy
from .audio import AudioRequests
from .budgets import Budget, Hold
from .discovery import DiscoveryService, ServiceDirectory
from .images import ImageRequests
from .onboarding import DEFAULT_MIN_BALANCE, OnboardingService
from .requests import ChatRequests

if TYPE_CHECKING:
    import os

    import openai

__all__ = ["PROVIDER_HEADER", "CircuitBreaker", "ProviderRouter", "RouterService", "may_fail_over"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Strategy = Literal["price", "latency"]
_STRATEGIES = ("price", "latency")
#: Weight of the newest latency sample in a provider's moving average.
_LATENCY_WEIGHT = 0.3


def may_fail_over(error: OGError) -> bool:
    """Whether a failed request may go to another provider (it was not billed, or failed verification)."""
    if isinstance(error, (ResponseVerificationError, ServiceNotFoundError)):
        return True
    if isinstance(error, (ProviderInsufficientBalanceError, NotAcknowledgedError, ProviderAuthError)):
        return True  # refused before the model ran: never billed
    return provably_not_served(error)


def _is_refusal(error: OGError) -> bool:
    """An account-side refusal (funds, acknowledgement, credentials): not the provider's health."""
    return isinstance(error, (ProviderInsufficientBalanceError, NotAcknowledgedError, ProviderAuthError))


class CircuitBreaker:
    """The health of one provider: closed (used), open (skipped), half open (one trial).

    ``threshold`` consecutive failures open the circuit; after ``cooldown`` seconds it lets one
    request through (half open): its success closes the circuit, its failure opens it again for
    another ``cooldown``. Other requests skip the provider while the trial runs.

    Args:
        threshold: consecutive failures that open the circuit (>= 1).
        cooldown: seconds the circuit stays open before the trial.
        clock: a monotonic clock (injectable for tests).

    Raises:
        ConfigError: ``threshold`` not an int >= 1, ``cooldown`` not a positive number.
    """

    def __init__(
        self, *, threshold: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = check_int("failure_threshold", threshold, minimum=1, maximum=1_000_000)
        self._cooldown = check_seconds("cooldown", cooldown)
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        """``"closed"``, ``"open"`` (cooling down) or ``"half_open"`` (a trial may run or runs)."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self._cooldown:
            return "open"
        return "half_open"

    def acquire(self) -> bool:
        """Whether a request may go to the provider now (in half open, only the one trial may).

        Every ``True`` must be followed by :meth:`record_success`, :meth:`record_failure` or
        :meth:`release`.
        """
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._trial:
            return False
        self._trial = True
        return True

    def record_success(self) -> None:
        """The request succeeded: the circuit closes."""
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def record_failure(self) -> None:
        """The request failed: after ``threshold`` in a row (or a failed trial) the circuit opens."""
        self._failures += 1
        if self._trial or self._failures >= self._threshold:
            self._opened_at = self._clock()
        self._trial = False

    def release(self) -> None:
        """The request ended without a verdict on the provider (bad input, a refusal, cancellation)."""
        self._trial = False


class _Route:
    """What the router knows of one provider: its breaker, readiness and counters."""

    __slots__ = ("breaker", "failed", "latency", "ready", "served")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.ready = False
        self.served = 0
        self.failed = 0
        self.latency: float | None = None


class ProviderRouter:
    """Requests to the best available provider of one model, with failover (``broker.inference.router()``).

    It has the request methods of ``broker.inference`` without the ``provider`` argument
    (:meth:`chat`, :meth:`chat_stream`, :meth:`generate_image`, :meth:`edit_image`,
    :meth:`transcribe`); each result's ``provider`` says who served it. The rules for failing over
    are in this module's docstring: a request the provider may have billed is never sent again.
    Build it once and keep it: the circuit breakers and latencies live in it.

    Args:
        services: the broker's request services and discovery.
        model: the model every candidate must serve.
        service_type: the on-chain service type of the candidates.
        providers: restrict the candidates to these addresses (default: every registered,
            acknowledged service of ``model`` and ``service_type``).
        strategy: ``"price"`` (cheapest first: input price + output price) or ``"latency"``
            (lowest moving average of served requests first; a provider not measured yet first).
            Ties take turns, so equal providers share the load.
        prepare: make each provider ready on its first use (``ensure_ready``).
        min_balance: the sub-account balance ``ensure_ready`` keeps (int wei or OG as str/Decimal).
        failure_threshold: consecutive failures that open a provider's circuit.
        cooldown: seconds an open circuit waits before one trial request.
        clock: a monotonic clock (latencies, circuits).
    """

    def __init__(
        self,
        services: RouterService,
        *,
        model: str,
        service_type: str,
        providers: tuple[str, ...] | None,
        strategy: Strategy,
        prepare: bool,
        min_balance: int,
        failure_threshold: int,
        cooldown: float,
        clock: Callable[[], float],
    ) -> None:
        self.model = model
        self.service_type = service_type
        self.strategy = strategy
        self._s = services
        self._providers = providers
        self._prepare = prepare
        self._min_balance = min_balance
        self._threshold = failure_threshold
        self._cooldown = cooldown
        self._clock = clock
        self._candidates: list[Service] | None = None
        self._discover_lock = anyio.Lock()
        self._prepare_locks: dict[str, anyio.Lock] = {}
        self._routes: dict[str, _Route] = {}
        self._turn = 0
        self.failovers = 0

    def __repr__(self) -> str:
        return f"<ProviderRouter model={self.model!r} strategy={self.strategy!r}>"

    # -- candidates ------------------------------------------------------------------------------

    async def candidates(self) -> list[Service]:
        """The services the router picks from (read once, then cached; :meth:`refresh` re-reads).

        Raises:
            NoProviderAvailableError: no registered provider serves the model.
        """
        if self._candidates is None:
            async with self._discover_lock:
                if self._candidates is None:
                    self._candidates = await self._discover()
        return self._candidates

    def refresh(self) -> None:
        """Read the candidates again on the next request (circuits and counters are kept)."""
        self._candidates = None

    async def _discover(self) -> list[Service]:
        if self._providers is not None:
            found = [await self._s.directory.cached(p) for p in self._providers]
        else:
            found = [s async for s in self._s.discovery.iter_services()]
        kind = self.service_type.strip().lower()
        chosen = [s for s in found if s.model == self.model and s.service_type.strip().lower() == kind]
        if not chosen:
            raise NoProviderAvailableError(
                f"no registered {self.service_type} provider serves model {shown(self.model)}"
            )
        for svc in chosen:
            self._route(svc.provider)
        return chosen

    def _route(self, provider: str) -> _Route:
        route = self._routes.get(provider)
        if route is None:
            breaker = CircuitBreaker(threshold=self._threshold, cooldown=self._cooldown, clock=self._clock)
            route = self._routes[provider] = _Route(breaker)
        return route

    def _ranked(self, candidates: list[Service]) -> list[Service]:
        """The candidates in the order to try them; ties rotate from one request to the next."""
        self._turn += 1
        n = len(candidates)

        def key(item: tuple[int, Service]) -> tuple[float, int, int]:
            i, svc = item
            price = svc.input_price + svc.output_price
            if self.strategy == "latency":
                measured = self._routes[svc.provider].latency
                return (measured or 0.0, price, (i - self._turn) % n)
            return (0.0, price, (i - self._turn) % n)

        return [svc for _, svc in sorted(enumerate(candidates), key=key)]

    def stats(self) -> list[RouteStats]:
        """Each known provider's circuit, requests served and failed, and latency (moving average)."""
        return [
            RouteStats(
                provider=prov,
                circuit=route.breaker.state,
                served=route.served,
                failed=route.failed,
                latency=route.latency,
            )
            for prov, route in self._routes.items()
        ]

    # -- the failover loop -----------------------------------------------------------------------

    async def _ready(self, provider: str, route: _Route) -> None:
        """Prepare ``provider`` once (concurrent first requests share one ``ensure_ready``)."""
        if route.ready or not self._prepare:
            return
        lock = self._prepare_locks.setdefault(provider, anyio.Lock())
        async with lock:
            if not route.ready:
                await self._s.onboarding.ensure_ready(provider, min_balance=self._min_balance)
                route.ready = True

    async def run(self, call: Callable[[str], Awaitable[T]]) -> T:
        """Run ``call(provider)`` on the best available provider, failing over where it is safe.

        The building block of the request methods; use it for requests the router has no method
        for: ``await router.run(lambda p: broker.inference.generate_image_async(p, prompt))``.

        Raises:
            NoProviderAvailableError: every candidate failed over or has an open circuit
                (``failures`` lists what each one did).
            ConfigError: bad input (not a provider's fault; no other provider is tried).
            OGError: a failure after which the request may have been billed (raised as is).
        """
        failures: list[tuple[str, OGError]] = []
        skipped = 0
        for svc in self._ranked(await self.candidates()):
            prov = svc.provider
            route = self._routes[prov]
            if not route.breaker.acquire():
                skipped += 1
                continue
            try:
                try:
                    await self._ready(prov, route)
                except ConfigError:
                    raise
                except OGError as exc:
                    route.failed += 1
                    route.breaker.record_failure()
                    failures.append((prov, exc))
                    log.warning("router: preparing provider %s failed: %s", prov, type(exc).__name__)
                    continue
                started = self._clock()
                result = await call(prov)
            except ConfigError:
                route.breaker.release()
                raise
            except OGError as exc:
                self._failed(prov, route, exc)
                if not may_fail_over(exc):
                    raise
                failures.append((prov, exc))
                self.failovers += 1
                continue
            except BaseException:
                route.breaker.release()
                raise
            elapsed = self._clock() - started
            route.latency = (
                elapsed
                if route.latency is None
                else (1 - _LATENCY_WEIGHT) * route.latency + _LATENCY_WEIGHT * elapsed
            )
            route.served += 1
            route.breaker.record_success()
            return result
        tried = ", ".join(f"{p}: {type(e).__name__}" for p, e in failures) or "none"
        error = NoProviderAvailableError(
            f"no provider of model {shown(self.model)} could serve the request "
            f"(tried: {tried}; {skipped} skipped with an open circuit)",
            failures=tuple(failures),
        )
        raise error from failures[-1][1] if failures else None

    def _failed(self, provider: str, route: _Route, exc: OGError) -> None:
        route.failed += 1
        if _is_refusal(exc):
            route.breaker.release()
        else:
            route.breaker.record_failure()
        log.info(
            "router: provider %s failed (%s); %s",
            provider,
            type(exc).__name__,
            "trying the next one" if may_fail_over(exc) else "not sent again (it may have been billed)",
        )

    # -- request methods -------------------------------------------------------------------------

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> ChatResult:
        """A chat completion on the best available provider (see ``broker.inference.chat``).

        Args:
            messages: OpenAI chat messages.
            verify: the verification policy of this call; under ``required`` a failed answer is
                counted (it was billed) and the request goes to the next provider.
            **params: other OpenAI parameters (``max_tokens``, ``temperature``, ...).

        Returns:
            The completion; ``result.provider`` is the provider that served it.

        Raises:
            NoProviderAvailableError: no provider could serve it (see :meth:`run`).
            ConfigError: bad arguments, before anything is sent.
            ProviderError: a failure after which the request may have been billed.
        """
        return await self.run(
            lambda prov: self._s.chat.chat(prov, messages, model=self.model, verify=verify, **params)
        )

    def chat_stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        verify: str | VerificationPolicy | None = None,
        include_usage: bool = True,
        drain_on_exit: bool = True,
        drain_timeout: float = 60.0,
        hold_until_verified: bool = False,
        **params: Any,
    ) -> ChatStream:
        """A streamed chat completion on the best available provider (see ``broker.inference.chat_stream``).

        The provider is picked on ``async with``; failover happens only until the response
        headers arrive (after that the provider bills the answer). ``stream.provider`` and
        ``stream.result.provider`` say who served it.

        Raises:
            ConfigError: bad arguments, before anything is sent.
            NoProviderAvailableError: (on ``async with``) no provider could open it.
        """
        return self._s.chat.stream(
            _RoutedStreams(self),
            "",
            messages,
            model=self.model,
            verify=verify,
            include_usage=include_usage,
            drain_on_exit=drain_on_exit,
            drain_timeout=drain_timeout,
            hold_until_verified=hold_until_verified,
            **params,
        )

    async def generate_image(self, prompt: str, **kwargs: Any) -> ImageResult:
        """``broker.inference.generate_image`` on the best available provider (same arguments)."""
        return await self.run(lambda prov: self._s.images.generate_image(prov, prompt, **kwargs))

    async def edit_image(
        self, image: bytes | str | os.PathLike[str], prompt: str, **kwargs: Any
    ) -> ImageResult:
        """``broker.inference.edit_image`` on the best available provider (same arguments)."""
        return await self.run(lambda prov: self._s.images.edit_image(prov, image, prompt, **kwargs))

    async def transcribe(self, audio: bytes | str | os.PathLike[str], **kwargs: Any) -> TranscriptionResult:
        """``broker.inference.transcribe`` on the best available provider (same arguments)."""
        return await self.run(lambda prov: self._s.audio.transcribe(prov, audio, **kwargs))

    def openai_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """An ``openai.AsyncOpenAI`` whose every request goes through this router.

        Each request (``client.chat.completions.create(...)``, streamed or not, ``models.list()``,
        ...) picks a provider like :meth:`run`, with a fresh session token for it, and fails over
        by the same rules: only refusals and failures before the request reached the model go to
        another provider. The response header ``x-og-provider`` names the provider that answered
        (``client.chat.completions.with_raw_response.create(...)`` shows it). A refusal that no
        provider could get past is answered with its status and body, so openai raises its usual
        ``APIStatusError``. As with ``broker.inference.openai_client``, these requests are not
        counted, budgeted or verified by the SDK, and openai's ``max_retries`` defaults to 0.

        Args:
            **kwargs: more ``AsyncOpenAI`` arguments (``timeout``, ``max_retries``, ...);
                ``base_url`` and ``api_key`` are the router's.

        Raises:
            ConfigError: the ``openai`` package is not installed, or ``base_url``/``api_key`` given.
        """
        for name in ("base_url", "api_key", "http_client"):
            if name in kwargs:
                raise ConfigError(f"{name} is set by the router's openai_client()")
        try:
            from ._openai import build_openai_client
        except ImportError as exc:
            raise ConfigError(
                "the OpenAI adapter needs the openai package", hint="pip install 'og-inference-async[openai]'"
            ) from exc
        return build_openai_client(
            base_url=_ROUTER_BASE,
            http_client=handler_client(self._forward, base_url=_ROUTER_BASE),
            auth=None,
            api_key=None,
            **kwargs,
        )

    async def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> RawReply:
        """One request of :meth:`openai_client`, sent through :meth:`run` to the chosen provider."""
        content_type = headers.get("content-type", "application/json")
        accept = headers.get("accept", "application/json")

        async def send(prov: str) -> tuple[str, HttpStream]:
            stream = await self._s.chat.proxy(
                prov, method, target, body, content_type=content_type, accept=accept
            )
            return prov, stream

        try:
            prov, stream = await self.run(send)
        except NoProviderAvailableError as exc:
            last = exc.failures[-1][1] if exc.failures else None
            if isinstance(last, ProviderError) and last.status_code is not None:
                return _error_reply(last)
            raise
        except ProviderError as exc:
            if exc.status_code is None:
                raise
            return _error_reply(exc)
        return RawReply(stream.status, {**stream.headers, PROVIDER_HEADER: prov}, stream)


#: The response header of a router's OpenAI client naming the provider that answered.
PROVIDER_HEADER = "x-og-provider"
#: The (never contacted) base URL of a router's OpenAI client: its transport rewrites every request.
_ROUTER_BASE = "http://router.og.invalid"


def _error_reply(error: ProviderError) -> RawReply:
    """A provider's error answer handed to openai (status and the redacted body)."""
    headers = {"content-type": "application/json"}
    if error.provider:
        headers[PROVIDER_HEADER] = error.provider
    return RawReply(error.status_code or 502, headers, (error.body or "").encode())


class _RoutedStreams:
    """The stream host of a routed :class:`ChatStream`: the router opens it, the chat service finishes it."""

    def __init__(self, router: ProviderRouter) -> None:
        self._router = router
        self._chat = router._s.chat

    @property
    def background(self) -> Background:
        """The broker's task group."""
        return self._chat.background

    async def open_stream(
        self,
        prov: str,
        payload: dict[str, Any],
        spend: tuple[Budget | None, bool | None] = (None, None),
        options: CallOptions | None = None,
    ) -> tuple[Service, bytes, HttpStream, Hold | None]:
        """Open the stream on the best available provider (``prov`` is ignored)."""
        return await self._router.run(lambda p: self._chat.open_stream(p, payload, spend, options))

    async def finish_stream(
        self, stream: ChatStream, svc: Service, policy: VerificationPolicy, hold: Hold | None = None
    ) -> ChatResult:
        """The result of the ended stream (the chat service's finishing path)."""
        return await self._chat.finish_stream(stream, svc, policy, hold)


class RouterService:
    """Builds provider routers on the broker's request services.

    Args:
        chat: chat requests.
        images: image requests.
        audio: transcriptions.
        discovery: the registered services.
        directory: the services cache.
        onboarding: ``ensure_ready``.
        clock: a monotonic clock for the routers' circuits and latencies.
    """

    def __init__(
        self,
        *,
        chat: ChatRequests,
        images: ImageRequests,
        audio: AudioRequests,
        discovery: DiscoveryService,
        directory: ServiceDirectory,
        onboarding: OnboardingService,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chat = chat
        self.images = images
        self.audio = audio
        self.discovery = discovery
        self.directory = directory
        self.onboarding = onboarding
        self.clock = clock

    def router(
        self,
        *,
        model: str,
        service_type: str = "chatbot",
        providers: Sequence[str] | None = None,
        strategy: Strategy = "price",
        prepare: bool = True,
        min_balance: Amount = DEFAULT_MIN_BALANCE,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
    ) -> ProviderRouter:
        """A :class:`ProviderRouter`: requests to the best available provider of ``model``, with failover.

        Nothing is read or sent here: the candidates are read on the first request, and each
        provider is prepared (``ensure_ready(provider, min_balance=...)``) the first time it is
        picked. A request that may have been billed is never sent to another provider (see
        :mod:`og_inference_async.inference.router`).

        Args:
            model: the model every candidate serves.
            service_type: the candidates' service type (``"chatbot"``, ``"text-to-image"``, ...).
            providers: only these provider addresses (default: every acknowledged service).
            strategy: ``"price"`` (cheapest first) or ``"latency"`` (fastest measured first).
            prepare: run ``ensure_ready`` on a provider before its first request.
            min_balance: the sub-account balance ``ensure_ready`` keeps (int wei, or OG as
                ``str``/``Decimal``; default 2 OG).
            failure_threshold: consecutive failures that open a provider's circuit.
            cooldown: seconds before an open circuit lets one trial request through.

        Returns:
            The router (keep it: circuits and latencies live in it).

        Raises:
            ConfigError: a blank ``model`` or ``service_type``, an unknown ``strategy``, an
                empty ``providers``, bad numbers.
            InvalidAddressError: a malformed provider address.
            InvalidAmountError: a bad ``min_balance``.
        """
        check_str("model", model)
        check_str("service_type", service_type)
        if strategy not in _STRATEGIES:
            raise ConfigError(f"strategy must be 'price' or 'latency', got {shown(strategy)}")
        if not isinstance(prepare, bool):
            raise ConfigError(f"prepare must be a bool, got {shown(prepare)}")
        chosen: tuple[str, ...] | None = None
        if providers is not None:
            if isinstance(providers, str) or not providers:
                raise ConfigError("providers must be a non-empty list of addresses, or None for all")
            chosen = tuple(dict.fromkeys(provider_address(p) for p in providers))
        CircuitBreaker(threshold=failure_threshold, cooldown=cooldown)  # checks both numbers
        return ProviderRouter(
            self,
            model=model,
            service_type=service_type,
            providers=chosen,
            strategy=strategy,
            prepare=prepare,
            min_balance=to_wei(min_balance),
            failure_threshold=failure_threshold,
            cooldown=cooldown,
            clock=self.clock,
        )
