"""Provider failover on the devnet: a router over three chatbots of one model."""

from __future__ import annotations

from typing import Any

import pytest

from og_inference_async import AsyncBroker, RequestRetryPolicy, og

from .example_loader import load_example

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def three(proxied_provider: Any) -> tuple[list[Any], list[Any]]:
    handles, proxies = [], []
    for index in (24, 25, 26):
        handle, proxy = await proxied_provider(seed=index, account_index=index)
        handles.append(handle)
        proxies.append(proxy)
    return handles, proxies


async def _router(broker: AsyncBroker, handles: list[Any]) -> Any:
    """A router over ``handles`` on a funded broker that never resends a request itself."""
    await broker.inference.ensure_ready(
        handles[0].address, min_balance=og("3"), create_ledger=True, ledger_amount=og("20")
    )
    broker.inference.retry_policy = RequestRetryPolicy(attempts=1)
    return broker.inference.router(
        model=handles[0].model, providers=[h.address for h in handles], min_balance=og("3")
    )


async def test_router_example_answers_everything_and_bills_nothing_twice(
    devnet: Any, proxied_provider: Any
) -> None:
    """One provider killed and one answering 503 mid-run: all answered, billed == counted per provider."""
    handles, proxies = await three(proxied_provider)
    out = await load_example("router").run(devnet, handles, proxies)
    assert out["failures"] == [] and out["answered"] == out["requests"] == 40
    assert out["billed"] == out["counted"]
    assert all(h.requests_served == out["served"][h.address] for h in handles)
    assert sum(h.requests_served for h in handles) == out["requests"]
    assert out["served"][handles[2].address] > out["requests"] // 2
    assert out["circuits"][handles[0].address] == out["circuits"][handles[1].address] == "open"
    assert out["circuits"][handles[2].address] == "closed" and out["failovers"] >= 4


async def test_router_streams_fail_over_before_the_body_and_a_502_is_not_resent(
    devnet: Any, proxied_provider: Any
) -> None:
    """A stream opens on the next provider after a 503; a 502 (maybe billed) reaches the caller."""
    handles, proxies = await three(proxied_provider)
    async with AsyncBroker(devnet.accounts[17].private_key, network=devnet.network) as broker:
        broker.inference.verification = "off"
        router = await _router(broker, handles)
        proxies[0].error_statuses = (503,)
        proxies[0].error_rate = 1.0
        proxies[1].error_statuses = (503,)
        proxies[1].error_rate = 1.0
        async with router.chat_stream([{"role": "user", "content": "stream me"}]) as stream:
            text = "".join([chunk.content async for chunk in stream])
        assert stream.provider == handles[2].address and text.startswith("Echo: stream me")
        assert stream.result is not None and stream.result.provider == handles[2].address
        proxies[2].error_statuses = (502,)
        proxies[2].error_rate = 1.0
        before = [p.requests_seen for p in proxies]
        with pytest.raises(Exception) as info:
            await router.chat([{"role": "user", "content": "maybe billed"}])
        assert getattr(info.value, "status_code", None) == 502
        seen = [p.requests_seen - b for p, b in zip(proxies, before, strict=True)]
        assert seen[2] == 1 and sum(seen) == 1 + seen[0] + seen[1]
        assert sum(h.requests_served for h in handles) == 1


async def test_router_openai_client_fails_over_a_503_and_names_the_provider(
    devnet: Any, proxied_provider: Any
) -> None:
    """The official openai client through the router: a 503 goes to the next provider, a 502 does not."""
    import openai

    from og_inference_async.inference.router import PROVIDER_HEADER

    handles, proxies = await three(proxied_provider)
    async with AsyncBroker(devnet.accounts[21].private_key, network=devnet.network) as broker:
        router = await _router(broker, handles)
        client = router.openai_client()
        messages: Any = [{"role": "user", "content": "hello router"}]
        answer = await client.chat.completions.create(model=handles[0].model, messages=messages)
        assert answer.choices[0].message.content.startswith("Echo: hello router")
        for proxy in proxies[:2]:
            proxy.error_statuses = (503,)
            proxy.error_rate = 1.0
        served = [h.requests_served for h in handles]
        for _ in range(3):
            raw = await client.chat.completions.with_raw_response.create(
                model=handles[0].model, messages=messages
            )
            assert raw.headers[PROVIDER_HEADER] == handles[2].address
            assert raw.parse().choices[0].message.content.startswith("Echo: hello router")
        stream = await client.chat.completions.create(model=handles[0].model, messages=messages, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        assert text.startswith("Echo: hello router")
        assert [h.requests_served - s for h, s in zip(handles, served, strict=True)] == [0, 0, 4]
        proxies[2].error_statuses = (502,)
        proxies[2].error_rate = 1.0
        before = [p.requests_seen for p in proxies]
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(model=handles[0].model, messages=messages)
        assert info.value.status_code == 502  # maybe billed: never re-sent to another provider
        assert [p.requests_seen - b for p, b in zip(proxies, before, strict=True)][2] == 1
        await client.close()
