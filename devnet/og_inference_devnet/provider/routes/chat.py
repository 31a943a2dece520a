"""``POST /v1/proxy/chat/completions``: the echo model's answer as JSON or as SSE chunks, billed per token."""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._billing import chat_fee
from .._model import chat_reply
from ._context import RouteContext, SSEResponse, bad_request, dumps, parse_json

__all__ = ["routes"]


def _chunks(
    base: dict[str, Any], words: list[str], finish: str, usage: dict[str, int], with_usage: bool
) -> list[bytes]:
    """The SSE events of a streamed chat: role, one word each, finish (and usage), ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        obj = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        obj.update(extra)
        return b"data: " + dumps(obj) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(words)]
    if with_usage:
        events.append(chunk({}, finish))
        events.append(b"data: " + dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
    else:
        # usage always rides on the last chunk before [DONE]
        events.append(chunk({}, finish, usage=usage))
    events.append(b"data: [DONE]\n\n")
    return events


async def chat_completions(ctx: RouteContext, request: Request) -> Response | SSEResponse:
    """Answer a chat completion (``stream: true`` for SSE); the fee is booked before answering."""
    core = ctx.core
    auth = await core.authenticate(request.headers.get("authorization"))
    body = await request.body()
    payload = parse_json(body)
    model = ctx.check_model(payload.get("model"))
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list")
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
        raise bad_request("max_tokens must be an integer")
    result = chat_reply(messages, max_tokens)
    fee = chat_fee(result.prompt_tokens, result.completion_tokens, core.input_price, core.output_price)
    chat_id = str(uuid.uuid4())
    core.charge(auth, chat_id, fee, body)
    usage = {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }
    created, body_id = int(time.time()), f"chatcmpl-{chat_id}"
    if not payload.get("stream"):
        answer = {
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
        }
        return ctx.signed_json(answer, body, chat_id)
    options = payload.get("stream_options")
    with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    base = {
        "id": body_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "og-devnet",
    }
    events = _chunks(base, result.words, result.finish_reason, usage, with_usage)
    return ctx.sse(events, body, chat_id, auth.user)


def routes(ctx: RouteContext) -> list[Route]:
    """The chat route (served by ``chatbot`` providers)."""
    endpoint = ctx.endpoint(chat_completions, inference=True, types=("chatbot",))
    return [Route("/v1/proxy/chat/completions", endpoint, methods=["POST"])]
