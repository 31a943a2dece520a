"""Streaming chat completions: :class:`ChatStream`, an async context manager and async iterator.

The raw SSE bytes are hashed as they arrive (a TEE signature covers the whole raw body), parsed
incrementally, and the usage of the final chunk is kept for the fee. When the stream has ended
(``[DONE]`` and end of body) the fee is recorded and the verification policy applied: the
verdict on a stream can only come after its last byte (see :class:`ChatStream`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol

import anyio

from .._exceptions import (
    ConfigError,
    OGError,
    ProviderConnectionError,
    ProviderResponseError,
    ResponseVerificationError,
    TransportFailure,
)
from .._http import HttpStream, error_for_status
from .._options import CallOptions
from .._redact import redact_bytes
from .._runtime import Background
from ..types import Service
from ..types.inference import ChatChunk, ChatResult, VerificationResult
from ._sse import DONE, SSEEvent, SSEParser
from ._verify import VerificationPolicy
from .budgets import Budget, Hold

__all__ = ["ChatStream", "StreamHost"]

log = logging.getLogger(__name__)


class StreamHost(Protocol):
    """What a :class:`ChatStream` needs: open the exchange, finish the result, a task group.

    ``ChatRequests`` is one (a fixed provider); a provider router is another (it picks the
    provider when the stream opens, so ``open_stream`` may answer for another provider).
    """

    @property
    def background(self) -> Background:
        """The broker's task group (a stream left early is drained there)."""
        ...

    async def open_stream(
        self,
        prov: str,
        payload: dict[str, Any],
        spend: tuple[Budget | None, bool | None] = (None, None),
        options: CallOptions | None = None,
    ) -> tuple[Service, bytes, HttpStream, Hold | None]:
        """Send the request (with the call ``options``); the service that answers, the bytes sent,
        the open stream, the budget hold."""
        ...

    async def finish_stream(
        self, stream: ChatStream, svc: Service, policy: VerificationPolicy, hold: Hold | None = None
    ) -> ChatResult:
        """The result of a stream that ended (the budget hold settled to its fee)."""
        ...


def stream_error(obj: dict[str, Any], *, provider: str) -> Exception:
    """The typed error for an ``{"error": ...}`` object sent inside a stream."""
    err = obj.get("error")
    status = err.get("status") if isinstance(err, dict) else None
    if not isinstance(status, int) or isinstance(status, bool) or status < 400:
        status = 502
    raw = redact_bytes(json.dumps(obj).encode())  # the event may echo our Authorization header
    return error_for_status(status, {}, raw, provider=provider, what="chat stream (error event)")


class ChatStream:
    """A streamed chat completion. Use it with ``async with`` and ``async for``::

        async with broker.inference.chat_stream(provider, messages) as stream:
            async for chunk in stream:
                print(chunk.content, end="")
        print(stream.result.usage, stream.result.fee)

    Entering sends the request (retried like any billed call while no byte of the body has been
    read); a failure after that raises and is never retried.

    Leaving the block before the end: the provider bills the whole answer anyway, so by default
    (``drain_on_exit``) the rest is read in the broker's task group (at most ``drain_timeout``
    seconds) to record the fee and run the verification; ``await stream.wait_result()`` returns
    the result once that is done. A stream that failed, was left by cancellation, or was closed
    with :meth:`aclose` is closed at once and its result stays ``None`` (no usage, no fee).

    Verification: the provider signs ``sha256(request):sha256(whole raw body)``, so a stream can
    only be verified after its last byte. What a caller sees under each policy:

    - ``"off"`` / ``"background"``: chunks arrive as they are received; when the stream ends,
      ``stream.result`` is set and ``await stream.result.verification`` gives the outcome
      (``SKIPPED``, or the background check's outcome).
    - ``"required"`` (default delivery): chunks arrive as they are received and are NOT
      verified. After the last chunk, the iteration fetches and checks the signature before it
      stops. If the check passes, iteration ends normally, ``stream.result`` is set and
      ``stream.verification`` is the passing outcome. If it fails, the ``async for`` raises
      :class:`ResponseVerificationError` (with the failed outcome, the fee and the usage, no
      content); ``stream.result`` stays ``None``, ``final()`` raises, and ``stream.verification``
      holds the failed outcome. Text already shown to a user must then be treated as unverified.
    - ``"required"`` with ``hold_until_verified=True``: no chunk is handed over before the
      verdict. The first ``__anext__`` reads the whole answer, verifies it, and only then
      yields the chunks one by one (or raises :class:`ResponseVerificationError`, having yielded
      nothing). :attr:`content` shows only what was handed over.

    Attributes:
        provider: the provider address.
        model: the model asked for.
        chat_id: the ``ZG-Res-Key`` header, else the first chunk's ``id`` (known after the first chunk).
        result: the :class:`ChatResult`, once the stream ended (and, under ``required``, passed
            verification); ``None`` before and after a failure.
    """

    def __init__(
        self,
        requests: StreamHost,
        provider: str,
        payload: dict[str, Any],
        policy: VerificationPolicy | None,
        *,
        spend: tuple[Budget | None, bool | None] = (None, None),
        drain_on_exit: bool = True,
        drain_timeout: float = 60.0,
        hold_until_verified: bool = False,
        options: CallOptions | None = None,
    ) -> None:
        if hold_until_verified and (policy is None or policy.mode != "required"):
            raise ConfigError("hold_until_verified needs the 'required' verification policy")
        self._requests = requests
        self.provider = provider
        self._payload = payload
        self._options = options
        self._policy = policy
        self._spend = spend
        self._budget_hold: Hold | None = None
        self._drain_on_exit = drain_on_exit
        self._drain_timeout = drain_timeout
        self._hold = hold_until_verified
        self._held: deque[ChatChunk] | None = None
        self._shown: list[str] = []
        self._outcome: VerificationResult | None = None
        self._done: anyio.Event | None = None
        self._failed = False
        self._finalized = False
        self.model: str = str(payload.get("model") or "")
        self.chat_id: str | None = None
        self.result: ChatResult | None = None
        self._svc: Service | None = None
        self._http: HttpStream | None = None
        self._raw: AsyncIterator[bytes] | None = None
        self._body = b""
        self._digest = hashlib.sha256()
        self._parser = SSEParser()
        self._pending: deque[SSEEvent] = deque()
        self._parts: list[str] = []
        self._chunks: list[dict[str, Any]] = []
        self._usage: dict[str, Any] | None = None
        self._finish_reason: str | None = None
        self._header_id: str | None = None
        self._first_id: str | None = None
        self._saw_done = False
        self._eof = False
        self._entered = False
        self._closed = False

    def __repr__(self) -> str:
        state = (
            "done" if self.result is not None else ("open" if self._entered and not self._closed else "idle")
        )
        return f"<ChatStream provider={self.provider} model={self.model!r} {state}>"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> ChatStream:
        if self._entered:
            raise ConfigError("a ChatStream can be entered once")
        self._entered = True
        self._done = anyio.Event()
        try:
            self._svc, self._body, self._http, self._budget_hold = await self._requests.open_stream(
                self.provider, self._payload, self._spend, self._options
            )
        except BaseException:
            self._closed = True
            self._done.set()
            raise
        self.provider = self._svc.provider  # a router picks the provider only now
        self.model = str(self._payload.get("model") or self._svc.model)
        self._header_id = self._http.headers.get("zg-res-key") or None
        self.chat_id = self._header_id
        self._raw = self._http.iter_raw().__aiter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cancelled = exc_type is not None and issubclass(exc_type, anyio.get_cancelled_exc_class())
        if self._drain_on_exit and self.result is None and not (self._closed or self._failed or cancelled):
            try:
                self._requests.background.start_soon(self._drain)
            except OGError:  # the broker closed: nothing can read the rest
                pass
            else:
                return
        await self.aclose()

    async def _drain(self) -> None:
        """Read what the consumer left, so the fee is counted and the response verified."""
        try:
            with anyio.move_on_after(self._drain_timeout):
                async for _ in self:
                    pass
        except Exception as exc:  # background: report, never take the broker's task group down
            log.warning(
                "reading the rest of an abandoned stream from provider %s failed: %s",
                self.provider,
                type(exc).__name__,
            )
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the connection now (idempotent); an unfinished stream stays unfinished."""
        if self._closed:
            return
        self._closed = True
        if self._budget_hold is not None:
            await self._budget_hold.akeep()  # no result: the provider may have billed the whole answer
        http, self._http = self._http, None
        try:
            if http is not None:
                await http.aclose()  # shielded, never raises
        finally:
            if self._done is not None:
                self._done.set()

    async def wait_result(self) -> ChatResult | None:
        """Wait until the stream finished or closed (a background drain included); return the result."""
        if self._done is None:
            raise ConfigError("the stream was never entered")
        await self._done.wait()
        return self.result

    # -- iteration ---------------------------------------------------------------------------------

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        if not self._entered:
            raise ConfigError(
                "use 'async with broker.inference.chat_stream(...) as stream:' before iterating"
            )
        try:
            chunk = await (self._next_held() if self._hold else self._next())
        except StopAsyncIteration:
            raise
        except Exception:
            self._failed = True
            raise
        if chunk.content:
            self._shown.append(chunk.content)
        return chunk

    async def _next_held(self) -> ChatChunk:
        """Read the whole answer and verify it before handing over its first chunk."""
        if self._held is None:
            held: deque[ChatChunk] = deque()
            while True:
                try:
                    held.append(await self._next())
                except StopAsyncIteration:
                    break
            self._held = held  # reached only when the stream ended and passed verification
        if self._held:
            return self._held.popleft()
        raise StopAsyncIteration

    async def _next(self) -> ChatChunk:
        while True:
            if self._pending:
                chunk = self._on_event(self._pending.popleft())
                if chunk is not None:
                    return chunk
                continue
            if self._eof or self._closed:
                if self._eof and not self._closed and not self._finalized:
                    self._finalized = True  # once: a failed verification must not count the fee twice
                    await self._finish()
                raise StopAsyncIteration
            assert self._raw is not None
            try:
                data = await self._raw.__anext__()
            except StopAsyncIteration:
                self._eof = True
                self._pending.extend(self._parser.close())
                continue
            except TransportFailure as exc:
                raise ProviderConnectionError(
                    f"the stream broke after {len(self._chunks)} chunks ({exc.message}); "
                    "a started stream is never retried",
                    provider=self.provider,
                ) from exc
            self._digest.update(data)
            self._pending.extend(self._parser.feed(data))

    def _on_event(self, event: SSEEvent) -> ChatChunk | None:
        data = event.data
        if data == DONE:
            self._saw_done = True
            return None
        try:
            obj = json.loads(data)
        except ValueError:
            raise ProviderResponseError(
                "the stream carried an event that is not JSON", provider=self.provider
            ) from None
        if not isinstance(obj, dict):
            return None
        if event.event == "error" or (obj.get("error") and "choices" not in obj):
            raise stream_error(obj if "error" in obj else {"error": obj}, provider=self.provider)
        chunk_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        if self._first_id is None and chunk_id:
            self._first_id = chunk_id
            if self.chat_id is None:
                self.chat_id = chunk_id
        usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else None
        if usage is not None:
            self._usage = usage
        content = ""
        reasoning: str | None = None
        finish: str | None = None
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            delta = choice.get("delta")
            if isinstance(delta, dict):
                text = delta.get("content")
                if isinstance(text, str):
                    content = text
                thought = delta.get("reasoning_content")
                if isinstance(thought, str):
                    reasoning = thought
            if isinstance(choice.get("finish_reason"), str):
                finish = choice["finish_reason"]
                self._finish_reason = finish
        if content:
            self._parts.append(content)
        self._chunks.append(obj)
        return ChatChunk(
            id=chunk_id,
            content=content,
            reasoning_content=reasoning,
            finish_reason=finish,
            usage=usage,
            data=obj,
        )

    async def _finish(self) -> None:
        if not self._saw_done and (self._usage is None or self._finish_reason is None):
            raise ProviderResponseError(
                "the stream ended before 'data: [DONE]' (cut short by the provider or a proxy)",
                provider=self.provider,
            )
        assert self._svc is not None and self._policy is not None
        try:
            result = await self._requests.finish_stream(self, self._svc, self._policy, self._budget_hold)
        except ResponseVerificationError as exc:
            self._outcome = exc.verification
            raise
        self._outcome = result.verification.result
        self.result = result

    # -- convenience -------------------------------------------------------------------------------

    @property
    def content(self) -> str:
        """The text handed to you so far (unverified until :attr:`result` is set under ``required``)."""
        return "".join(self._shown)

    @property
    def verification(self) -> VerificationResult | None:
        """The verification outcome once known: set when the stream ended under ``required``
        (passed or failed) or ``off``; ``None`` before, and while a ``background`` check runs
        (``await stream.result.verification`` then)."""
        if self._outcome is None and self.result is not None:
            return self.result.verification.result
        return self._outcome

    @property
    def usage(self) -> dict[str, Any] | None:
        """The usage object, once the provider sent it."""
        return self._usage

    async def final(self) -> ChatResult:
        """Read whatever is left of the stream and return the finished :class:`ChatResult`."""
        async for _ in self:
            pass
        if self.result is None:
            raise ProviderResponseError("the stream was closed before it finished", provider=self.provider)
        return self.result

    # -- for the finishing path --------------------------------------------------------------------

    def summary(self) -> tuple[str, str, str, dict[str, Any] | None, str | None, list[dict[str, Any]]]:
        """(request sha256, response sha256, content, usage, finish reason, chunks)."""
        return (
            hashlib.sha256(self._body).hexdigest(),
            self._digest.hexdigest(),
            "".join(self._parts),
            self._usage,
            self._finish_reason,
            self._chunks,
        )
