"""``POST /v1/proxy/audio/transcriptions``: a multipart upload transcribed as JSON, text or SSE events.

Billed per token by default (usage ``{"type": "tokens", ...}``) or per second of audio
(``transcription_billing="duration"``).
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._billing import transcription_fee
from .._model import count_tokens, parse_multipart, transcribe
from ._context import RouteContext, SSEResponse, bad_request, dumps, sha

__all__ = ["routes"]


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


async def audio_transcriptions(ctx: RouteContext, request: Request) -> Response | SSEResponse:
    """Transcribe the uploaded ``file`` (``stream=true`` for SSE, ``response_format=text`` for plain text)."""
    core = ctx.core
    auth = await core.authenticate(request.headers.get("authorization"))
    body = await request.body()
    try:
        fields, files = parse_multipart(body, request.headers.get("content-type", ""))
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    ctx.check_model(fields.get("model"))
    upload = files.get("file")
    if upload is None:
        raise bad_request("a file is required")
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
            _event({"type": "transcript.text.delta", "delta": (" " if i else "") + w})
            for i, w in enumerate(words)
        ]
        events.append(_event({"type": "transcript.text.done", "text": result.text, "usage": usage}))
        events.append(b"data: [DONE]\n\n")
        return ctx.sse(events, body, chat_id, auth.user)
    if fields.get("response_format") == "text":
        data = result.text.encode()
        core.store_signature(chat_id, f"{sha(body)}:{sha(data)}")
        if core.faults.tamper:
            data = b"Evil: " + data
        return Response(data, media_type="text/plain", headers={"ZG-Res-Key": chat_id})
    return ctx.signed_json({"text": result.text, "usage": usage}, body, chat_id)


def routes(ctx: RouteContext) -> list[Route]:
    """The transcription route (served by ``speech-to-text`` providers)."""
    endpoint = ctx.endpoint(audio_transcriptions, inference=True, types=("speech-to-text",))
    return [Route("/v1/proxy/audio/transcriptions", endpoint, methods=["POST"])]
