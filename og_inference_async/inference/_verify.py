"""Response-signature and attestation checks (plain sync code) and the verification policy.

A TeeML provider signs ``sha256hex(request bytes) + ":" + sha256hex(raw response bytes)`` with
EIP-191 ``personal_sign`` under its TEE key. :func:`check_signature` recovers the signer,
compares it with the one the chain names, and compares the signed text with the hashes of the
bytes the SDK sent and received, keeping the outcomes apart (see ``VerificationStatus``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .._exceptions import ConfigError, ResponseVerificationError, VerificationError
from .._redact import redact
from .._validate import check_bool, check_callable, check_int, check_seconds, shown
from ..types import Service
from ..types.inference import (
    VerificationCallback,
    VerificationResult,
    VerificationStatus,
)

__all__ = [
    "ResponseVerificationError",
    "VerificationPolicy",
    "check_signature",
    "compose_check",
    "expected_signer",
    "is_bindable",
    "parse_additional_info",
    "report_signer",
    "sha256_hex",
]

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HASH_PAIR = re.compile(r"[0-9a-f]{64}:[0-9a-f]{64}")
_MODES = ("off", "background", "required")


@dataclass(frozen=True)
class VerificationPolicy:
    """How the SDK verifies TEE response signatures.

    Set it per broker with ``broker.inference.verification = "required"`` (or a policy object),
    or per call with ``verify=`` on the request methods.

    Modes:

    - ``"off"``: no check; ``result.verification`` settles as ``SKIPPED`` at once. You can still
      call ``process_response`` yourself.
    - ``"background"`` (default): the response is returned at once; the signature is fetched and
      checked in the broker's task group. ``await result.verification`` (or ``on_result``)
      delivers the outcome; a ``REJECTED`` or ``NOT_BOUND`` outcome is also logged as a warning.
    - ``"required"``: fail closed. The check runs before the call returns, and a failure raises
      :class:`ResponseVerificationError` without handing over the content. Outcomes under
      ``required``:

      ========================  ==============================================================
      ``BOUND``                 passes
      ``SIGNED``                passes (only when the SDK had no body to compare, e.g. a job
                                resumed without its request hash)
      ``REJECTED``              always fails (another key, malformed, unacknowledged signer)
      ``NOT_BOUND``, hashes     always fails: the signed text is ``<sha256>:<sha256>`` and
      differ                    differs from the bytes sent and received (tampered content)
      ``NOT_BOUND``, text not   fails unless ``accept_unbindable``: the signature is genuine
      of the hash shape         but its text cannot be compared with any bytes
      ``UNAVAILABLE``           fails unless ``allow_unavailable``
      ``NOT_VERIFIABLE``        fails unless ``allow_unverifiable``
      ========================  ==============================================================

      Streams (``chat_stream``): the signature covers the whole body, so the verdict can only
      come after the last byte. By default the chunks are handed to you as they arrive, and
      they are NOT verified: after the last one, iteration fetches and checks the signature and
      either ends normally (``stream.result`` is set, verified) or raises
      :class:`ResponseVerificationError` (``stream.result`` stays ``None``). Pass
      ``hold_until_verified=True`` to ``chat_stream`` to receive no chunk before the verdict.

    Attributes:
        mode: ``"off"``, ``"background"`` or ``"required"``.
        accept_unbindable: under ``required``, accept a genuine signature whose signed text is
            not of the ``<64 hex>:<64 hex>`` shape (so it cannot be bound to any bytes). A text
            of that shape whose hashes differ from ours is never accepted.
        allow_unavailable: under ``required``, accept responses whose signature cannot be fetched.
        allow_unverifiable: under ``required``, accept services that do not sign responses.
        on_result: called with every outcome (a function or a coroutine function); exceptions
            it raises are logged and dropped.
        signature_attempts: how often a missing (404) signature is fetched again; a stream's
            signature may appear only after it ends.
        signature_retry_wait: seconds between those fetches (doubling).
        max_background: most background verifications running at once.

    Raises:
        ConfigError: an unknown mode or a field of the wrong type or out of range.
    """

    mode: str = "background"
    accept_unbindable: bool = False
    allow_unavailable: bool = False
    allow_unverifiable: bool = False
    on_result: VerificationCallback | None = None
    signature_attempts: int = 3
    signature_retry_wait: float = 0.05
    max_background: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.mode, str) or self.mode not in _MODES:
            raise ConfigError(f"verification mode must be one of {_MODES}, got {shown(self.mode)}")
        for name in ("accept_unbindable", "allow_unavailable", "allow_unverifiable"):
            check_bool(name, getattr(self, name))
        check_callable("on_result", self.on_result)
        check_int("signature_attempts", self.signature_attempts, minimum=1, maximum=100)
        check_seconds("signature_retry_wait", self.signature_retry_wait, allow_zero=True)
        check_int("max_background", self.max_background, minimum=1)

    @classmethod
    def coerce(cls, value: str | VerificationPolicy) -> VerificationPolicy:
        """A policy from a mode name or a policy.

        Raises:
            ConfigError: an unknown mode or type.
        """
        if isinstance(value, VerificationPolicy):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        raise ConfigError("verification must be 'off', 'background', 'required' or a VerificationPolicy")

    def failure(self, result: VerificationResult) -> str | None:
        """Why ``result`` fails this policy under ``required``, or ``None`` when it passes."""
        status = result.status
        if status is VerificationStatus.REJECTED:
            return "the response signature was rejected"
        if status is VerificationStatus.NOT_BOUND:
            if not is_bindable(result.signed_text):
                if self.accept_unbindable:
                    return None
                return "the signed text cannot be bound to the bytes sent and received"
            return "the signature covers other bytes than those sent and received (tampered?)"
        if status is VerificationStatus.UNAVAILABLE and not self.allow_unavailable:
            return "the response signature is unavailable"
        if status is VerificationStatus.NOT_VERIFIABLE and not self.allow_unverifiable:
            return "the service does not sign its responses"
        return None


def is_bindable(text: str | None) -> bool:
    """Whether a signed text has the ``<sha256 hex>:<sha256 hex>`` shape a response is bound by."""
    return text is not None and _HASH_PAIR.fullmatch(text.strip().lower()) is not None


def sha256_hex(data: bytes) -> str:
    """Lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def parse_additional_info(service: Service) -> dict[str, Any]:
    """The service's ``additionalInfo`` JSON object (``{}`` when empty or not an object)."""
    return _parse_info(service.additional_info)


def _parse_info(text: str) -> dict[str, Any]:
    try:
        info = json.loads(text) if text else {}
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _provider_type(info: dict[str, Any]) -> str:
    kind = info.get("ProviderType")
    return "centralized" if kind == "centralized" else "decentralized"


def is_target_separated(service: Service) -> bool:
    """Whether the provider separates its broker TEE from the model's (``TargetSeparated``)."""
    return parse_additional_info(service).get("TargetSeparated") is True


def expected_signer(service: Service) -> str:
    """The address that must sign responses (PROTOCOL 4.5 step 7).

    The on-chain ``teeSignerAddress``, except for decentralized providers with
    ``TargetSeparated: true`` and a ``TargetTeeAddress``: then the model TEE's own address.
    """
    return _separated_signer(service.additional_info) or service.tee_signer_address


@lru_cache(maxsize=256)
def _separated_signer(additional_info: str) -> str | None:
    """The model TEE's address a decentralized, ``TargetSeparated`` service names, else ``None``.

    Cached by the ``additionalInfo`` text (immutable), so a check per response parses no JSON.
    """
    info = _parse_info(additional_info)
    target = info.get("TargetTeeAddress")
    if (
        info.get("TargetSeparated") is True
        and _provider_type(info) != "centralized"
        and isinstance(target, str)
        and _ADDRESS.fullmatch(target)
    ):
        return target
    return None


def check_signature(
    *,
    provider: str,
    chat_id: str,
    expected: str,
    signer_acknowledged: bool,
    text: str,
    signature: str,
    request_sha256: str | None,
    response_sha256: str | None,
) -> VerificationResult:
    """Judge one signature record ``{"text", "signature"}`` fetched for ``chat_id``.

    Args:
        expected: the signer the chain names.
        signer_acknowledged: the service's on-chain ``teeSignerAcknowledged``.
        text: the signed text.
        signature: ``0x`` + 130 hex chars.
        request_sha256: hex hash of the request bytes sent, when known.
        response_sha256: hex hash of the raw response bytes received, when known.
    """
    base: dict[str, Any] = {
        "provider": provider,
        "chat_id": chat_id,
        "expected_signer": expected,
        # remote text: kept as is when it is the hash pair, else redacted (it may echo anything)
        "signed_text": text if is_bindable(text) else redact(text),
        "request_sha256": request_sha256,
        "response_sha256": response_sha256,
    }
    if not signer_acknowledged:
        return VerificationResult(
            status=VerificationStatus.REJECTED,
            reason="the contract owner has not acknowledged this service's TEE signer",
            **base,
        )
    from .._tokens import recover_personal_signer  # eth-account: not loaded by AsyncBroker(...)

    try:
        signer = recover_personal_signer(text, signature)
    except VerificationError as exc:
        return VerificationResult(status=VerificationStatus.REJECTED, reason=exc.message, **base)
    if signer.lower() != expected.lower():
        return VerificationResult(
            status=VerificationStatus.REJECTED,
            signer=signer,
            reason=f"signed by {signer}, not by the TEE signer {expected}",
            **base,
        )
    if request_sha256 is None and response_sha256 is None:
        return VerificationResult(
            status=VerificationStatus.SIGNED,
            signer=signer,
            reason="genuine signature; the content was not compared (no bodies given)",
            **base,
        )
    if not is_bindable(text):
        return VerificationResult(
            status=VerificationStatus.NOT_BOUND,
            signer=signer,
            reason="genuine signature, but the signed text is not '<request sha256>:<response sha256>' "
            "(it cannot be bound to any bytes)",
            **base,
        )
    signed_req, _, signed_resp = text.strip().lower().partition(":")
    mismatched = []
    if request_sha256 is not None and signed_req != request_sha256.lower():
        mismatched.append("the request hash differs")
    if response_sha256 is not None and signed_resp != response_sha256.lower():
        mismatched.append("the response hash differs")
    if mismatched:
        return VerificationResult(
            status=VerificationStatus.NOT_BOUND,
            signer=signer,
            reason="genuine signature, but " + "; ".join(mismatched),
            **base,
        )
    if request_sha256 is None or response_sha256 is None:
        return VerificationResult(
            status=VerificationStatus.SIGNED,
            signer=signer,
            reason="genuine signature; only part of the content was compared",
            **base,
        )
    return VerificationResult(status=VerificationStatus.BOUND, signer=signer, **base)


# -- attestation reports ------------------------------------------------------------------------


def _address_from_bytes(raw: bytes) -> str | None:
    text = raw.replace(b"\0", b"").strip()
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        decoded = ""
    match = _ADDRESS.fullmatch(decoded) or _ADDRESS.match(decoded)
    if match is not None:
        return match.group(0)
    if len(raw) >= 20 and raw[:20].strip(b"\0") and not raw[20:].strip(b"\0"):
        return "0x" + raw[:20].hex()  # a raw 20-byte address padded with zeros
    return None


def _decode_report_data(value: str) -> bytes | None:
    text = value.strip()
    if re.fullmatch(r"(0x)?[0-9a-fA-F]+", text) and len(text.removeprefix("0x")) % 2 == 0:
        try:
            return bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def report_signer(report: dict[str, Any]) -> tuple[str | None, str]:
    """The TEE signer named by an attestation report, and where it was found.

    Tries ``report_data`` (base64 or hex; NUL-stripped ASCII address, or a raw 20-byte address),
    then a dstack ``evidence`` document's ``quote.report_data``, then ``signing_address``.

    Returns:
        ``(address or None, source)``.
    """
    data = report.get("report_data")
    if isinstance(data, str):
        raw = _decode_report_data(data)
        if raw is not None:
            found = _address_from_bytes(raw)
            if found is not None:
                return found, "report_data"
    evidence = report.get("evidence")
    if isinstance(evidence, str):
        try:
            evidence = json.loads(base64.b64decode(evidence))
        except (binascii.Error, ValueError):
            evidence = None
    if isinstance(evidence, dict):
        quote = evidence.get("quote")
        if isinstance(quote, dict) and isinstance(quote.get("report_data"), str):
            raw = _decode_report_data(quote["report_data"])
            found = _address_from_bytes(raw) if raw is not None else None
            if found is not None:
                return found, "evidence.quote.report_data"
    signing = report.get("signing_address")
    if isinstance(signing, str) and _ADDRESS.fullmatch(signing):
        return signing, "signing_address"
    return None, "none"


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def compose_check(report: dict[str, Any]) -> tuple[bool | None, str]:
    """The dstack compose-hash check: ``sha256(app_compose)`` equals the ``compose-hash`` event.

    Returns:
        ``(passed, detail)``; ``passed`` is ``None`` when the report lacks the data.
    """
    tcb = _maybe_json(report.get("tcb_info"))
    if tcb is None and isinstance(report.get("info"), dict):
        tcb = _maybe_json(report["info"].get("tcb_info"))
    if not isinstance(tcb, dict) or not isinstance(tcb.get("app_compose"), str):
        return None, "no tcb_info.app_compose in the report"
    events = _maybe_json(report.get("event_log"))
    if events is None:
        events = _maybe_json(tcb.get("event_log"))
    if not isinstance(events, list):
        return None, "no event_log in the report"
    logged = next(
        (e.get("event_payload") for e in events if isinstance(e, dict) and e.get("event") == "compose-hash"),
        None,
    )
    if not isinstance(logged, str):
        return None, "no compose-hash event in the event log"
    calculated = sha256_hex(tcb["app_compose"].encode("utf-8"))
    if calculated == logged.lower():
        return True, f"compose hash {calculated} matches the event log"
    return False, f"compose hash {calculated} differs from the event log's {logged}"
