"""openai-style call options: timeout, max_retries, extra_headers/query/body, allow-lists, with_options."""

from __future__ import annotations

import inspect
import json
from typing import Any

import httpx
import pytest

from og_inference_async import AsyncBroker, ConfigError, ProviderRateLimitError, RequestRetryPolicy
from og_inference_async._options import BODY_PARAMS, CallOptions, split_params

from . import test_requests
from .test_requests import CHAT_URL, KEY, PROVIDER, URL, Env, completion, make_service, sse

pytestmark = pytest.mark.anyio

env = test_requests.env  # the fixture: provider requests on fakes and respx

HI = [{"role": "user", "content": "hi"}]


def sent_body(route: Any, index: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


async def test_call_options_never_reach_the_body(env: Env) -> None:
    """timeout, max_retries and extra_headers configure the call; the body holds only OpenAI fields."""
    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion()))
    await env.api.chat(PROVIDER, HI, timeout=5, max_retries=1, extra_headers={"X-Trace": "t1"}, temperature=0)
    assert sent_body(route) == {"model": "m", "messages": HI, "temperature": 0}
    request = route.calls[0].request
    assert request.headers["x-trace"] == "t1"
    assert request.extensions["timeout"] == {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}


async def test_extra_query_and_extra_body(env: Env) -> None:
    """extra_query goes to the URL, extra_body into the JSON body (over the named parameters)."""
    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion()))
    await env.api.chat(
        PROVIDER, HI, max_tokens=3, extra_query={"api-version": "1"}, extra_body={"top_k": 4, "max_tokens": 9}
    )
    request = route.calls[0].request
    assert request.url.params["api-version"] == "1"
    assert sent_body(route) == {"model": "m", "messages": HI, "max_tokens": 9, "top_k": 4}


async def test_unknown_keyword_is_refused_before_sending(env: Env) -> None:
    """A name outside the chat allow-list raises ConfigError naming extra_body; nothing is sent."""
    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion()))
    with pytest.raises(ConfigError, match="extra_body") as info:
        await env.api.chat(PROVIDER, HI, top_k=4)
    assert "extra_body={'top_k'" in str(info.value)
    assert not route.called


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": -1},
        {"max_retries": -1},
        {"max_retries": True},
        {"extra_headers": {"X": 1}},
        {"extra_headers": {"Authorization": "Bearer x"}},
        {"extra_query": ["a"]},
        {"extra_body": {"": 1}},
    ],
)
async def test_bad_option_values_are_config_errors(env: Env, options: dict[str, Any]) -> None:
    """Bad option values raise ConfigError before anything is sent."""
    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion()))
    with pytest.raises(ConfigError):
        await env.api.chat(PROVIDER, HI, **options)
    assert not route.called


async def test_max_retries_overrides_the_policy(env: Env) -> None:
    """max_retries=0 makes one attempt; max_retries=4 five, whatever the broker's policy says."""
    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(429, json={"error": "slow down"}))
    with pytest.raises(ProviderRateLimitError):
        await env.api.chat(PROVIDER, HI, max_retries=0)
    assert route.call_count == 1
    with pytest.raises(ProviderRateLimitError):
        await env.api.chat(PROVIDER, HI, max_retries=4)
    assert route.call_count == 1 + 5


async def test_with_options_view(env: Env) -> None:
    """with_options returns a view whose defaults apply, the call's own options winning key by key."""
    route = env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion()))
    view = env.api.with_options(extra_headers={"X-A": "1", "X-B": "1"}, max_retries=0, extra_body={"k": 1})
    again = view.with_options(timeout=7)
    await again.chat(PROVIDER, HI, extra_headers={"X-B": "2"})
    request = route.calls[0].request
    assert (request.headers["x-a"], request.headers["x-b"]) == ("1", "2")
    assert request.extensions["timeout"]["read"] == 7.0
    assert sent_body(route) == {"model": "m", "messages": HI, "k": 1}
    await env.api.chat(PROVIDER, HI)  # the original namespace is unchanged
    assert "x-a" not in route.calls[1].request.headers
    assert env.api.local_fees(PROVIDER) == again.local_fees(PROVIDER)


async def test_with_options_applies_to_streams(env: Env) -> None:
    """chat_stream takes the options too: headers sent, options out of the body."""
    route = env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"".join(sse())
        )
    )
    async with env.api.with_options(extra_headers={"X-S": "s"}).chat_stream(
        PROVIDER, HI, timeout=3
    ) as stream:
        async for _ in stream:
            pass
    request = route.calls[0].request
    assert request.headers["x-s"] == "s" and request.extensions["timeout"]["read"] == 3.0
    assert set(sent_body(route)) == {"model", "messages", "stream", "stream_options"}


async def test_call_options_pass_through_the_router(env: Env) -> None:
    """A router's chat and chat_stream take the call options, with a budget, and keep them out of the body."""
    route = env.router.post(CHAT_URL).mock(
        side_effect=[
            httpx.Response(200, json=completion()),
            httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(sse())),
        ]
    )
    router = env.api.router(model="m", providers=[PROVIDER], prepare=False)
    budget = env.services.chat._core.budgets.budget(10**18)  # a budget of these services' book
    async with budget:
        await router.chat(HI, max_tokens=3, extra_headers={"X-R": "1"}, timeout=4, extra_body={"top_k": 2})
        async with router.chat_stream(HI, extra_headers={"X-R": "2"}, timeout=3) as stream:
            async for _ in stream:
                pass
    assert budget.requests == 2 and budget.spent > 0 and budget.reserved == 0
    first, second = (call.request for call in route.calls)
    assert first.headers["x-r"] == "1" and first.extensions["timeout"]["read"] == 4.0
    assert json.loads(first.content) == {"model": "m", "messages": HI, "max_tokens": 3, "top_k": 2}
    assert second.headers["x-r"] == "2" and second.extensions["timeout"]["read"] == 3.0
    assert "timeout" not in json.loads(second.content) and "extra_headers" not in json.loads(second.content)


async def test_image_and_audio_allow_lists(env: Env) -> None:
    """Images take quality/style; audio takes prompt; extra_body adds form fields; unknown names fail."""
    env.use(make_service(service_type="text-to-image", input_price=1, output_price=0))
    route = env.router.post(URL + "/v1/proxy/images/generations").mock(
        return_value=httpx.Response(200, json={"data": [{"b64_json": "aGk="}]})
    )
    await env.api.generate_image(PROVIDER, "cat", quality="hd", extra_headers={"X-I": "i"})
    assert sent_body(route) == {"model": "m", "prompt": "cat", "n": 1, "quality": "hd"}
    assert route.calls[0].request.headers["x-i"] == "i"
    with pytest.raises(ConfigError, match="extra_body"):
        await env.api.generate_image(PROVIDER, "cat", temperature=1)
    env.use(make_service(service_type="speech-to-text", input_price=1, output_price=0))
    audio = env.router.post(URL + "/v1/proxy/audio/transcriptions").mock(
        return_value=httpx.Response(200, json={"text": "ok"})
    )
    await env.api.transcribe(PROVIDER, b"RIFF", "a.wav", prompt="names", extra_body={"vad": "on"}, timeout=9)
    form = audio.calls[0].request.content
    assert b'name="prompt"' in form and b'name="vad"' in form and b"timeout" not in form
    with pytest.raises(ConfigError, match="extra_body"):
        await env.api.transcribe(PROVIDER, b"RIFF", "a.wav", max_tokens=3)


def test_sdk_arguments_are_named_parameters() -> None:
    """budget= and auto_fund= are named arguments of every billed request method, never body parameters."""
    from og_inference_async.inference.audio import AudioRequests
    from og_inference_async.inference.images import ImageRequests
    from og_inference_async.inference.requests import ChatRequests

    for method in (
        ChatRequests.chat,
        ChatRequests.chat_stream,
        ImageRequests.generate_image,
        ImageRequests.edit_image,
        ImageRequests.generate_image_async,
        AudioRequests.transcribe,
    ):
        assert {"budget", "auto_fund"} <= inspect.signature(method).parameters.keys(), method
    for allowed in BODY_PARAMS.values():
        assert not allowed & {"budget", "auto_fund"}
    with pytest.raises(ConfigError, match="extra_body"):  # one that leaked into **params is refused
        split_params({"budget": 10, "seed": 1}, "chat")


def test_call_options_merge_and_retry() -> None:
    """Mappings merge key by key, scalars are replaced; max_retries sets attempts."""
    base = CallOptions.of({"timeout": 1, "extra_query": {"a": "1"}})
    merged = base.merged(CallOptions.of({"max_retries": 2, "extra_query": {"b": "2"}}))
    assert merged.as_kwargs() == {"timeout": 1, "max_retries": 2, "extra_query": {"a": "1", "b": "2"}}
    assert merged.retry(RequestRetryPolicy()).attempts == 3
    assert base.retry(RequestRetryPolicy(attempts=5)).attempts == 5


def test_broker_takes_the_request_retry_policy() -> None:
    """AsyncBroker(request_retry=) is broker.inference.retry_policy; a wrong type is a ConfigError."""
    policy = RequestRetryPolicy(attempts=7)
    broker = AsyncBroker(KEY, network="hardhat", request_retry=policy)
    assert broker.inference.retry_policy is policy
    with pytest.raises(ConfigError):
        AsyncBroker(KEY, network="hardhat", request_retry=3)  # type: ignore[arg-type]
