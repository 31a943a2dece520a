"""Public models of provider requests: results, chunks, fees and verification outcomes.

Results are frozen pydantic models. Their ``verification`` field is a
:class:`VerificationHandle`: already settled under the ``off`` and ``required`` policies, settled
later by a background task under ``background``; ``await result.verification`` waits for it.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio
from pydantic import ConfigDict, ValidationInfo, computed_field, field_serializer, field_validator

from ._base import Frozen, Wei

__all__ = [
    "ChatChunk",
    "ChatResult",
    "FeeBreakdown",
    "GeneratedImage",
    "ImageResult",
    "InferenceResult",
    "RouteStats",
    "ServiceVerification",
    "TranscriptionResult",
    "VerificationHandle",
    "VerificationResult",
    "VerificationStatus",
    "VerificationStep",
]


class _Model(Frozen):
    model_config = ConfigDict(
        arbitrary_types_allowed=True
    )  # merged with Frozen's (VerificationHandle fields)


class VerificationStatus(str, enum.Enum):
    """The outcome of checking a response's TEE signature.

    Only ``BOUND`` proves that the provider's TEE signed exactly what you sent and received.
    ``SIGNED`` means the signature is genuine but the content was not compared. ``NOT_BOUND``
    means the signature is genuine but covers other bytes than those sent and received: the
    content was changed after signing (tampering, or a re-encoding proxy), or the signed text
    is not of the ``<sha256>:<sha256>`` shape at all. The ``required`` policy fails on it (see
    ``VerificationPolicy``). ``REJECTED``: the signature itself is bad.
    """

    #: The TEE signer signed ``sha256(request):sha256(response)`` of exactly these bytes.
    BOUND = "bound"
    #: The signature recovers to the TEE signer; the content was not compared (no bodies given).
    SIGNED = "signed"
    #: The signature recovers to the TEE signer, but the signed text is for other bytes.
    NOT_BOUND = "not_bound"
    #: The signature is malformed or from another key, or the signer is not acknowledged on chain.
    REJECTED = "rejected"
    #: The service does not sign responses (verifiability is not TeeML/OpML/ZKML).
    NOT_VERIFIABLE = "not_verifiable"
    #: The signature could not be fetched (no chat id, 404, network, server error).
    UNAVAILABLE = "unavailable"
    #: Verification is switched off for this call.
    SKIPPED = "skipped"


_PASSED = frozenset({VerificationStatus.BOUND, VerificationStatus.SIGNED, VerificationStatus.NOT_VERIFIABLE})


class VerificationResult(_Model):
    """What checking one response's signature found.

    Attributes:
        status: the outcome (see :class:`VerificationStatus`).
        provider: the provider address.
        chat_id: the id the signature was fetched for.
        expected_signer: the signer the chain says must sign (``teeSignerAddress``, or
            ``TargetTeeAddress`` for separated decentralized targets).
        signer: the address the signature recovers to, when it does.
        signed_text: the text the provider signed (``"<sha256 req>:<sha256 resp>"``).
        request_sha256: hex sha256 of the request bytes the SDK sent, when known.
        response_sha256: hex sha256 of the raw response bytes the SDK received, when known.
        reason: a human explanation for everything but ``BOUND``.
    """

    status: VerificationStatus
    provider: str
    chat_id: str | None = None
    expected_signer: str | None = None
    signer: str | None = None
    signed_text: str | None = None
    request_sha256: str | None = None
    response_sha256: str | None = None
    reason: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        """Whether the response passed: ``BOUND``, ``SIGNED``, or ``NOT_VERIFIABLE``.

        ``NOT_VERIFIABLE`` passes as in the other 0G SDKs (a service that signs nothing has nothing
        to fail); ``NOT_BOUND``, ``REJECTED``, ``UNAVAILABLE`` and ``SKIPPED`` do not.
        ``bool(result)`` is this value, so ``if await broker.inference.process_response(...):``
        takes the true branch only for a response that passed.
        """
        return self.status in _PASSED

    def __bool__(self) -> bool:
        """:attr:`passed`."""
        return self.status in _PASSED

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_signature_valid(self) -> bool:
        """``True`` for ``BOUND``, ``SIGNED`` and ``NOT_BOUND``: the TEE signer's key signed it."""
        return self.status in (
            VerificationStatus.BOUND,
            VerificationStatus.SIGNED,
            VerificationStatus.NOT_BOUND,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_bound(self) -> bool:
        """``True`` only for ``BOUND``: the signature covers exactly these bytes."""
        return self.status is VerificationStatus.BOUND


class VerificationHandle:
    """The (possibly pending) verification outcome of one result.

    ``await handle`` (or ``await handle.wait()``) returns the :class:`VerificationResult`;
    :attr:`result` is ``None`` while it is pending. A background verification cut short by the
    broker closing settles as ``UNAVAILABLE``.
    """

    __slots__ = ("_event", "_result", "_callbacks")

    def __init__(self, result: VerificationResult | None = None) -> None:
        self._event: anyio.Event | None = None  # made on first wait: most handles settle before
        self._result: VerificationResult | None = None
        self._callbacks: list[Callable[[VerificationResult], object]] = []
        if result is not None:
            self.set(result)

    def __repr__(self) -> str:
        state = self._result.status.value if self._result is not None else "pending"
        return f"<VerificationHandle {state}>"

    @property
    def done(self) -> bool:
        """Whether the outcome is known."""
        return self._result is not None

    @property
    def result(self) -> VerificationResult | None:
        """The outcome, or ``None`` while pending."""
        return self._result

    async def wait(self) -> VerificationResult:
        """Wait for the outcome and return it."""
        if self._result is None:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        assert self._result is not None
        return self._result

    def __await__(self) -> Generator[Any, None, VerificationResult]:
        return self.wait().__await__()

    def add_done_callback(self, callback: Callable[[VerificationResult], object]) -> None:
        """Call ``callback(result)`` when the outcome is known (at once if it already is)."""
        if self._result is not None:
            callback(self._result)
        else:
            self._callbacks.append(callback)

    def set(self, result: VerificationResult) -> None:
        """Settle the handle (the SDK does this; a second call is ignored)."""
        if self._result is not None:
            return
        self._result = result
        if self._event is not None:
            self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(result)


class FeeBreakdown(_Model):
    """The fee of one request as the SDK estimates it (PROTOCOL 4.6), in wei.

    ``fee = input_units * input_price + output_units * output_price``, with the service's
    on-chain prices (the default model's, also for multi-model requests).
    """

    input_units: int
    output_units: int
    input_price: Wei
    output_price: Wei
    fee: Wei


class InferenceResult(_Model):
    """What every request method returns.

    Attributes:
        provider: the provider address.
        model: the model asked for (the service's default when none was given).
        chat_id: the id to verify with: the ``ZG-Res-Key`` header, else the body's ``id``
            (for streams: the header, else the first chunk's ``id``; for async image jobs: the
            header of the poll answer that delivered the result, else its ``chatId``); ``None``
            if neither.
        usage: the provider's ``usage`` object, when it sent one.
        fee: the estimated fee in wei (0 when the usage is unknown).
        cost: how the fee was computed, ``None`` when the usage is unknown.
        request_sha256: hex sha256 of the request bytes sent; ``None`` only for an async image
            job resumed with ``wait_image_job`` without the submitted request's hash.
        response_sha256: hex sha256 of the raw response bytes received (for async image jobs:
            of the poll answer that delivered the result).
        raw: the parsed response body.
        verification: the verification outcome (possibly pending; ``await`` it). A dump gives
            its :class:`VerificationResult`, or ``null`` while it is pending; validating a dump
            settles the handle with that outcome (a pending one as ``UNAVAILABLE``).
    """

    provider: str
    model: str
    chat_id: str | None
    usage: dict[str, Any] | None
    fee: Wei
    cost: FeeBreakdown | None
    request_sha256: str | None
    response_sha256: str
    raw: Any
    verification: VerificationHandle

    @field_serializer("verification")
    def _dump_verification(self, handle: VerificationHandle) -> VerificationResult | None:
        return handle.result

    @field_validator("verification", mode="before")
    @classmethod
    def _load_verification(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, VerificationHandle):
            return value
        if value is None:
            provider = info.data.get("provider", "")
            value = VerificationResult(
                status=VerificationStatus.UNAVAILABLE,
                provider=provider if isinstance(provider, str) else "",
                reason="the verification was pending when the result was serialised",
            )
        return VerificationHandle(VerificationResult.model_validate(value))

    async def wait_verified(self) -> VerificationResult:
        """Wait for the verification outcome (same as ``await result.verification``)."""
        return await self.verification.wait()


class ChatResult(InferenceResult):
    """A chat completion.

    Attributes:
        content: the assistant's text (``""`` when none).
        message: the first choice's ``message`` object (for tool calls, reasoning, refusals).
        finish_reason: the first choice's finish reason.
    """

    content: str
    message: dict[str, Any]
    finish_reason: str | None


class ChatChunk(_Model):
    """One streamed chat chunk.

    Attributes:
        id: the chunk's ``id`` (``chatcmpl-...``), when present.
        content: the text delta of the first choice (``""`` when none).
        reasoning_content: a reasoning delta, for models that stream one.
        finish_reason: set on the chunk that ends the choice.
        usage: the usage object, on the final chunk when the provider sends it.
        data: the whole parsed chunk.
    """

    id: str | None
    content: str
    reasoning_content: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    data: dict[str, Any]


class GeneratedImage(_Model):
    """One image from an image generation or edit.

    Attributes:
        b64_json: the base64 PNG, when the provider returned it inline.
        url: the image URL (possibly a ``data:`` URL), when it returned one.
        revised_prompt: the prompt the model used, when reported.
    """

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None

    @property
    def data(self) -> bytes | None:
        """The image bytes when inline (``b64_json`` or a base64 ``data:`` URL), else ``None``."""
        payload = self.b64_json
        if (
            payload is None
            and self.url is not None
            and self.url.startswith("data:")
            and ";base64," in self.url
        ):
            payload = self.url.split(";base64,", 1)[1]
        if payload is None:
            return None
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            return None


class ImageResult(InferenceResult):
    """Generated or edited images.

    Attributes:
        images: the images, in order.
        job_id: the async job id, for results of :meth:`generate_image_async`.
    """

    images: list[GeneratedImage]
    job_id: str | None = None


class TranscriptionResult(InferenceResult):
    """A transcription.

    Attributes:
        text: the transcript.
    """

    text: str


class VerificationStep(_Model):
    """One step of :meth:`verify_service` (``kind``: ``info``, ``success``, ``warning``, ``error``)."""

    kind: str
    message: str


class ServiceVerification(_Model):
    """The attestation check of a provider (``verify_service``).

    ``verified`` is the minimum meaningful verdict (PROTOCOL 6.3): the signer in the attestation
    report equals the on-chain TEE signer AND the contract owner acknowledged that signer. The
    devnet's report is not a real TDX quote: this check proves key consistency, not hardware.

    Attributes:
        provider: the provider address.
        verified: ``signer_match and tee_signer_acknowledged``.
        contract_signer: the on-chain ``teeSignerAddress``.
        report_signer: the signer extracted from the report's ``report_data``, if any.
        signer_match: whether those two agree (case-insensitive).
        tee_signer_acknowledged: the service's on-chain acknowledgement flag.
        compose_verified: the dstack compose-hash check (``None`` when the report lacks the data).
        target_separated: whether the provider separates broker and model TEEs.
        llm_signer: the model TEE's signing address from its report, for separated targets.
        report: the broker's attestation report as parsed JSON.
        report_path: where the report was written, when ``output_dir`` was given.
        steps: what was checked, in order.
    """

    provider: str
    verified: bool
    contract_signer: str
    report_signer: str | None
    signer_match: bool
    tee_signer_acknowledged: bool
    compose_verified: bool | None
    target_separated: bool
    llm_signer: str | None = None
    report: dict[str, Any]
    report_path: str | None = None
    steps: list[VerificationStep]


#: A verification callback: plain function or coroutine function.
VerificationCallback = Callable[[VerificationResult], Awaitable[None] | None]


class RouteStats(_Model):
    """One provider as a :class:`~og_inference_async.inference.router.ProviderRouter` sees it.

    Attributes:
        provider: the provider address.
        circuit: ``"closed"`` (used), ``"open"`` (skipped until its cooldown ends) or
            ``"half_open"`` (one trial request may go to it).
        served: requests it served through the router.
        failed: requests that failed on it (failed over or raised).
        latency: moving average of its served requests, in seconds (``None`` before the first).
    """

    provider: str
    circuit: str
    served: int
    failed: int
    latency: float | None = None
