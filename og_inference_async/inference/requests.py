"""Requests to providers: what every kind shares (:class:`RequestCore`) and chat (:class:`ChatRequests`).

Every request goes through the provider transport to ``service.endpoint``
(``<service url>/v1/proxy``) with a cached session token and bounded, billing-safe retries
(``_retry``), hashes exactly the bytes it sent and the raw bytes it received, and ends in ONE
finishing path, :meth:`RequestCore.finish`: the fee is recorded in the local fee book, the
result built with its verification handle, and the verification policy applied. Images and
async jobs live in ``images``, transcription in ``audio``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .._exceptions import ConfigError, ProviderInsufficientBalanceError, ServiceTypeMismatchError
from .._http import HttpReply, HttpStream, SessionAuth
from .._observe import Observer
from .._options import CallOptions, split_params
from .._runtime import Background
from .._transport import ProviderTransport
from .._units import format_og
from .._validate import check_bool, check_int, check_messages, check_optional_str, check_seconds, shown
from ..types import Service
from ..types.inference import ChatResult, FeeBreakdown, InferenceResult, VerificationHandle
from ._common import RequestPolicies, provider_address
from ._estimate import audio_bound, chat_bound, image_bound, output_cap
from ._fees import LocalFeeBook, fee_breakdown
from ._stream import ChatStream, StreamHost
from ._uploads import load_upload
from ._verify import VerificationPolicy
from .auth import AuthManager
from .budgets import Budget, BudgetBook, Hold
from .discovery import ServiceDirectory
from .funding import AutoFundingService
from .verification import VerificationService, json_object, sha256_offloaded

if TYPE_CHECKING:
    import openai

__all__ = ["ChatRequests", "FeeEstimator", "RequestCore", "check_service_type", "dumps", "split_params"]

R = TypeVar("R", bound=InferenceResult)
T = TypeVar("T")

log = logging.getLogger(__name__)

JSON = "application/json"
#: Most shared top-ups (each followed by one retry) a request refused for balance waits for.
MAX_REFILLS = 3
#: The on-chain service types (lower case) that serve chat.
_CHAT = ("chatbot",)
#: The method to call for each known service type (for the hint of a mismatch).
_METHOD_FOR = {
    "chatbot": "chat() or chat_stream()",
    "text-to-image": "generate_image() or generate_image_async()",
    "image-editing": "edit_image()",
    "speech-to-text": "transcribe()",
}


def check_service_type(svc: Service, what: str, expected: tuple[str, ...]) -> None:
    """Refuse a request the provider's on-chain service type does not serve (nothing is sent).

    Raises:
        ServiceTypeMismatchError: e.g. a chat to a text-to-image provider.
    """
    kind = svc.service_type.strip().lower() if isinstance(svc.service_type, str) else ""
    if kind in expected:
        return
    offered = shown(svc.service_type)
    method = _METHOD_FOR.get(kind)
    hint = (
        f"this provider offers {kind}: use {method}"
        if method
        else "pick a provider of the right type from broker.inference.list_services()"
    )
    raise ServiceTypeMismatchError(
        f"{what} needs a {' or '.join(expected)} provider, but provider {svc.provider} offers "
        f"service type {offered}; nothing was sent",
        provider=svc.provider,
        service_type=svc.service_type,
        expected=expected,
        hint=hint,
    )


def dumps(payload: Any) -> bytes:
    """The compact JSON bytes of a request body.

    Raises:
        ConfigError: the payload is not JSON-serialisable.
    """
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"the request body is not JSON-serialisable: {type(exc).__name__}") from None


def check_params(params: Mapping[str, Any]) -> None:
    """Extra OpenAI parameters need non-empty names (their values are checked by the encoding)."""
    for key in params:
        if not key:
            raise ConfigError("request parameters need non-empty names")


def chat_id_of(reply: HttpReply, data: dict[str, Any]) -> str | None:
    """The chat id of an answer: the ``ZG-Res-Key`` header, else the body's ``id``."""
    header = reply.headers.get("zg-res-key")
    if header:
        return header
    body_id = data.get("id")
    return body_id if isinstance(body_id, str) and body_id else None


class RequestCore:
    """What every kind of request shares: service lookup, the exchange, and the finishing path.

    Args:
        transport: sends the requests (auth, retries, error mapping).
        directory: the providers' services, cached.
        verification: applies the verification policy to each result.
        fees: the local fee book every result's fee is recorded in.
        policies: the default verification policy (and the retry policy, via the transport).
        background: the broker's task group (for streams drained after their block is left).
        observer: counts verification outcomes (``None``: not counted).
        funding: tops a sub-account up when the provider refuses a request for balance.
        budgets: the broker's spend budgets.
    """

    def __init__(
        self,
        *,
        transport: ProviderTransport,
        directory: ServiceDirectory,
        verification: VerificationService,
        fees: LocalFeeBook,
        policies: RequestPolicies,
        background: Background,
        funding: AutoFundingService,
        budgets: BudgetBook,
        observer: Observer | None = None,
    ) -> None:
        self.transport = transport
        self._observer = observer
        self.directory = directory
        self.fees = fees
        self.background = background
        self.funding = funding
        self.budgets = budgets
        self._verification = verification
        self._policies = policies

    def policy(self, verify: str | VerificationPolicy | None) -> VerificationPolicy:
        """The verification policy of one call (``verify=`` or the broker's default)."""
        return self._policies.pick(verify)

    async def service(self, provider: str, what: str, expected: tuple[str, ...]) -> Service:
        """The provider's (cached) service, refused unless its type is one of ``expected``."""
        svc = await self.directory.cached(provider)
        check_service_type(svc, what, expected)
        return svc

    async def post(
        self,
        provider: str,
        url: str,
        *,
        what: str,
        body: bytes,
        content_type: str,
        auto_fund: bool | None = None,
        options: CallOptions | None = None,
    ) -> HttpReply:
        """A billed POST: retried only where the provider provably did not serve it (see :meth:`funded`)."""
        return await self.funded(
            provider,
            auto_fund,
            lambda: self.transport.request(
                provider,
                "POST",
                url,
                what=what,
                idempotent=False,
                body=body,
                content_type=content_type,
                options=options,
            ),
        )

    async def funded(self, provider: str, auto_fund: bool | None, send: Callable[[], Awaitable[T]]) -> T:
        """``send()``; when the provider refuses it for balance and funding covers it, top up and retry.

        A refused request was not billed (the provider checks the balance before it bills), so
        a retry cannot bill twice. Concurrent refusals share one top-up, sized for all of them;
        the request is retried once after it. When a swarm drains that top-up before the retry
        arrives, the retry's own refusal gets the next shared top-up: at most
        :data:`MAX_REFILLS` top-ups per request.

        Raises:
            ProviderInsufficientBalanceError: refused, and ``auto_fund`` is off (or the retry was
                refused too).
            FundingCapError: the top-up would pass an auto-funding cap.
        """
        refill = self.funding.covers(provider, auto_fund)
        for attempt in range(MAX_REFILLS + 1):
            try:
                with self.funding.sending(provider):
                    return await send()
            except ProviderInsufficientBalanceError as refusal:
                if not refill or attempt == MAX_REFILLS:
                    raise
                await self.funding.refill(provider, refusal)
        raise AssertionError("unreachable")  # pragma: no cover

    async def reserve(self, budget: Budget | None, bound: FeeBreakdown, what: str) -> Hold | None:
        """Hold ``bound.fee`` in ``budget`` (and its enclosing budgets) before sending; ``None`` without one.

        Raises:
            BudgetExceededError: the worst case is more than what is left.
            CoordinatorError: a shared budget's store cannot be reached (nothing is sent).
        """
        return None if budget is None else await budget.areserve(bound.fee, what=what)

    @asynccontextmanager
    async def spending(self, hold: Hold | None) -> AsyncIterator[None]:
        """Close ``hold`` when the request fails: kept if the provider may have billed, else released."""
        try:
            yield
        except BaseException as exc:
            if hold is not None:
                await hold.aend(exc)
            raise

    async def get(
        self, provider: str, url: str, *, what: str, options: CallOptions | None = None
    ) -> HttpReply:
        """An authenticated, idempotent GET (job polls)."""
        return await self.transport.request(provider, "GET", url, what=what, idempotent=True, options=options)

    async def finish(
        self,
        kind: type[R],
        svc: Service,
        policy: VerificationPolicy,
        cost: FeeBreakdown | None,
        *,
        hold: Hold | None = None,
        **fields: Any,
    ) -> R:
        """The one finishing path: record the fee, build the result, apply the verification policy.

        Args:
            kind: the result class.
            svc: the provider's service (its signer and verifiability).
            policy: the verification policy of the call.
            cost: the estimated cost (``None`` when unknown: counted as 0).
            hold: the request's budget reservation, settled to the fee (kept whole when the fee
                is unknown) before verification.
            **fields: the result's other fields (``provider``, ``model``, ``chat_id``, hashes, ...).

        Raises:
            ResponseVerificationError: under ``required``, the result failed verification.
        """
        handle = VerificationHandle()
        job = fields.get("job_id")  # an async job waited on twice is billed (and counted) once
        fee = self.fees.record(fields["provider"], cost, once=job if isinstance(job, str) else None)
        if hold is not None:
            await hold.asettle(hold.amount if cost is None else fee)
        result = kind(fee=fee, cost=cost, verification=handle, **fields)
        if self._observer is not None:  # counted when known: now, or when a background check ends
            self._observer.verified_when_done(handle)
        await self._verification.settle(policy, handle, svc, result)
        outcome = handle.result
        status = outcome.status.value if outcome is not None else "pending"
        if log.isEnabledFor(logging.INFO):  # format_og is not free: only when the line is kept
            log.info(
                "%s answered %s: fee %s OG, verification %s",
                fields["provider"],
                fields.get("chat_id"),
                format_og(fee),
                status,
            )
        return result


class ChatRequests:
    """Chat completions, whole or streamed, and the OpenAI adapter.

    Args:
        core: what every request shares.
        auth: session headers (for the OpenAI adapter's ``httpx.Auth``).
    """

    def __init__(self, core: RequestCore, auth: AuthManager) -> None:
        self._core = core
        self._auth = auth

    @property
    def background(self) -> Background:
        """The broker's task group (a stream left early is drained there)."""
        return self._core.background

    async def chat(
        self,
        /,
        provider: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        verify: str | VerificationPolicy | None = None,
        budget: Budget | None = None,
        auto_fund: bool | None = None,
        **params: Any,
    ) -> ChatResult:
        """A chat completion (``POST /v1/proxy/chat/completions``).

        Never retried once the provider may have served it (see ``RequestRetryPolicy``). A
        refusal for balance is retried after a top-up shared with every caller refused at that
        moment when ``auto_fund`` is on (the refused request was not billed, so the retry cannot
        bill twice); a retry refused again waits for the next shared top-up, at most 3 in all.

        Args:
            provider: the provider address.
            messages: OpenAI chat messages (``[{"role": "user", "content": "hi"}]``).
            model: the model id (default: the service's model).
            verify: the verification policy for this call (default: ``broker.inference.verification``).
            budget: the spend budget to charge (default: the budget of the enclosing
                ``async with broker.budget(...)``, if any). Its worst-case fee is reserved before
                sending; without ``max_tokens`` the SDK sets one the budget can pay for.
            auto_fund: on a refusal for balance, wait for a top-up shared with concurrent
                callers, then retry; ``None`` (default) does so while auto-funding runs for the
                provider.
            **params: OpenAI body parameters named in the chat allow-list (``max_tokens``,
                ``temperature``, ``tools``, ... see ``BODY_PARAMS``), and the call options
                ``timeout=``, ``max_retries=``, ``extra_headers=``, ``extra_query=``,
                ``extra_body=`` (never sent in the body; anything else goes in ``extra_body``).

        Returns:
            The completion with its chat id, usage, estimated fee and verification outcome.

        Raises:
            ConfigError: bad arguments (``messages`` not a non-empty list of dicts with a ``role``,
                a blank ``model``, parameters that are not JSON, an unknown keyword argument),
                checked before anything is sent.
            ServiceTypeMismatchError: the provider is not a chatbot.
            NotAcknowledgedError: no (acknowledged) sub-account with the provider.
            InsufficientBalanceError: the provider refused for lack of funds (amounts attached).
            FundingCapError: a top-up it needed would pass an auto-funding cap.
            BudgetExceededError: the worst-case fee is more than the budget has left (nothing sent).
            ProviderError: the provider refused or failed (typed by status).
            ResponseVerificationError: under the ``required`` policy, the response failed verification.
        """
        if params.get("stream"):
            raise ConfigError("chat() does not stream; use chat_stream()")
        prov = provider_address(provider)
        checked = check_messages(messages)
        check_optional_str("model", model)
        fields, options = split_params(params, "chat")
        policy = self._core.policy(verify)
        charged = self._core.budgets.pick(budget)
        svc = await self._core.service(prov, "chat", _CHAT)
        used = model or svc.model
        body, hold = await self.budgeted(svc, {"model": used, "messages": checked, **fields}, charged, "chat")
        async with self._core.spending(hold):
            return await self._chat_result(prov, svc, used, body, policy, hold, auto_fund, options)

    async def budgeted(
        self, svc: Service, payload: dict[str, Any], budget: Budget | None, what: str
    ) -> tuple[bytes, Hold | None]:
        """The request body, and its worst-case fee held in ``budget`` (when there is one).

        A chat without an output cap gets ``max_tokens``: the budget's ``default_max_tokens``,
        lowered to what the budget can still pay for.

        Raises:
            BudgetExceededError: not even one output token fits in the budget.
        """
        if budget is None:
            return dumps(payload), None
        if output_cap(payload) is None and svc.output_price > 0:
            payload["max_tokens"] = budget.default_max_tokens
            left = budget.available()
            if left is not None:
                inputs = chat_bound(dumps(payload), 0, svc.input_price, svc.output_price).fee
                affordable = max((left - inputs) // svc.output_price, 1)
                payload["max_tokens"] = min(budget.default_max_tokens, affordable)
        body = dumps(payload)
        bound = chat_bound(body, output_cap(payload), svc.input_price, svc.output_price)
        return body, await self._core.reserve(budget, bound, what)

    async def _chat_result(
        self,
        prov: str,
        svc: Service,
        used: str,
        body: bytes,
        policy: VerificationPolicy,
        hold: Hold | None,
        auto_fund: bool | None,
        options: CallOptions | None,
    ) -> ChatResult:
        reply = await self._core.post(
            prov,
            svc.endpoint + "/chat/completions",
            what="chat",
            body=body,
            content_type=JSON,
            auto_fund=auto_fund,
            options=options,
        )
        data = json_object(reply, prov, "chat")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        choices = data.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
        finish = choice.get("finish_reason")
        return await self._core.finish(
            ChatResult,
            svc,
            policy,
            fee_breakdown(svc.service_type, svc.input_price, svc.output_price, usage),
            hold=hold,
            provider=prov,
            model=str(used),
            chat_id=chat_id_of(reply, data),
            usage=usage,
            request_sha256=await sha256_offloaded(body),
            response_sha256=await sha256_offloaded(reply.raw),
            raw=data,
            content=message["content"] if isinstance(message.get("content"), str) else "",
            message=message,
            finish_reason=finish if isinstance(finish, str) else None,
        )

    def chat_stream(
        self,
        /,
        provider: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        verify: str | VerificationPolicy | None = None,
        include_usage: bool = True,
        drain_on_exit: bool = True,
        drain_timeout: float = 60.0,
        hold_until_verified: bool = False,
        budget: Budget | None = None,
        auto_fund: bool | None = None,
        **params: Any,
    ) -> ChatStream:
        """A streamed chat completion: use ``async with ... as stream: async for chunk in stream``.

        Args:
            provider: the provider address.
            messages: OpenAI chat messages.
            model: the model id (default: the service's model).
            verify: the verification policy for this call (default: ``broker.inference.verification``).
            include_usage: ask for the usage chunk (``stream_options.include_usage``) so the fee
                can be counted; ignored when ``stream_options`` is passed.
            drain_on_exit: when the ``async with`` block is left before the end, read the rest in
                the broker's task group so the fee is counted and the response verified (the
                provider bills the whole answer anyway); ``False`` closes at once.
            drain_timeout: most seconds that background read may take.
            hold_until_verified: under ``required``, hand over no chunk before the whole answer
                was received and its signature passed (no streaming to the caller, but no
                unverified text either). By default chunks are delivered as they arrive and
                the verdict comes after the last one (see :class:`ChatStream`).
            budget: the spend budget to charge (see :meth:`chat`); a stream that ends without
                its usage keeps its whole reservation.
            auto_fund: on a refusal for balance, top up (shared) and retry (see :meth:`chat`).
            **params: OpenAI body parameters of the chat allow-list and the call options, as
                for :meth:`chat` (``timeout=`` also bounds each read of the stream).

        Returns:
            The :class:`ChatStream` (nothing is sent before ``async with``).

        Raises:
            ConfigError: bad arguments (checked here; parameters that cannot be JSON-encoded on
                ``async with``), before anything is sent; ``hold_until_verified`` without the
                ``required`` policy.
            ServiceTypeMismatchError: (on ``async with``) the provider is not a chatbot.
        """
        return self.stream(
            self,
            provider_address(provider),
            messages,
            model=model,
            verify=verify,
            include_usage=include_usage,
            drain_on_exit=drain_on_exit,
            drain_timeout=drain_timeout,
            hold_until_verified=hold_until_verified,
            budget=budget,
            auto_fund=auto_fund,
            **params,
        )

    def stream(
        self,
        host: StreamHost,
        prov: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None,
        verify: str | VerificationPolicy | None,
        include_usage: bool,
        drain_on_exit: bool,
        drain_timeout: float,
        hold_until_verified: bool,
        budget: Budget | None = None,
        auto_fund: bool | None = None,
        **params: Any,
    ) -> ChatStream:
        """The checked :class:`ChatStream` of :meth:`chat_stream`, opened through ``host``.

        ``host`` is this object for one provider, or a router that picks the provider when the
        stream opens (``prov`` is then ``""``). Raises what :meth:`chat_stream` documents.
        """
        checked = check_messages(messages)
        check_optional_str("model", model)
        check_bool("include_usage", include_usage)
        check_bool("drain_on_exit", drain_on_exit)
        check_seconds("drain_timeout", drain_timeout)
        check_bool("hold_until_verified", hold_until_verified)
        fields, options = split_params(params, "chat")
        policy = self._core.policy(verify)
        payload: dict[str, Any] = {"model": model, "messages": checked, **fields, "stream": True}
        if include_usage and "stream_options" not in fields:
            payload["stream_options"] = {"include_usage": True}
        charged = self._core.budgets.pick(budget)
        if prov:  # a router picks the provider when the stream opens
            self._core.funding.covers(prov, auto_fund)  # checks the argument before anything is sent
        return ChatStream(
            host,
            prov,
            payload,
            policy,
            spend=(charged, auto_fund),
            drain_on_exit=drain_on_exit,
            drain_timeout=drain_timeout,
            hold_until_verified=hold_until_verified,
            options=options,
        )

    async def open_stream(
        self,
        prov: str,
        payload: dict[str, Any],
        spend: tuple[Budget | None, bool | None] = (None, None),
        options: CallOptions | None = None,
    ) -> tuple[Service, bytes, HttpStream, Hold | None]:
        """Send a streaming chat request; retried only until the response headers arrive.

        ``spend`` is the stream's budget and ``auto_fund``; the returned hold is the budget
        reservation, settled when the stream finishes. ``options`` are the call options.
        """
        budget, auto_fund = spend
        svc = await self._core.service(prov, "chat stream", _CHAT)
        if payload.get("model") is None:
            payload["model"] = svc.model
        body, hold = await self.budgeted(svc, payload, budget, "chat stream")
        url = svc.endpoint + "/chat/completions"
        async with self._core.spending(hold):
            stream = await self._core.funded(
                prov,
                auto_fund,
                lambda: self._core.transport.open_stream(
                    prov, "POST", url, what="chat stream", body=body, content_type=JSON, options=options
                ),
            )
        return svc, body, stream, hold

    async def finish_stream(
        self, stream: ChatStream, svc: Service, policy: VerificationPolicy, hold: Hold | None = None
    ) -> ChatResult:
        """The result of a stream that ended (fee, verification), through the one finishing path."""
        request_sha256, response_sha256, content, usage, finish, chunks = stream.summary()
        return await self._core.finish(
            ChatResult,
            svc,
            policy,
            fee_breakdown(svc.service_type, svc.input_price, svc.output_price, usage),
            hold=hold,
            provider=stream.provider,
            model=stream.model,
            chat_id=stream.chat_id,
            usage=usage,
            request_sha256=request_sha256,
            response_sha256=response_sha256,
            raw=chunks,
            content=content,
            message={"role": "assistant", "content": content},
            finish_reason=finish,
        )

    async def proxy(
        self, provider: str, method: str, target: str, body: bytes, *, content_type: str, accept: str
    ) -> HttpStream:
        """Send a raw OpenAI-style request to ``provider``'s proxy (``target``: path and query after it).

        Session-authenticated and retried like a stream (only while provably not served); the
        caller owns the returned stream. Not counted or verified (as with :meth:`openai_client`).

        Raises:
            ProviderError: the provider's typed error (status, body) or a transport failure.
        """
        svc = await self._core.directory.cached(provider)
        return await self._core.transport.open_stream(
            provider,
            method,
            svc.endpoint + target,
            what="openai request",
            body=body,
            content_type=content_type,
            accept=accept,
        )

    async def openai_client(
        self, /, provider: str, *, api_key: str | None = None, **kwargs: Any
    ) -> openai.AsyncOpenAI:
        """An ``openai.AsyncOpenAI`` for ``provider`` on the broker's shared HTTP pool.

        Without ``api_key`` every request carries a fresh session token (an ``httpx.Auth``
        re-signs it once when the provider answers 401 ``token_expired``/``generation_mismatch``).
        With ``api_key`` (from :meth:`create_api_key`) the key is sent as is. ``base_url`` is
        ``service.endpoint``. Closing the returned client (``close()``, ``async with``) does NOT
        close the broker's pool; the broker does when it closes. Requests made this way are not
        counted or verified by the SDK: pass ``ZG-Res-Key`` and the usage to
        :meth:`process_response` for that.

        Retries: ``max_retries`` defaults to **0**, not openai's 2. openai resends after
        timeouts, connection errors, 429 and every 5xx, and a resent inference POST may be
        served and billed twice; the SDK's own methods retry only where the request was provably
        not served (see ``RequestRetryPolicy``). Pass ``max_retries=`` to opt in anyway.

        Args:
            provider: the provider address.
            api_key: an ``app-sk-...`` API key, or ``None`` for session tokens.
            **kwargs: more ``AsyncOpenAI`` arguments (``timeout``, ``max_retries`` (default 0), ...).

        Raises:
            ConfigError: the ``openai`` package is not installed, or ``api_key`` is not an
                ``app-sk-`` string.
            NotAcknowledgedError: session mode without an acknowledged sub-account.
        """
        prov = provider_address(provider)
        if api_key is not None and (not isinstance(api_key, str) or not api_key.startswith("app-sk-")):
            raise ConfigError("api_key must be an 'app-sk-...' string from create_api_key(), or None")
        svc = await self._core.directory.cached(prov)
        try:
            from ._openai import build_openai_client
        except ImportError as exc:
            raise ConfigError(
                "the OpenAI adapter needs the openai package", hint="pip install 'og-inference-async[openai]'"
            ) from exc
        auth: SessionAuth | None = None
        if api_key is None:
            await self._auth.require_acknowledged(prov)

            async def authorization() -> str:
                return (await self._auth.get_request_headers(prov))["Authorization"]

            auth = SessionAuth(authorization, lambda: self._auth.forget(prov))
        return build_openai_client(
            base_url=svc.endpoint,
            http_client=self._core.transport.client,
            auth=auth,
            api_key=api_key,
            **kwargs,
        )


class FeeEstimator:
    """Worst-case fees of requests before they are sent (what a budget reserves).

    Args:
        core: what every request shares (the providers' services and prices).
    """

    def __init__(self, core: RequestCore) -> None:
        self._core = core

    async def estimate_fee(self, /, provider: str, request: Mapping[str, Any]) -> FeeBreakdown:
        """The most ``request`` can cost at ``provider``, from the on-chain prices (nothing is sent).

        What a spend budget reserves before sending. ``request`` holds the arguments of the
        request method the provider's service type takes:

        * chatbot: ``{"messages": [...], "max_tokens": 256, ...}`` (the OpenAI body): input
          tokens at most the UTF-8 bytes of the JSON body plus 64 for the chat template, output
          tokens at most ``max_completion_tokens`` / ``max_tokens``;
        * text-to-image / image-editing: ``{"n": 2}``: ``n`` images at the input price (exact);
        * speech-to-text: ``{"audio": <bytes or path>}``: the audio's duration (WAV header, else
          its size at 32 kbit/s) under the duration rule or the token rule (50 audio and 10 text
          tokens a second), whichever costs more.

        Args:
            provider: the provider address.
            request: the request's arguments.

        Returns:
            A :class:`FeeBreakdown` whose ``fee`` is the upper bound in wei.

        Raises:
            ConfigError: a request the bound cannot be computed for (a chat without
                ``max_tokens`` when output is priced, no ``audio``, an unknown service type).
            ServiceNotFoundError: the provider has no service.
        """
        prov = provider_address(provider)
        if not isinstance(request, Mapping):
            raise ConfigError("request must be a mapping of the request's arguments")
        svc = await self._core.directory.cached(prov)
        kind = svc.service_type.strip().lower() if isinstance(svc.service_type, str) else ""
        if kind in _CHAT:
            payload = {"model": svc.model, **request, "messages": check_messages(request.get("messages"))}
            check_params(payload)
            return chat_bound(dumps(payload), output_cap(payload), svc.input_price, svc.output_price)
        if kind in ("text-to-image", "image-editing"):
            return image_bound(check_int("n", request.get("n", 1), minimum=1, maximum=10), svc.input_price)
        if kind == "speech-to-text":
            upload, _ = await load_upload("audio", request.get("audio"), None, "audio.wav")
            return audio_bound(upload, svc.input_price, svc.output_price)
        raise ConfigError(f"no fee rule for service type {shown(svc.service_type)}")
