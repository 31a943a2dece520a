"""Audio requests: transcription (``POST /v1/proxy/audio/transcriptions``, multipart).

The answer may be JSON, plain text or an SSE stream (read whole and assembled); the fee follows
the usage the provider reports. The result ends in the one finishing path.
"""

from __future__ import annotations

import json
import mimetypes
import os
from typing import Any

from .._http import HttpReply
from .._validate import check_optional_str
from ..types import Service
from ..types.inference import TranscriptionResult
from ._common import provider_address
from ._estimate import audio_bound
from ._fees import fee_breakdown
from ._sse import DONE, SSEParser
from ._uploads import form_fields, load_upload, multipart_upload
from ._verify import VerificationPolicy
from .budgets import Budget, Hold
from .requests import JSON, RequestCore, split_params
from .verification import json_object, sha256_offloaded

__all__ = ["AudioRequests"]

_TRANSCRIBE = ("speech-to-text",)


def _from_events(body: bytes) -> tuple[str, dict[str, Any] | None, list[dict[str, Any]]]:
    """``(text, usage, events)`` of a streamed transcription read whole."""
    parser = SSEParser()
    deltas: list[str] = []
    final: str | None = None
    usage: dict[str, Any] | None = None
    raw: list[dict[str, Any]] = []
    for event in parser.feed(body) + parser.close():
        if event.data == DONE:
            continue
        try:
            obj = json.loads(event.data)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        raw.append(obj)
        if isinstance(obj.get("delta"), str):
            deltas.append(obj["delta"])
        if isinstance(obj.get("text"), str):
            final = obj["text"]
        if isinstance(obj.get("usage"), dict):
            usage = obj["usage"]
    return (final if final is not None else "".join(deltas)), usage, raw


class AudioRequests:
    """Speech-to-text.

    Args:
        core: what every request shares.
    """

    def __init__(self, core: RequestCore) -> None:
        self._core = core

    async def transcribe(
        self,
        /,
        provider: str,
        audio: bytes | str | os.PathLike[str],
        filename: str | None = None,
        *,
        model: str | None = None,
        language: str | None = None,
        response_format: str | None = None,
        content_type: str | None = None,
        verify: str | VerificationPolicy | None = None,
        budget: Budget | None = None,
        auto_fund: bool | None = None,
        **params: Any,
    ) -> TranscriptionResult:
        """Transcribe audio (``POST /v1/proxy/audio/transcriptions``, multipart).

        A streamed answer (``stream=True`` in ``params``) is read whole and assembled. The fee
        follows the usage the provider reports (per second or per token); a plain-text answer
        (``response_format="text"``) carries no usage, so its fee is counted as 0 locally although
        the provider bills it: prefer the JSON formats when you rely on ``local_fees``.

        Args:
            provider: the provider address.
            audio: the audio file: its bytes, or its path (read in a worker thread).
            filename: its name (default: the path's name, else ``"audio.wav"``); its extension
                sets the media type unless ``content_type`` is given.
            model: the model id (default: the service's model).
            language: the spoken language, when known.
            response_format: e.g. ``"json"`` or ``"text"``.
            content_type: the upload's media type.
            verify: the verification policy for this call.
            budget: the spend budget to charge (default: the current ``broker.budget``). The
                worst case reserved before sending is the audio's duration (a WAV header, else
                the size at 32 kbit/s) priced by the provider's duration rule or its token rule
                (50 audio tokens and 10 text tokens a second), whichever is more.
            auto_fund: on a refusal for balance, wait for a shared top-up and retry (at most
                3 times); ``None`` does so while auto-funding runs for the provider.
            **params: form fields of the allow-list (``prompt``, ``temperature``,
                ``timestamp_granularities``, ``stream``, ...) and the call options ``timeout=``,
                ``max_retries=``, ``extra_headers=``, ``extra_query=``, ``extra_body=`` (extra
                form fields); anything else raises ``ConfigError`` before anything is sent.

        Raises:
            ConfigError: bad arguments (``audio`` neither bytes nor an existing file, ...),
                checked before anything is sent.
            ServiceTypeMismatchError: the provider is not a speech-to-text service.
            ProviderError: the provider refused or failed (typed by status).
            ResponseVerificationError: under ``required``, the response failed verification.
        """
        prov = provider_address(provider)
        for name, value in (
            ("model", model),
            ("language", language),
            ("response_format", response_format),
            ("content_type", content_type),
        ):
            check_optional_str(name, value)
        extra, options = split_params(params, "transcription")
        form_fields(extra)
        policy = self._core.policy(verify)
        upload, name = await load_upload("audio", audio, filename, "audio.wav")
        charged = self._core.budgets.pick(budget)
        svc = await self._core.service(prov, "transcription", _TRANSCRIBE)
        used = model or svc.model
        mime = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        fields = form_fields(
            {"model": used, "language": language, "response_format": response_format, **extra}
        )
        body, ctype, request_sha256 = await multipart_upload(fields, "file", name, upload, mime)
        hold = await self._core.reserve(
            charged, audio_bound(upload, svc.input_price, svc.output_price), "transcription"
        )
        async with self._core.spending(hold):
            reply = await self._core.post(
                prov,
                svc.endpoint + "/audio/transcriptions",
                what="transcription",
                body=body,
                content_type=ctype,
                auto_fund=auto_fund,
                options=options,
            )
            return await self._result(prov, svc, used, reply, request_sha256, policy, hold)

    async def _result(
        self,
        prov: str,
        svc: Service,
        used: str,
        reply: HttpReply,
        request_sha256: str,
        policy: VerificationPolicy,
        hold: Hold | None,
    ) -> TranscriptionResult:
        """Read the answer (JSON, text or SSE) and finish it."""
        media = reply.headers.get("content-type", "").split(";")[0].strip().lower()
        usage: dict[str, Any] | None = None
        raw: Any
        chat_id = reply.headers.get("zg-res-key") or None
        if media == "text/event-stream":
            text, usage, raw = _from_events(reply.content)
        elif media == JSON or media.endswith("+json"):
            data = json_object(reply, prov, "transcription")
            raw = data
            text = data["text"] if isinstance(data.get("text"), str) else ""
            usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
            chat_id = chat_id or (data.get("id") if isinstance(data.get("id"), str) else None)
        else:
            text = reply.content.decode("utf-8", errors="replace")
            raw = text
        return await self._core.finish(
            TranscriptionResult,
            svc,
            policy,
            fee_breakdown(svc.service_type, svc.input_price, svc.output_price, usage),
            hold=hold,
            provider=prov,
            model=used,
            chat_id=chat_id,
            usage=usage,
            request_sha256=request_sha256,
            response_sha256=await sha256_offloaded(reply.raw),
            raw=raw,
            text=text,
        )
