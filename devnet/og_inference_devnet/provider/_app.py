"""The provider's HTTP surface: a Starlette app over :class:`~._core.ProviderCore`.

Routes (all under the service URL):

- ``POST /v1/proxy/chat/completions`` (JSON and SSE), ``POST /v1/proxy/images/generations``,
  ``POST /v1/proxy/images/edits`` (multipart), ``POST /v1/proxy/audio/transcriptions``
  (multipart, JSON or SSE);
- ``POST /v1/async/images/generations`` / ``POST /v1/async/images/edits`` (202) and
  ``GET /v1/async/jobs/{id}``;
- ``GET /v1/proxy/signature/{chat_id}``, ``GET /v1/quote``, ``GET /v1/proxy/attestation/report``,
  ``GET /v1/models``, ``GET /v1/user/{address}/unsettledfee``.

Response bodies are built as bytes here and sent unchanged, so the signed
``sha256(request body):sha256(response body)`` text matches exactly what the client reads.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._billing import chat_fee, image_fee, transcription_fee
from ._core import AsyncJob, AuthContext, AuthFailure, ProviderCore
from ._model import (
    b64,
    chat_reply,
    count_tokens,
    parse_multipart,
    png_image,
    transcribe,
)

__all__ = ["build_app"]

logger = logging.getLogger("og_inference_devnet.provider")

#: Set while a response is deliberately cut, so uvicorn's complaint about it is not logged.
_CUT_STREAM: contextvars.ContextVar[bool] = contextvars.ContextVar("og_devnet_cut_stream", default=False)
_MAX_IMAGES = 10


class _QuietCutStreams(logging.Filter):
    """Drop uvicorn's error record for a response the devnet cut on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _CUT_STREAM.get()


def install_log_filter() -> None:
    """Attach the cut-stream filter to uvicorn's error logger (idempotent)."""
    target = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietCutStreams) for f in target.filters):
        target.addFilter(_QuietCutStreams())


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(obj), status_code=status, headers=headers, media_type="application/json")


def _error(failure: AuthFailure) -> Response:
    return _json(failure.body(), failure.status, failure.headers or None)


def _bad_request(message: str, code: str = "invalid_request") -> AuthFailure:
    return AuthFailure(400, code, message)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_PNG_PREFIX = "data:image/png;base64,"


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


def _tamper_json(data: bytes) -> bytes:
    """A JSON body with its content changed (the ``tamper`` fault)."""
    return _dumps(_tampered(json.loads(data)))


def _tamper_event(event: bytes) -> bytes:
    """One encoded SSE event (``data: {...}`` and a blank line) with its content changed (``tamper``)."""
    prefix = b"data: "
    payload = event[len(prefix) :].strip() if event.startswith(prefix) else b""
    if not payload or payload == b"[DONE]":
        return event
    return prefix + _tamper_json(payload) + b"\n\n"


class _SSEResponse:
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


def build_app(core: ProviderCore) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Build the Starlette app of one devnet provider.

    Args:
        core: the provider's state and rules.

    Returns:
        The ASGI app (it counts every HTTP request it receives in ``core.requests_received``).
    """
    install_log_filter()

    async def delay() -> None:
        if core.faults.latency > 0:
            await anyio.sleep(core.faults.latency)

    def fault() -> None:
        drawn = core.faults.draw()
        if drawn is not None:
            status, code, message = drawn
            headers = {"Retry-After": str(core.faults.retry_after)} if status in (429, 503) else None
            raise AuthFailure(status, code, message, headers=headers)

    def check_model(model: Any) -> str:
        if model in (None, ""):
            return core.config.model
        if model != core.config.model:
            raise AuthFailure(
                404, "model_not_found", f"model {model!r} is not served here (serving {core.config.model!r})"
            )
        return str(model)

    def parse_json(body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body)
        except ValueError:
            raise _bad_request("request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise _bad_request("request body must be a JSON object")
        return payload

    def parse_n(value: Any) -> int:
        if value in (None, ""):
            return 1
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise _bad_request("n must be an integer") from None
        if isinstance(value, bool) or not 1 <= n <= _MAX_IMAGES:
            raise _bad_request(f"n must be between 1 and {_MAX_IMAGES}")
        return n

    def serves(route: str, types: tuple[str, ...]) -> None:
        # A provider serves the routes of its own service type only, like a real one: the route
        # is refused before authentication, faults and billing.
        if core.config.service_type not in types:
            raise AuthFailure(
                404,
                "unsupported_endpoint",
                f"{route} is not served here: this provider's service type is "
                f"{core.config.service_type!r} (serving {', '.join(types)} only)",
            )

    def handler(
        fn: Callable[[Request], Awaitable[Response | _SSEResponse]],
        *,
        inference: bool = False,
        types: tuple[str, ...] | None = None,
    ) -> Callable[[Request], Awaitable[Any]]:
        async def endpoint(request: Request) -> Any:
            await delay()
            try:
                if types is not None:
                    serves(request.url.path, types)
                if inference:
                    fault()
                return await fn(request)
            except AuthFailure as failure:
                if core.faults.echo_headers:
                    echoed = json.dumps(dict(request.headers))
                    failure = AuthFailure(
                        failure.status,
                        failure.code,
                        f"{failure.message} (request headers: {echoed})",
                        extra=failure.extra,
                        headers=failure.headers,
                    )
                return _error(failure)

        return endpoint

    def signed_json(obj: Any, body: bytes, chat_id: str, status: int = 200) -> Response:
        data = _dumps(obj)
        core.store_signature(chat_id, f"{_sha(body)}:{_sha(data)}")
        if core.faults.tamper:
            data = _tamper_json(data)
        return Response(
            data, status_code=status, media_type="application/json", headers={"ZG-Res-Key": chat_id}
        )

    def sse(events: list[bytes], body: bytes, chat_id: str, user: str) -> _SSEResponse:
        body_hash = _sha(body)

        def unbill() -> None:
            core.book.cancel(user, chat_id)

        return _SSEResponse(
            events,
            {"ZG-Res-Key": chat_id},
            cut_after=core.faults.cut_stream_after,
            on_done=lambda h: core.store_signature(chat_id, f"{body_hash}:{h}"),
            on_cut=unbill,
            sent=[_tamper_event(e) for e in events] if core.faults.tamper else None,
        )

    # -- chat -------------------------------------------------------------------------------
    async def chat_completions(request: Request) -> Response | _SSEResponse:
        auth = await core.authenticate(request.headers.get("authorization"))
        body = await request.body()
        payload = parse_json(body)
        model = check_model(payload.get("model"))
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad_request("messages must be a non-empty list")
        max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
            raise _bad_request("max_tokens must be an integer")
        result = chat_reply(messages, max_tokens)
        fee = chat_fee(result.prompt_tokens, result.completion_tokens, core.input_price, core.output_price)
        chat_id = str(uuid.uuid4())
        core.charge(auth, chat_id, fee, body)
        created = int(time.time())
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        }
        body_id = f"chatcmpl-{chat_id}"
        if not payload.get("stream"):
            return signed_json(
                {
                    "id": body_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "og-devnet",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": result.text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": result.finish_reason,
                        }
                    ],
                    "usage": usage,
                },
                body,
                chat_id,
            )
        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        base = {
            "id": body_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "og-devnet",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            obj = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            obj.update(extra)
            return b"data: " + _dumps(obj) + b"\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(result.words)]
        if include_usage:
            events.append(chunk({}, result.finish_reason))
            events.append(b"data: " + _dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
        else:
            # usage always rides on the last chunk before [DONE]
            events.append(chunk({}, result.finish_reason, usage=usage))
        events.append(b"data: [DONE]\n\n")
        return sse(events, body, chat_id, auth.user)

    # -- images -----------------------------------------------------------------------------
    def image_items(
        seed: bytes, n: int, size: Any, response_format: Any, prompt: str
    ) -> list[dict[str, Any]]:
        items = []
        for i in range(n):
            data = b64(png_image(seed + i.to_bytes(2, "big"), size))
            if response_format == "url":
                items.append({"url": "data:image/png;base64," + data, "revised_prompt": prompt})
            else:
                items.append({"b64_json": data, "revised_prompt": prompt})
        return items

    def generation_request(body: bytes) -> tuple[str, int, Any, Any]:
        payload = parse_json(body)
        check_model(payload.get("model"))
        prompt = payload.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _bad_request("prompt must be a non-empty string")
        return prompt, parse_n(payload.get("n")), payload.get("size"), payload.get("response_format")

    def edit_request(request: Request, body: bytes) -> tuple[str, int, Any, Any, bytes]:
        try:
            fields, files = parse_multipart(body, request.headers.get("content-type", ""))
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        check_model(fields.get("model"))
        image = files.get("image") or files.get("image[]")
        if image is None or not image.data:
            raise _bad_request("an image file is required")
        prompt = fields.get("prompt", "")
        if not prompt:
            raise _bad_request("prompt is required")
        return prompt, parse_n(fields.get("n")), fields.get("size"), fields.get("response_format"), image.data

    async def images_generations(request: Request) -> Response:
        auth = await core.authenticate(request.headers.get("authorization"))
        body = await request.body()
        prompt, n, size, fmt = generation_request(body)
        chat_id = str(uuid.uuid4())
        core.charge(auth, chat_id, image_fee(n, core.input_price), body)
        items = image_items(prompt.encode(), n, size, fmt, prompt)
        return signed_json({"created": int(time.time()), "data": items}, body, chat_id)

    async def images_edits(request: Request) -> Response:
        auth = await core.authenticate(request.headers.get("authorization"))
        body = await request.body()
        prompt, n, size, fmt, image = edit_request(request, body)
        chat_id = str(uuid.uuid4())
        core.charge(auth, chat_id, image_fee(n, core.input_price), body)
        items = image_items(hashlib.sha256(image).digest() + prompt.encode(), n, size, fmt, prompt)
        return signed_json({"created": int(time.time()), "data": items}, body, chat_id)

    # -- audio ------------------------------------------------------------------------------
    async def audio_transcriptions(request: Request) -> Response | _SSEResponse:
        auth = await core.authenticate(request.headers.get("authorization"))
        body = await request.body()
        try:
            fields, files = parse_multipart(body, request.headers.get("content-type", ""))
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        check_model(fields.get("model"))
        upload = files.get("file")
        if upload is None:
            raise _bad_request("a file is required")
        result = transcribe(upload.data)
        usage: dict[str, Any]
        if core.config.transcription_billing == "tokens":
            input_tokens = max(round(result.seconds * 25), 1)
            output_tokens = count_tokens(result.text)
            usage = {
                "type": "tokens",
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            }
        else:
            usage = {"type": "duration", "seconds": round(result.seconds, 3)}
        fee = transcription_fee(usage, core.input_price, core.output_price)
        chat_id = str(uuid.uuid4())
        core.charge(auth, chat_id, fee, body)
        if fields.get("stream", "").lower() == "true":
            words = result.text.split()
            events = [
                b"data: "
                + _dumps({"type": "transcript.text.delta", "delta": (" " if i else "") + w})
                + b"\n\n"
                for i, w in enumerate(words)
            ]
            events.append(
                b"data: "
                + _dumps({"type": "transcript.text.done", "text": result.text, "usage": usage})
                + b"\n\n"
            )
            events.append(b"data: [DONE]\n\n")
            return sse(events, body, chat_id, auth.user)
        if fields.get("response_format") == "text":
            data = result.text.encode()
            core.store_signature(chat_id, f"{_sha(body)}:{_sha(data)}")
            if core.faults.tamper:
                data = b"Evil: " + data
            return Response(data, media_type="text/plain", headers={"ZG-Res-Key": chat_id})
        return signed_json({"text": result.text, "usage": usage}, body, chat_id)

    # -- async jobs -------------------------------------------------------------------------
    def job_status(job: AsyncJob) -> dict[str, Any]:
        return {
            "jobId": job.job_id,
            "status": job.status,
            "createdAt": _iso(job.created_at),
            "updatedAt": _iso(job.updated_at),
        }

    async def run_job(job: AsyncJob, body: bytes, make: Callable[[], list[dict[str, Any]]]) -> None:
        try:
            await anyio.sleep(core.config.async_job_seconds / 2)
            job.status = "processing"
            job.updated_at = int(time.time() * 1000)
            await anyio.sleep(core.config.async_job_seconds / 2)
            try:
                data = {"created": int(time.time()), "data": make()}
            except Exception as exc:  # a failed job is reported to the poller, never raised into the server
                core.fail_job(job)
                job.status, job.error = "failed", f"image generation failed: {type(exc).__name__}"
                job.updated_at = int(time.time() * 1000)
                return
        except BaseException:
            core.fail_job(job)  # the server is stopping: the job never completes and is never billed
            raise
        # completed: bill the reserved fee and sign the answer that delivers the result, exactly
        # as it will be sent: sha256(submit request body) + ":" + sha256(completed poll body)
        chat_id = str(uuid.uuid4())
        core.complete_job(job, chat_id, body)
        job.data, job.chat_id = data, chat_id
        job.status = "completed"
        job.updated_at = int(time.time() * 1000)
        job.result_body = _dumps({**job_status(job), "chatId": chat_id, "data": data})
        core.store_signature(chat_id, f"{_sha(body)}:{_sha(job.result_body)}")
        if core.faults.tamper:
            job.result_body = _tamper_json(job.result_body)

    def submit(
        auth: AuthContext, fee: int, body: bytes, make: Callable[[], list[dict[str, Any]]]
    ) -> Response:
        if core.task_group is None:
            raise AuthFailure(503, "service_unavailable", "async jobs are not running")
        now = int(time.time() * 1000)
        job = AsyncJob(str(uuid.uuid4()), auth.user, "pending", now, now, fee=fee)
        core.reserve_job(auth, job.job_id, fee)  # the balance rule counts pending jobs' fees
        core.jobs[job.job_id] = job
        core.task_group.start_soon(run_job, job, body, make)
        return _json({"jobId": job.job_id, "status": "pending"}, 202)

    async def async_generations(request: Request) -> Response:
        auth = await core.authenticate(request.headers.get("authorization"))
        body = await request.body()
        prompt, n, size, fmt = generation_request(body)
        return submit(
            auth,
            image_fee(n, core.input_price),
            body,
            lambda: image_items(prompt.encode(), n, size, fmt, prompt),
        )

    async def async_edits(request: Request) -> Response:
        auth = await core.authenticate(request.headers.get("authorization"))
        body = await request.body()
        prompt, n, size, fmt, image = edit_request(request, body)
        seed = hashlib.sha256(image).digest() + prompt.encode()
        return submit(
            auth, image_fee(n, core.input_price), body, lambda: image_items(seed, n, size, fmt, prompt)
        )

    async def async_job(request: Request) -> Response:
        auth = await core.authenticate(request.headers.get("authorization"))
        job = core.jobs.get(request.path_params["job_id"])
        if job is None or job.user.lower() != auth.user.lower():
            raise AuthFailure(404, "not_found", "no such job")
        if job.status == "completed" and job.result_body is not None and job.chat_id is not None:
            return Response(
                job.result_body, media_type="application/json", headers={"ZG-Res-Key": job.chat_id}
            )
        out = job_status(job)
        headers = None
        if job.status in ("pending", "processing"):
            headers = {"Retry-After": str(core.config.async_retry_after)}
        else:
            out["errorMessage"] = job.error or "failed"
        return _json(out, 200, headers)

    # -- verification -----------------------------------------------------------------------
    async def signature(request: Request) -> Response:
        record = core.signature_for(request.path_params["chat_id"])
        if record is None:
            raise AuthFailure(404, "not_found", "no signature for this chat id")
        return _json(record)

    def quote_document() -> dict[str, Any]:
        app_compose = json.dumps(
            {"name": "og-devnet-provider", "runner": "devnet", "docker_compose_file": "services: {}\n"},
            separators=(",", ":"),
        )
        event_log = [
            {
                "imr": 3,
                "event_type": 134217729,
                "digest": _sha(b"devnet"),
                "event": "system-ready",
                "event_payload": "",
            },
            {
                "imr": 3,
                "event_type": 134217729,
                "digest": _sha(app_compose.encode()),
                "event": "compose-hash",
                "event_payload": _sha(app_compose.encode()),
            },
        ]
        return {
            "devnet": True,
            "note": "og-devnet: NOT a real TDX quote; no TEE is involved",
            "quote": ("0000" + b"og-devnet-fake-quote".hex()),
            "event_log": json.dumps(event_log, separators=(",", ":")),
            "report_data": base64.b64encode(core.tee_address.encode("ascii").ljust(64, b"\0")).decode(),
            "vm_config": json.dumps({"os_image_hash": "devnet", "cpu_count": 1, "memory_size": 0}),
            "tcb_info": json.dumps({"app_compose": app_compose, "devnet": True}, separators=(",", ":")),
            "signing_address": core.tee_address,
            "signing_algo": "ecdsa",
        }

    async def quote(request: Request) -> Response:
        return _json(quote_document())

    async def attestation_report(request: Request) -> Response:
        doc = quote_document()
        doc.update(
            {
                "request_nonce": request.query_params.get("nonce", ""),
                "intel_quote": doc["quote"],
                "nvidia_payload": "",
                "info": {"tcb_info": json.loads(doc["tcb_info"])},
            }
        )
        return _json(doc)

    async def models(request: Request) -> Response:
        pricing: dict[str, str]
        if core.config.service_type in ("text-to-image", "image-editing"):
            pricing = {"image": str(core.input_price)}
        else:
            pricing = {"prompt": str(core.input_price), "completion": str(core.output_price)}
        item = {
            "id": core.config.model,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": "og-devnet",
            "name": core.config.model,
            "type": core.config.service_type,
            "description": "deterministic og-devnet model",
            "context_length": 8192,
            "pricing": pricing,
            "verifiability": "TeeML",
            "tee_attested": True,
        }
        return _json({"object": "list", "data": [item]})

    async def unsettled_fee(request: Request) -> Response:
        auth = await core.authenticate(request.headers.get("authorization"))
        address = request.path_params["address"]
        if address.lower() != auth.user.lower():
            raise AuthFailure(403, "address_mismatch", "the token's address does not match the URL address")
        # What this user owes now: billed and unsettled, plus the fees reserved by accepted async jobs.
        return _json({"unsettledFee": str(core.book.owed(auth.user))})

    async def outside_proxy(request: Request) -> Response:
        return _json(
            {
                "error": {
                    "code": "forbidden",
                    "message": "inference requests must go to the service endpoint <url>/v1/proxy",
                }
            },
            403,
        )

    chat, generate, edit, audio = ("chatbot",), ("text-to-image",), ("image-editing",), ("speech-to-text",)
    routes = [
        Route(
            "/v1/proxy/chat/completions",
            handler(chat_completions, inference=True, types=chat),
            methods=["POST"],
        ),
        Route(
            "/v1/proxy/images/generations",
            handler(images_generations, inference=True, types=generate),
            methods=["POST"],
        ),
        Route("/v1/proxy/images/edits", handler(images_edits, inference=True, types=edit), methods=["POST"]),
        Route(
            "/v1/proxy/audio/transcriptions",
            handler(audio_transcriptions, inference=True, types=audio),
            methods=["POST"],
        ),
        Route(
            "/v1/async/images/generations",
            handler(async_generations, inference=True, types=generate),
            methods=["POST"],
        ),
        Route("/v1/async/images/edits", handler(async_edits, inference=True, types=edit), methods=["POST"]),
        Route("/v1/async/jobs/{job_id}", handler(async_job, types=generate + edit), methods=["GET"]),
        Route("/v1/proxy/signature/{chat_id}", handler(signature), methods=["GET"]),
        Route("/v1/proxy/attestation/report", handler(attestation_report), methods=["GET"]),
        Route("/v1/quote", handler(quote), methods=["GET"]),
        Route("/v1/models", handler(models), methods=["GET"]),
        Route("/v1/user/{address}/unsettledfee", handler(unsettled_fee), methods=["GET"]),
        # Like real 0G providers: an inference call outside /v1/proxy is forbidden, not unknown.
        Route("/{path:path}", outside_proxy, methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return _json({"error": {"code": code, "message": str(getattr(exc, "detail", "error"))}}, status)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            core.requests_received += 1
        await app(scope, receive, send)

    return counted
