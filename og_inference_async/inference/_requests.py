"""Requests to providers (chat, streaming, images, transcription, async jobs) and verification.

Every request goes through the broker's shared HTTP client to ``service.endpoint``
(``<service url>/v1/proxy``) with a cached session token, is retried by
:class:`RequestRetryPolicy` (see ``_retry`` for which calls are repeated on what), has its error
answers mapped by ``_http.error_for_status``, hashes exactly the bytes it sent and the raw bytes
it received, records its estimated fee locally, and is verified as
:class:`VerificationPolicy` says (``broker.inference.verification``; ``verify=`` per call).
Bodies of :data:`OFFLOAD_BYTES` (256 KiB) or more are hashed, and uploads that large are
multipart-encoded, in a worker thread so big audio or images never stall the event loop.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import anyio

from .._config import checksum
from .._exceptions import (
    ConfigError,
    ImageJobTimeoutError,
    NotAcknowledgedError,
    OGError,
    ProviderResponseError,
    ProviderServerError,
    ServiceTypeMismatchError,
)
from .._http import (
    REFRESH_CODES,
    HttpReply,
    HttpStream,
    SessionAuth,
    TransportFailure,
    encode_multipart,
    error_code,
    error_for_status,
    open_stream,
    retry_after_from,
    send,
)
from .._redact import redact_bytes
from .._singleflight import SingleFlight
from .._validate import (
    check_bool,
    check_bytes,
    check_int,
    check_messages,
    check_optional_str,
    check_seconds,
    check_str,
    shown,
)
from ..types import Service
from ..types.inference import (
    ChatResult,
    FeeBreakdown,
    GeneratedImage,
    ImageResult,
    InferenceResult,
    ServiceVerification,
    TranscriptionResult,
    VerificationHandle,
    VerificationResult,
    VerificationStatus,
    VerificationStep,
)
from ._fees import LocalFeeBook, fee_breakdown
from ._retry import RequestRetryPolicy, retry_delay
from ._sse import DONE, SSEParser
from ._stream import ChatStream
from ._verify import (
    ResponseVerificationError,
    VerificationPolicy,
    check_signature,
    compose_check,
    expected_signer,
    parse_additional_info,
    report_signer,
    sha256_hex,
)

if TYPE_CHECKING:
    import openai

    from .._broker import AsyncBroker
    from ._auth import AuthManager

__all__ = ["ImageJobTimeoutError", "RequestsMixin"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a provider's on-chain service (URL, prices, signer) is trusted before it is read again.
SERVICE_TTL = 300.0

_JSON = "application/json"
#: Raw bytes must equal what the provider hashed: ask for no content coding.
_BASE_HEADERS = {"Accept-Encoding": "identity"}

#: Bodies of at least this many bytes are hashed, and uploads of at least this many bytes are
#: multipart-encoded, in a worker thread (``anyio.to_thread``) instead of on the event loop.
OFFLOAD_BYTES = 256 * 1024


@dataclass(slots=True)
class _Failed:
    error: OGError
    retry_after: float | None = None
    stale_token: bool = False


def _norm(provider: str) -> str:
    return checksum(provider, what="provider")


#: The on-chain service types (lower case) that serve each kind of request.
_CHAT = ("chatbot",)
_GENERATE = ("text-to-image",)
_EDIT = ("image-editing",)
_TRANSCRIBE = ("speech-to-text",)
_IMAGE_JOBS = ("text-to-image", "image-editing")
#: The method to call for each known service type (for the hint of a mismatch).
_METHOD_FOR = {
    "chatbot": "chat() or chat_stream()",
    "text-to-image": "generate_image() or generate_image_async()",
    "image-editing": "edit_image()",
    "speech-to-text": "transcribe()",
}
#: Most images one request may ask for (the OpenAI images API allows 1..10).
MAX_IMAGES = 10
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


def check_service_type(svc: Service, what: str, expected: tuple[str, ...]) -> None:
    """Refuse a request the provider's on-chain service type does not serve (nothing is sent).

    Raises:
        ServiceTypeMismatchError: e.g. a chat to a text-to-image provider.
    """
    kind = svc.service_type.strip().lower() if isinstance(svc.service_type, str) else ""
    if kind in expected:
        return
    offered = shown(svc.service_type)
    method = _METHOD_FOR.get(kind)
    hint = (
        f"this provider offers {kind}: use {method}"
        if method
        else "pick a provider of the right type from broker.inference.list_services()"
    )
    raise ServiceTypeMismatchError(
        f"{what} needs a {' or '.join(expected)} provider, but provider {svc.provider} offers "
        f"service type {offered}; nothing was sent",
        provider=svc.provider,
        service_type=svc.service_type,
        expected=expected,
        hint=hint,
    )


def _dumps(payload: Any) -> bytes:
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"the request body is not JSON-serialisable: {type(exc).__name__}") from None


def _check_params(params: Mapping[str, Any]) -> None:
    """Extra OpenAI parameters need non-empty names (their values are checked by the encoding)."""
    for key in params:
        if not key:
            raise ConfigError("request parameters need non-empty names")


def _check_n(n: Any) -> int:
    return check_int("n", n, minimum=1, maximum=MAX_IMAGES)


async def _load_upload(
    name: str, value: Any, filename: str | None, default_name: str
) -> tuple[bytes | bytearray | memoryview, str]:
    """An upload given as bytes or as the path of a file: ``(content, file name)``.

    A path is checked and read in a worker thread (``anyio.Path``), never on the event loop.

    Raises:
        ConfigError: not bytes and not the path of an existing, non-empty file.
    """
    if filename is not None:
        check_str("filename", filename, max_chars=255)
        if any(c in filename for c in '\r\n"\0'):
            raise ConfigError("filename must not contain quotes, NUL or line breaks")
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = check_bytes(name, value, allow_empty=False)
        return data, filename or default_name
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(
            f"{name} must be bytes or the path of a file, got {shown(value)}",
            hint=f"pass the {name} file's content (bytes) or its path",
        )
    try:
        path = anyio.Path(value)
        text = str(path)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} is not a valid file path") from None
    if not text or "\0" in text:
        raise ConfigError(f"{name} is not a valid file path")
    try:
        is_file = await path.is_file()
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        raise ConfigError(
            f"{name} must be bytes or the path of an existing file; {shown(text)} is not a file",
            hint=f"pass the {name} file's content (bytes) or a path that exists",
        )
    try:
        content = await path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {name} file {shown(text)}: {exc.strerror or type(exc).__name__}"
        ) from None
    if not content:
        raise ConfigError(f"{name} file {shown(text)} is empty")
    return content, filename or os.path.basename(text) or default_name


def _object(reply: HttpReply, provider: str, what: str) -> dict[str, Any]:
    data = reply.json()
    if not isinstance(data, dict):
        raise ProviderResponseError(
            f"{what}: the provider answered with JSON that is not an object", provider=provider
        )
    return data


def _chat_id(reply: HttpReply, data: dict[str, Any]) -> str | None:
    header = reply.headers.get("zg-res-key")
    if header:
        return header
    body_id = data.get("id")
    return body_id if isinstance(body_id, str) and body_id else None


def _images(data: dict[str, Any]) -> list[GeneratedImage]:
    items = data.get("data")
    if not isinstance(items, list):
        raise ProviderResponseError("the image response has no 'data' list")
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(
                GeneratedImage(
                    b64_json=item.get("b64_json") if isinstance(item.get("b64_json"), str) else None,
                    url=item.get("url") if isinstance(item.get("url"), str) else None,
                    revised_prompt=item.get("revised_prompt")
                    if isinstance(item.get("revised_prompt"), str)
                    else None,
                )
            )
    return out


async def _sha256(data: bytes) -> str:
    """``sha256_hex(data)``, in a worker thread for bodies of :data:`OFFLOAD_BYTES` or more."""
    if len(data) >= OFFLOAD_BYTES:
        return await anyio.to_thread.run_sync(sha256_hex, data)
    return sha256_hex(data)


def _encode_upload(
    fields: Mapping[str, str], name: str, filename: str, data: bytes | bytearray | memoryview, mime: str
) -> tuple[bytes, str, str]:
    body, ctype = encode_multipart(fields, {name: (filename, bytes(data), mime)})
    return body, ctype, sha256_hex(body)


async def _upload(
    fields: Mapping[str, str], name: str, filename: str, data: bytes | bytearray | memoryview, mime: str
) -> tuple[bytes, str, str]:
    """Multipart-encode one file upload and hash the body: ``(body, content type, sha256 hex)``.

    Uploads of :data:`OFFLOAD_BYTES` or more are encoded and hashed in a worker thread, so a big
    audio file or image never stalls the event loop.
    """
    if len(data) >= OFFLOAD_BYTES:
        return await anyio.to_thread.run_sync(_encode_upload, fields, name, filename, data, mime)
    return _encode_upload(fields, name, filename, data, mime)


def _form(params: Mapping[str, Any]) -> dict[str, str]:
    """Multipart form fields from request parameters (``None`` left out).

    Raises:
        ConfigError: a value that cannot be written as a form field (not JSON, NaN, ...).
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str):
            out[key] = value
        elif isinstance(value, int):
            out[key] = str(value)
        else:
            try:
                out[key] = json.dumps(value, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError, RecursionError):
                raise ConfigError(f"form field {key!r} cannot be sent: {shown(value)}") from None
    return out


def _image_request(
    model: str, prompt: str, n: int, size: str | None, response_format: str | None, params: Mapping[str, Any]
) -> bytes:
    """The JSON body of an image generation (sync or async job)."""
    payload: dict[str, Any] = {"model": model, "prompt": prompt, "n": n, **params}
    if size is not None:
        payload["size"] = size
    if response_format is not None:
        payload["response_format"] = response_format
    return _dumps(payload)


class RequestsMixin:
    """Provider requests and response verification for :class:`InferenceAPI`.

    Configuration (per broker, on ``broker.inference``):

    - ``verification``: a :class:`VerificationPolicy` or a mode name (``"off"``,
      ``"background"`` (default), ``"required"``); every request method also takes ``verify=``.
    - ``retry_policy``: a :class:`RequestRetryPolicy` (bounded attempts and total time).
    """

    _b: AsyncBroker
    auth: AuthManager

    def _init_requests(self) -> None:
        """Set up this mixin's per-broker state (called from ``InferenceAPI.__init__``)."""
        self._verification = VerificationPolicy()
        self._retry_policy = RequestRetryPolicy()
        self._services: dict[str, tuple[float, Service]] = {}
        self._service_flights: SingleFlight[str, Service] = SingleFlight()
        self._fee_book = LocalFeeBook()
        self._verify_limiter: anyio.CapacityLimiter | None = None
        self._sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self._clock: Callable[[], float] = time.monotonic

    # -- configuration -------------------------------------------------------------------------

    @property
    def verification(self) -> VerificationPolicy:
        """The verification policy of this broker's requests (settable with a mode name)."""
        return self._verification

    @verification.setter
    def verification(self, value: str | VerificationPolicy) -> None:
        self._verification = VerificationPolicy.coerce(value)

    @property
    def retry_policy(self) -> RequestRetryPolicy:
        """The :class:`RequestRetryPolicy` of this broker's provider requests."""
        return self._retry_policy

    @retry_policy.setter
    def retry_policy(self, value: RequestRetryPolicy) -> None:
        if not isinstance(value, RequestRetryPolicy):
            raise ConfigError(f"retry_policy must be a RequestRetryPolicy, got {shown(value)}")
        self._retry_policy = value

    def _policy(self, verify: str | VerificationPolicy | None) -> VerificationPolicy:
        return self._verification if verify is None else VerificationPolicy.coerce(verify)

    def _check_image_args(
        self,
        prompt: Any,
        n: Any,
        size: Any,
        model: Any,
        response_format: Any,
        verify: str | VerificationPolicy | None,
        params: Mapping[str, Any],
    ) -> VerificationPolicy:
        """Check the arguments shared by the image methods; returns the verification policy."""
        check_str("prompt", prompt)
        _check_n(n)
        check_optional_str("size", size)
        check_optional_str("model", model)
        check_optional_str("response_format", response_format)
        _check_params(params)
        _form(params)
        return self._policy(verify)

    # -- local fees ----------------------------------------------------------------------------

    def local_fees(self, provider: str) -> int:
        """Fees (wei) this broker estimated for ``provider``'s requests since start or the last reset.

        The estimate uses the on-chain prices and the usage each response reported (PROTOCOL 4.6).
        """
        return self._fee_book.total(_norm(provider))

    def reset_local_fees(self, provider: str | None = None) -> None:
        """Forget the locally counted fees of one provider (or of all), e.g. after a settlement."""
        self._fee_book.reset(None if provider is None else _norm(provider))

    def _record_fee(self, provider: str, cost: FeeBreakdown | None) -> int:
        fee = cost.fee if cost is not None else 0
        self._fee_book.add(provider, fee)
        return fee

    # -- service metadata ----------------------------------------------------------------------

    async def _get_service_cached(self, provider: str, *, fresh: bool = False) -> Service:
        """The provider's on-chain service, cached for ``SERVICE_TTL`` seconds (single-flight reads).

        Raises:
            ServiceNotFoundError: no service for that provider.
        """
        prov = _norm(provider)
        if not fresh:
            hit = self._services.get(prov)
            if hit is not None and hit[0] > self._clock():
                return hit[1]

        async def fetch() -> Service:
            service = await self._b._chain_reader.get_service(prov)
            self._services[prov] = (self._clock() + SERVICE_TTL, service)
            return service

        return await self._service_flights.run(prov, fetch)

    def forget_service(self, provider: str | None = None) -> None:
        """Drop cached service metadata (URL, prices, signer) of one provider or all."""
        if provider is None:
            self._services.clear()
        else:
            self._services.pop(_norm(provider), None)

    # -- the exchange loop ---------------------------------------------------------------------

    def _failure(
        self, prov: str, status: int, headers: Mapping[str, str], raw: bytes, *, what: str, auth: bool
    ) -> _Failed:
        raw = redact_bytes(raw)  # the answer may echo our Authorization header
        stale = auth and status == 401 and error_code(raw) in REFRESH_CODES
        error = error_for_status(status, headers, raw, provider=prov, what=what)
        if isinstance(error, NotAcknowledgedError):
            self.auth.forget(prov)
        retry_after = retry_after_from(headers) if status == 429 or status >= 500 else None
        return _Failed(error, retry_after, stale)

    async def _retrying(
        self,
        prov: str,
        once: Callable[[dict[str, str]], Awaitable[T | _Failed]],
        *,
        idempotent: bool,
        auth: bool,
    ) -> T:
        """Run ``once(headers)`` until it succeeds or the retry policy gives up.

        A stale-token 401 re-signs the session token and resends once, outside the attempt count.
        """
        policy = self.retry_policy
        started = self._clock()
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            headers = dict(_BASE_HEADERS)
            if auth:
                headers.update(await self.auth.get_request_headers(prov))
            outcome = await once(headers)
            if not isinstance(outcome, _Failed):
                return outcome
            if outcome.stale_token and not refreshed:
                refreshed = True
                attempt -= 1
                log.info("provider %s refused a stale session token; signing a new one", prov)
                self.auth.forget(prov)
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
                prov,
                delay,
                type(outcome.error).__name__,
                attempt + 1,
                policy.attempts,
            )
            await self._sleep(delay)

    async def _request(
        self,
        prov: str,
        method: str,
        url: str,
        *,
        what: str,
        idempotent: bool,
        body: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
    ) -> HttpReply:
        """One whole request with retries; returns a 1xx-3xx reply or raises the typed error."""
        http = self._b.http

        async def once(headers: dict[str, str]) -> HttpReply | _Failed:
            if content_type is not None:
                headers["Content-Type"] = content_type
            try:
                reply = await send(
                    http, method, url, headers=headers, content=body, params=params, provider=prov, what=what
                )
            except TransportFailure as exc:
                return _Failed(exc)
            if reply.status < 400:
                return reply
            return self._failure(prov, reply.status, reply.headers, reply.raw, what=what, auth=auth)

        return await self._retrying(prov, once, idempotent=idempotent, auth=auth)

    # -- verification --------------------------------------------------------------------------

    async def _verify(
        self,
        prov: str,
        svc: Service,
        chat_id: str | None,
        request_sha256: str | None,
        response_sha256: str | None,
        *,
        model: str | None,
        policy: VerificationPolicy,
    ) -> VerificationResult:
        """Fetch and judge the signature of one response (never raises for provider trouble)."""
        base: dict[str, Any] = {
            "provider": prov,
            "chat_id": chat_id,
            "request_sha256": request_sha256,
            "response_sha256": response_sha256,
        }
        if not svc.is_verifiable:
            return VerificationResult(
                status=VerificationStatus.NOT_VERIFIABLE,
                reason=f"the service's verifiability is {svc.verifiability!r}",
                **base,
            )
        expected = expected_signer(svc)
        if not chat_id:
            return VerificationResult(
                status=VerificationStatus.UNAVAILABLE,
                expected_signer=expected,
                reason="no chat id (no ZG-Res-Key header and no response id)",
                **base,
            )
        url = svc.url.rstrip("/") + "/v1/proxy/signature/" + quote(chat_id, safe="")
        params = {"model": model or svc.model}
        wait = policy.signature_retry_wait
        reply: HttpReply | None = None
        for attempt in range(1, policy.signature_attempts + 1):
            try:
                reply = await self._request(
                    prov, "GET", url, what="signature", idempotent=True, params=params, auth=False
                )
                break
            except OGError as exc:
                status = getattr(exc, "status_code", None)
                if status == 404 and attempt < policy.signature_attempts:
                    await self._sleep(wait * self.retry_policy.wait_scale)
                    wait *= 2
                    continue
                return VerificationResult(
                    status=VerificationStatus.UNAVAILABLE,
                    expected_signer=expected,
                    reason=f"cannot fetch the signature: {exc.message}",
                    **base,
                )
        assert reply is not None
        try:
            record = reply.json()
        except ProviderResponseError:
            record = None
        text = record.get("text") if isinstance(record, dict) else None
        signature = record.get("signature") if isinstance(record, dict) else None
        if not isinstance(text, str) or not isinstance(signature, str):
            return VerificationResult(
                status=VerificationStatus.REJECTED,
                expected_signer=expected,
                reason="the signature record lacks 'text' or 'signature'",
                **base,
            )
        return check_signature(
            provider=prov,
            chat_id=chat_id,
            expected=expected,
            signer_acknowledged=svc.tee_signer_acknowledged,
            text=text,
            signature=signature,
            request_sha256=request_sha256,
            response_sha256=response_sha256,
        )

    async def _notify(self, policy: VerificationPolicy, outcome: VerificationResult) -> None:
        if outcome.status in (VerificationStatus.REJECTED, VerificationStatus.NOT_BOUND):
            log.warning(
                "response %s from provider %s failed verification: %s",
                outcome.chat_id,
                outcome.provider,
                outcome.reason,
            )
        if policy.on_result is None:
            return
        try:
            maybe = policy.on_result(outcome)
            if maybe is not None:
                await maybe
        except Exception:
            log.exception("the verification callback raised; ignored")

    def _limiter(self, policy: VerificationPolicy) -> anyio.CapacityLimiter:
        if self._verify_limiter is None:
            self._verify_limiter = anyio.CapacityLimiter(policy.max_background)
        elif self._verify_limiter.total_tokens != policy.max_background:
            self._verify_limiter.total_tokens = policy.max_background
        return self._verify_limiter

    async def _verify_in_background(
        self,
        policy: VerificationPolicy,
        handle: VerificationHandle,
        prov: str,
        svc: Service,
        result: InferenceResult,
    ) -> None:
        outcome: VerificationResult | None = None
        try:
            async with self._limiter(policy):
                outcome = await self._verify(
                    prov,
                    svc,
                    result.chat_id,
                    result.request_sha256,
                    result.response_sha256,
                    model=result.model,
                    policy=policy,
                )
        except Exception as exc:  # a background task must never take the broker's task group down
            outcome = VerificationResult(
                status=VerificationStatus.UNAVAILABLE,
                provider=prov,
                chat_id=result.chat_id,
                reason=f"verification failed: {type(exc).__name__}",
            )
        finally:
            if outcome is None:
                outcome = VerificationResult(
                    status=VerificationStatus.UNAVAILABLE,
                    provider=prov,
                    chat_id=result.chat_id,
                    reason="the broker closed before the verification finished",
                )
            handle.set(outcome)
        await self._notify(policy, outcome)

    async def _apply_policy(
        self,
        policy: VerificationPolicy,
        handle: VerificationHandle,
        svc: Service,
        result: InferenceResult,
    ) -> None:
        """Settle ``handle`` as the policy says; under ``required`` raise on failure."""
        prov = result.provider
        if policy.mode == "off":
            handle.set(
                VerificationResult(status=VerificationStatus.SKIPPED, provider=prov, chat_id=result.chat_id)
            )
            return
        outcome: VerificationResult | None
        if not svc.is_verifiable or policy.mode == "required":
            outcome = await self._verify(
                prov,
                svc,
                result.chat_id,
                result.request_sha256,
                result.response_sha256,
                model=result.model,
                policy=policy,
            )
        else:
            outcome = None
        if outcome is None:
            self._b.task_group.start_soon(self._verify_in_background, policy, handle, prov, svc, result)
            return
        handle.set(outcome)
        await self._notify(policy, outcome)
        if policy.mode == "required":
            reason = policy.failure(outcome)
            if reason is not None:
                detail = f": {outcome.reason}" if outcome.reason else ""
                # fail closed: the content is withheld (the result is not attached to the error)
                raise ResponseVerificationError(
                    f"{reason} (provider {prov}, chat id {outcome.chat_id}){detail}",
                    verification=outcome,
                    fee=result.fee,
                    usage=result.usage,
                )

    async def process_response(
        self,
        provider: str,
        chat_id: str | None,
        *,
        request_body: bytes | None = None,
        response_body: bytes | None = None,
        usage: Mapping[str, Any] | str | None = None,
        model: str | None = None,
    ) -> VerificationResult:
        """Verify a response you obtained yourself (e.g. through the OpenAI adapter), and count its fee.

        The SDK's own request methods already do this; use it for requests made another way.

        Args:
            provider: the provider address.
            chat_id: the ``ZG-Res-Key`` header (else the completion ``id``); ``None`` skips the
                signature (``UNAVAILABLE``).
            request_body: the exact request bytes sent; with ``response_body`` the signature is
                checked against both hashes (``BOUND`` / ``NOT_BOUND``).
            response_body: the raw response bytes received (for a stream: the whole SSE body).
            usage: the usage object (or its JSON) to count the fee locally; for image services,
                ``{"n": <images>}``. Leave it out for responses the SDK already counted.
            model: the model the request used (default: the service's).

        Returns:
            The outcome; never raises for a bad signature (see :class:`VerificationStatus`).

        Raises:
            ConfigError: an argument of the wrong type.
            ServiceNotFoundError: no service for ``provider``.
        """
        prov = _norm(provider)
        check_optional_str("chat_id", chat_id)
        check_optional_str("model", model)
        for name, body in (("request_body", request_body), ("response_body", response_body)):
            if body is not None:
                check_bytes(name, body)
        if usage is not None and not isinstance(usage, (Mapping, str)):
            raise ConfigError(f"usage must be a dict, its JSON text or None, got {shown(usage)}")
        svc = await self._get_service_cached(prov)
        if usage is not None:
            parsed: Any = usage
            if isinstance(usage, str):
                try:
                    parsed = json.loads(usage)
                except ValueError:
                    parsed = None
            if isinstance(parsed, Mapping):
                as_dict = dict(parsed)
                self._record_fee(
                    prov,
                    fee_breakdown(
                        svc.service_type, svc.input_price, svc.output_price, as_dict, n=as_dict.get("n")
                    ),
                )
        return await self._verify(
            prov,
            svc,
            chat_id,
            await _sha256(bytes(request_body)) if request_body is not None else None,
            await _sha256(bytes(response_body)) if response_body is not None else None,
            model=model,
            policy=self._verification,
        )

    # -- chat ----------------------------------------------------------------------------------

    async def chat(
        self,
        provider: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> ChatResult:
        """A chat completion (``POST /v1/proxy/chat/completions``).

        Never retried once the provider may have served it (see ``RequestRetryPolicy``).

        Args:
            provider: the provider address.
            messages: OpenAI chat messages (``[{"role": "user", "content": "hi"}]``).
            model: the model id (default: the service's model).
            verify: the verification policy for this call (default: ``broker.inference.verification``).
            **params: other OpenAI parameters (``max_tokens``, ``temperature``, ``tools``, ...).

        Returns:
            The completion with its chat id, usage, estimated fee and verification outcome.

        Raises:
            ConfigError: bad arguments (``messages`` not a non-empty list of dicts with a ``role``,
                a blank ``model``, parameters that are not JSON), checked before anything is sent.
            ServiceTypeMismatchError: the provider is not a chatbot.
            NotAcknowledgedError: no (acknowledged) sub-account with the provider.
            InsufficientBalanceError: the provider refused for lack of funds (amounts attached).
            ProviderError: the provider refused or failed (typed by status).
            ResponseVerificationError: under the ``required`` policy, the response failed verification.
        """
        if params.get("stream"):
            raise ConfigError("chat() does not stream; use chat_stream()")
        prov = _norm(provider)
        checked = check_messages(messages)
        check_optional_str("model", model)
        _check_params(params)
        policy = self._policy(verify)
        svc = await self._get_service_cached(prov)
        check_service_type(svc, "chat", _CHAT)
        payload: dict[str, Any] = {"model": model or svc.model, "messages": checked, **params}
        body = _dumps(payload)
        reply = await self._request(
            prov,
            "POST",
            svc.endpoint + "/chat/completions",
            what="chat",
            idempotent=False,
            body=body,
            content_type=_JSON,
        )
        data = _object(reply, prov, "chat")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        cost = fee_breakdown(svc.service_type, svc.input_price, svc.output_price, usage)
        fee = self._record_fee(prov, cost)
        choices = data.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
        content = message["content"] if isinstance(message.get("content"), str) else ""
        handle = VerificationHandle()
        result = ChatResult(
            provider=prov,
            model=str(payload["model"]),
            chat_id=_chat_id(reply, data),
            usage=usage,
            fee=fee,
            cost=cost,
            request_sha256=await _sha256(body),
            response_sha256=await _sha256(reply.raw),
            raw=data,
            verification=handle,
            content=content,
            message=message,
            finish_reason=choice.get("finish_reason")
            if isinstance(choice.get("finish_reason"), str)
            else None,
        )
        await self._apply_policy(policy, handle, svc, result)
        return result

    def chat_stream(
        self,
        provider: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        verify: str | VerificationPolicy | None = None,
        include_usage: bool = True,
        drain_on_exit: bool = True,
        drain_timeout: float = 60.0,
        hold_until_verified: bool = False,
        **params: Any,
    ) -> ChatStream:
        """A streamed chat completion: use ``async with ... as stream: async for chunk in stream``.

        Args:
            provider: the provider address.
            messages: OpenAI chat messages.
            model: the model id (default: the service's model).
            verify: the verification policy for this call (default: ``broker.inference.verification``).
            include_usage: ask for the usage chunk (``stream_options.include_usage``) so the fee
                can be counted; ignored when ``stream_options`` is passed.
            drain_on_exit: when the ``async with`` block is left before the end, read the rest in
                the broker's task group so the fee is counted and the response verified (the
                provider bills the whole answer anyway); ``False`` closes at once.
            drain_timeout: most seconds that background read may take.
            hold_until_verified: under ``required``, hand over no chunk before the whole answer
                was received and its signature passed (no streaming to the caller, but no
                unverified text either). By default chunks are delivered as they arrive and
                the verdict comes after the last one (see :class:`ChatStream`).
            **params: other OpenAI parameters.

        Returns:
            The :class:`ChatStream` (nothing is sent before ``async with``).

        Raises:
            ConfigError: bad arguments (checked here; parameters that cannot be JSON-encoded on
                ``async with``), before anything is sent; ``hold_until_verified`` without the
                ``required`` policy.
            ServiceTypeMismatchError: (on ``async with``) the provider is not a chatbot.
        """
        prov = _norm(provider)
        checked = check_messages(messages)
        check_optional_str("model", model)
        check_bool("include_usage", include_usage)
        check_bool("drain_on_exit", drain_on_exit)
        check_seconds("drain_timeout", drain_timeout)
        check_bool("hold_until_verified", hold_until_verified)
        _check_params(params)
        policy = self._policy(verify)
        payload: dict[str, Any] = {"model": model, "messages": checked, **params, "stream": True}
        if include_usage and "stream_options" not in params:
            payload["stream_options"] = {"include_usage": True}
        return ChatStream(
            self,
            prov,
            payload,
            policy,
            drain_on_exit=drain_on_exit,
            drain_timeout=drain_timeout,
            hold_until_verified=hold_until_verified,
        )

    async def _open_chat_stream(
        self, prov: str, payload: dict[str, Any]
    ) -> tuple[Service, bytes, HttpStream, AsyncExitStack]:
        """Send a streaming chat request; retried only until the response headers arrive."""
        svc = await self._get_service_cached(prov)
        check_service_type(svc, "chat stream", _CHAT)
        if payload.get("model") is None:
            payload["model"] = svc.model
        body = _dumps(payload)
        url = svc.endpoint + "/chat/completions"
        http = self._b.http

        async def once(headers: dict[str, str]) -> tuple[HttpStream, AsyncExitStack] | _Failed:
            headers["Content-Type"] = _JSON
            headers["Accept"] = "text/event-stream"
            stack = AsyncExitStack()
            try:
                stream = await stack.enter_async_context(
                    open_stream(
                        http, "POST", url, headers=headers, content=body, provider=prov, what="chat stream"
                    )
                )
            except TransportFailure as exc:
                await stack.aclose()
                return _Failed(exc)
            if stream.status < 400:
                return stream, stack
            try:
                raw = await stream.read()
            except TransportFailure:
                raw = b""
            finally:
                await stack.aclose()
            return self._failure(prov, stream.status, stream.headers, raw, what="chat stream", auth=True)

        stream, stack = await self._retrying(prov, once, idempotent=False, auth=True)
        return svc, body, stream, stack

    async def _finish_chat_stream(self, stream: ChatStream, svc: Service) -> ChatResult:
        request_sha256, response_sha256, content, usage, finish, chunks = stream._summary()
        cost = fee_breakdown(svc.service_type, svc.input_price, svc.output_price, usage)
        fee = self._record_fee(stream.provider, cost)
        handle = VerificationHandle()
        result = ChatResult(
            provider=stream.provider,
            model=stream.model,
            chat_id=stream.chat_id,
            usage=usage,
            fee=fee,
            cost=cost,
            request_sha256=request_sha256,
            response_sha256=response_sha256,
            raw=chunks,
            verification=handle,
            content=content,
            message={"role": "assistant", "content": content},
            finish_reason=finish,
        )
        assert stream._policy is not None
        await self._apply_policy(stream._policy, handle, svc, result)
        return result

    # -- images --------------------------------------------------------------------------------

    async def _image_result(
        self,
        prov: str,
        svc: Service,
        reply: HttpReply,
        request_sha256: str,
        *,
        model: str,
        n: Any,
        policy: VerificationPolicy,
        what: str,
    ) -> ImageResult:
        data = _object(reply, prov, what)
        images = _images(data)
        cost = fee_breakdown(svc.service_type, svc.input_price, svc.output_price, None, n=n)
        handle = VerificationHandle()
        result = ImageResult(
            provider=prov,
            model=model,
            chat_id=_chat_id(reply, data),
            usage=data.get("usage") if isinstance(data.get("usage"), dict) else None,
            fee=self._record_fee(prov, cost),
            cost=cost,
            request_sha256=request_sha256,
            response_sha256=await _sha256(reply.raw),
            raw=data,
            verification=handle,
            images=images,
        )
        await self._apply_policy(policy, handle, svc, result)
        return result

    async def generate_image(
        self,
        provider: str,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        model: str | None = None,
        response_format: str | None = None,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> ImageResult:
        """Generate images (``POST /v1/proxy/images/generations``); billed per image.

        Args:
            provider: the provider address.
            prompt: what to draw.
            n: how many images.
            size: e.g. ``"512x512"``.
            model: the model id (default: the service's model).
            response_format: ``"b64_json"`` or ``"url"``.
            verify: the verification policy for this call.
            **params: other OpenAI image parameters.

        Raises:
            ConfigError: bad arguments (a blank prompt, ``n`` not an int in 1..10, ...), checked
                before anything is sent.
            ServiceTypeMismatchError: the provider is not a text-to-image service.
            ProviderError: the provider refused or failed (typed by status).
            ResponseVerificationError: under ``required``, the response failed verification.
        """
        prov = _norm(provider)
        policy = self._check_image_args(prompt, n, size, model, response_format, verify, params)
        svc = await self._get_service_cached(prov)
        check_service_type(svc, "image generation", _GENERATE)
        used = model or svc.model
        body = _image_request(used, prompt, n, size, response_format, params)
        reply = await self._request(
            prov,
            "POST",
            svc.endpoint + "/images/generations",
            what="image generation",
            idempotent=False,
            body=body,
            content_type=_JSON,
        )
        return await self._image_result(
            prov,
            svc,
            reply,
            await _sha256(body),
            model=used,
            n=n,
            policy=policy,
            what="image generation",
        )

    async def edit_image(
        self,
        provider: str,
        image: bytes | str | os.PathLike[str],
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        model: str | None = None,
        response_format: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> ImageResult:
        """Edit an image (``POST /v1/proxy/images/edits``, multipart); billed per resulting image.

        Args:
            provider: the provider address.
            image: the source image: its bytes, or the path of the file (read in a worker thread).
            prompt: the edit to make.
            n: how many images (1..10).
            size: e.g. ``"512x512"``.
            model: the model id (default: the service's model).
            response_format: ``"b64_json"`` or ``"url"``.
            filename: the upload's file name (default: the path's name, else ``"image.png"``).
            content_type: the upload's media type (default: guessed from the file name, else
                ``"image/png"``).
            verify: the verification policy for this call.
            **params: other form fields.

        Raises:
            ConfigError: bad arguments (``image`` neither bytes nor an existing file, a blank
                prompt, ``n`` out of range, ...), checked before anything is sent.
            ServiceTypeMismatchError: the provider is not an image-editing service.
            ProviderError: the provider refused or failed (typed by status).
            ResponseVerificationError: under ``required``, the response failed verification.
        """
        prov = _norm(provider)
        policy = self._check_image_args(prompt, n, size, model, response_format, verify, params)
        check_optional_str("content_type", content_type)
        data, name = await _load_upload("image", image, filename, "image.png")
        mime = content_type or mimetypes.guess_type(name)[0] or "image/png"
        svc = await self._get_service_cached(prov)
        check_service_type(svc, "image edit", _EDIT)
        used = model or svc.model
        fields = _form(
            {
                "model": used,
                "prompt": prompt,
                "n": n,
                "size": size,
                "response_format": response_format,
                **params,
            }
        )
        body, ctype, request_sha256 = await _upload(fields, "image", name, data, mime)
        reply = await self._request(
            prov,
            "POST",
            svc.endpoint + "/images/edits",
            what="image edit",
            idempotent=False,
            body=body,
            content_type=ctype,
        )
        return await self._image_result(
            prov,
            svc,
            reply,
            request_sha256,
            model=used,
            n=n,
            policy=policy,
            what="image edit",
        )

    # -- audio ---------------------------------------------------------------------------------

    async def transcribe(
        self,
        provider: str,
        audio: bytes | str | os.PathLike[str],
        filename: str | None = None,
        *,
        model: str | None = None,
        language: str | None = None,
        response_format: str | None = None,
        content_type: str | None = None,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> TranscriptionResult:
        """Transcribe audio (``POST /v1/proxy/audio/transcriptions``, multipart).

        A streamed answer (``stream=True`` in ``params``) is read whole and assembled. The fee
        follows the usage the provider reports (per second or per token); a plain-text answer
        (``response_format="text"``) carries no usage, so its fee is counted as 0 locally although
        the provider bills it: prefer the JSON formats when you rely on ``local_fees``.

        Args:
            provider: the provider address.
            audio: the audio file: its bytes, or its path (read in a worker thread).
            filename: its name (default: the path's name, else ``"audio.wav"``); its extension
                sets the media type unless ``content_type`` is given.
            model: the model id (default: the service's model).
            language: the spoken language, when known.
            response_format: e.g. ``"json"`` or ``"text"``.
            content_type: the upload's media type.
            verify: the verification policy for this call.
            **params: other form fields.

        Raises:
            ConfigError: bad arguments (``audio`` neither bytes nor an existing file, ...),
                checked before anything is sent.
            ServiceTypeMismatchError: the provider is not a speech-to-text service.
            ProviderError: the provider refused or failed (typed by status).
            ResponseVerificationError: under ``required``, the response failed verification.
        """
        prov = _norm(provider)
        for name, value in (
            ("model", model),
            ("language", language),
            ("response_format", response_format),
            ("content_type", content_type),
        ):
            check_optional_str(name, value)
        _check_params(params)
        _form(params)
        policy = self._policy(verify)
        upload, name = await _load_upload("audio", audio, filename, "audio.wav")
        svc = await self._get_service_cached(prov)
        check_service_type(svc, "transcription", _TRANSCRIBE)
        used = model or svc.model
        mime = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        fields = _form({"model": used, "language": language, "response_format": response_format, **params})
        body, ctype, request_sha256 = await _upload(fields, "file", name, upload, mime)
        reply = await self._request(
            prov,
            "POST",
            svc.endpoint + "/audio/transcriptions",
            what="transcription",
            idempotent=False,
            body=body,
            content_type=ctype,
        )
        media = reply.headers.get("content-type", "").split(";")[0].strip().lower()
        usage: dict[str, Any] | None = None
        raw: Any
        chat_id = reply.headers.get("zg-res-key") or None
        if media == "text/event-stream":
            parser = SSEParser()
            events = parser.feed(reply.content) + parser.close()
            deltas: list[str] = []
            final: str | None = None
            raw = []
            for event in events:
                if event.data == DONE:
                    continue
                try:
                    obj = json.loads(event.data)
                except ValueError:
                    continue
                if not isinstance(obj, dict):
                    continue
                raw.append(obj)
                if isinstance(obj.get("delta"), str):
                    deltas.append(obj["delta"])
                if isinstance(obj.get("text"), str):
                    final = obj["text"]
                if isinstance(obj.get("usage"), dict):
                    usage = obj["usage"]
            text = final if final is not None else "".join(deltas)
        elif media == _JSON or media.endswith("+json"):
            data = _object(reply, prov, "transcription")
            raw = data
            text = data["text"] if isinstance(data.get("text"), str) else ""
            usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
            chat_id = chat_id or (data.get("id") if isinstance(data.get("id"), str) else None)
        else:
            text = reply.content.decode("utf-8", errors="replace")
            raw = text
        cost = fee_breakdown(svc.service_type, svc.input_price, svc.output_price, usage)
        handle = VerificationHandle()
        result = TranscriptionResult(
            provider=prov,
            model=used,
            chat_id=chat_id,
            usage=usage,
            fee=self._record_fee(prov, cost),
            cost=cost,
            request_sha256=request_sha256,
            response_sha256=await _sha256(reply.raw),
            raw=raw,
            verification=handle,
            text=text,
        )
        await self._apply_policy(policy, handle, svc, result)
        return result

    # -- async image jobs ----------------------------------------------------------------------

    async def generate_image_async(
        self,
        provider: str,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        model: str | None = None,
        response_format: str | None = None,
        max_wait: float = 300.0,
        max_polls: int = 600,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> ImageResult:
        """Generate images through the provider's job queue and wait for them.

        Submits ``POST <service url>/v1/async/images/generations`` (answered ``202`` with a
        ``jobId``), then polls ``GET /v1/async/jobs/<jobId>`` honouring ``Retry-After`` (capped by
        the retry policy's ``max_retry_after``), bounded by ``max_wait`` seconds and ``max_polls``.
        The result is verified like any other: its chat id is the ``ZG-Res-Key`` header (else the
        ``chatId`` field) of the poll answer that delivers it, and the provider signs
        ``sha256(submitted request body):sha256(that poll answer's raw body)``. A provider that
        gives job results no chat id leaves the verification ``UNAVAILABLE``.

        Raises:
            ConfigError: bad arguments, checked before anything is sent.
            ServiceTypeMismatchError: the provider is not a text-to-image service.
            ImageJobTimeoutError: the job did not finish in time (resume with :meth:`wait_image_job`).
            ProviderServerError: the job failed.
            ProviderError: the submission was refused.
            ResponseVerificationError: under ``required``, the result failed verification.
        """
        prov = _norm(provider)
        policy = self._check_image_args(prompt, n, size, model, response_format, verify, params)
        check_seconds("max_wait", max_wait)
        check_int("max_polls", max_polls, minimum=1)
        svc = await self._get_service_cached(prov)
        check_service_type(svc, "async image job", _GENERATE)
        used = model or svc.model
        body = _image_request(used, prompt, n, size, response_format, params)
        reply = await self._request(
            prov,
            "POST",
            svc.url.rstrip("/") + "/v1/async/images/generations",
            what="async image job",
            idempotent=False,
            body=body,
            content_type=_JSON,
        )
        data = _object(reply, prov, "async image job")
        job_id = data.get("jobId") or data.get("job_id") or data.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise ProviderResponseError(
                "the async job answer has no jobId", provider=prov, status_code=reply.status
            )
        return await self.wait_image_job(
            prov,
            job_id,
            max_wait=max_wait,
            max_polls=max_polls,
            verify=policy,
            n=n,
            model=used,
            request_sha256=await _sha256(body),
        )

    async def wait_image_job(
        self,
        provider: str,
        job_id: str,
        *,
        max_wait: float = 300.0,
        max_polls: int = 600,
        verify: str | VerificationPolicy | None = None,
        n: int | None = None,
        model: str | None = None,
        request_sha256: str | None = None,
    ) -> ImageResult:
        """Wait for an async image job and return its images.

        Args:
            provider: the provider address.
            job_id: the job's id.
            max_wait: most seconds to wait.
            max_polls: most status requests.
            verify: the verification policy (the signature of the poll answer that delivers the
                result is checked, see :meth:`generate_image_async`).
            n: the number of images asked for (for the fee; default: the number returned).
            model: the model asked for (for the result).
            request_sha256: hex sha256 of the submitted request body
                (``ImageJobTimeoutError.request_sha256``): with it a genuine signature verifies
                ``BOUND``; without it at best ``SIGNED`` (the request side is not compared).

        Raises:
            ConfigError: bad arguments, checked before anything is sent.
            ServiceTypeMismatchError: the provider is not an image service.
            ImageJobTimeoutError: not finished within ``max_wait`` / ``max_polls``.
            ProviderServerError: the job failed.
            ResponseVerificationError: under ``required``, the result failed verification.
        """
        prov = _norm(provider)
        check_str("job_id", job_id, max_chars=512)
        check_seconds("max_wait", max_wait)
        check_int("max_polls", max_polls, minimum=1)
        if n is not None:
            _check_n(n)
        check_optional_str("model", model)
        if request_sha256 is not None and (
            not isinstance(request_sha256, str) or _SHA256_RE.fullmatch(request_sha256) is None
        ):
            raise ConfigError(f"request_sha256 must be 64 hex characters, got {shown(request_sha256)}")
        policy = self._policy(verify)
        svc = await self._get_service_cached(prov)
        check_service_type(svc, "async image job", _IMAGE_JOBS)
        url = svc.url.rstrip("/") + "/v1/async/jobs/" + quote(job_id, safe="")
        deadline = self._clock() + max_wait
        status: str | None = None
        minimum = 0.05 * self.retry_policy.wait_scale
        for _ in range(max_polls):
            reply = await self._request(prov, "GET", url, what="async job status", idempotent=True)
            data = _object(reply, prov, "async job status")
            status = data.get("status") if isinstance(data.get("status"), str) else None
            if status == "completed":
                return await self._job_result(
                    prov,
                    svc,
                    reply,
                    data,
                    job_id,
                    n=n,
                    model=model or svc.model,
                    request_sha256=request_sha256,
                    policy=policy,
                )
            if status == "failed":
                why = data.get("errorMessage") or data.get("error") or "no reason given"
                raise ProviderServerError(f"async image job {job_id} failed: {why}", provider=prov)
            asked = retry_after_from(reply.headers)
            wait = min(asked if asked is not None else 2.0, self.retry_policy.max_retry_after)
            wait = max(wait * self.retry_policy.wait_scale, minimum)
            if self._clock() + wait > deadline:
                break
            await self._sleep(wait)
        raise ImageJobTimeoutError(
            f"async image job {job_id} is still {status or 'unknown'} after waiting",
            job_id=job_id,
            last_status=status,
            provider=prov,
            request_sha256=request_sha256,
        )

    async def _job_result(
        self,
        prov: str,
        svc: Service,
        reply: HttpReply,
        data: dict[str, Any],
        job_id: str,
        *,
        n: int | None,
        model: str,
        request_sha256: str | None,
        policy: VerificationPolicy,
    ) -> ImageResult:
        inner = data.get("data")
        if not isinstance(inner, dict):
            raise ProviderResponseError(f"async image job {job_id} completed without data", provider=prov)
        images = _images(inner)
        cost = fee_breakdown(
            svc.service_type, svc.input_price, svc.output_price, None, n=n if n is not None else len(images)
        )
        chat_id = reply.headers.get("zg-res-key") or None
        if chat_id is None and isinstance(data.get("chatId"), str) and data["chatId"]:
            chat_id = data["chatId"]
        handle = VerificationHandle()
        result = ImageResult(
            provider=prov,
            model=model,
            chat_id=chat_id,
            usage=None,
            fee=self._record_fee(prov, cost),
            cost=cost,
            request_sha256=request_sha256,
            response_sha256=await _sha256(reply.raw),
            raw=inner,
            verification=handle,
            images=images,
            job_id=job_id,
        )
        await self._apply_policy(policy, handle, svc, result)
        return result

    # -- attestation ---------------------------------------------------------------------------

    async def verify_service(self, provider: str, output_dir: str | None = None) -> ServiceVerification:
        """Check a provider's attestation report against the chain (PROTOCOL 6; TS steps 5-6).

        Fetches ``GET <service url>/v1/quote``, extracts the signer from ``report_data``
        (base64, NUL-stripped), compares it with the on-chain ``teeSignerAddress``, reads the
        service's ``teeSignerAcknowledged``, and runs the dstack compose-hash check when the report
        has the data. For separated targets the model TEE's report is fetched too. Hardware quote
        verification (dstack-verifier, NVIDIA, Automata) is not done here.

        Args:
            provider: the provider address.
            output_dir: when given, the report(s) are written there as JSON
                (``attestation_report.json``, or ``broker_attestation_report.json`` and
                ``llm_attestation_report.json`` for separated targets).

        Raises:
            ConfigError: ``output_dir`` is not a path.
            ServiceNotFoundError: no service for ``provider``.
            ProviderError: the report could not be fetched.
        """
        prov = _norm(provider)
        if output_dir is not None and (
            not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir)
        ):
            raise ConfigError(f"output_dir must be a directory path or None, got {shown(output_dir)}")
        svc = await self._get_service_cached(prov, fresh=True)
        steps: list[VerificationStep] = []

        def step(kind: str, message: str) -> None:
            steps.append(VerificationStep(kind=kind, message=message))

        info = parse_additional_info(svc)
        separated = info.get("TargetSeparated") is True
        centralized = info.get("ProviderType") == "centralized"
        step("info", f"service {svc.model!r} at {svc.url}, verifiability {svc.verifiability!r}")
        base = svc.url.rstrip("/")
        reply = await self._request(
            prov, "GET", base + "/v1/quote", what="attestation quote", idempotent=True, auth=False
        )
        report = _object(reply, prov, "attestation quote")
        step("success", "downloaded the attestation report (GET /v1/quote)")
        signer, source = report_signer(report)
        match = signer is not None and signer.lower() == svc.tee_signer_address.lower()
        if signer is None:
            step("error", "the report names no signer (no report_data / evidence / signing_address)")
        elif match:
            step("success", f"the report's signer ({source}) {signer} equals the on-chain TEE signer")
        else:
            step("error", f"the report's signer {signer} differs from the on-chain {svc.tee_signer_address}")
        if svc.tee_signer_acknowledged:
            step("success", "the contract owner acknowledged this TEE signer")
        else:
            step("error", "the contract owner has NOT acknowledged this TEE signer")
        compose, detail = compose_check(report)
        step({True: "success", False: "error", None: "warning"}[compose], detail)
        llm_signer: str | None = None
        llm_report: dict[str, Any] | None = None
        if separated and not centralized:
            try:
                llm_reply = await self._request(
                    prov,
                    "GET",
                    base + "/v1/proxy/attestation/report",
                    what="model attestation report",
                    idempotent=True,
                    params={"model": svc.model},
                    auth=False,
                )
                llm_report = _object(llm_reply, prov, "model attestation report")
                found = llm_report.get("signing_address")
                llm_signer = found if isinstance(found, str) else None
                target = info.get("TargetTeeAddress")
                if llm_signer and isinstance(target, str):
                    agree = llm_signer.lower() == target.lower()
                    step(
                        "success" if agree else "error",
                        f"the model TEE signs as {llm_signer}; TargetTeeAddress is {target}",
                    )
            except OGError as exc:
                step("warning", f"cannot fetch the model TEE's report: {exc.message}")
        report_path: str | None = None
        if output_dir is not None:
            folder = anyio.Path(output_dir)
            await folder.mkdir(parents=True, exist_ok=True)
            name = "broker_attestation_report.json" if separated else "attestation_report.json"
            target_file = folder / name
            await target_file.write_text(json.dumps(report, indent=2))
            report_path = str(target_file)
            step("info", f"wrote {report_path}")
            if llm_report is not None:
                llm_file = folder / "llm_attestation_report.json"
                await llm_file.write_text(json.dumps(llm_report, indent=2))
                step("info", f"wrote {llm_file}")
        verified = match and svc.tee_signer_acknowledged and compose is not False
        step("success" if verified else "error", "verified" if verified else "NOT verified")
        return ServiceVerification(
            provider=prov,
            verified=verified,
            contract_signer=svc.tee_signer_address,
            report_signer=signer,
            signer_match=match,
            tee_signer_acknowledged=svc.tee_signer_acknowledged,
            compose_verified=compose,
            target_separated=separated,
            llm_signer=llm_signer,
            report=report,
            report_path=report_path,
            steps=steps,
        )

    # -- OpenAI adapter ------------------------------------------------------------------------

    async def openai_client(
        self, provider: str, *, api_key: str | None = None, **kwargs: Any
    ) -> openai.AsyncOpenAI:
        """An ``openai.AsyncOpenAI`` for ``provider`` on the broker's shared HTTP pool.

        Without ``api_key`` every request carries a fresh session token (an ``httpx.Auth``
        re-signs it once when the provider answers 401 ``token_expired``/``generation_mismatch``).
        With ``api_key`` (from :meth:`create_api_key`) the key is sent as is. ``base_url`` is
        ``service.endpoint``. Closing the returned client (``close()``, ``async with``) does NOT
        close the broker's pool; the broker does when it closes. Requests made this way are not
        counted or verified by the SDK: pass ``ZG-Res-Key`` and the usage to
        :meth:`process_response` for that.

        Retries: ``max_retries`` defaults to **0**, not openai's 2. openai resends after
        timeouts, connection errors, 429 and every 5xx, and a resent inference POST may be
        served and billed twice; the SDK's own methods retry only where the request was provably
        not served (see ``RequestRetryPolicy``). Pass ``max_retries=`` to opt in anyway.

        Args:
            provider: the provider address.
            api_key: an ``app-sk-...`` API key, or ``None`` for session tokens.
            **kwargs: more ``AsyncOpenAI`` arguments (``timeout``, ``max_retries`` (default 0), ...).

        Raises:
            ConfigError: the ``openai`` package is not installed, or ``api_key`` is not an
                ``app-sk-`` string.
            NotAcknowledgedError: session mode without an acknowledged sub-account.
        """
        prov = _norm(provider)
        if api_key is not None and (not isinstance(api_key, str) or not api_key.startswith("app-sk-")):
            raise ConfigError("api_key must be an 'app-sk-...' string from create_api_key(), or None")
        svc = await self._get_service_cached(prov)
        try:
            from ._openai import build_openai_client
        except ImportError as exc:
            raise ConfigError(
                "the OpenAI adapter needs the openai package", hint="pip install 'og-inference-async[openai]'"
            ) from exc
        auth: SessionAuth | None = None
        if api_key is None:
            await self.auth.require_acknowledged(prov)

            async def authorization() -> str:
                return (await self.auth.get_request_headers(prov))["Authorization"]

            auth = SessionAuth(authorization, lambda: self.auth.forget(prov))
        return build_openai_client(
            base_url=svc.endpoint, http_client=self._b.http, auth=auth, api_key=api_key, **kwargs
        )
