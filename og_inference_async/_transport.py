"""The provider transport: every request the SDK makes to a provider's HTTP API goes through here.

:class:`ProviderTransport` is the one place (the shape of openai's ``_base_client.request()``) for

* auth headers: the session token from the auth collaborator, unless a call asks for none;
* bounded retries under :class:`~og_inference_async.RequestRetryPolicy` (attempts and total time
  bounded; a billed call is repeated only where the provider provably did not serve it, see
  ``_retry``), honouring ``Retry-After``;
* one stale-token refresh: a 401 ``token_expired`` / ``generation_mismatch`` drops the token,
  signs a new one and resends once, outside the attempt count;
* error mapping: error statuses become the typed errors of ``_http.error_for_status``; a
  "not acknowledged" answer also drops the cached account state;
* an optional total deadline and body cap (discovery and fee reads);
* a call's openai-style :class:`~og_inference_async._options.CallOptions`: per-attempt
  ``timeout``, ``max_retries``, extra headers and query parameters (the body is the caller's).

It is used by the request services (whole answers and streams), verification (signatures,
attestation reports), discovery (model lists, the status API) and auto-funding's fee read. It
does not import httpx: the exchanges themselves are ``_http``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio

from ._exceptions import NotAcknowledgedError, OGError, ProviderConnectionError, TransportFailure
from ._http import (
    REFRESH_CODES,
    HttpReply,
    HttpStream,
    encode_query,
    error_code,
    error_for_status,
    one_off_url,
    retry_after_from,
    send,
    start_stream,
)
from ._observe import Observer
from ._options import CallOptions
from ._redact import redact_bytes
from ._retry import RequestRetryPolicy, retry_delay

if TYPE_CHECKING:
    import httpx

__all__ = ["ProviderTransport", "SessionHeaders"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Raw bytes must equal what the provider hashed: ask for no content coding.
_BASE_HEADERS = {"Accept-Encoding": "identity"}


class SessionHeaders(Protocol):
    """What the transport needs from authentication (``AuthManager`` implements it)."""

    async def get_request_headers(self, provider: str) -> dict[str, str]:
        """The ``Authorization`` header for ``provider``."""
        ...

    def forget(self, provider: str | None = None) -> None:
        """Drop the cached token and account reads of ``provider``."""
        ...


class RetrySettings(Protocol):
    """Where the transport reads the retry policy on every call (it may change at any time)."""

    @property
    def retry(self) -> RequestRetryPolicy:
        """The current retry policy."""
        ...


@dataclass(slots=True)
class _Failed:
    """One failed attempt: the error to raise, what the provider asked for, whether to re-sign."""

    error: OGError
    retry_after: float | None = None
    stale_token: bool = False


class ProviderTransport:
    """Requests to providers with auth, retries, token refresh and error mapping.

    Args:
        client: the broker's shared ``httpx.AsyncClient`` (owned or borrowed by the broker).
        auth: the source of session headers.
        settings: holds the current :class:`RequestRetryPolicy` (read on every call).
        sleep: waits between attempts (injectable: tests record the waits instead).
        clock: a monotonic clock for the retry time budget.
        observer: counts requests and retries and calls the request hooks (``None``: none).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        auth: SessionHeaders,
        settings: RetrySettings,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
    ) -> None:
        self.client = client
        self._observer = observer
        self._auth = auth
        self._settings = settings
        self._sleep = sleep
        self._clock = clock

    @property
    def retry_policy(self) -> RequestRetryPolicy:
        """The retry policy in force."""
        return self._settings.retry

    def now(self) -> float:
        """The transport's monotonic clock (for callers that poll, like async jobs)."""
        return self._clock()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` with the transport's sleep (callers that poll; tests record the waits)."""
        await self._sleep(seconds)

    # -- whole answers ---------------------------------------------------------------------------

    async def request(
        self,
        provider: str | None,
        method: str,
        url: str,
        *,
        what: str,
        idempotent: bool,
        body: bytes | None = None,
        content_type: str | None = None,
        auth: bool = True,
        retry: bool = True,
        deadline: float | None = None,
        max_bytes: int | None = None,
        options: CallOptions | None = None,
    ) -> HttpReply:
        """One whole request with retries; returns a 1xx-3xx reply or raises the typed error.

        Args:
            provider: the provider address (for auth, errors and logs); ``None`` for a third
                party such as the network's status API (then ``auth`` must be false).
            idempotent: whether the call may be repeated after the provider may have served it
                (GETs); a billed POST passes ``False``.
            auth: send the session header (and refresh it once when it is stale).
            retry: ``False`` for a single attempt (the stale-token refresh still applies).
            deadline: the most seconds the whole call may take, waits included.
            max_bytes: the largest body accepted.
            options: the call's timeout, retries, extra headers and query (``None``: none).

        Raises:
            ProviderError: the typed error of the last failed attempt (``TransportFailure`` for
                the wire, ``ProviderConnectionError`` past ``deadline``).
        """

        timeout = None if options is None else options.timeout
        target = url if options is None else _with_query(url, options)

        async def once(headers: dict[str, str]) -> HttpReply | _Failed:
            if content_type is not None:
                headers["Content-Type"] = content_type
            try:
                reply = await send(
                    self.client,
                    method,
                    target,
                    headers=headers,
                    content=body,
                    provider=provider,
                    what=what,
                    timeout=timeout,
                    max_bytes=max_bytes,
                )
            except TransportFailure as exc:
                return _Failed(exc)
            if reply.status < 400:
                return reply
            return self._failure(provider, reply.status, reply.headers, reply.raw, what=what, auth=auth)

        run = self._run(
            provider, once, idempotent=idempotent, auth=auth, retry=retry, options=options, route=what
        )
        if deadline is None:
            return await run
        try:
            with anyio.fail_after(deadline):
                return await run
        except TimeoutError:
            raise ProviderConnectionError(
                f"{what}: no answer within {deadline:g} s", provider=provider
            ) from None

    # -- streams ---------------------------------------------------------------------------------

    async def open_stream(
        self,
        provider: str,
        method: str,
        url: str,
        *,
        what: str,
        body: bytes,
        content_type: str,
        accept: str = "text/event-stream",
        options: CallOptions | None = None,
    ) -> HttpStream:
        """Send a streamed request; retried (as a billed call) only until the headers arrive.

        The caller owns the returned stream and must ``aclose()`` it. ``options`` as for
        :meth:`request` (its ``timeout`` also bounds each read of the body).

        Raises:
            ProviderError: the typed error of the last failed attempt.
        """

        timeout = None if options is None else options.timeout
        target = url if options is None else _with_query(url, options)

        async def once(headers: dict[str, str]) -> HttpStream | _Failed:
            headers["Content-Type"] = content_type
            headers["Accept"] = accept
            try:
                stream = await start_stream(
                    self.client,
                    method,
                    target,
                    headers=headers,
                    content=body,
                    provider=provider,
                    what=what,
                    timeout=timeout,
                )
            except TransportFailure as exc:
                return _Failed(exc)
            if stream.status < 400:
                return stream
            try:
                raw = await stream.read()
            except TransportFailure:
                raw = b""
            finally:
                await stream.aclose()
            return self._failure(provider, stream.status, stream.headers, raw, what=what, auth=True)

        return await self._run(
            provider, once, idempotent=False, auth=True, retry=True, options=options, route=what
        )

    # -- the loop --------------------------------------------------------------------------------

    def _failure(
        self,
        provider: str | None,
        status: int,
        headers: Mapping[str, str],
        raw: bytes,
        *,
        what: str,
        auth: bool,
    ) -> _Failed:
        raw = redact_bytes(raw)  # the answer may echo our Authorization header
        stale = auth and status == 401 and error_code(raw) in REFRESH_CODES
        error = error_for_status(status, headers, raw, provider=provider, what=what)
        if isinstance(error, NotAcknowledgedError) and provider is not None:
            self._auth.forget(provider)
        retry_after = retry_after_from(headers) if status == 429 or status >= 500 else None
        return _Failed(error, retry_after, stale)

    async def _run(
        self,
        provider: str | None,
        once: Callable[[dict[str, str]], Awaitable[T | _Failed]],
        *,
        idempotent: bool,
        auth: bool,
        retry: bool,
        options: CallOptions | None = None,
        route: str = "request",
    ) -> T:
        """Run ``once(headers)`` until it succeeds or the retry policy gives up.

        A stale-token 401 re-signs the session token and resends once, outside the attempt count.
        """
        policy = self._settings.retry if retry else _SINGLE
        extra = None
        observer = self._observer
        if options is not None:
            extra = options.headers
            if retry:
                policy = options.retry(policy)
        started = self._clock()
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            headers = dict(_BASE_HEADERS)
            if extra:
                headers.update(extra)
            if auth and provider is not None:
                headers.update(await self._auth.get_request_headers(provider))
            if observer is not None:
                observer.request(provider, route, attempt)
            outcome = await once(headers)
            if observer is not None:
                failed = isinstance(outcome, _Failed)
                status = getattr(outcome, "status", None)
                error = type(outcome.error).__name__ if isinstance(outcome, _Failed) else None
                observer.response(provider, route, attempt, None if failed else status, error)
            if not isinstance(outcome, _Failed):
                return outcome
            if outcome.stale_token and not refreshed and provider is not None:
                refreshed = True
                attempt -= 1
                log.info("provider %s refused a stale session token; signing a new one", provider)
                self._auth.forget(provider)
                continue
            delay = retry_delay(
                policy,
                outcome.error,
                attempt=attempt,
                elapsed=self._clock() - started,
                idempotent=idempotent,
                retry_after=outcome.retry_after,
            )
            if delay is None:
                raise outcome.error
            log.info(
                "retrying a request to provider %s in %.2f s after %s (attempt %d of %d)",
                provider,
                delay,
                type(outcome.error).__name__,
                attempt + 1,
                policy.attempts,
            )
            await self._sleep(delay)


def _with_query(url: str, options: CallOptions) -> str:
    """``url`` with the call's extra query parameters appended (marked one-off: not cached)."""
    if not options.query:
        return url
    return one_off_url(url + ("&" if "?" in url else "?") + encode_query(options.query))


#: The policy of calls that ask for a single attempt.
_SINGLE = RequestRetryPolicy.never()
