"""The SDK's own web3 async provider: JSON-RPC over the broker's shared HTTP pool.

web3's ``AsyncHTTPProvider`` takes a process-wide ``threading.Lock`` (through
``run_in_executor``) on every request to look up its aiohttp session; a request cancelled while
waiting for that lock leaves it held, and every later request of every provider in the process
hangs. This provider keeps ``AsyncWeb3`` as the framework (it subclasses web3's
``AsyncJSONBaseProvider``, so ``AsyncWeb3(PooledHTTPProvider(...))`` works) but sends through a
plain function handed to it by the broker (:func:`og_inference_async._http.rpc_poster`): no lock,
no session cache, no background task, and nothing held across an await, so a cancellation at any
point leaves nothing behind.

Failures come out as :class:`~og_inference_async.RPCError` with ``retryable``, ``retry_after``
(from an HTTP 429 or 503 ``Retry-After``) and the method name.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, cast

from web3.providers.async_base import AsyncJSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from .._exceptions import OGError, RPCError

__all__ = [
    "RATE_LIMIT_CODES",
    "TRANSIENT_WORDS",
    "DirectProvider",
    "PooledHTTPProvider",
    "Reply",
    "throttle_kind",
]

#: At most this much of a non-JSON-RPC body is quoted in an error.
_MAX_QUOTE = 200
#: JSON-RPC error codes nodes and gateways use for "slow down".
RATE_LIMIT_CODES = frozenset({-32005, -32029, 429})
#: Words of a JSON-RPC error message that mark it as transient (worth asking again).
TRANSIENT_WORDS = ("rate limit", "too many requests", "timeout", "timed out", "temporarily", "try again")


def throttle_kind(error: Any) -> str | None:
    """``"rate_limit"``, ``"transient"`` or ``None``: what a JSON-RPC error object says about the endpoint.

    A rate limit (codes -32005 / -32029 / 429, or "rate limit" / "too many requests" in the
    message) or a transient failure ("timeout", "try again", ...) is the endpoint's trouble, not an
    answer about the request; any other error is the node's answer (a revert, bad params...).
    """
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    lowered = str(error.get("message", "")).lower()
    if code == 3 or "revert" in lowered:
        return None
    if (
        (isinstance(code, int) and code in RATE_LIMIT_CODES)
        or "rate limit" in lowered
        or "too many requests" in lowered
    ):
        return "rate_limit"
    if any(w in lowered for w in TRANSIENT_WORDS):
        return "transient"
    return None


class Reply(Protocol):
    """What the poster returns: a status, headers and the raw body."""

    @property
    def status(self) -> int:
        """The HTTP status."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers."""

    @property
    def raw(self) -> bytes:
        """The body as received."""


Poster = Callable[[bytes, float], Awaitable[Reply]]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    from .._http import retry_after_from

    return retry_after_from(headers)


def _quote(raw: bytes) -> str:
    from .._redact import redact

    return redact(raw[:_MAX_QUOTE].decode("utf-8", errors="replace").strip()) or "no body"


class DirectProvider(AsyncJSONBaseProvider):
    """web3's async provider interface on top of :meth:`request` / :meth:`request_batch`.

    The SDK's own client calls those two directly (with a per-request timeout); web3 goes through
    ``make_request`` / ``make_batch_request``. Subclasses post on the broker's shared HTTP pool.
    """

    async def request(self, method: str, params: Any, *, timeout: float | None = None) -> dict[str, Any]:
        """Send one JSON-RPC request and return the response object (``result`` or ``error``)."""
        raise NotImplementedError

    async def request_batch(
        self, calls: list[tuple[str, Any]], *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Send a JSON-RPC batch; the responses come back in the order of ``calls``."""
        raise NotImplementedError

    # -- web3's provider interface ---------------------------------------------------------------

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        """web3's entry point: one request."""
        return cast(RPCResponse, await self.request(str(method), params))

    async def make_batch_request(self, requests: list[tuple[RPCEndpoint, Any]]) -> list[RPCResponse]:
        """web3's entry point: a batch."""
        out = await self.request_batch([(str(m), p) for m, p in requests])
        return cast(list[RPCResponse], out)

    async def is_connected(self, show_traceback: bool = False) -> bool:
        """Whether a node answers ``web3_clientVersion``."""
        try:
            response = await self.request("web3_clientVersion", [])
        except RPCError:
            if show_traceback:
                raise
            return False
        return "result" in response

    async def disconnect(self) -> None:
        """Nothing to do: the HTTP pool belongs to the broker."""


class PooledHTTPProvider(DirectProvider):
    """A web3 async JSON-RPC provider that posts on a shared HTTP pool, lock-free.

    Args:
        url: the JSON-RPC endpoint (kept for ``repr``; the poster already targets it).
        post: ``async (body, timeout) -> reply``; the broker builds it on its shared client.
        timeout: seconds one request may take (callers may pass a shorter one to :meth:`request`).
    """

    def __init__(self, url: str, post: Poster, *, timeout: float = 10.0) -> None:
        super().__init__()
        self.endpoint_uri = url
        self._post = post
        self.timeout = timeout
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"PooledHTTPProvider({self.endpoint_uri!r})"

    async def _exchange(self, body: bytes, what: str, timeout: float | None) -> Any:
        from .._http import TransportFailure

        try:
            reply = await self._post(body, self.timeout if timeout is None else timeout)
        except TransportFailure as exc:
            phase = "before it was sent" if exc.not_sent else "after it may have been received"
            raise RPCError(
                f"{what}: transport failure {phase} ({type(exc.__cause__ or exc).__name__})",
                retryable=True,
                method=what,
            ) from None
        except OGError:
            raise
        status = reply.status
        if status != 200:
            retry_after = _retry_after(reply.headers) if status in (429, 503) else None
            raise RPCError(
                f"{what}: RPC HTTP error {status}: {_quote(reply.raw)}",
                code=429 if status == 429 else None,
                retryable=status == 429 or status >= 500,
                retry_after=retry_after,
                method=what,
            )
        try:
            return json.loads(reply.raw)
        except ValueError:
            raise RPCError(
                f"{what}: the node's answer is not JSON: {_quote(reply.raw)}", retryable=True, method=what
            ) from None

    async def request(self, method: str, params: Any, *, timeout: float | None = None) -> dict[str, Any]:
        """Send one JSON-RPC request and return the response object (``result`` or ``error``).

        Raises:
            RPCError: transport failure, HTTP error status, or a body that is not a JSON-RPC object.
        """
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params},
            separators=(",", ":"),
        ).encode()
        response = await self._exchange(body, method, timeout)
        if not isinstance(response, dict):
            raise RPCError(f"{method}: malformed JSON-RPC response", retryable=True, method=method)
        return response

    async def request_batch(
        self, calls: list[tuple[str, Any]], *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Send a JSON-RPC batch; the responses come back in the order of ``calls``.

        Raises:
            RPCError: transport failure, HTTP error, a batch-level error, or a malformed answer.
        """
        ids = [next(self._ids) for _ in calls]
        body = json.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (m, p) in zip(ids, calls, strict=True)
            ],
            separators=(",", ":"),
        ).encode()
        response = await self._exchange(body, "batch", timeout)
        if isinstance(response, dict) and isinstance(response.get("error"), dict):
            return [response for _ in calls]  # a batch-level error answers every call
        if not isinstance(response, list) or not all(isinstance(r, dict) for r in response):
            raise RPCError("batch: malformed JSON-RPC batch response", retryable=True, method="batch")
        by_id = {r.get("id"): r for r in response}
        out: list[dict[str, Any]] = []
        for i, (method, _) in zip(ids, calls, strict=True):
            item = by_id.get(i)
            if item is None:
                raise RPCError(f"{method}: missing from the batch response", retryable=True, method=method)
            out.append(item)
        return out
