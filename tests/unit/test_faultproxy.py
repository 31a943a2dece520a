"""The fault proxies against a fake upstream: every knob does what it says, counters count right."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from aiohttp import web
from eth_utils import keccak

from og_inference_async import ConfigError
from og_inference_devnet.faultproxy import (
    HttpFaultProxy,
    RpcFaultProxy,
    start_http_fault_proxy,
    start_rpc_fault_proxy,
)

pytestmark = pytest.mark.anyio

RAW_TX = "0x02f86b827a6980843b9aca00847735940082520894" + "11" * 20 + "880de0b6b3a764000080c0"
SSE_EVENTS = [b'data: {"n": %d}\n\n' % i for i in range(5)] + [b"data: [DONE]\n\n"]
BIG = bytes(range(256)) * 4  # 1024 bytes, sent with a Content-Length


@dataclass
class Upstream:
    """A fake JSON-RPC node and HTTP service on 127.0.0.1 that records what reached it."""

    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    seen: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    finished: int = 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        self.bodies.append(body)
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        self.seen.set()
        if request.path == "/":
            return await self.rpc(request, body)
        if request.path == "/sse":
            return await self.sse(request)
        if request.path == "/big":
            self.finished += 1
            return web.Response(body=BIG, content_type="application/octet-stream")
        self.finished += 1
        answer = {
            "method": request.method,
            "path_qs": request.path_qs,
            "sha256": hashlib.sha256(body).hexdigest(),
            "content_type": request.headers.get("Content-Type"),
            "x_test": request.headers.getall("X-Test", []),
        }
        return web.json_response(answer, headers={"X-Upstream": "yes", "ZG-Res-Key": "abc"})

    async def rpc(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        payload = json.loads(body)
        if isinstance(payload, dict) and payload.get("method") == "eth_getLogs":
            return await self.pieces(request, payload)
        if isinstance(payload, dict) and payload.get("method") == "hang":
            with anyio.fail_after(10):
                await self.go.wait()

        def one(call: dict[str, Any]) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": call.get("id"), "result": call.get("method")}

        self.finished += 1
        return web.json_response([one(c) for c in payload] if isinstance(payload, list) else one(payload))

    async def pieces(self, request: web.BaseRequest, payload: dict[str, Any]) -> web.StreamResponse:
        """A large answer written in several pieces (chunked), as a node streams a big result."""
        data = json.dumps({"jsonrpc": "2.0", "id": payload["id"], "result": ["0x" + "ab" * 64] * 2000})
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        raw = data.encode()
        for start in range(0, len(raw), 50_000):
            await response.write(raw[start : start + 50_000])
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    async def sse(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(SSE_EVENTS[0])
        with anyio.fail_after(10):
            await self.go.wait()  # the test says when the rest may come
        for event in SSE_EVENTS[1:]:
            await response.write(event)
        await response.write_eof()
        self.finished += 1
        return response


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """A running fake upstream."""
    fake = Upstream()
    runner = web.ServerRunner(web.Server(fake.handle, access_log=None), shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield fake
    finally:
        fake.go.set()
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A plain httpx client (no environment proxies)."""
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0)) as http:
        yield http


def call(method: str, id_: int = 1, params: list[Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or []}


async def wait_until(predicate: Any) -> None:
    """Wait (bounded) for a condition the proxy reaches asynchronously."""
    with anyio.fail_after(5):
        while not predicate():  # noqa: ASYNC110 - the proxy exposes counters, not events
            await anyio.sleep(0.005)


# -- JSON-RPC --------------------------------------------------------------------------------------


async def test_rpc_forwards_single_and_batch(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """With faults off, single and batch requests reach the node and come back unchanged, counted."""
    async with start_rpc_fault_proxy(upstream.url) as rpc:
        one = await client.post(rpc.url, json=call("eth_chainId", 7))
        assert one.status_code == 200 and one.json() == {"jsonrpc": "2.0", "id": 7, "result": "eth_chainId"}
        batch = await client.post(rpc.url, json=[call("eth_blockNumber", 1), call("eth_call", 2)])
        assert [r["result"] for r in batch.json()] == ["eth_blockNumber", "eth_call"]
        assert rpc.requests_seen == 2 and rpc.forwarded == 2 and not rpc.faults
        assert rpc.calls == {"eth_chainId": 1, "eth_blockNumber": 1, "eth_call": 1}
        assert len(upstream.bodies) == 2


async def test_rpc_bounds(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """A big answer in pieces comes back whole; a body over max_body is 413; a stuck node is a 502."""
    async with start_rpc_fault_proxy(upstream.url, upstream_timeout=0.3) as rpc:
        logs = await client.post(rpc.url, json=call("eth_getLogs", 4))
        assert logs.status_code == 200 and len(logs.json()["result"]) == 2000
        with anyio.fail_after(5):
            assert (await client.post(rpc.url, json=call("hang"))).status_code == 502
        rpc.max_body = 10
        assert (await client.post(rpc.url, json=call("eth_chainId"))).status_code == 413
        assert rpc.upstream_errors == 1 and rpc.forwarded == 2
        with pytest.raises(ConfigError, match="upstream_timeout"):
            rpc.upstream_timeout = 0


async def test_rpc_error_is_5xx_without_forwarding(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """error_rate=1 answers a non-JSON-RPC 5xx and the node never sees the request."""
    async with start_rpc_fault_proxy(upstream.url, error_rate=1.0) as rpc:
        statuses = set()
        for _ in range(6):
            reply = await client.post(rpc.url, json=call("eth_call"))
            statuses.add(reply.status_code)
            assert reply.headers["content-type"].startswith("text/html")
        assert statuses <= {500, 502, 503}
        rpc.error_statuses = (503,)
        assert (await client.post(rpc.url, json=call("eth_call"))).status_code == 503
        assert upstream.bodies == [] and rpc.forwarded == 0
        assert rpc.faults == {"error": 7} and rpc.faults_by_target == {("error", "eth_call"): 7}


async def test_rpc_rate_limits(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """429 with and without Retry-After, and the JSON-RPC -32005 error (HTTP 200) for single and batch."""
    async with start_rpc_fault_proxy(upstream.url, rate_limit_rate=1.0, retry_after=3) as rpc:
        limited = await client.post(rpc.url, json=call("eth_call"))
        assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
        rpc.retry_after_fraction = 0.0
        bare = await client.post(rpc.url, json=call("eth_call"))
        assert bare.status_code == 429 and "retry-after" not in bare.headers
        rpc.json_rate_limit_fraction = 1.0
        single = await client.post(rpc.url, json=call("eth_call", 9))
        assert single.status_code == 200
        assert single.json() == {
            "jsonrpc": "2.0",
            "id": 9,
            "error": {"code": -32005, "message": "rate limit exceeded"},
        }
        batch = await client.post(rpc.url, json=[call("eth_call", 1), call("eth_getBalance", 2)])
        assert [(r["id"], r["error"]["code"]) for r in batch.json()] == [(1, -32005), (2, -32005)]
        assert upstream.bodies == [] and rpc.faults["rate_limit"] == 4


async def test_rpc_reset_closes_without_answer(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """reset_rate=1 drops the connection with no response; nothing is forwarded."""
    async with start_rpc_fault_proxy(upstream.url, reset_rate=1.0) as rpc:
        with pytest.raises(httpx.TransportError):
            await client.post(rpc.url, json=call("eth_call"))
        assert upstream.bodies == [] and rpc.faults == {"reset": 1}


async def test_rpc_slow_forwarded_and_not(upstream: Upstream) -> None:
    """A slow answer outlasts the client's timeout; it reached the node only with slow_forward."""
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(0.3)) as impatient:
        async with start_rpc_fault_proxy(upstream.url, slow_rate=1.0, slow_seconds=30.0) as rpc:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post(rpc.url, json=call("eth_sendRawTransaction", 1, [RAW_TX]))
            with anyio.fail_after(5):
                await upstream.seen.wait()
            rpc.slow_forward = False
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post(rpc.url, json=call("eth_call"))
            assert len(upstream.bodies) == 1 and rpc.faults == {"slow": 2}
        # closing the proxy ended the held requests at once (no 30 s wait)


async def test_rpc_forward_then_drop_logs_the_tx_hash(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """A dropped eth_sendRawTransaction reached the node, the client got a 5xx or reset, the hash is kept."""
    async with start_rpc_fault_proxy(
        upstream.url, forward_then_drop_rate=1.0, methods={"eth_sendRawTransaction"}
    ) as rpc:
        assert (await client.post(rpc.url, json=call("eth_chainId"))).status_code == 200
        dropped = await client.post(rpc.url, json=call("eth_sendRawTransaction", 2, [RAW_TX]))
        assert dropped.status_code in (500, 502, 504)
        rpc.drop_mode = "reset"
        with pytest.raises(httpx.TransportError):
            await client.post(rpc.url, json=call("eth_sendRawTransaction", 3, [RAW_TX]))
        expected = "0x" + keccak(bytes.fromhex(RAW_TX[2:])).hex()
        assert rpc.dropped_tx_hashes == [expected, expected]
        assert [json.loads(b)["method"] for b in upstream.bodies] == ["eth_chainId"] + [
            "eth_sendRawTransaction"
        ] * 2
        assert rpc.faults == {"forward_then_drop": 2}
        assert rpc.faults_by_target == {("forward_then_drop", "eth_sendRawTransaction"): 2}


async def test_rpc_method_filters(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """skip_methods spares its methods (also in a batch made only of them); a mixed batch is eligible."""
    async with start_rpc_fault_proxy(upstream.url, error_rate=1.0, skip_methods={"eth_chainId"}) as rpc:
        assert (await client.post(rpc.url, json=call("eth_chainId"))).status_code == 200
        assert (await client.post(rpc.url, json=[call("eth_chainId", 1)])).status_code == 200
        assert (await client.post(rpc.url, json=call("eth_call"))).status_code >= 500
        mixed = await client.post(rpc.url, json=[call("eth_chainId", 1), call("eth_call", 2)])
        assert mixed.status_code >= 500
        assert rpc.faults == {"error": 2}
        assert rpc.faults_by_target[("error", "eth_chainId")] == 1  # the mixed batch


async def test_rpc_pause_holds_until_resume(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """pause() holds every request before forwarding; resume() releases it; pause_timeout bounds the hold."""
    async with start_rpc_fault_proxy(upstream.url) as rpc:
        rpc.pause()
        assert rpc.is_paused
        replies: list[httpx.Response] = []

        async def send() -> None:
            replies.append(await client.post(rpc.url, json=call("eth_chainId")))

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            await wait_until(lambda: rpc.faults["pause"] == 1)
            assert upstream.bodies == [] and replies == []
            rpc.resume()
        assert replies[0].status_code == 200 and len(upstream.bodies) == 1
        rpc.pause_timeout = 0.05
        rpc.pause()
        with anyio.fail_after(5):
            assert (await client.post(rpc.url, json=call("eth_chainId"))).status_code == 200
        assert rpc.faults["pause"] == 2


async def test_rpc_knobs_are_checked(upstream: Upstream) -> None:
    """Bad knob values, unknown knobs and non-local upstreams raise ConfigError; nothing listens."""
    with pytest.raises(ConfigError, match="error_rate"):
        async with start_rpc_fault_proxy(upstream.url, error_rate=1.5):
            pass
    with pytest.raises(ConfigError, match="unknown"):
        async with start_rpc_fault_proxy(upstream.url, eror_rate=0.5):
            pass
    with pytest.raises(ConfigError, match="127.0.0.1"):
        async with start_rpc_fault_proxy("http://example.com:8545"):
            pass
    async with start_rpc_fault_proxy(upstream.url.replace("127.0.0.1", "localhost")) as rpc:
        assert rpc.upstream == upstream.url
        for name, value in [
            ("slow_rate", -0.1),
            ("slow_seconds", float("inf")),
            ("drop_mode", "explode"),
            ("error_statuses", (404,)),
            ("methods", "eth_call"),
            ("retry_after", 1.5),
        ]:
            with pytest.raises(ConfigError, match=name):
                setattr(rpc, name, value)
        assert rpc.slow_rate == 0.0 and rpc.drop_mode == "error"


async def test_rpc_seeded_draws_repeat(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """Two proxies with the same seed inject the same faults in the same order; reseed restarts it."""

    async def run(rpc: RpcFaultProxy) -> list[int]:
        return [(await client.post(rpc.url, json=call("eth_call"))).status_code for _ in range(20)]

    async with start_rpc_fault_proxy(upstream.url, seed=42, error_rate=0.5) as a:
        first = await run(a)
        a.reseed(42)
        assert await run(a) == first
    async with start_rpc_fault_proxy(upstream.url, seed=42, error_rate=0.5) as b:
        assert await run(b) == first
    assert 200 in first and any(s >= 500 for s in first)


async def test_rpc_knobs_set_from_another_thread(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """Knobs and pause/resume may be changed from a worker thread."""
    async with start_rpc_fault_proxy(upstream.url) as rpc:
        await anyio.to_thread.run_sync(setattr, rpc, "error_rate", 1.0)
        assert (await client.post(rpc.url, json=call("eth_call"))).status_code >= 500
        rpc.reset_faults()
        await anyio.to_thread.run_sync(rpc.pause)
        await wait_until(lambda: rpc._gate is not None and not rpc._gate.is_set())
        await anyio.to_thread.run_sync(rpc.resume)
        await wait_until(lambda: rpc._gate is not None and rpc._gate.is_set())
        assert (await client.post(rpc.url, json=call("eth_call"))).status_code == 200
        rpc.reset_counters()
        assert rpc.requests_seen == 0 and not rpc.faults and not rpc.calls


# -- HTTP ------------------------------------------------------------------------------------------


async def test_http_passes_requests_through(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """Method, path, query, headers (repeated ones too) and multipart bytes reach the upstream unchanged."""
    async with start_http_fault_proxy(upstream.url) as proxy:
        files = {"file": ("a.bin", bytes(range(256)) * 50, "application/octet-stream")}
        reply = await client.post(
            proxy.url + "/v1/proxy/audio?x=1",
            files=files,
            data={"model": "m"},
            headers=[("X-Test", "a"), ("X-Test", "b")],
        )
        assert reply.status_code == 200
        assert reply.headers["x-upstream"] == "yes" and reply.headers["zg-res-key"] == "abc"
        got = reply.json()
        sent = upstream.bodies[0]
        assert got["path_qs"] == "/v1/proxy/audio?x=1" and got["x_test"] == ["a", "b"]
        assert got["sha256"] == hashlib.sha256(sent).hexdigest() and len(sent) > 12800
        assert got["content_type"].startswith("multipart/form-data; boundary=")
        assert (await client.get(proxy.url + "/v1/models")).json()["method"] == "GET"
        big = await client.get(proxy.url + "/big")
        assert big.content == BIG and big.headers["content-length"] == str(len(BIG))
        assert proxy.paths_seen == {"/v1/proxy/audio": 1, "/v1/models": 1, "/big": 1}
        assert proxy.forwarded == 3 and not proxy.faults


async def test_http_streams_sse_without_buffering(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """The first SSE event arrives through the proxy while the upstream still holds back the rest."""
    async with start_http_fault_proxy(upstream.url) as proxy:
        with anyio.fail_after(10):
            async with client.stream("GET", proxy.url + "/sse") as reply:
                received = b""
                chunks = reply.aiter_raw()
                while SSE_EVENTS[0] not in received:
                    received += await chunks.__anext__()
                assert upstream.finished == 0  # the upstream has not sent the rest yet
                upstream.go.set()
                async for chunk in chunks:
                    received += chunk
        assert received == b"".join(SSE_EVENTS)


async def test_http_faults_before_forwarding(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """5xx, 429 (+Retry-After) and reset answer without reaching the upstream."""
    async with start_http_fault_proxy(upstream.url, error_rate=1.0, error_statuses=[502]) as proxy:
        assert (await client.post(proxy.url + "/v1/proxy/chat", content=b"{}")).status_code == 502
        proxy.error_rate = 0.0
        proxy.rate_limit_rate = 1.0
        proxy.retry_after = 2
        limited = await client.post(proxy.url + "/v1/proxy/chat", content=b"{}")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert limited.json()["error"]["code"] == "rate_limited"
        proxy.rate_limit_rate = 0.0
        proxy.reset_rate = 1.0
        with pytest.raises(httpx.TransportError):
            await client.post(proxy.url + "/v1/proxy/chat", content=b"{}")
        assert upstream.bodies == []
        assert proxy.faults == {"error": 1, "rate_limit": 1, "reset": 1}
        assert proxy.faults_by_target[("reset", "/v1/proxy/chat")] == 1


async def test_http_forward_then_drop(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """The upstream serves the whole answer (a stream included); the client gets a 5xx, then a reset."""
    upstream.go.set()
    async with start_http_fault_proxy(upstream.url, forward_then_drop_rate=1.0) as proxy:
        assert (await client.post(proxy.url + "/v1/proxy/chat", content=b"{}")).status_code >= 500
        proxy.drop_mode = "reset"
        with pytest.raises(httpx.TransportError):
            await client.get(proxy.url + "/sse")
        assert upstream.finished == 2 and proxy.faults == {"forward_then_drop": 2}


async def test_http_cut_body(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """A cut response relays at most cut_after_bytes, never the whole body, then breaks (sized and SSE)."""
    upstream.go.set()
    async with start_http_fault_proxy(upstream.url, cut_rate=1.0, cut_after_bytes=100) as proxy:
        for path, full in (("/big", BIG), ("/sse", b"".join(SSE_EVENTS))):
            received = b""
            with pytest.raises(httpx.TransportError):
                async with client.stream("GET", proxy.url + path) as reply:
                    assert reply.status_code == 200
                    async for chunk in reply.aiter_raw():
                        received += chunk
            assert len(received) <= 100 and full.startswith(received)
        proxy.cut_after_bytes = 10_000  # longer than the body: all but the end is relayed
        with pytest.raises(httpx.TransportError):
            await client.get(proxy.url + "/big")
        assert proxy.faults == {"cut": 3}


async def test_http_slow_headers_and_path_filter(upstream: Upstream) -> None:
    """Slow headers outlast the client timeout but reach the upstream; paths outside the filter are spared."""
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(0.3)) as impatient:
        async with start_http_fault_proxy(
            upstream.url, slow_rate=1.0, slow_seconds=30.0, paths={"/v1/proxy"}, skip_paths={"/v1/proxy/sig"}
        ) as proxy:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post(proxy.url + "/v1/proxy/chat", content=b"{}")
            with anyio.fail_after(5):
                await upstream.seen.wait()
            assert (await impatient.get(proxy.url + "/v1/quote")).status_code == 200
            assert (await impatient.get(proxy.url + "/v1/proxy/signature/x")).status_code == 200
            assert proxy.faults == {"slow": 1}


async def test_http_upstream_set_later(upstream: Upstream, client: httpx.AsyncClient) -> None:
    """Without an upstream requests get 502; setting one makes them flow; chunk_delay keeps bodies whole."""
    async with start_http_fault_proxy(None, chunk_delay=0.001, chunk_bytes=100) as proxy:
        assert isinstance(proxy, HttpFaultProxy)
        assert (await client.get(proxy.url + "/big")).status_code == 502
        proxy.upstream = upstream.url
        assert (await client.get(proxy.url + "/big")).content == BIG
        assert proxy.upstream_errors == 1 and proxy.forwarded == 1
    assert "closed" in repr(proxy)
