"""What every route module shares: the :class:`RouteContext` over the provider core, and response helpers.

Response bodies are built as bytes here and sent unchanged, so the signed
``sha256(request body):sha256(response body)`` text matches exactly what the client reads.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._core import AuthFailure, ProviderCore
from .._model import b64, png_image

__all__ = [
    "MAX_IMAGES",
    "Endpoint",
    "RouteContext",
    "SSEResponse",
    "bad_request",
    "dumps",
    "install_log_filter",
    "iso",
    "json_response",
    "parse_json",
    "parse_n",
    "sha",
    "tamper_json",
]

#: Most images one request may ask for (``n``).
MAX_IMAGES = 10

#: Set while a response is deliberately cut, so uvicorn's complaint about it is not logged.
_CUT_STREAM: contextvars.ContextVar[bool] = contextvars.ContextVar("og_devnet_cut_stream", default=False)
_PNG_PREFIX = "data:image/png;base64,"

#: A route function: the context and the request in, a response out (``AuthFailure`` for a refusal).
Endpoint = Callable[["RouteContext", Request], Awaitable["Response | SSEResponse"]]


class _QuietCutStreams(logging.Filter):
    """Drop uvicorn's error record for a response the devnet cut on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _CUT_STREAM.get()


def install_log_filter() -> None:
    """Attach the cut-stream filter to uvicorn's error logger (idempotent)."""
    target = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietCutStreams) for f in target.filters):
        target.addFilter(_QuietCutStreams())


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the compact body of ``obj``."""
    return Response(dumps(obj), status_code=status, headers=headers, media_type="application/json")


def bad_request(message: str, code: str = "invalid_request") -> AuthFailure:
    """A 400 refusal (raise it)."""
    return AuthFailure(400, code, message)


def iso(ms: int) -> str:
    """Milliseconds since the epoch as an ISO 8601 UTC time (``...Z``)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def sha(data: bytes) -> str:
    """sha256 hex of ``data``."""
    return hashlib.sha256(data).hexdigest()


def parse_json(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (400 otherwise)."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise bad_request("request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object")
    return payload


def parse_n(value: Any) -> int:
    """The ``n`` (images) of a request: 1 when absent, else within ``1..MAX_IMAGES`` (400 otherwise)."""
    if value in (None, ""):
        return 1
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise bad_request("n must be an integer") from None
    if isinstance(value, bool) or not 1 <= n <= MAX_IMAGES:
        raise bad_request(f"n must be between 1 and {MAX_IMAGES}")
    return n


def _tampered(value: Any, key: str | None = None) -> Any:
    """``value`` with its content changed as the ``tamper`` fault does (see ``ProviderFaults``)."""
    if isinstance(value, dict):
        return {k: _tampered(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_tampered(v, key) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if key == "b64_json":
        return b64(png_image(b"og-devnet:tampered"))
    if key == "url" and value.startswith(_PNG_PREFIX):
        return _PNG_PREFIX + b64(png_image(b"og-devnet:tampered"))
    if key in ("content", "text", "delta"):
        if "Echo" in value:
            return value.replace("Echo", "Evil")
        if key == "text":
            return "Evil: " + value
    return value


def tamper_json(data: bytes) -> bytes:
    """A JSON body with its content changed (the ``tamper`` fault)."""
    return dumps(_tampered(json.loads(data)))


def _tamper_event(event: bytes) -> bytes:
    """One encoded SSE event (``data: {...}`` and a blank line) with its content changed (``tamper``)."""
    prefix = b"data: "
    payload = event[len(prefix) :].strip() if event.startswith(prefix) else b""
    if not payload or payload == b"[DONE]":
        return event
    return prefix + tamper_json(payload) + b"\n\n"


class SSEResponse:
    """A raw ASGI streaming response that hashes what it sends and can be cut midway.

    Args:
        events: the SSE events, each already encoded (``b"data: ...\\n\\n"``).
        headers: response headers.
        cut_after: stop after this many events without finishing the response (a dropped
            connection as the client sees it), or ``None``.
        on_done: called with the sha256 hex of the whole body once it was fully sent.
        on_cut: called when the response was cut.
        sent: the events actually sent in place of ``events`` (the ``tamper`` fault): ``on_done``
            still gets the hash of ``events``, so the signature covers what was NOT sent.
    """

    def __init__(
        self,
        events: list[bytes],
        headers: dict[str, str],
        *,
        cut_after: int | None,
        on_done: Callable[[str], None],
        on_cut: Callable[[], None],
        sent: list[bytes] | None = None,
    ) -> None:
        self.events = events
        self.sent = sent if sent is not None else events
        self.headers = headers
        self.cut_after = cut_after
        self.on_done = on_done
        self.on_cut = on_cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        digest = hashlib.sha256()
        for i, event in enumerate(self.events):
            if self.cut_after is not None and i >= self.cut_after:
                self.on_cut()
                _CUT_STREAM.set(True)
                return  # the server closes the connection: the body never completes
            digest.update(event)
            await send({"type": "http.response.body", "body": self.sent[i], "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.on_done(digest.hexdigest())


class RouteContext:
    """One provider's routes' view of it: the core, the per-request checks, and signed responses.

    Args:
        core: the provider's state and rules.
    """

    def __init__(self, core: ProviderCore) -> None:
        self.core = core

    # -- checks -----------------------------------------------------------------------------
    def check_model(self, model: Any) -> str:
        """The requested model: the registered one when absent, 404 ``model_not_found`` when another."""
        served = self.core.config.model
        if model in (None, ""):
            return served
        if model != served:
            raise AuthFailure(
                404, "model_not_found", f"model {model!r} is not served here (serving {served!r})"
            )
        return str(model)

    def _serves(self, route: str, types: tuple[str, ...]) -> None:
        # A provider serves the routes of its own service type only, like a real one: the route
        # is refused before authentication, faults and billing.
        if self.core.config.service_type not in types:
            raise AuthFailure(
                404,
                "unsupported_endpoint",
                f"{route} is not served here: this provider's service type is "
                f"{self.core.config.service_type!r} (serving {', '.join(types)} only)",
            )

    def _fault(self) -> None:
        drawn = self.core.faults.draw()
        if drawn is not None:
            status, code, message = drawn
            headers = {"Retry-After": str(self.core.faults.retry_after)} if status in (429, 503) else None
            raise AuthFailure(status, code, message, headers=headers)

    def _refusal(self, request: Request, failure: AuthFailure) -> Response:
        if self.core.faults.echo_headers:
            echoed = json.dumps(dict(request.headers))
            failure = AuthFailure(
                failure.status,
                failure.code,
                f"{failure.message} (request headers: {echoed})",
                extra=failure.extra,
                headers=failure.headers,
            )
        return json_response(failure.body(), failure.status, failure.headers or None)

    def endpoint(
        self, fn: Endpoint, *, inference: bool = False, types: tuple[str, ...] | None = None
    ) -> Callable[[Request], Awaitable[Any]]:
        """A Starlette endpoint running ``fn``: latency, route type and fault checks first; refusals as JSON.

        Args:
            fn: the route function.
            inference: a billed inference route (the error faults apply).
            types: the service types that serve this route (``None``: every type).
        """

        async def run(request: Request) -> Any:
            if self.core.faults.latency > 0:
                await anyio.sleep(self.core.faults.latency)
            try:
                if types is not None:
                    self._serves(request.url.path, types)
                if inference:
                    self._fault()
                return await fn(self, request)
            except AuthFailure as failure:
                return self._refusal(request, failure)

        return run

    # -- signed answers ---------------------------------------------------------------------
    def signed_json(self, obj: Any, body: bytes, chat_id: str, status: int = 200) -> Response:
        """A JSON answer, its signature (request hash ``:`` response hash) stored under ``chat_id``."""
        data = dumps(obj)
        self.core.store_signature(chat_id, f"{sha(body)}:{sha(data)}")
        if self.core.faults.tamper:
            data = tamper_json(data)
        return Response(
            data, status_code=status, media_type="application/json", headers={"ZG-Res-Key": chat_id}
        )

    def sse(self, events: list[bytes], body: bytes, chat_id: str, user: str) -> SSEResponse:
        """A streamed answer: signed once fully sent, unbilled when ``cut_stream_after`` cuts it."""
        body_hash = sha(body)
        core = self.core

        def unbill() -> None:
            core.book.cancel(user, chat_id)

        return SSEResponse(
            events,
            {"ZG-Res-Key": chat_id},
            cut_after=core.faults.cut_stream_after,
            on_done=lambda h: core.store_signature(chat_id, f"{body_hash}:{h}"),
            on_cut=unbill,
            sent=[_tamper_event(e) for e in events] if core.faults.tamper else None,
        )
