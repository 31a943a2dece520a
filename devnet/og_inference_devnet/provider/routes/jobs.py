"""Async image jobs: ``POST /v1/async/images/{generations,edits}`` (202) and ``GET /v1/async/jobs/{id}``.

A submission passes the balance rule and reserves its fee at once; the job runs in the provider's task
group, is billed that fee when it completes and releases it when it fails. The poll that delivers a
completed job carries ``ZG-Res-Key`` and is signed like a synchronous answer (see the package docstring).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._billing import image_fee
from .._core import AsyncJob, AuthContext, AuthFailure
from ._context import RouteContext, dumps, iso, json_response, sha, tamper_json
from .images import EDIT, GENERATE, edit_request, generation_request, image_items

__all__ = ["routes"]

Items = Callable[[], list[dict[str, Any]]]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _status(job: AsyncJob) -> dict[str, Any]:
    return {
        "jobId": job.job_id,
        "status": job.status,
        "createdAt": iso(job.created_at),
        "updatedAt": iso(job.updated_at),
    }


async def _run(ctx: RouteContext, job: AsyncJob, body: bytes, make: Items) -> None:
    core = ctx.core
    try:
        await anyio.sleep(core.config.async_job_seconds / 2)
        job.status, job.updated_at = "processing", _now_ms()
        await anyio.sleep(core.config.async_job_seconds / 2)
        try:
            data = {"created": int(time.time()), "data": make()}
        except Exception as exc:  # a failed job is reported to the poller, never raised into the server
            core.fail_job(job)
            job.status, job.error = "failed", f"image generation failed: {type(exc).__name__}"
            job.updated_at = _now_ms()
            return
    except BaseException:
        core.fail_job(job)  # the server is stopping: the job never completes and is never billed
        raise
    # completed: bill the reserved fee and sign the answer that delivers the result, exactly
    # as it will be sent: sha256(submit request body) + ":" + sha256(completed poll body)
    chat_id = str(uuid.uuid4())
    core.complete_job(job, chat_id, body)
    job.data, job.chat_id = data, chat_id
    job.status, job.updated_at = "completed", _now_ms()
    job.result_body = dumps({**_status(job), "chatId": chat_id, "data": data})
    core.store_signature(chat_id, f"{sha(body)}:{sha(job.result_body)}")
    if core.faults.tamper:
        job.result_body = tamper_json(job.result_body)


def _submit(ctx: RouteContext, auth: AuthContext, fee: int, body: bytes, make: Items) -> Response:
    core = ctx.core
    if core.task_group is None:
        raise AuthFailure(503, "service_unavailable", "async jobs are not running")
    now = _now_ms()
    job = AsyncJob(str(uuid.uuid4()), auth.user, "pending", now, now, fee=fee)
    core.reserve_job(auth, job.job_id, fee)  # the balance rule counts pending jobs' fees
    core.jobs[job.job_id] = job
    core.task_group.start_soon(_run, ctx, job, body, make)
    return json_response({"jobId": job.job_id, "status": "pending"}, 202)


async def async_generations(ctx: RouteContext, request: Request) -> Response:
    """Accept an image generation job (202 with its id)."""
    auth = await ctx.core.authenticate(request.headers.get("authorization"))
    body = await request.body()
    prompt, n, size, fmt = generation_request(ctx, body)
    fee = image_fee(n, ctx.core.input_price)
    return _submit(ctx, auth, fee, body, lambda: image_items(prompt.encode(), n, size, fmt, prompt))


async def async_edits(ctx: RouteContext, request: Request) -> Response:
    """Accept an image edit job (202 with its id)."""
    auth = await ctx.core.authenticate(request.headers.get("authorization"))
    body = await request.body()
    prompt, n, size, fmt, image = edit_request(ctx, request, body)
    seed = hashlib.sha256(image).digest() + prompt.encode()
    fee = image_fee(n, ctx.core.input_price)
    return _submit(ctx, auth, fee, body, lambda: image_items(seed, n, size, fmt, prompt))


async def async_job(ctx: RouteContext, request: Request) -> Response:
    """A job's state (``Retry-After`` while it runs), or its signed result (the same bytes on every poll)."""
    auth = await ctx.core.authenticate(request.headers.get("authorization"))
    job = ctx.core.jobs.get(request.path_params["job_id"])
    if job is None or job.user.lower() != auth.user.lower():
        raise AuthFailure(404, "not_found", "no such job")
    if job.status == "completed" and job.result_body is not None and job.chat_id is not None:
        return Response(job.result_body, media_type="application/json", headers={"ZG-Res-Key": job.chat_id})
    out = _status(job)
    headers = None
    if job.status in ("pending", "processing"):
        headers = {"Retry-After": str(ctx.core.config.async_retry_after)}
    else:
        out["errorMessage"] = job.error or "failed"
    return json_response(out, 200, headers)


def routes(ctx: RouteContext) -> list[Route]:
    """The async job routes (served by the image providers)."""
    generations = ctx.endpoint(async_generations, inference=True, types=GENERATE)
    edits = ctx.endpoint(async_edits, inference=True, types=EDIT)
    return [
        Route("/v1/async/images/generations", generations, methods=["POST"]),
        Route("/v1/async/images/edits", edits, methods=["POST"]),
        Route("/v1/async/jobs/{job_id}", ctx.endpoint(async_job, types=GENERATE + EDIT), methods=["GET"]),
    ]
