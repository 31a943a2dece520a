"""The only module that imports httpx: the shared client, raw exchanges and error translation.

Everything the SDK sends to a provider goes through :func:`send` (a whole response) or
:func:`start_stream` (a streamed one), called by ``_transport.ProviderTransport`` (auth, retries,
token refresh) and by the JSON-RPC poster. Both hand back the response's RAW bytes (read with
``aiter_raw``, before any content decoding), because a TEE signature covers
``sha256(request bytes) + ":" + sha256(raw response bytes)``. Every httpx exception is
translated in ONE place, the :func:`map_transport_errors` context manager, into
:class:`~og_inference_async.ProviderConnectionError`; HTTP error statuses are mapped to the typed
error tree by :func:`error_for_status` (one table for the whole SDK).

Response headers are read once per response into a plain ``dict`` with lower-case names (see
:func:`_headers_of`): each lookup on httpx's ``Headers`` re-encodes the name and scans every
header, which a profile of 3,000 chats counted 70 times per request.

Transport: on asyncio, the shared client runs on the aiohttp-backed transport of
``httpx-aiohttp`` when it is installed (measured on the devnet provider at concurrency 64:
httpx's default transport about 115 requests/s, the aiohttp transport about 3,300). The httpx API
is unchanged either way; elsewhere (trio, or the package missing) httpx's own transport is used.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import anyio
import httpx

from ._exceptions import (
    ConfigError,
    NotAcknowledgedError,
    OGError,
    ProviderAuthError,
    ProviderError,
    ProviderInsufficientBalanceError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderServerError,
    ServiceNotFoundError,
    TransportFailure,
)
from ._redact import redact

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUT",
    "REFRESH_CODES",
    "HttpReply",
    "HttpStream",
    "OneOffURL",
    "RawReply",
    "SessionAuth",
    "TransportFailure",
    "encode_multipart",
    "encode_query",
    "error_code",
    "error_for_status",
    "handler_client",
    "make_http_client",
    "map_transport_errors",
    "one_off_url",
    "parse_retry_after",
    "rpc_poster",
    "retry_after_from",
    "send",
    "start_stream",
    "transport_name",
]

#: Separate connect and read timeouts (seconds); a read timeout is an idle timeout in httpx.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=30.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=128, keepalive_expiry=30.0)

#: Provider error codes that mean "this session token is stale": drop it, sign a new one, retry once.
REFRESH_CODES = frozenset({"token_expired", "generation_mismatch"})

#: At most this much of an error body is kept on exceptions.
_MAX_ERROR_BODY = 2000


def _aiohttp_transport() -> httpx.AsyncBaseTransport | None:
    """The httpx-aiohttp transport when it can be used in the running event loop, else ``None``."""
    try:
        import asyncio

        asyncio.get_running_loop()  # RuntimeError under trio or outside any loop
        from httpx_aiohttp import AiohttpTransport
    except Exception:  # not installed, or no running loop: fall back to httpx's transport
        return None
    transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=DEFAULT_LIMITS)
    return transport


def make_http_client(*, transport: str = "auto") -> httpx.AsyncClient:
    """Build the broker-owned shared :class:`httpx.AsyncClient` (no I/O until first use).

    Args:
        transport: ``"auto"`` (aiohttp-backed transport on asyncio when ``httpx-aiohttp`` is
            installed, else httpx's own), ``"aiohttp"`` (required) or ``"httpx"``.

    Raises:
        ConfigError: ``"aiohttp"`` asked for but unusable here, or an unknown name.
    """
    chosen: httpx.AsyncBaseTransport | None = None
    if transport in ("auto", "aiohttp"):
        chosen = _aiohttp_transport()
        if chosen is None and transport == "aiohttp":
            raise ConfigError(
                "the aiohttp transport needs the httpx-aiohttp package and an asyncio event loop"
            )
    elif transport != "httpx":
        raise ConfigError(f"transport must be 'auto', 'aiohttp' or 'httpx', got {transport!r}")
    return httpx.AsyncClient(
        timeout=DEFAULT_TIMEOUT, limits=DEFAULT_LIMITS, follow_redirects=False, transport=chosen
    )


def transport_name(client: httpx.AsyncClient) -> str:
    """``"aiohttp"`` or ``"httpx"``: which transport a client sends plain requests through."""
    inner = getattr(client, "_transport", None)
    return "aiohttp" if type(inner).__name__ == "AiohttpTransport" else "httpx"


# -- transport errors ---------------------------------------------------------------------------


def _not_sent(exc: httpx.HTTPError) -> bool:
    if not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return False
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        # httpx-aiohttp maps every aiohttp ClientConnectionError (including a server dropping
        # an established connection mid-response) to ConnectTimeout: trust only real connect failures.
        import aiohttp

        connect_timeout: Any = getattr(aiohttp, "ConnectionTimeoutError", ())
        return isinstance(cause, aiohttp.ClientConnectorError) or isinstance(cause, connect_timeout)
    return True


#: Modules whose exceptions are transport failures when they slip past httpx's own mapping
#: (httpx-aiohttp re-raises aiohttp errors it has no mapping for).
_TRANSPORT_MODULES = ("aiohttp", "httpcore", "h11", "anyio", "ssl")


def _is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an HTTP-stack failure that must be translated (never ``CancelledError``)."""
    if isinstance(exc, httpx.HTTPError):
        return True
    if not isinstance(exc, Exception) or isinstance(exc, OGError):
        return False
    return type(exc).__module__.split(".")[0] in _TRANSPORT_MODULES or isinstance(exc, ConnectionError)


def _translate(exc: BaseException, *, provider: str | None, what: str) -> OGError:
    """Map an HTTP-stack error (connect, read timeout, protocol, bad URL) to our typed error."""
    if isinstance(exc, httpx.InvalidURL):
        return ProviderError(
            f"{what}: the provider's URL is not a valid http(s) URL",
            provider=provider,
            hint="check service.url",
        )
    kind = type(exc).__name__
    not_sent = isinstance(exc, httpx.HTTPError) and _not_sent(exc)
    where = "before the request was sent" if not_sent else "after the request may have been received"
    return TransportFailure(
        f"{what}: {kind} talking to the provider ({where})", provider=provider, not_sent=not_sent
    )


@contextmanager
def map_transport_errors(*, provider: str | None, what: str) -> Iterator[None]:
    """Translate the HTTP-stack exceptions raised inside the block (the one place that does).

    httpx errors, the aiohttp / httpcore / ssl errors that slip past httpx's own mapping, and an
    invalid URL become :class:`TransportFailure` (or :class:`ProviderError` for the URL), raised
    ``from`` the original. Everything else (our own errors, cancellation) passes untouched.
    """
    try:
        yield
    except Exception as exc:
        if not _is_transport_error(exc) and not isinstance(exc, httpx.InvalidURL):
            raise
        raise _translate(exc, provider=provider, what=what) from exc


# -- exchanges ----------------------------------------------------------------------------------


class OneOffURL(str):
    """A URL string used for one request only (a per-chat signature URL): parsed, never cached.

    Build it with :func:`one_off_url`. Any other URL string is parsed once and kept in a small
    LRU (:func:`_parsed`); one-off URLs would only miss it and evict the URLs that repeat.
    """

    __slots__ = ()


def one_off_url(url: str) -> OneOffURL:
    """Mark ``url`` as used once: :func:`send` parses it without caching it."""
    return OneOffURL(url)


def encode_query(params: Mapping[str, str]) -> str:
    """``params`` as the query string httpx sends for ``params=`` (encode once, append with ``?``).

    Putting it into the URL string spares httpx a second parse and merge of the URL per request.
    """
    return str(httpx.QueryParams(params))


@lru_cache(maxsize=1024)
def _parsed(url: str) -> httpx.URL:
    """``httpx.URL(url)``, cached: parsing costs about 12 us a request, and URLs are immutable."""
    return httpx.URL(url)


def _url(url: str) -> httpx.URL:
    return httpx.URL(url) if type(url) is OneOffURL else _parsed(url)


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A whole HTTP response as read from the wire.

    Attributes:
        status: the HTTP status code.
        headers: the response headers, read once, names in lower case (``headers["zg-res-key"]``).
        raw: the body exactly as received (before content decoding): what a TEE signature covers.
    """

    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def content(self) -> bytes:
        """The body after content decoding (identical to ``raw`` unless the provider compressed it)."""
        encoding = self.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return self.raw
        decoded = httpx.Response(self.status, headers=self.headers, content=self.raw)
        try:
            return decoded.content
        except httpx.DecodingError as exc:
            raise ProviderResponseError(f"cannot decode a {encoding!r} response body") from exc

    def json(self) -> Any:
        """The decoded body parsed as JSON.

        Raises:
            ProviderResponseError: the body is not JSON.
        """
        try:
            return json.loads(self.content)
        except ValueError:
            raise ProviderResponseError(
                f"the provider answered HTTP {self.status} with a body that is not JSON",
                status_code=self.status,
                body=_body_text(self.raw),
            ) from None


async def _open(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: Mapping[str, str],
    content: bytes | None,
    timeout: float | None,
) -> httpx.Response:
    """Build and send one request, returning the response with its body not yet read."""
    request = client.build_request(
        method,
        _url(url),
        headers=headers,
        content=content,
        timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
    )
    return await client.send(request, stream=True)


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    content: bytes | None = None,
    provider: str | None = None,
    what: str = "request",
    timeout: float | None = None,
    max_bytes: int | None = None,
) -> HttpReply:
    """Send one request and read the whole raw response body.

    Args:
        timeout: a per-request timeout in seconds (connect, read, write and pool), overriding
            the client's.
        max_bytes: the largest body read; a longer one is not read further.

    Raises:
        TransportFailure: any transport error (connect, timeout, broken connection).
        ProviderResponseError: the body is longer than ``max_bytes``.
    """
    with map_transport_errors(provider=provider, what=what):
        response = await _open(client, method, url, headers, content, timeout)
        try:
            raw = await _read_raw(response, max_bytes, provider=provider, what=what)
        finally:
            await response.aclose()
    return HttpReply(response.status_code, _headers_of(response), raw)


async def _read_raw(
    response: httpx.Response, max_bytes: int | None, *, provider: str | None, what: str
) -> bytes:
    """The whole raw body; past ``max_bytes`` reading stops with :class:`ProviderResponseError`."""
    if response.is_stream_consumed:  # a (mock) transport that handed back an already-read body
        raw = response.content
        if max_bytes is not None and len(raw) > max_bytes:
            raise _too_large(max_bytes, provider, what)
        return raw
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise _too_large(max_bytes, provider, what)
    return b"".join(chunks)


def _too_large(max_bytes: int, provider: str | None, what: str) -> ProviderResponseError:
    return ProviderResponseError(f"{what}: the answer is larger than {max_bytes:,} bytes", provider=provider)


def _headers_of(response: httpx.Response) -> dict[str, str]:
    """The response headers as a plain dict, names lower-cased, repeated headers joined by ``", "``.

    Built once per response: httpx's ``Headers`` re-encodes the name and scans every header on
    each lookup.
    """
    headers = response.headers
    encoding = headers.encoding
    out: dict[str, str] = {}
    for raw_key, raw_value in headers.raw:
        key = raw_key.decode(encoding).lower()
        value = raw_value.decode(encoding)
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


_RPC_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def rpc_poster(client: httpx.AsyncClient, url: str) -> Callable[[bytes, float], Awaitable[HttpReply]]:
    """A function that POSTs one JSON-RPC body to ``url`` on ``client`` and returns the reply.

    It holds no lock and no state of its own, so a cancelled call leaves nothing behind: the
    connection goes back to the client's pool or is dropped by it.

    Raises (from the returned function):
        TransportFailure: the request failed on the wire (``not_sent`` says whether it provably
            never left).
    """
    parsed = _parsed(url)

    async def post(body: bytes, timeout: float) -> HttpReply:
        return await send(
            client, "POST", str(parsed), headers=_RPC_HEADERS, content=body, what="JSON-RPC", timeout=timeout
        )

    return post


class HttpStream:
    """An open streamed response (status and headers read, body not yet)."""

    def __init__(self, response: httpx.Response, *, provider: str | None, what: str) -> None:
        self._response = response
        self._provider = provider
        self._what = what
        self.status: int = response.status_code
        self.headers: dict[str, str] = _headers_of(response)

    async def iter_raw(self) -> AsyncIterator[bytes]:
        """The body's raw chunks as they arrive.

        Raises:
            TransportFailure: the connection broke or timed out mid-body.
        """
        with map_transport_errors(provider=self._provider, what=self._what):
            if self._response.is_stream_consumed:  # a (mock) transport that handed back an already-read body
                yield self._response.content
                return
            async for chunk in self._response.aiter_raw():
                yield chunk

    async def read(self) -> bytes:
        """Read the rest of the raw body (used for error answers)."""
        return b"".join([chunk async for chunk in self.iter_raw()])

    async def aclose(self) -> None:
        """Close the response (returns the connection to the pool or drops it). Never raises."""
        with anyio.CancelScope(shield=True):
            try:
                await self._response.aclose()
            except Exception:  # closing a broken connection may fail; nothing to recover
                pass


async def start_stream(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    content: bytes | None = None,
    provider: str | None = None,
    what: str = "stream",
    timeout: float | None = None,
) -> HttpStream:
    """Send a request and return the response once its headers arrived; the caller closes it.

    Args:
        timeout: a per-request timeout in seconds (also bounds each read of the body),
            overriding the client's.

    Raises:
        TransportFailure: the request failed before the headers arrived.
    """
    with map_transport_errors(provider=provider, what=what):
        response = await _open(client, method, url, headers, content, timeout)
    return HttpStream(response, provider=provider, what=what)


def encode_multipart(
    fields: Mapping[str, str],
    files: Mapping[str, tuple[str, bytes, str]],
    *,
    boundary: str | None = None,
) -> tuple[bytes, str]:
    """Encode a ``multipart/form-data`` body (plain sync code; CPU-bound for big files).

    Args:
        fields: form fields.
        files: ``name -> (filename, data, content type)``.
        boundary: the multipart boundary (default: a random one).

    Returns:
        ``(body bytes, content-type header with the boundary)``: the exact bytes to send and hash.
    """
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"} if boundary else None
    request = httpx.Request(
        "POST", "http://multipart.invalid/", data=dict(fields), files=dict(files), headers=headers
    )
    body = request.read()
    return body, request.headers["content-type"]


# -- error statuses -----------------------------------------------------------------------------


def _body_text(raw: bytes) -> str:
    return raw[:_MAX_ERROR_BODY].decode("utf-8", errors="replace")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` (delta seconds or HTTP date) or ``retry-after-ms`` value.

    Returns:
        A non-negative number of seconds, or ``None`` when absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def retry_after_from(headers: Mapping[str, str]) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``Retry-After``, or ``None`` when absent."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        parsed = parse_retry_after(ms)
        if parsed is not None:
            return parsed / 1000.0
    return parse_retry_after(headers.get("retry-after"))


def _error_object(body: Any) -> tuple[str | None, str | None, dict[str, Any]]:
    """(code, message, the error object) from the common provider error shapes."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, str):
            return None, err, {}
        if isinstance(err, dict):
            code = err.get("code")
            message = err.get("message") or err.get("detail")
            return (
                str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else None,
                str(message) if message is not None else None,
                err,
            )
    return None, None, {}


def error_code(raw: bytes) -> str | None:
    """The machine code of a provider error body (``{"error": {"code": ...}}``), if any."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return _error_object(body)[0]


def _wei(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    provider: str | None,
    what: str = "request",
) -> OGError:
    """Map a provider error answer to the SDK's typed error (the one table for the whole SDK).

    ===========================================  ===============================================
    answer                                       error
    ===========================================  ===============================================
    402, code ``insufficient_balance``, or a     :class:`ProviderInsufficientBalanceError` with
    message about an insufficient balance        ``required`` / ``available`` from the body
    code ``not_acknowledged``, ``account_not_    :class:`NotAcknowledgedError`
    found``, or "not acknowledge" in the text
    code ``model_not_found``                     :class:`ServiceNotFoundError`
    401 / 403                                    :class:`ProviderAuthError`
    429                                          :class:`ProviderRateLimitError` (``retry_after``)
    5xx                                          :class:`ProviderServerError`
    other 4xx                                    :class:`ProviderError`
    ===========================================  ===============================================

    The provider's machine code (when there is one) is appended to the message as ``[code]``.
    """
    text = _body_text(raw)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    code, message, err = _error_object(parsed)
    text = redact(text)
    detail = redact(message) if message else (text.strip()[:300] if text.strip() else "no body")
    tag = f" [{code}]" if code else ""
    msg = f"{what}: HTTP {status} from the provider: {detail}{tag}"
    lowered = detail.lower()
    common: dict[str, Any] = {"status_code": status, "body": text, "provider": provider}

    if status == 402 or code == "insufficient_balance" or "insufficient balance" in lowered:
        return ProviderInsufficientBalanceError(
            msg,
            required=_wei(err.get("required")),
            available=_wei(err.get("available")),
            fee=_wei(err.get("fee")),
            hint="top the provider sub-account up with broker.ledger.transfer_fund(provider, amount)",
            **common,
        )
    if code in ("not_acknowledged", "account_not_found") or "not acknowledge" in lowered:
        hint = (
            "open a sub-account with broker.ledger.transfer_fund(provider, amount)"
            if code == "account_not_found"
            else None
        )
        return NotAcknowledgedError(msg, provider=provider, hint=hint)
    if code == "model_not_found":
        return ServiceNotFoundError(
            msg, identifier=provider, hint="pick a model the provider serves (GET <service url>/v1/models)"
        )
    if status in (401, 403):
        hint = None
        if code in (None, "forbidden"):
            hint = (
                "requests must go to <service url>/v1/proxy with a fresh session token; "
                "check the URL and the Authorization header"
            )
        return ProviderAuthError(msg, hint=hint, **common)
    if status == 429:
        return ProviderRateLimitError(msg, retry_after=retry_after_from(headers), **common)
    if status >= 500:
        return ProviderServerError(msg, **common)
    if status == 404 and code is None:
        return ProviderError(
            msg, hint="the route does not exist: requests go to <service url>/v1/proxy/...", **common
        )
    return ProviderError(msg, **common)


# -- session auth for foreign clients (the OpenAI SDK) -------------------------------------------


class SessionAuth(httpx.Auth):
    """An ``httpx.Auth`` that puts a fresh ``Authorization`` header on every request.

    On ``401`` with a stale-token code (``token_expired``, ``generation_mismatch``) it calls
    ``forget``, asks for a new header and resends the request once.

    Args:
        get_authorization: ``async () -> "Bearer app-sk-..."``.
        forget: drops the cached token (and account read) so the next header is new.
    """

    def __init__(self, get_authorization: Callable[[], Awaitable[str]], forget: Callable[[], None]) -> None:
        self._get = get_authorization
        self._forget = forget

    def __repr__(self) -> str:
        return "SessionAuth()"

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        """Sync clients are not supported (the SDK is async only)."""
        raise ConfigError("SessionAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Authorize, send, and on a stale-token 401 refresh the token and resend once."""
        request.headers["Authorization"] = await self._get()
        response = yield request
        if response.status_code != 401:
            return
        raw = await response.aread()
        if error_code(raw) not in REFRESH_CODES:
            return
        self._forget()
        request.headers["Authorization"] = await self._get()
        yield request


@dataclass
class RawReply:
    """What a :func:`handler_client` handler answers: a status, headers, and a body (bytes or a stream)."""

    status: int
    headers: dict[str, str]
    body: bytes | HttpStream


#: ``handler(method, target, headers, body)``: ``target`` is the request's path and query.
RawHandler = Callable[[str, str, dict[str, str], bytes], Awaitable[RawReply]]


class _StreamBody(httpx.AsyncByteStream):
    """An open :class:`HttpStream` as the body of another response."""

    def __init__(self, stream: HttpStream) -> None:
        self._stream = stream
        self._started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:  # read once; a second pass (a drain after the end) finds nothing more
            return
        self._started = True
        async for chunk in self._stream.iter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _HandlerTransport(httpx.AsyncBaseTransport):
    """An httpx transport that hands every request to an async function instead of a network."""

    def __init__(self, handler: RawHandler) -> None:
        self._handler = handler

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        target = request.url.raw_path.decode("ascii")
        reply = await self._handler(request.method, target, dict(request.headers), body)
        if isinstance(reply.body, HttpStream):
            return httpx.Response(
                reply.status, headers=reply.headers, stream=_StreamBody(reply.body), request=request
            )
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body, request=request)


def handler_client(handler: RawHandler, *, base_url: str) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose requests are answered by ``handler`` (no connection of its own).

    The handler sends them on (through the broker's transport); closing this client closes nothing else.
    """
    return httpx.AsyncClient(transport=_HandlerTransport(handler), base_url=base_url, timeout=None)
