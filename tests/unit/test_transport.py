"""The provider transport built on fakes: auth, retries, token refresh, error mapping, bounds, headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from og_inference_async import (
    NotAcknowledgedError,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderError,
    ProviderResponseError,
    ProviderServerError,
    RequestRetryPolicy,
    TransportFailure,
)
from og_inference_async._http import _parsed, encode_query, map_transport_errors, one_off_url, send
from og_inference_async._transport import ProviderTransport

pytestmark = pytest.mark.anyio

PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
URL = "http://provider.test/v1/x"


@dataclass
class Auth:
    """Headers numbered in issue order; the providers forgotten."""

    issued: int = 0
    forgotten: list[str | None] = field(default_factory=list)

    async def get_request_headers(self, provider: str) -> dict[str, str]:
        self.issued += 1
        return {"Authorization": f"Bearer t{self.issued}"}

    def forget(self, provider: str | None = None) -> None:
        self.forgotten.append(provider)


@dataclass
class Settings:
    retry: RequestRetryPolicy = field(default_factory=RequestRetryPolicy.no_wait)


@dataclass
class World:
    answers: list[httpx.Response | Exception]
    seen: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


@dataclass
class Rig:
    world: World
    auth: Auth
    transport: ProviderTransport
    sleeps: list[float]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """A transport on a mock HTTP transport, with fake auth and recorded (zero) waits."""
    world = World([httpx.Response(200, json={})])
    auth = Auth()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with httpx.AsyncClient(transport=httpx.MockTransport(world.handle)) as client:
        yield Rig(world, auth, ProviderTransport(client, auth=auth, settings=Settings(), sleep=sleep), sleeps)


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": "x"}})


async def test_a_stale_token_is_refreshed_once_outside_the_attempt_count(rig: Rig) -> None:
    """A 401 token_expired re-signs and resends once; the request then succeeds with the new header."""
    rig.world.answers = [_error(401, "token_expired"), httpx.Response(200, json={"ok": True})]
    reply = await rig.transport.request(PROVIDER, "POST", URL, what="chat", idempotent=False, body=b"{}")
    assert reply.status == 200 and rig.auth.forgotten == [PROVIDER]
    assert [r.headers["authorization"] for r in rig.world.seen] == ["Bearer t1", "Bearer t2"]


async def test_a_second_stale_token_is_raised(rig: Rig) -> None:
    """Only one refresh: a second stale-token 401 is raised as ProviderAuthError."""
    rig.world.answers = [_error(401, "generation_mismatch")]
    with pytest.raises(ProviderAuthError):
        await rig.transport.request(PROVIDER, "GET", URL, what="read", idempotent=True)
    assert len(rig.world.seen) == 2


async def test_not_acknowledged_drops_the_cached_account(rig: Rig) -> None:
    """A 'not acknowledged' answer raises NotAcknowledgedError and forgets the provider's cached state."""
    rig.world.answers = [_error(403, "not_acknowledged")]
    with pytest.raises(NotAcknowledgedError):
        await rig.transport.request(PROVIDER, "GET", URL, what="read", idempotent=True)
    assert rig.auth.forgotten == [PROVIDER]


async def test_single_attempt_calls_are_not_retried(rig: Rig) -> None:
    """retry=False sends once even for an idempotent GET answered 503."""
    rig.world.answers = [_error(503, "service_unavailable")]
    with pytest.raises(ProviderServerError):
        await rig.transport.request(PROVIDER, "GET", URL, what="fee", idempotent=True, retry=False)
    assert len(rig.world.seen) == 1 and rig.sleeps == []


async def test_connection_failures_before_sending_are_retried_for_billed_calls(rig: Rig) -> None:
    """A refused connection (provably not sent) is retried even for a billed POST."""
    rig.world.answers = [httpx.ConnectError("refused"), httpx.Response(200, json={})]
    reply = await rig.transport.request(PROVIDER, "POST", URL, what="chat", idempotent=False, body=b"{}")
    assert reply.status == 200 and len(rig.world.seen) == 2


async def test_calls_without_auth_send_no_authorization(rig: Rig) -> None:
    """auth=False (signatures, quotes, discovery) sends no session header and issues none."""
    await rig.transport.request(None, "GET", URL, what="status API", idempotent=True, auth=False)
    assert "authorization" not in rig.world.seen[0].headers and rig.auth.issued == 0
    assert rig.world.seen[0].headers["accept-encoding"] == "identity"


async def test_body_cap_and_deadline() -> None:
    """Over max_bytes: ProviderResponseError; past the deadline: ProviderConnectionError."""
    import anyio

    async def slow(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("not reached")

    big = httpx.Response(200, content=b"x" * 100)
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: big)) as client:
        transport = ProviderTransport(client, auth=Auth(), settings=Settings())
        with pytest.raises(ProviderResponseError):
            await transport.request(
                None, "GET", URL, what="models", idempotent=True, auth=False, max_bytes=10
            )
    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        transport = ProviderTransport(client, auth=Auth(), settings=Settings())
        with pytest.raises(ProviderConnectionError, match="no answer within"):
            await transport.request(
                None, "GET", URL, what="models", idempotent=True, auth=False, deadline=0.01
            )


async def test_streams_are_retried_until_their_headers_arrive(rig: Rig) -> None:
    """A streamed request answered 429 is sent again; the stream that opens is handed over."""
    rig.world.answers = [_error(429, "rate_limited"), httpx.Response(200, content=b"data: x\n\n")]
    stream = await rig.transport.open_stream(
        PROVIDER, "POST", URL, what="chat stream", body=b"{}", content_type="application/json"
    )
    try:
        assert stream.status == 200 and await stream.read() == b"data: x\n\n"
    finally:
        await stream.aclose()
    assert len(rig.world.seen) == 2 and rig.world.seen[1].headers["accept"] == "text/event-stream"


async def test_response_headers_are_read_once_into_a_plain_dict() -> None:
    """Header names are lower-cased and repeated headers joined, as httpx's lookups would give them."""
    response = httpx.Response(200, headers=[("ZG-Res-Key", "k"), ("X-Many", "a"), ("x-many", "b")])
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: response)) as client:
        reply = await send(client, "GET", URL, headers={})
    assert type(reply.headers) is dict
    assert reply.headers["zg-res-key"] == "k" and reply.headers["x-many"] == "a, b"


@pytest.mark.parametrize(
    ("raised", "not_sent"),
    [(httpx.ConnectError("refused"), True), (httpx.ReadTimeout("slow"), False)],
)
def test_the_one_translator_tells_sent_from_not_sent(raised: Exception, not_sent: bool) -> None:
    """map_transport_errors turns httpx errors into TransportFailure, saying whether the request left."""
    with pytest.raises(TransportFailure) as info, map_transport_errors(provider=PROVIDER, what="chat"):
        raise raised
    assert info.value.not_sent is not_sent and info.value.__cause__ is raised


def test_the_translator_maps_bad_urls_and_passes_everything_else() -> None:
    """An invalid URL is a ProviderError; an error of our own passes untouched."""
    with pytest.raises(ProviderError, match="not a valid"), map_transport_errors(provider=None, what="x"):
        raise httpx.InvalidURL("nope")
    with pytest.raises(KeyError), map_transport_errors(provider=None, what="x"):
        raise KeyError("ours")


async def test_a_one_off_url_is_sent_as_written_and_not_cached(rig: Rig) -> None:
    """A per-chat URL with its query written in reaches the provider as httpx's params= would send it,
    and does not enter the URL cache (where it would evict the URLs that repeat)."""
    model = "qwen/qwen 2.5+x&y=%20"
    before = _parsed.cache_info().currsize
    url = one_off_url(URL + "/chat-1?" + encode_query({"model": model}))
    await rig.transport.request(PROVIDER, "GET", url, what="signature", idempotent=True, auth=False)
    assert _parsed.cache_info().currsize == before
    (request,) = rig.world.seen
    assert request.url == httpx.Request("GET", URL + "/chat-1", params={"model": model}).url
    assert request.url.params["model"] == model
