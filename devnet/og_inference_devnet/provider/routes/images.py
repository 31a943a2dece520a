"""``POST /v1/proxy/images/generations`` and ``/v1/proxy/images/edits``: PNGs from the prompt, per image.

The request parsing and the image items are shared with the async job routes (:mod:`.jobs`).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._billing import image_fee
from .._model import b64, parse_multipart, png_image
from ._context import RouteContext, bad_request, parse_json, parse_n

__all__ = ["GENERATE", "EDIT", "edit_request", "generation_request", "image_items", "routes"]

#: The service types serving image generations and image edits.
GENERATE, EDIT = ("text-to-image",), ("image-editing",)


def image_items(seed: bytes, n: int, size: Any, response_format: Any, prompt: str) -> list[dict[str, Any]]:
    """The ``data`` items of an images answer: ``n`` PNGs from ``seed``, as ``b64_json`` or a data ``url``."""
    items = []
    for i in range(n):
        data = b64(png_image(seed + i.to_bytes(2, "big"), size))
        if response_format == "url":
            items.append({"url": "data:image/png;base64," + data, "revised_prompt": prompt})
        else:
            items.append({"b64_json": data, "revised_prompt": prompt})
    return items


def generation_request(ctx: RouteContext, body: bytes) -> tuple[str, int, Any, Any]:
    """A generation request's ``(prompt, n, size, response_format)`` (400 / 404 when it is wrong)."""
    payload = parse_json(body)
    ctx.check_model(payload.get("model"))
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise bad_request("prompt must be a non-empty string")
    return prompt, parse_n(payload.get("n")), payload.get("size"), payload.get("response_format")


def edit_request(ctx: RouteContext, request: Request, body: bytes) -> tuple[str, int, Any, Any, bytes]:
    """A multipart edit request's ``(prompt, n, size, response_format, image)`` (400 / 404 when wrong)."""
    try:
        fields, files = parse_multipart(body, request.headers.get("content-type", ""))
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    ctx.check_model(fields.get("model"))
    image = files.get("image") or files.get("image[]")
    if image is None or not image.data:
        raise bad_request("an image file is required")
    prompt = fields.get("prompt", "")
    if not prompt:
        raise bad_request("prompt is required")
    return prompt, parse_n(fields.get("n")), fields.get("size"), fields.get("response_format"), image.data


async def images_generations(ctx: RouteContext, request: Request) -> Response:
    """Generate ``n`` images from a prompt."""
    auth = await ctx.core.authenticate(request.headers.get("authorization"))
    body = await request.body()
    prompt, n, size, fmt = generation_request(ctx, body)
    chat_id = str(uuid.uuid4())
    ctx.core.charge(auth, chat_id, image_fee(n, ctx.core.input_price), body)
    items = image_items(prompt.encode(), n, size, fmt, prompt)
    return ctx.signed_json({"created": int(time.time()), "data": items}, body, chat_id)


async def images_edits(ctx: RouteContext, request: Request) -> Response:
    """Edit an uploaded image ``n`` times."""
    auth = await ctx.core.authenticate(request.headers.get("authorization"))
    body = await request.body()
    prompt, n, size, fmt, image = edit_request(ctx, request, body)
    chat_id = str(uuid.uuid4())
    ctx.core.charge(auth, chat_id, image_fee(n, ctx.core.input_price), body)
    items = image_items(hashlib.sha256(image).digest() + prompt.encode(), n, size, fmt, prompt)
    return ctx.signed_json({"created": int(time.time()), "data": items}, body, chat_id)


def routes(ctx: RouteContext) -> list[Route]:
    """The synchronous image routes (each served by its own service type)."""
    return [
        Route(
            "/v1/proxy/images/generations",
            ctx.endpoint(images_generations, inference=True, types=GENERATE),
            methods=["POST"],
        ),
        Route(
            "/v1/proxy/images/edits", ctx.endpoint(images_edits, inference=True, types=EDIT), methods=["POST"]
        ),
    ]
