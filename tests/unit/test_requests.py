"""Provider requests over respx: error mapping, retries, token refresh, chat ids, streams, jobs, OpenAI."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx
from eth_account import Account

from og_inference_async import (
    AsyncBroker,
    ConfigError,
    ImageJobTimeoutError,
    InsufficientBalanceError,
    NotAcknowledgedError,
    OGError,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderError,
    ProviderInsufficientBalanceError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderServerError,
    RequestRetryPolicy,
    ServiceNotFoundError,
)
from og_inference_async._http import SessionAuth, encode_multipart, error_for_status, parse_retry_after
from og_inference_async.inference.verification import OFFLOAD_BYTES
from og_inference_async.types import Service

from .fakes import FakeContracts, FakeProvider, FakeWeb3, wire_inference

pytestmark = pytest.mark.anyio

KEY = "0x" + "42" * 32
TEE = Account.from_key("0x" + "07" * 32)
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
URL = "http://provider.test"
CHAT_URL = URL + "/v1/proxy/chat/completions"
AUTH = "Bearer app-sk-unit-test"


def make_service(**overrides: Any) -> Service:
    fields: dict[str, Any] = {
        "provider": PROVIDER,
        "service_type": "chatbot",
        "url": URL,
        "input_price": 10,
        "output_price": 20,
        "updated_at": 0,
        "model": "m",
        "verifiability": "TeeML",
        "additional_info": '{"ProviderType":"decentralized"}',
        "tee_signer_address": TEE.address,
        "tee_signer_acknowledged": True,
    }
    fields.update(overrides)
    return Service(**fields)


class FakeAuth:
    """Session headers numbered in issue order; a record of the providers forgotten."""

    def __init__(self) -> None:
        self.issued = 0
        self.forgotten: list[str | None] = []

    async def get_request_headers(self, provider: str) -> dict[str, str]:
        self.issued += 1
        return {"Authorization": f"{AUTH}-{self.issued}"}

    def forget(self, provider: str | None = None) -> None:
        self.forgotten.append(provider)

    async def require_acknowledged(self, provider: str) -> None:
        return None


@dataclass
class Env:
    broker: AsyncBroker
    api: Any
    services: Any
    auth: FakeAuth
    contracts: FakeContracts
    router: respx.MockRouter = field(default_factory=lambda: respx.MockRouter(assert_all_called=False))
    sleeps: list[float] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] | None = None

    @property
    def forgotten(self) -> list[str | None]:
        return self.auth.forgotten

    def use(self, service: Service) -> None:
        self.services.directory.remember(service, float("inf"))


def completion(content: str = "Echo: hi", *, id: str = "chatcmpl-1", usage: Any = None) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": usage
        if usage is not None
        else {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    }


def error(status: int, code: str, message: str = "nope", **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, **extra}}, headers=headers
    )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    """The inference services on fakes (chain, auth), a respx-mocked HTTP client, zero-wait retries."""
    http = httpx.AsyncClient()
    broker = AsyncBroker(KEY, network="hardhat", web3=FakeWeb3(FakeProvider()), http_client=http)  # type: ignore[arg-type]
    async with broker:
        auth = FakeAuth()
        contracts = FakeContracts()
        holder: list[Env] = []

        async def sleep(seconds: float) -> None:
            state = holder[0]
            if state.sleep is not None:
                await state.sleep(seconds)
            else:
                state.sleeps.append(seconds)

        api, services = wire_inference(
            broker, contracts=contracts, auth=auth, sleep=sleep, clock=lambda: holder[0].clock()
        )
        state = Env(broker, api, services, auth, contracts)
        holder.append(state)
        api.retry_policy = RequestRetryPolicy.no_wait()
        api.verification = "off"
        state.use(make_service())
        with respx.mock(assert_all_called=False) as router:
            state.router = router
            yield state
    await http.aclose()


# -- error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        # a provider's balance refusal: a ProviderError that is also an InsufficientBalanceError
        (402, {"error": {"code": "insufficient_balance", "message": "x"}}, ProviderInsufficientBalanceError),
        (400, {"error": "insufficient balance, total fee of 5 exceeds 3"}, ProviderInsufficientBalanceError),
        (403, {"error": {"code": "not_acknowledged", "message": "x"}}, NotAcknowledgedError),
        (404, {"error": {"code": "account_not_found", "message": "x"}}, NotAcknowledgedError),
        (400, {"error": "user not acknowledge the provider"}, NotAcknowledgedError),
        (404, {"error": {"code": "model_not_found", "message": "x"}}, ServiceNotFoundError),
        (401, {"error": {"code": "invalid_signature", "message": "x"}}, ProviderAuthError),
        (403, {"error": {"code": "wrong_provider", "message": "x"}}, ProviderAuthError),
        (401, {"error": {"code": "token_expired", "message": "x"}}, ProviderAuthError),
        (429, {"error": {"code": "rate_limited", "message": "x"}}, ProviderRateLimitError),
        (500, {"error": {"code": "internal_error", "message": "x"}}, ProviderServerError),
        (503, {"error": {"code": "service_unavailable", "message": "x"}}, ProviderServerError),
        (400, {"error": {"code": "invalid_request", "message": "x"}}, ProviderError),
        (404, "not json at all", ProviderError),
    ],
)
def test_error_table(status: int, body: Any, kind: type[Exception]) -> None:
    """Each provider answer maps to its typed error, tagged with the provider's code."""
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    exc = error_for_status(status, {}, raw, provider=PROVIDER, what="chat")
    assert type(exc) is kind
    assert f"HTTP {status}" in str(exc)


def test_balance_error_carries_amounts() -> None:
    """A 402 body's required/available wei strings land on InsufficientBalanceError."""
    raw = json.dumps(
        {"error": {"code": "insufficient_balance", "message": "low", "required": "1000", "available": "7"}}
    ).encode()
    exc = error_for_status(402, {}, raw, provider=PROVIDER)
    assert isinstance(exc, InsufficientBalanceError)
    assert (exc.required, exc.available) == (1000, 7)


def test_auth_error_without_code_hints_at_the_proxy_path() -> None:
    """A bare 403 (no provider code) carries the /v1/proxy hint."""
    exc = error_for_status(403, {}, b"Forbidden", provider=PROVIDER)
    assert isinstance(exc, ProviderAuthError) and exc.hint and "/v1/proxy" in exc.hint
    assert exc.status_code == 403 and exc.provider == PROVIDER


def test_rate_limit_reads_retry_after() -> None:
    """429 carries Retry-After in seconds (header seconds, or retry-after-ms)."""
    exc = error_for_status(429, {"retry-after": "3"}, b"", provider=PROVIDER)
    assert isinstance(exc, ProviderRateLimitError) and exc.retry_after == 3.0
    exc = error_for_status(429, {"retry-after-ms": "1500", "retry-after": "9"}, b"", provider=PROVIDER)
    assert isinstance(exc, ProviderRateLimitError) and exc.retry_after == 1.5


def test_retry_after_parsing() -> None:
    """Retry-After accepts delta seconds and HTTP dates; junk is None."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0.0


async def test_chat_maps_balance_error(env: Env) -> None:
    """A 402 from the provider surfaces as InsufficientBalanceError and is not retried."""
    route = env.router.post(CHAT_URL).mock(
        return_value=error(402, "insufficient_balance", required="10", available="1")
    )
    with pytest.raises(InsufficientBalanceError) as info:
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert info.value.required == 10 and route.call_count == 1


async def test_not_acknowledged_drops_cached_auth(env: Env) -> None:
    """A provider-side not_acknowledged answer raises and forgets the cached acknowledgement."""
    env.router.post(CHAT_URL).mock(return_value=error(403, "not_acknowledged"))
    with pytest.raises(NotAcknowledgedError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert env.forgotten == [PROVIDER]


# -- retries ------------------------------------------------------------------------------------


async def test_429_is_retried_then_succeeds(env: Env) -> None:
    """A 429 is retried (zero waits) and the next answer is returned."""
    route = env.router.post(CHAT_URL).mock(
        side_effect=[
            error(429, "rate_limited", headers={"Retry-After": "0"}),
            httpx.Response(200, json=completion()),
        ]
    )
    result = await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert result.content == "Echo: hi" and route.call_count == 2


async def test_retry_after_is_honoured(env: Env) -> None:
    """The wait before retrying a 429 is the provider's Retry-After, not a shorter backoff."""
    env.api.retry_policy = RequestRetryPolicy(attempts=3, initial_backoff=0.01)
    env.router.post(CHAT_URL).mock(
        side_effect=[
            error(429, "rate_limited", headers={"Retry-After": "2"}),
            httpx.Response(200, json=completion()),
        ]
    )
    await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert env.sleeps == [2.0]


async def test_retry_after_above_the_cap_is_raised_at_once(env: Env) -> None:
    """A Retry-After longer than max_retry_after is not waited for: the 429 is raised with it."""
    env.api.retry_policy = RequestRetryPolicy(attempts=3, max_retry_after=5.0)
    route = env.router.post(CHAT_URL).mock(
        return_value=error(429, "rate_limited", headers={"Retry-After": "60"})
    )
    with pytest.raises(ProviderRateLimitError) as info:
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert info.value.retry_after == 60.0 and route.call_count == 1 and env.sleeps == []


async def test_attempts_are_bounded(env: Env) -> None:
    """Persistent 429s stop after the policy's attempts."""
    route = env.router.post(CHAT_URL).mock(return_value=error(429, "rate_limited"))
    with pytest.raises(ProviderRateLimitError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert route.call_count == 3


async def test_total_time_is_bounded(env: Env) -> None:
    """Retries stop when the next wait would overrun max_elapsed, however many attempts are left."""
    now = [0.0]
    env.clock = lambda: now[0]

    async def sleep(seconds: float) -> None:
        env.sleeps.append(seconds)
        now[0] += seconds

    env.sleep = sleep
    env.api.retry_policy = RequestRetryPolicy(attempts=10, max_elapsed=5.0, max_retry_after=10.0)
    route = env.router.post(CHAT_URL).mock(
        return_value=error(503, "service_unavailable", headers={"Retry-After": "2"})
    )
    with pytest.raises(ProviderServerError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert env.sleeps == [2.0, 2.0] and route.call_count == 3


async def test_503_on_a_billed_call_is_retried_but_500_is_not(env: Env) -> None:
    """503 means 'not served' (safe to repeat a chat); 500 may have been served (not repeated)."""
    route = env.router.post(CHAT_URL).mock(
        side_effect=[error(503, "service_unavailable"), httpx.Response(200, json=completion())]
    )
    await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert route.call_count == 2
    env.router.routes.clear()
    route = env.router.post(CHAT_URL).mock(return_value=error(500, "internal_error"))
    with pytest.raises(ProviderServerError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert route.call_count == 1


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_errors_are_not_retried_on_a_billed_call(env: Env, status: int) -> None:
    """502/504 may come after the provider served (and billed) a chat: it is not sent again."""
    route = env.router.post(CHAT_URL).mock(return_value=error(status, "bad_gateway"))
    with pytest.raises(ProviderServerError) as info:
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert route.call_count == 1 and info.value.status_code == status
    with pytest.raises(ProviderServerError):
        async with env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}]) as chunks:
            [c async for c in chunks]
    assert route.call_count == 2  # the stream was not resent either


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_errors_are_retried_on_an_idempotent_get(env: Env, status: int) -> None:
    """Job polls (GETs) are retried on 502/504."""
    env.use(make_service(service_type="text-to-image", input_price=7, output_price=0))
    poll = env.router.get(URL + "/v1/async/jobs/g").mock(
        side_effect=[
            error(status, "bad_gateway"),
            httpx.Response(200, json={"jobId": "g", "status": "completed", "data": {"data": []}}),
        ]
    )
    result = await env.api.wait_image_job(PROVIDER, "g", n=1)
    assert poll.call_count == 2 and result.fee == 7


async def test_500_on_an_idempotent_get_is_retried(env: Env) -> None:
    """GETs (here a signature fetch) are retried on 500."""
    sig = env.router.get(URL + "/v1/proxy/signature/abc").mock(
        side_effect=[
            error(500, "internal_error"),
            httpx.Response(200, json={"text": "a:b", "signature": "0x00"}),
        ]
    )
    result = await env.api.process_response(PROVIDER, "abc")
    assert sig.call_count == 2 and result.status.value == "rejected"


async def test_connect_error_is_retried_read_error_is_not(env: Env) -> None:
    """A chat that failed before sending is repeated; one that broke after sending is not."""
    route = env.router.post(CHAT_URL).mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=completion())]
    )
    await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert route.call_count == 2
    env.router.routes.clear()
    route = env.router.post(CHAT_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(ProviderConnectionError) as info:
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert route.call_count == 1
    assert not isinstance(info.value.__cause__, OGError)  # chained, not leaked


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("x"),
        httpx.ConnectTimeout("x"),
        httpx.ReadTimeout("x"),
        httpx.ReadError("x"),
        httpx.RemoteProtocolError("x"),
        httpx.WriteError("x"),
        httpx.PoolTimeout("x"),
    ],
)
async def test_no_raw_httpx_error_escapes(env: Env, exc: Exception) -> None:
    """Every httpx transport error becomes a ProviderConnectionError."""
    env.router.post(CHAT_URL).mock(side_effect=exc)
    with pytest.raises(ProviderConnectionError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])


async def test_unmapped_aiohttp_error_is_translated(env: Env) -> None:
    """An aiohttp error that httpx-aiohttp does not map still surfaces as ProviderConnectionError."""
    import aiohttp

    env.router.post(CHAT_URL).mock(side_effect=aiohttp.ClientPayloadError("truncated"))
    with pytest.raises(ProviderConnectionError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])


async def test_invalid_service_url_is_a_provider_error(env: Env) -> None:
    """A malformed on-chain service URL raises ProviderError, not httpx.InvalidURL."""
    env.use(make_service(url="http://a:b:c"))
    with pytest.raises(ProviderError, match="not a valid"):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])


# -- token refresh ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["token_expired", "generation_mismatch"])
async def test_stale_token_is_refreshed_once(env: Env, code: str) -> None:
    """A stale-token 401 forgets the token, re-signs and resends once with the new header."""
    route = env.router.post(CHAT_URL).mock(
        side_effect=[error(401, code), httpx.Response(200, json=completion())]
    )
    await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert env.forgotten == [PROVIDER] and route.call_count == 2
    sent = [call.request.headers["authorization"] for call in route.calls]
    assert sent == [f"{AUTH}-1", f"{AUTH}-2"]


async def test_stale_token_refresh_happens_only_once(env: Env) -> None:
    """A second stale-token 401 after the refresh is raised as ProviderAuthError."""
    route = env.router.post(CHAT_URL).mock(return_value=error(401, "token_expired"))
    with pytest.raises(ProviderAuthError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert route.call_count == 2 and env.forgotten == [PROVIDER]


async def test_other_401s_are_not_refreshed(env: Env) -> None:
    """A 401 for another reason (revoked key) raises at once."""
    route = env.router.post(CHAT_URL).mock(return_value=error(401, "token_revoked"))
    with pytest.raises(ProviderAuthError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert route.call_count == 1 and env.forgotten == []


# -- chat results -------------------------------------------------------------------------------


async def test_chat_id_prefers_the_header(env: Env) -> None:
    """The chat id is ZG-Res-Key when present, else the completion id."""
    env.router.post(CHAT_URL).mock(
        side_effect=[
            httpx.Response(200, json=completion(id="chatcmpl-x"), headers={"ZG-Res-Key": "uuid-1"}),
            httpx.Response(200, json=completion(id="chatcmpl-y")),
        ]
    )
    first = await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    second = await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])
    assert (first.chat_id, second.chat_id) == ("uuid-1", "chatcmpl-y")


async def test_chat_sends_model_and_params_and_counts_the_fee(env: Env) -> None:
    """The body carries the default model and extra params; the fee uses usage and on-chain prices."""
    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion()))
    result = await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}], max_tokens=5)
    sent = json.loads(route.calls[0].request.content)
    assert sent == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    assert route.calls[0].request.headers["accept-encoding"] == "identity"
    assert result.fee == 2 * 10 + 3 * 20 and result.cost is not None and result.cost.input_units == 2
    assert env.api.local_fees(PROVIDER) == 80
    assert env.api.local_fees(PROVIDER.lower()) == 80
    env.api.reset_local_fees(PROVIDER)
    assert env.api.local_fees(PROVIDER) == 0


async def test_chat_refuses_stream_flag(env: Env) -> None:
    """stream=True on chat() is a ConfigError pointing at chat_stream()."""
    with pytest.raises(ConfigError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}], stream=True)


async def test_non_json_answer_is_a_response_error(env: Env) -> None:
    """A 200 with a body that is not JSON raises ProviderResponseError."""
    env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, content=b"<html>"))
    with pytest.raises(ProviderResponseError):
        await env.api.chat(PROVIDER, [{"role": "user", "content": "hi"}])


# -- streams ------------------------------------------------------------------------------------


def sse(*objs: Any, done: bool = True) -> list[bytes]:
    events = [b"data: " + json.dumps(o).encode() + b"\n\n" for o in objs]
    if done:
        events.append(b"data: [DONE]\n\n")
    return events


def chunk(
    content: str | None = None, *, id: str = "chatcmpl-s", finish: str | None = None, **extra: Any
) -> dict:
    delta = {} if content is None else {"content": content}
    return {"id": id, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


class Pieces(httpx.AsyncByteStream):
    """A response body delivered in the given pieces (to split lines across network chunks)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece

    async def aclose(self) -> None:
        self.closed = True


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_stream_reassembles_split_lines_and_captures_usage(env: Env) -> None:
    """Chunks split at every 7 bytes still parse; content, usage, fee and chat id come out."""
    body = b"".join(
        sse(
            chunk("Echo:"),
            chunk(" hé"),
            chunk(finish="stop"),
            {"id": "chatcmpl-s", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
        )
    )
    env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(
            200, stream=Pieces(split_every(body, 7)), headers={"content-type": "text/event-stream"}
        )
    )
    async with env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}]) as stream:
        texts = [c.content async for c in stream]
    assert "".join(texts) == "Echo: hé"
    result = stream.result
    assert result is not None and result.content == "Echo: hé"
    assert result.usage == {"prompt_tokens": 4, "completion_tokens": 2}
    assert result.fee == 4 * 10 + 2 * 20 and result.chat_id == "chatcmpl-s"
    import hashlib

    assert result.response_sha256 == hashlib.sha256(body).hexdigest()


async def test_stream_request_asks_for_usage(env: Env) -> None:
    """chat_stream sends stream=true and stream_options.include_usage."""
    route = env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, content=b"".join(sse(chunk("a"))))
    )
    async with env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}]) as stream:
        await stream.final()
    sent = json.loads(route.calls[0].request.content)
    assert (
        sent["stream"] is True and sent["stream_options"] == {"include_usage": True} and sent["model"] == "m"
    )


async def test_stream_chat_id_prefers_the_header(env: Env) -> None:
    """For streams the ZG-Res-Key header wins over the first chunk's id."""
    env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, content=b"".join(sse(chunk("a"))), headers={"ZG-Res-Key": "hdr"})
    )
    async with env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}]) as stream:
        result = await stream.final()
    assert result.chat_id == "hdr"


async def test_stream_error_event_raises_typed_error(env: Env) -> None:
    """An error object in the middle of a stream raises the mapped provider error."""
    pieces = sse(chunk("a"), {"error": {"code": "insufficient_balance", "message": "ran out"}}, done=False)
    env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, content=b"".join(pieces)))
    async with env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}]) as stream:
        with pytest.raises(InsufficientBalanceError):
            async for _ in stream:
                pass


async def test_stream_without_done_is_a_response_error(env: Env) -> None:
    """A body that ends before [DONE] (and without usage) raises ProviderResponseError."""
    env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, content=b"".join(sse(chunk("a"), done=False)))
    )
    async with env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}]) as stream:
        with pytest.raises(ProviderResponseError):
            await stream.final()
    assert stream.result is None


async def test_stream_left_early_is_drained_in_the_background(env: Env) -> None:
    """Leaving after the first chunk reads the rest in the background: usage and fee still count."""
    usage = {"prompt_tokens": 1, "completion_tokens": 2}
    body = Pieces(sse(chunk("a"), chunk("b"), chunk(finish="stop", usage=usage)))
    env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, stream=body))
    async with env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}]) as stream:
        async for first in stream:
            assert first.content == "a"
            break
    result = await stream.wait_result()
    assert result is not None and result.content == "ab" and result.usage == usage
    assert env.api.local_fees(PROVIDER) == 1 * 10 + 2 * 20 and body.closed


async def test_stream_left_early_without_drain_closes_at_once(env: Env) -> None:
    """With drain_on_exit=False leaving early closes the response; no result and no fee."""
    body = Pieces(sse(chunk("a"), chunk("b"), chunk(finish="stop", usage={"prompt_tokens": 1})))
    env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, stream=body))
    stream = env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}], drain_on_exit=False)
    async with stream:
        async for _ in stream:
            break
    assert stream.result is None and body.closed and await stream.wait_result() is None
    assert env.api.local_fees(PROVIDER) == 0
    with pytest.raises(ProviderResponseError):
        await stream.final()


async def test_stream_error_status_before_body_is_retried(env: Env) -> None:
    """A 429 answered before the stream starts is retried like any call."""
    route = env.router.post(CHAT_URL).mock(
        side_effect=[error(429, "rate_limited"), httpx.Response(200, content=b"".join(sse(chunk("a"))))]
    )
    async with env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}]) as stream:
        result = await stream.final()
    assert result.content == "a" and route.call_count == 2


async def test_stream_break_mid_body_is_a_connection_error(env: Env) -> None:
    """A transport error after some chunks raises ProviderConnectionError (never retried)."""

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield sse(chunk("a"), done=False)[0]
            raise httpx.RemoteProtocolError("incomplete chunked read")

    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, stream=Broken()))
    async with env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}]) as stream:
        with pytest.raises(ProviderConnectionError):
            async for _ in stream:
                pass
    assert route.call_count == 1


async def test_iterating_outside_async_with_is_refused(env: Env) -> None:
    """A ChatStream must be entered before iterating."""
    stream = env.api.chat_stream(PROVIDER, [{"role": "user", "content": "hi"}])
    with pytest.raises(ConfigError):
        await stream.__anext__()


# -- images, audio, async jobs ------------------------------------------------------------------


async def test_image_generation_bills_n_images(env: Env) -> None:
    """generate_image posts JSON with n and counts n x input price."""
    env.use(make_service(service_type="text-to-image", input_price=1000, output_price=0))
    route = env.router.post(URL + "/v1/proxy/images/generations").mock(
        return_value=httpx.Response(
            200, json={"created": 1, "data": [{"b64_json": "aGk="}, {"b64_json": "aGk="}]}
        )
    )
    result = await env.api.generate_image(PROVIDER, "a cat", n=2, size="64x64")
    assert json.loads(route.calls[0].request.content) == {
        "model": "m",
        "prompt": "a cat",
        "n": 2,
        "size": "64x64",
    }
    assert result.fee == 2000 and [img.data for img in result.images] == [b"hi", b"hi"]


@pytest.mark.parametrize("size", [1_000, OFFLOAD_BYTES + 1])
async def test_small_and_large_uploads_give_identical_results(
    env: Env, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """Uploads at or above OFFLOAD_BYTES are encoded and hashed in a worker thread, with the same result."""
    import hashlib

    import anyio.to_thread

    offloaded: list[str] = []
    real_run_sync = anyio.to_thread.run_sync

    async def counting_run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
        offloaded.append(func.__name__)
        return await real_run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting_run_sync)
    env.use(make_service(service_type="speech-to-text", input_price=100, output_price=0))
    route = env.router.post(URL + "/v1/proxy/audio/transcriptions").mock(
        return_value=httpx.Response(200, json={"text": "ok", "usage": {"type": "duration", "seconds": 1}})
    )
    audio = bytes(range(256)) * (size // 256 + 1)
    result = await env.api.transcribe(
        PROVIDER, bytearray(audio), "clip.wav", language="en", content_type="audio/wav"
    )
    sent = route.calls[0].request
    assert result.request_sha256 == hashlib.sha256(sent.content).hexdigest()
    boundary = sent.headers["content-type"].split("boundary=")[1]
    expected, ctype = encode_multipart(
        {"model": "m", "language": "en"}, {"file": ("clip.wav", audio, "audio/wav")}, boundary=boundary
    )
    assert sent.content == expected and sent.headers["content-type"] == ctype
    assert ("_encode_upload" in offloaded) is (size >= OFFLOAD_BYTES)


async def test_edit_image_is_multipart_and_hashes_the_sent_bytes(env: Env) -> None:
    """edit_image sends multipart with the image file and hashes exactly the bytes sent."""
    import hashlib

    env.use(make_service(service_type="image-editing", input_price=5, output_price=0))
    route = env.router.post(URL + "/v1/proxy/images/edits").mock(
        return_value=httpx.Response(200, json={"data": [{"url": "data:image/png;base64,aGk="}]})
    )
    result = await env.api.edit_image(PROVIDER, b"\x89PNGdata", "make it blue", n=3)
    request = route.calls[0].request
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="image"; filename="image.png"' in request.content and b"\x89PNGdata" in request.content
    assert result.request_sha256 == hashlib.sha256(request.content).hexdigest()
    assert result.fee == 15 and result.images[0].data == b"hi"


async def test_transcription_json_and_sse(env: Env) -> None:
    """transcribe reads JSON (duration usage) and SSE answers; the fee is per billable second."""
    env.use(make_service(service_type="speech-to-text", input_price=100, output_price=0))
    route = env.router.post(URL + "/v1/proxy/audio/transcriptions").mock(
        side_effect=[
            httpx.Response(200, json={"text": "hello", "usage": {"type": "duration", "seconds": 2.5}}),
            httpx.Response(
                200,
                content=b"".join(
                    sse(
                        {"type": "transcript.text.delta", "delta": "hel"},
                        {"type": "transcript.text.delta", "delta": "lo"},
                        {
                            "type": "transcript.text.done",
                            "text": "hello",
                            "usage": {"type": "duration", "seconds": 1.2},
                        },
                    )
                ),
                headers={"content-type": "text/event-stream"},
            ),
        ]
    )
    first = await env.api.transcribe(PROVIDER, b"RIFF....", "clip.wav")
    second = await env.api.transcribe(PROVIDER, b"RIFF....", "clip.wav", stream=True)
    assert b'filename="clip.wav"' in route.calls[0].request.content
    assert b"audio/x-wav" in route.calls[0].request.content or b"audio/wav" in route.calls[0].request.content
    assert (first.text, first.fee) == ("hello", 300)
    assert (second.text, second.fee) == ("hello", 100)


async def test_async_job_polls_honouring_retry_after(env: Env) -> None:
    """generate_image_async submits, polls with the provider's Retry-After, returns the images."""
    env.use(make_service(service_type="text-to-image", input_price=7, output_price=0))
    env.api.retry_policy = RequestRetryPolicy(attempts=3)
    env.router.post(URL + "/v1/async/images/generations").mock(
        return_value=httpx.Response(202, json={"jobId": "job-1", "status": "pending"})
    )
    poll = env.router.get(URL + "/v1/async/jobs/job-1").mock(
        side_effect=[
            httpx.Response(200, json={"jobId": "job-1", "status": "pending"}, headers={"Retry-After": "3"}),
            httpx.Response(
                200, json={"jobId": "job-1", "status": "processing"}, headers={"Retry-After": "1"}
            ),
            httpx.Response(
                200, json={"jobId": "job-1", "status": "completed", "data": {"data": [{"b64_json": "aGk="}]}}
            ),
        ]
    )
    result = await env.api.generate_image_async(PROVIDER, "a dog", n=1)
    assert env.sleeps == [3.0, 1.0] and poll.call_count == 3
    assert result.job_id == "job-1" and result.images[0].data == b"hi" and result.fee == 7
    assert all(call.request.headers["authorization"].startswith(AUTH) for call in poll.calls)


async def test_async_job_timeout_and_failure(env: Env) -> None:
    """A job that never finishes raises ImageJobTimeoutError (with the id); a failed job raises."""
    env.use(make_service(service_type="text-to-image", input_price=7, output_price=0))
    env.router.get(URL + "/v1/async/jobs/j").mock(
        return_value=httpx.Response(
            200, json={"jobId": "j", "status": "pending"}, headers={"Retry-After": "1"}
        )
    )
    with pytest.raises(ImageJobTimeoutError) as info:
        await env.api.wait_image_job(PROVIDER, "j", max_polls=4)
    assert info.value.job_id == "j" and info.value.last_status == "pending" and len(env.sleeps) == 4
    env.router.get(URL + "/v1/async/jobs/k").mock(
        return_value=httpx.Response(
            200, json={"jobId": "k", "status": "failed", "errorMessage": "gpu on fire"}
        )
    )
    with pytest.raises(ProviderServerError, match="gpu on fire"):
        await env.api.wait_image_job(PROVIDER, "k")


# -- session auth and the OpenAI adapter --------------------------------------------------------


async def test_session_auth_refreshes_once_on_stale_token() -> None:
    """SessionAuth sets the header, and on a stale-token 401 forgets, re-signs and resends once."""
    issued: list[str] = []
    forgotten: list[int] = []

    async def get() -> str:
        issued.append(f"Bearer t{len(issued)}")
        return issued[-1]

    auth = SessionAuth(get, lambda: forgotten.append(1))
    with respx.mock() as router:
        route = router.get("http://p.test/x").mock(
            side_effect=[error(401, "generation_mismatch"), httpx.Response(200, json={"ok": True})]
        )
        async with httpx.AsyncClient(auth=auth) as client:
            response = await client.get("http://p.test/x")
    assert response.status_code == 200 and forgotten == [1]
    assert [c.request.headers["authorization"] for c in route.calls] == ["Bearer t0", "Bearer t1"]


async def test_session_auth_leaves_other_401s_alone() -> None:
    """A 401 with another code is returned as is, without a refresh."""
    forgotten: list[int] = []

    async def get() -> str:
        return "Bearer t"

    with respx.mock() as router:
        route = router.get("http://p.test/x").mock(return_value=error(401, "invalid_signature"))
        async with httpx.AsyncClient(auth=SessionAuth(get, lambda: forgotten.append(1))) as client:
            response = await client.get("http://p.test/x")
    assert response.status_code == 401 and route.call_count == 1 and forgotten == []


async def test_openai_client_uses_session_auth_and_keeps_the_pool_open(env: Env) -> None:
    """The OpenAI client sends our session header via the shared pool, and closing it keeps the pool."""
    pytest.importorskip("openai")
    env.api.auth.require_acknowledged = _no_op  # the fake chain has no sub-accounts
    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion()))
    client = await env.api.openai_client(PROVIDER, max_retries=0)
    assert str(client.base_url).rstrip("/") == URL + "/v1/proxy"
    out = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "Echo: hi"
    assert route.calls[0].request.headers["authorization"].startswith(AUTH)
    async with client:
        pass
    await client.close()
    assert not env.broker.http.is_closed
    copy = client.with_options(timeout=5)
    await copy.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert route.calls[1].request.headers["authorization"].startswith(AUTH)


async def test_openai_client_with_api_key(env: Env) -> None:
    """With api_key the key itself is the bearer token."""
    pytest.importorskip("openai")
    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion()))
    client = await env.api.openai_client(PROVIDER, api_key="app-sk-key", max_retries=0)
    await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert route.calls[0].request.headers["authorization"] == "Bearer app-sk-key"


async def test_openai_client_does_not_retry_billed_calls_by_default(env: Env) -> None:
    """openai_client() sets max_retries=0 (openai's default is 2) unless the caller passes one."""
    pytest.importorskip("openai")
    import openai

    route = env.router.post(CHAT_URL).mock(return_value=error(500, "internal_error"))
    client = await env.api.openai_client(PROVIDER, api_key="app-sk-key")
    assert client.max_retries == 0
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert route.call_count == 1
    chosen = await env.api.openai_client(PROVIDER, api_key="app-sk-key", max_retries=2)
    assert chosen.max_retries == 2


async def test_openai_missing_is_a_config_error(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the openai package the adapter raises ConfigError naming the extra."""
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.delitem(sys.modules, "og_inference_async.inference._openai", raising=False)
    with pytest.raises(ConfigError, match="openai"):
        await env.api.openai_client(PROVIDER, api_key="app-sk-key")


async def _no_op(provider: str) -> None:
    return None


# -- transport choice ---------------------------------------------------------------------------


async def test_default_client_uses_the_aiohttp_transport() -> None:
    """On asyncio with httpx-aiohttp installed, the owned client runs on the aiohttp transport."""
    from og_inference_async._http import make_http_client, transport_name

    client = make_http_client()
    try:
        assert transport_name(client) == "aiohttp"
    finally:
        await client.aclose()
    client = make_http_client(transport="httpx")
    try:
        assert transport_name(client) == "httpx"
    finally:
        await client.aclose()
    with pytest.raises(ConfigError):
        make_http_client(transport="carrier-pigeon")
