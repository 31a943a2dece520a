"""The routes around inference: response signatures, the (fake) TEE quote, models, unsettled fees, refusals.

``GET /v1/proxy/signature/{chat_id}``, ``GET /v1/quote``, ``GET /v1/proxy/attestation/report``,
``GET /v1/models`` (no auth), ``GET /v1/user/{address}/unsettledfee``, and ``403 forbidden`` for any POST
outside ``/v1/proxy`` (as real 0G providers answer).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._core import AuthFailure, ProviderCore
from ._context import RouteContext, json_response, sha

__all__ = ["routes"]


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


async def signature(ctx: RouteContext, request: Request) -> Response:
    """The TEE signature of a response, by its chat id."""
    record = ctx.core.signature_for(request.path_params["chat_id"])
    if record is None:
        raise AuthFailure(404, "not_found", "no signature for this chat id")
    return json_response(record)


def quote_document(core: ProviderCore) -> dict[str, Any]:
    """The devnet's stand-in for a TDX quote: NOT a real quote, but shaped like one, naming the TEE signer."""
    app_compose = _compact(
        {"name": "og-devnet-provider", "runner": "devnet", "docker_compose_file": "services: {}\n"}
    )
    event_log = [
        {
            "imr": 3,
            "event_type": 134217729,
            "digest": sha(b"devnet"),
            "event": "system-ready",
            "event_payload": "",
        },
        {
            "imr": 3,
            "event_type": 134217729,
            "digest": sha(app_compose.encode()),
            "event": "compose-hash",
            "event_payload": sha(app_compose.encode()),
        },
    ]
    return {
        "devnet": True,
        "note": "og-devnet: NOT a real TDX quote; no TEE is involved",
        "quote": ("0000" + b"og-devnet-fake-quote".hex()),
        "event_log": _compact(event_log),
        "report_data": base64.b64encode(core.tee_address.encode("ascii").ljust(64, b"\0")).decode(),
        "vm_config": json.dumps({"os_image_hash": "devnet", "cpu_count": 1, "memory_size": 0}),
        "tcb_info": _compact({"app_compose": app_compose, "devnet": True}),
        "signing_address": core.tee_address,
        "signing_algo": "ecdsa",
    }


async def quote(ctx: RouteContext, request: Request) -> Response:
    """The quote document."""
    return json_response(quote_document(ctx.core))


async def attestation_report(ctx: RouteContext, request: Request) -> Response:
    """The quote document in the attestation report's shape, echoing the request's ``nonce``."""
    doc = quote_document(ctx.core)
    doc.update(
        {
            "request_nonce": request.query_params.get("nonce", ""),
            "intel_quote": doc["quote"],
            "nvidia_payload": "",
            "info": {"tcb_info": json.loads(doc["tcb_info"])},
        }
    )
    return json_response(doc)


async def models(ctx: RouteContext, request: Request) -> Response:
    """The one model this provider serves, with its prices."""
    core = ctx.core
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
    return json_response({"object": "list", "data": [item]})


async def unsettled_fee(ctx: RouteContext, request: Request) -> Response:
    """What the token's user owes now: billed and unsettled, plus the fees reserved by accepted async jobs."""
    auth = await ctx.core.authenticate(request.headers.get("authorization"))
    if request.path_params["address"].lower() != auth.user.lower():
        raise AuthFailure(403, "address_mismatch", "the token's address does not match the URL address")
    return json_response({"unsettledFee": str(ctx.core.book.owed(auth.user))})


async def outside_proxy(request: Request) -> Response:
    """Like real 0G providers: an inference call outside ``/v1/proxy`` is forbidden, not unknown."""
    message = "inference requests must go to the service endpoint <url>/v1/proxy"
    return json_response({"error": {"code": "forbidden", "message": message}}, 403)


def routes(ctx: RouteContext) -> list[Route]:
    """The routes every provider serves; the catch-all POST refusal comes last."""
    return [
        Route("/v1/proxy/signature/{chat_id}", ctx.endpoint(signature), methods=["GET"]),
        Route("/v1/proxy/attestation/report", ctx.endpoint(attestation_report), methods=["GET"]),
        Route("/v1/quote", ctx.endpoint(quote), methods=["GET"]),
        Route("/v1/models", ctx.endpoint(models), methods=["GET"]),
        Route("/v1/user/{address}/unsettledfee", ctx.endpoint(unsettled_fee), methods=["GET"]),
        Route("/{path:path}", outside_proxy, methods=["POST"]),
    ]
