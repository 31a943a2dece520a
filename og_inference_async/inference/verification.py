"""Verification: the policy applied to every result, background checks, ``process_response`` and attestation.

The checks themselves (signature recovery, report parsing) are the plain functions of
``_verify``; this service fetches what they need through the provider transport and applies
:class:`VerificationPolicy`: ``off`` settles at once, ``background`` checks in the broker's task
group (at most ``max_background`` at a time), ``required`` checks before the result is handed
over and fails closed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import anyio

from .._exceptions import ConfigError, OGError, ProviderResponseError, ResponseVerificationError
from .._http import HttpReply, encode_query, one_off_url
from .._runtime import Background
from .._transport import ProviderTransport
from .._validate import check_bytes, check_optional_str, shown
from ..types import Service
from ..types.inference import (
    InferenceResult,
    ServiceVerification,
    VerificationHandle,
    VerificationResult,
    VerificationStatus,
    VerificationStep,
)
from ._common import RequestPolicies
from ._common import provider_address as checked_provider
from ._fees import LocalFeeBook, fee_breakdown
from ._verify import (
    VerificationPolicy,
    check_signature,
    compose_check,
    expected_signer,
    parse_additional_info,
    report_signer,
    sha256_hex,
)
from .discovery import ServiceDirectory

__all__ = ["OFFLOAD_BYTES", "VerificationService", "json_object", "sha256_offloaded"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=256)
def _signature_route(service_url: str, model: str) -> tuple[str, str]:
    """``(url prefix, "?model=..." query)`` of a service's signature endpoint, encoded once per service.

    A chat's signature URL is ``prefix + quote(chat id) + query``: one string, parsed once.
    """
    return service_url.rstrip("/") + "/v1/proxy/signature/", "?" + encode_query({"model": model})


#: Bodies of at least this many bytes are hashed (and uploads that large multipart-encoded) in a
#: worker thread (``anyio.to_thread``) instead of on the event loop.
OFFLOAD_BYTES = 256 * 1024


async def sha256_offloaded(data: bytes) -> str:
    """``sha256_hex(data)``, in a worker thread for bodies of :data:`OFFLOAD_BYTES` or more."""
    if len(data) >= OFFLOAD_BYTES:
        return await anyio.to_thread.run_sync(sha256_hex, data)
    return sha256_hex(data)


def json_object(reply: HttpReply, provider: str, what: str) -> dict[str, Any]:
    """The reply's body as a JSON object.

    Raises:
        ProviderResponseError: not JSON, or JSON that is not an object.
    """
    data = reply.json()
    if not isinstance(data, dict):
        raise ProviderResponseError(
            f"{what}: the provider answered with JSON that is not an object", provider=provider
        )
    return data


def _usage_in(content: str) -> Mapping[str, Any] | None:
    """The usage object in a ``content`` JSON text (its ``usage`` member, or itself), else ``None``."""
    try:
        parsed = json.loads(content)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    inner = parsed.get("usage")
    return inner if isinstance(inner, dict) else parsed


class VerificationService:
    """Response verification and attestation checks for one broker.

    Args:
        transport: fetches signatures and attestation reports.
        directory: the providers' services (signer, URL, verifiability).
        policies: the default verification policy.
        fees: the local fee book (``process_response`` counts the fees of foreign requests).
        background: the broker's task group, for background checks.
    """

    def __init__(
        self,
        transport: ProviderTransport,
        directory: ServiceDirectory,
        policies: RequestPolicies,
        fees: LocalFeeBook,
        background: Background,
    ) -> None:
        self._transport = transport
        self._directory = directory
        self._policies = policies
        self._fees = fees
        self._background = background
        self._limiter: anyio.CapacityLimiter | None = None

    # -- one response ----------------------------------------------------------------------------

    async def check(
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
        prefix, query = _signature_route(svc.url, model or svc.model)
        url = one_off_url(prefix + quote(chat_id, safe="") + query)
        wait = policy.signature_retry_wait
        reply: HttpReply | None = None
        for attempt in range(1, policy.signature_attempts + 1):
            try:
                reply = await self._transport.request(
                    prov, "GET", url, what="signature", idempotent=True, auth=False
                )
                break
            except OGError as exc:
                status = getattr(exc, "status_code", None)
                if status == 404 and attempt < policy.signature_attempts:
                    await self._transport.sleep(wait * self._transport.retry_policy.wait_scale)
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

    async def _check_result(
        self, svc: Service, result: InferenceResult, policy: VerificationPolicy
    ) -> VerificationResult:
        return await self.check(
            result.provider,
            svc,
            result.chat_id,
            result.request_sha256,
            result.response_sha256,
            model=result.model,
            policy=policy,
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

    def _limiter_for(self, policy: VerificationPolicy) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(policy.max_background)
        elif self._limiter.total_tokens != policy.max_background:
            self._limiter.total_tokens = policy.max_background
        return self._limiter

    async def _in_background(
        self,
        policy: VerificationPolicy,
        handle: VerificationHandle,
        svc: Service,
        result: InferenceResult,
    ) -> None:
        outcome: VerificationResult | None = None
        try:
            async with self._limiter_for(policy):
                outcome = await self._check_result(svc, result, policy)
        except Exception as exc:  # a background task must never take the broker's task group down
            outcome = VerificationResult(
                status=VerificationStatus.UNAVAILABLE,
                provider=result.provider,
                chat_id=result.chat_id,
                reason=f"verification failed: {type(exc).__name__}",
            )
        finally:
            if outcome is None:
                outcome = VerificationResult(
                    status=VerificationStatus.UNAVAILABLE,
                    provider=result.provider,
                    chat_id=result.chat_id,
                    reason="the broker closed before the verification finished",
                )
            handle.set(outcome)
        await self._notify(policy, outcome)

    async def settle(
        self,
        policy: VerificationPolicy,
        handle: VerificationHandle,
        svc: Service,
        result: InferenceResult,
    ) -> None:
        """Settle ``handle`` as the policy says; under ``required`` raise on failure.

        Raises:
            ResponseVerificationError: under ``required``, the outcome fails the policy (the
                content is withheld: the result is not attached).
        """
        prov = result.provider
        if policy.mode == "off":
            handle.set(
                VerificationResult(status=VerificationStatus.SKIPPED, provider=prov, chat_id=result.chat_id)
            )
            return
        if svc.is_verifiable and policy.mode != "required":
            self._background.start_soon(self._in_background, policy, handle, svc, result)
            return
        outcome = await self._check_result(svc, result, policy)
        handle.set(outcome)
        await self._notify(policy, outcome)
        if policy.mode == "required":
            reason = policy.failure(outcome)
            if reason is not None:
                detail = f": {outcome.reason}" if outcome.reason else ""
                raise ResponseVerificationError(
                    f"{reason} (provider {prov}, chat id {outcome.chat_id}){detail}",
                    verification=outcome,
                    fee=result.fee,
                    usage=result.usage,
                )

    # -- responses obtained elsewhere --------------------------------------------------------------

    async def process_response(
        self,
        provider: str | None = None,
        chat_id: str | None = None,
        content: str | None = None,
        *,
        request_body: bytes | None = None,
        response_body: bytes | None = None,
        usage: Mapping[str, Any] | str | None = None,
        model: str | None = None,
        provider_address: str | None = None,
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
            content: what the TS SDK's ``processResponse(p, chatID, content)`` and
                0g-inference-sdk take: a usage JSON object (with or without a ``usage`` key) is
                counted as ``usage``; other text (the answer itself) is not needed to check the
                signature and is ignored.
            provider_address: 0g-inference-sdk's keyword for ``provider``.

        Returns:
            The outcome; never raises for a bad signature (see :class:`VerificationStatus`). It is
            truthy only when the response passed (``if await process_response(...):``).

        Raises:
            ConfigError: an argument of the wrong type, or no provider (or two).
            ServiceNotFoundError: no service for ``provider``.
        """
        who = provider if provider is not None else provider_address
        if who is None or (provider is not None and provider_address is not None):
            raise ConfigError("give the provider once: process_response(provider, chat_id)")
        prov = checked_provider(who)
        check_optional_str("content", content)
        if usage is None and content is not None:
            usage = _usage_in(content)
        check_optional_str("chat_id", chat_id)
        check_optional_str("model", model)
        for name, body in (("request_body", request_body), ("response_body", response_body)):
            if body is not None:
                check_bytes(name, body)
        if usage is not None and not isinstance(usage, (Mapping, str)):
            raise ConfigError(f"usage must be a dict, its JSON text or None, got {shown(usage)}")
        svc = await self._directory.cached(prov)
        if usage is not None:
            parsed: Any = usage
            if isinstance(usage, str):
                try:
                    parsed = json.loads(usage)
                except ValueError:
                    parsed = None
            if isinstance(parsed, Mapping):
                as_dict = dict(parsed)
                cost = fee_breakdown(
                    svc.service_type, svc.input_price, svc.output_price, as_dict, n=as_dict.get("n")
                )
                self._fees.record(prov, cost)
        return await self.check(
            prov,
            svc,
            chat_id,
            await sha256_offloaded(bytes(request_body)) if request_body is not None else None,
            await sha256_offloaded(bytes(response_body)) if response_body is not None else None,
            model=model,
            policy=self._policies.verification,
        )

    # -- attestation -----------------------------------------------------------------------------

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
        prov = checked_provider(provider)
        if output_dir is not None and (
            not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir)
        ):
            raise ConfigError(f"output_dir must be a directory path or None, got {shown(output_dir)}")
        svc = await self._directory.cached(prov, fresh=True)
        steps: list[VerificationStep] = []

        def step(kind: str, message: str) -> None:
            steps.append(VerificationStep(kind=kind, message=message))

        info = parse_additional_info(svc)
        separated = info.get("TargetSeparated") is True
        centralized = info.get("ProviderType") == "centralized"
        step("info", f"service {svc.model!r} at {svc.url}, verifiability {svc.verifiability!r}")
        base = svc.url.rstrip("/")
        reply = await self._transport.request(
            prov, "GET", base + "/v1/quote", what="attestation quote", idempotent=True, auth=False
        )
        report = json_object(reply, prov, "attestation quote")
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
                llm_reply = await self._transport.request(
                    prov,
                    "GET",
                    base + "/v1/proxy/attestation/report?" + encode_query({"model": svc.model}),
                    what="model attestation report",
                    idempotent=True,
                    auth=False,
                )
                llm_report = json_object(llm_reply, prov, "model attestation report")
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
