"""Image requests: generation, editing, and generation through the provider's async job queue.

Images are billed per image at the input price. Every result ends in the one finishing path
(:meth:`RequestCore.finish`); a job's result is verified against the submitted request's hash
and the raw body of the poll answer that delivered it.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from .._exceptions import ConfigError, ImageJobTimeoutError, ProviderResponseError, ProviderServerError
from .._http import HttpReply, retry_after_from
from .._options import CallOptions, split_params
from .._validate import check_int, check_optional_str, check_seconds, check_str, shown
from ..types import Service
from ..types.inference import GeneratedImage, ImageResult
from ._common import provider_address
from ._estimate import image_bound
from ._fees import fee_breakdown
from ._uploads import form_fields, load_upload, multipart_upload
from ._verify import VerificationPolicy
from .budgets import Budget, Hold
from .requests import JSON, RequestCore, chat_id_of, dumps
from .verification import json_object, sha256_offloaded

__all__ = ["MAX_IMAGES", "ImageRequests"]

#: Most images one request may ask for (the OpenAI images API allows 1..10).
MAX_IMAGES = 10
_GENERATE = ("text-to-image",)
_EDIT = ("image-editing",)
_IMAGE_JOBS = ("text-to-image", "image-editing")
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


def _check_n(n: Any) -> int:
    return check_int("n", n, minimum=1, maximum=MAX_IMAGES)


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


def _image_request(
    model: str, prompt: str, n: int, size: str | None, response_format: str | None, params: Mapping[str, Any]
) -> bytes:
    """The JSON body of an image generation (sync or async job)."""
    payload: dict[str, Any] = {"model": model, "prompt": prompt, "n": n, **params}
    if size is not None:
        payload["size"] = size
    if response_format is not None:
        payload["response_format"] = response_format
    return dumps(payload)


class ImageRequests:
    """Image generation and editing, direct or as async jobs.

    Args:
        core: what every request shares.
    """

    def __init__(self, core: RequestCore) -> None:
        self._core = core

    def _check_args(
        self,
        prompt: Any,
        n: Any,
        size: Any,
        model: Any,
        response_format: Any,
        verify: str | VerificationPolicy | None,
        params: Mapping[str, Any],
        endpoint: str,
    ) -> tuple[VerificationPolicy, dict[str, Any], CallOptions | None]:
        """Check the arguments shared by the image methods.

        Returns:
            The verification policy, the body parameters and the call options.
        """
        check_str("prompt", prompt)
        _check_n(n)
        check_optional_str("size", size)
        check_optional_str("model", model)
        check_optional_str("response_format", response_format)
        fields, options = split_params(params, endpoint)
        form_fields(fields)
        return self._core.policy(verify), fields, options

    async def _result(
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
        hold: Hold | None,
    ) -> ImageResult:
        data = json_object(reply, prov, what)
        return await self._core.finish(
            ImageResult,
            svc,
            policy,
            fee_breakdown(svc.service_type, svc.input_price, svc.output_price, None, n=n),
            hold=hold,
            provider=prov,
            model=model,
            chat_id=chat_id_of(reply, data),
            usage=data.get("usage") if isinstance(data.get("usage"), dict) else None,
            request_sha256=request_sha256,
            response_sha256=await sha256_offloaded(reply.raw),
            raw=data,
            images=_images(data),
        )

    async def generate_image(
        self,
        /,
        provider: str,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        model: str | None = None,
        response_format: str | None = None,
        verify: str | VerificationPolicy | None = None,
        budget: Budget | None = None,
        auto_fund: bool | None = None,
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
            budget: the spend budget to charge (default: the current ``broker.budget``): ``n``
                images at the input price are reserved before sending.
            auto_fund: on a refusal for balance, wait for a shared top-up and retry (at most
                3 times); ``None`` does so while auto-funding runs for the provider.
            **params: OpenAI image parameters of the allow-list (``quality``, ``style``, ...) and
                the call options ``timeout=``, ``max_retries=``, ``extra_headers=``,
                ``extra_query=``, ``extra_body=`` (see :meth:`ChatRequests.chat`).

        Raises:
            ConfigError: bad arguments (a blank prompt, ``n`` not an int in 1..10, ...), checked
                before anything is sent.
            ServiceTypeMismatchError: the provider is not a text-to-image service.
            ProviderError: the provider refused or failed (typed by status).
            ResponseVerificationError: under ``required``, the response failed verification.
        """
        prov = provider_address(provider)
        policy, fields, options = self._check_args(
            prompt, n, size, model, response_format, verify, params, "image generation"
        )
        charged = self._core.budgets.pick(budget)
        svc = await self._core.service(prov, "image generation", _GENERATE)
        used = model or svc.model
        body = _image_request(used, prompt, n, size, response_format, fields)
        return await self._send(
            prov,
            svc,
            "/images/generations",
            (body, JSON, await sha256_offloaded(body)),
            model=used,
            n=n,
            policy=policy,
            what="image generation",
            spend=(charged, auto_fund),
            options=options,
        )

    async def _send(
        self,
        prov: str,
        svc: Service,
        path: str,
        request: tuple[bytes, str, str],
        *,
        model: str,
        n: int,
        policy: VerificationPolicy,
        what: str,
        spend: tuple[Budget | None, bool | None],
        options: CallOptions | None,
    ) -> ImageResult:
        """Reserve ``n`` images in the budget, post ``request`` (body, content type, sha256) with the
        call ``options``, finish."""
        body, ctype, request_sha256 = request
        budget, auto_fund = spend
        hold = await self._core.reserve(budget, image_bound(n, svc.input_price), what)
        async with self._core.spending(hold):
            reply = await self._core.post(
                prov,
                svc.endpoint + path,
                what=what,
                body=body,
                content_type=ctype,
                auto_fund=auto_fund,
                options=options,
            )
            return await self._result(
                prov, svc, reply, request_sha256, model=model, n=n, policy=policy, what=what, hold=hold
            )

    async def edit_image(
        self,
        /,
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
        budget: Budget | None = None,
        auto_fund: bool | None = None,
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
            budget: the spend budget to charge (see :meth:`generate_image`).
            auto_fund: on a refusal for balance, top up (shared) and retry (see :meth:`generate_image`).
            **params: form fields of the allow-list and the call options (as for
                :meth:`generate_image`; ``extra_body`` adds form fields).

        Raises:
            ConfigError: bad arguments (``image`` neither bytes nor an existing file, a blank
                prompt, ``n`` out of range, ...), checked before anything is sent.
            ServiceTypeMismatchError: the provider is not an image-editing service.
            ProviderError: the provider refused or failed (typed by status).
            ResponseVerificationError: under ``required``, the response failed verification.
        """
        prov = provider_address(provider)
        policy, extra, options = self._check_args(
            prompt, n, size, model, response_format, verify, params, "image edit"
        )
        check_optional_str("content_type", content_type)
        data, name = await load_upload("image", image, filename, "image.png")
        mime = content_type or mimetypes.guess_type(name)[0] or "image/png"
        charged = self._core.budgets.pick(budget)
        svc = await self._core.service(prov, "image edit", _EDIT)
        used = model or svc.model
        fields = form_fields(
            {
                "model": used,
                "prompt": prompt,
                "n": n,
                "size": size,
                "response_format": response_format,
                **extra,
            }
        )
        return await self._send(
            prov,
            svc,
            "/images/edits",
            await multipart_upload(fields, "image", name, data, mime),
            model=used,
            n=n,
            policy=policy,
            what="image edit",
            spend=(charged, auto_fund),
            options=options,
        )

    # -- async jobs ------------------------------------------------------------------------------

    async def generate_image_async(
        self,
        /,
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
        budget: Budget | None = None,
        auto_fund: bool | None = None,
        **params: Any,
    ) -> ImageResult:
        """Generate images through the provider's job queue and wait for them.

        Submits ``POST <service url>/v1/async/images/generations`` (answered ``202`` with a
        ``jobId``), then polls ``GET /v1/async/jobs/<jobId>`` honouring ``Retry-After`` (capped by
        the retry policy's ``max_retry_after``), bounded by ``max_wait`` seconds and ``max_polls``.
        The result is verified like any other: its chat id is the ``ZG-Res-Key`` header (else the
        ``chatId`` field) of the poll answer that delivers it, and the provider signs
        ``sha256(submitted request body):sha256(that poll answer's raw body)``. A provider that
        gives job results no chat id leaves the verification ``UNAVAILABLE``. ``**params`` as
        for :meth:`generate_image`; the call options apply to the polls too (``extra_body`` aside).

        Raises:
            ConfigError: bad arguments, checked before anything is sent.
            ServiceTypeMismatchError: the provider is not a text-to-image service.
            ImageJobTimeoutError: the job did not finish in time (resume with :meth:`wait_image_job`).
            ProviderServerError: the job failed.
            ProviderError: the submission was refused.
            ResponseVerificationError: under ``required``, the result failed verification.
        """
        prov = provider_address(provider)
        policy, fields, options = self._check_args(
            prompt, n, size, model, response_format, verify, params, "image generation"
        )
        check_seconds("max_wait", max_wait)
        check_int("max_polls", max_polls, minimum=1)
        charged = self._core.budgets.pick(budget)
        svc = await self._core.service(prov, "async image job", _GENERATE)
        used = model or svc.model
        body = _image_request(used, prompt, n, size, response_format, fields)
        hold = await self._core.reserve(charged, image_bound(n, svc.input_price), "async image job")
        async with self._core.spending(hold):
            return await self._run_job(
                prov,
                svc,
                body,
                n=n,
                model=used,
                policy=policy,
                limits=(max_wait, max_polls),
                hold=hold,
                auto_fund=auto_fund,
                options=options,
            )

    async def _run_job(
        self,
        prov: str,
        svc: Service,
        body: bytes,
        *,
        n: int,
        model: str,
        policy: VerificationPolicy,
        limits: tuple[float, int],
        hold: Hold | None,
        auto_fund: bool | None,
        options: CallOptions | None,
    ) -> ImageResult:
        """Submit an image job and wait for its result (the budget hold settles on the result)."""
        max_wait, max_polls = limits
        reply = await self._core.post(
            prov,
            svc.url.rstrip("/") + "/v1/async/images/generations",
            what="async image job",
            body=body,
            content_type=JSON,
            auto_fund=auto_fund,
            options=options,
        )
        data = json_object(reply, prov, "async image job")
        job_id = data.get("jobId") or data.get("job_id") or data.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise ProviderResponseError(
                "the async job answer has no jobId", provider=prov, status_code=reply.status
            )
        result = await self.wait_image_job(
            prov,
            job_id,
            max_wait=max_wait,
            max_polls=max_polls,
            verify=policy,
            n=n,
            model=model,
            request_sha256=await sha256_offloaded(body),
            **({} if options is None else options.as_kwargs()),
        )
        if hold is not None:
            await hold.asettle(result.fee)
        return result

    async def wait_image_job(
        self,
        /,
        provider: str,
        job_id: str,
        *,
        max_wait: float = 300.0,
        max_polls: int = 600,
        verify: str | VerificationPolicy | None = None,
        n: int | None = None,
        model: str | None = None,
        request_sha256: str | None = None,
        **options: Any,
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
            **options: call options for the polls (``timeout=``, ``max_retries=``,
                ``extra_headers=``, ``extra_query=``; ``extra_body`` is ignored: polls have no body).

        Raises:
            ConfigError: bad arguments, checked before anything is sent.
            ServiceTypeMismatchError: the provider is not an image service.
            ImageJobTimeoutError: not finished within ``max_wait`` / ``max_polls``.
            ProviderServerError: the job failed.
            ResponseVerificationError: under ``required``, the result failed verification.
        """
        prov = provider_address(provider)
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
        call = CallOptions.of(options) if options else None
        policy = self._core.policy(verify)
        svc = await self._core.service(prov, "async image job", _IMAGE_JOBS)
        url = svc.url.rstrip("/") + "/v1/async/jobs/" + quote(job_id, safe="")
        transport = self._core.transport
        deadline = transport.now() + max_wait
        status: str | None = None
        retry = transport.retry_policy
        minimum = 0.05 * retry.wait_scale
        for _ in range(max_polls):
            reply = await self._core.get(prov, url, what="async job status", options=call)
            data = json_object(reply, prov, "async job status")
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
            wait = min(asked if asked is not None else 2.0, retry.max_retry_after)
            wait = max(wait * retry.wait_scale, minimum)
            if transport.now() + wait > deadline:
                break
            await transport.sleep(wait)
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
        chat_id = reply.headers.get("zg-res-key") or None
        if chat_id is None and isinstance(data.get("chatId"), str) and data["chatId"]:
            chat_id = data["chatId"]
        return await self._core.finish(
            ImageResult,
            svc,
            policy,
            fee_breakdown(
                svc.service_type,
                svc.input_price,
                svc.output_price,
                None,
                n=n if n is not None else len(images),
            ),
            provider=prov,
            model=model,
            chat_id=chat_id,
            usage=None,
            request_sha256=request_sha256,
            response_sha256=await sha256_offloaded(reply.raw),
            raw=inner,
            images=images,
            job_id=job_id,
        )
