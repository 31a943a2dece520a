"""Several RPC endpoints: health scoring and cooldowns (fake clock), read failover, sends that are
never failed over, the sender's pin and its lookup-first rule, and the broker's ``rpc_urls``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pydantic
import pytest
from eth_account import Account

from og_inference_async import (
    AsyncBroker,
    ConfigError,
    NetworkMismatchError,
    RpcEndpointHealth,
    RPCError,
    TxPolicy,
)
from og_inference_async._chain import RpcClient, TxSender
from og_inference_async._chain._fallback import EndpointHealth, FallbackProvider, HealthTuning, display_url
from og_inference_async._chain._nonce import NonceAllocator
from og_inference_async._chain._outcomes import AMBIGUOUS, KNOWN, NONCE_USED
from og_inference_async._config import RetryPolicy
from og_inference_async._exceptions import TransportFailure

pytestmark = pytest.mark.anyio

KEY = "0x" + "11" * 32
TO = "0x" + "22" * 20
TUNING = HealthTuning(base_cooldown=1.0, rate_limit_cooldown=2.0, max_cooldown=30.0, penalty_half_life=10.0)


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rpc_error(message: str = "boom", **kwargs: Any) -> RPCError:
    return RPCError(message, retryable=True, **kwargs)


# -- health scoring (no I/O) ----------------------------------------------------------------------------


def test_the_first_url_is_primary_while_all_are_equally_healthy() -> None:
    """Equal scores rank in URL order; a slightly slower answer does not reorder them."""
    health = EndpointHealth(["http://a", "http://b", "http://c"], tuning=TUNING, clock=Clock())
    health.succeeded(0, 0.003)
    health.succeeded(1, 0.001)
    assert health.ranked() == [0, 1, 2]
    assert health.best() == 0


def test_a_failure_cools_down_with_doubling_backoff_and_a_success_ends_it() -> None:
    """Consecutive transient failures cool down 1, 2, 4 s; a good answer makes the endpoint usable."""
    clock = Clock()
    health = EndpointHealth(["http://a", "http://b"], tuning=TUNING, clock=clock)
    assert [health.failed(0, _rpc_error()) for _ in range(3)] == [1.0, 2.0, 4.0]
    assert health.ranked() == [1]
    assert not health.is_usable(0)
    clock.now += 4.0
    assert health.is_usable(0)
    health.succeeded(0, 0.01)
    view = health.snapshot()[0]
    assert (view.consecutive_failures, view.failures, view.cooling_down) == (0, 3, False)


def test_a_rate_limit_cools_down_longer_and_honours_retry_after_capped() -> None:
    """A rate limit rests the endpoint at least ``rate_limit_cooldown``, or its Retry-After up to the cap."""
    health = EndpointHealth(["http://a", "http://b"], tuning=TUNING, clock=Clock())
    assert health.failed(0, _rpc_error(code=429), rate_limited=True) == 2.0
    assert health.failed(1, _rpc_error(code=429, retry_after=12.0), rate_limited=True) == 12.0
    assert health.failed(1, _rpc_error(code=429, retry_after=999.0), rate_limited=True) == 30.0
    assert [h.rate_limited for h in health.snapshot()] == [1, 2]


def test_when_all_cool_down_the_one_ending_first_is_probed() -> None:
    """With every endpoint resting, the ranking offers the one whose cooldown ends first."""
    health = EndpointHealth(["http://a", "http://b", "http://c"], tuning=TUNING, clock=Clock())
    health.failed(0, _rpc_error(), rate_limited=True)  # 2 s
    health.failed(1, _rpc_error())  # 1 s
    health.failed(2, _rpc_error())
    health.failed(2, _rpc_error())  # 2 s
    assert health.ranked() == [1]
    assert health.best(exclude=1) in (0, 2)


def test_a_recovered_endpoint_ranks_again_once_its_penalty_fades() -> None:
    """After its cooldown a failed endpoint ranks behind healthy ones, and first again later."""
    clock = Clock()
    health = EndpointHealth(["http://a", "http://b"], tuning=TUNING, clock=clock)
    health.failed(0, _rpc_error())
    clock.now += 1.0
    assert health.ranked() == [1, 0]
    clock.now += 60.0  # six half-lives
    assert health.ranked() == [0, 1]


def test_the_public_view_is_frozen_and_hides_secrets_in_urls() -> None:
    """``RpcEndpointHealth`` is immutable; API keys in paths, queries and user info are redacted."""
    health = EndpointHealth(
        ["https://user:pw@rpc.example/v2/abcdefghijklmnopqrstuvwxyz123456?key=secret"], clock=Clock()
    )
    view = health.snapshot()[0]
    assert isinstance(view, RpcEndpointHealth)
    assert view.url == "https://rpc.example/v2/[redacted]?[redacted]"
    with pytest.raises(pydantic.ValidationError):
        view.score = 0.0  # type: ignore[misc]
    assert display_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"


# -- the provider over fake endpoints -------------------------------------------------------------------


@dataclass
class Reply:
    """A raw HTTP answer, as the broker's poster returns it."""

    status: int
    raw: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Node:
    """One fake endpoint: ``mode`` is ``ok``, ``dead`` (nothing listens), ``429``, ``json429`` or ``502``."""

    name: str
    mode: str = "ok"
    results: dict[str, Any] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    async def __call__(self, body: bytes, timeout: float) -> Reply:
        request = json.loads(body)
        calls = request if isinstance(request, list) else [request]
        self.seen.extend(c["method"] for c in calls)
        if self.mode == "dead":
            raise TransportFailure("connection refused", provider=None, not_sent=True)
        if self.mode in ("429", "502"):
            return Reply(int(self.mode), b"go away", {"retry-after": "5"} if self.mode == "429" else {})
        answers = [self._answer(c) for c in calls]
        return Reply(200, json.dumps(answers if isinstance(request, list) else answers[0]).encode())

    def _answer(self, call: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "json429":
            return {"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32005, "message": "rate limit"}}
        result = self.results.get(call["method"], self.name)
        if isinstance(result, dict) and "__error__" in result:
            return {"jsonrpc": "2.0", "id": call["id"], "error": result["__error__"]}
        return {"jsonrpc": "2.0", "id": call["id"], "result": result}


def _client(*nodes: Node, retry: RetryPolicy | None = None) -> RpcClient:
    return RpcClient.on_endpoints(
        [(f"http://{n.name}.test", n) for n in nodes], retry=retry or RetryPolicy.no_wait(), tuning=TUNING
    )


def _health(rpc: RpcClient) -> list[RpcEndpointHealth]:
    assert rpc.endpoints is not None
    return rpc.endpoints.health.snapshot()


@pytest.mark.parametrize("mode", ["dead", "429", "json429", "502"])
async def test_a_read_fails_over_within_one_attempt(mode: str) -> None:
    """A dead, rate-limiting or failing primary: the read is answered by the next endpoint at once."""
    a, b = Node("a", mode), Node("b")
    rpc = _client(a, b)
    assert await rpc.request("eth_blockNumber") == "b"
    assert rpc.request_count == 1  # one attempt of the retry policy
    health = _health(rpc)
    assert health[0].cooling_down and health[0].failures == 1
    assert health[0].rate_limited == (1 if mode in ("429", "json429") else 0)
    assert await rpc.request("eth_blockNumber") == "b"  # the resting primary is skipped
    assert a.seen == ["eth_blockNumber"]


async def test_a_batch_with_a_rate_limited_item_fails_over_as_a_whole() -> None:
    """A batch whose items carry -32005 goes to the next endpoint."""
    rpc = _client(Node("a", "json429"), Node("b"))
    assert await rpc.batch([("eth_blockNumber", []), ("eth_chainId", [])]) == ["b", "b"]


async def test_an_answer_about_the_request_is_not_failed_over() -> None:
    """A revert is the node's answer: raised as such, the endpoint stays healthy, no other is asked."""
    revert = {"__error__": {"code": 3, "message": "execution reverted", "data": "0x"}}
    a, b = Node("a", results={"eth_call": revert}), Node("b")
    rpc = _client(a, b)
    with pytest.raises(Exception, match="revert"):
        await rpc.request("eth_call", [{}, "latest"])
    assert b.seen == []
    assert not _health(rpc)[0].cooling_down


async def test_when_every_endpoint_fails_the_retry_policy_bounds_the_read() -> None:
    """All endpoints dead: a typed, retryable RPCError after the policy's attempts."""
    rpc = _client(Node("a", "dead"), Node("b", "dead"), retry=RetryPolicy.no_wait(attempts=3))
    with pytest.raises(RPCError) as info:
        await rpc.request("eth_blockNumber")
    assert info.value.retryable
    assert rpc.request_count == 3


async def test_a_send_without_a_pin_is_never_failed_over() -> None:
    """``eth_sendRawTransaction`` through the plain provider goes to one endpoint; its failure comes back."""
    a, b = Node("a", "502"), Node("b")
    rpc = _client(a, b)
    with pytest.raises(RPCError):
        await rpc.request("eth_sendRawTransaction", ["0x00"], retry=False)
    assert b.seen == []


async def test_a_request_to_a_named_endpoint_goes_there_only() -> None:
    """``endpoint=`` targets one endpoint; an index out of range is refused."""
    a, b = Node("a"), Node("b")
    rpc = _client(a, b)
    assert await rpc.request("eth_blockNumber", endpoint=1) == "b"
    assert a.seen == []
    with pytest.raises(RPCError):
        await rpc.request("eth_blockNumber", endpoint=5)


def test_a_fallback_provider_needs_an_endpoint() -> None:
    """An empty endpoint list is a ConfigError; the repr hides secrets."""
    with pytest.raises(ConfigError):
        FallbackProvider([])
    provider = FallbackProvider([("https://x.test/v3/0123456789abcdef0123", Node("x"))])
    assert "0123456789abcdef0123" not in repr(provider)


# -- the sender's pin -----------------------------------------------------------------------------------


def _sender(*nodes: Node) -> TxSender:
    policy = TxPolicy(receipt_timeout=1.0, send_timeout=0.5, cancel_on_timeout=False)
    sender = TxSender(_client(*nodes), Account.from_key(KEY), 31337, policy)
    sender.nonces = NonceAllocator(chain_id=31337, address=sender.address)
    return sender


def _signed(sender: TxSender, nonce: int = 7) -> Any:
    return sender.sign_at(nonce, TO, b"", 0, {"gas": 21000, "gasPrice": 10**9}, "test")


async def test_re_sends_stay_on_the_pin_while_it_is_usable() -> None:
    """The first send pins the best endpoint; the identical bytes go there again, nowhere else."""
    a, b = Node("a", results={"eth_sendRawTransaction": "0x1"}), Node("b")
    sender = _sender(a, b)
    record = _signed(sender)
    assert (await sender.send_once(record, 1.0))[0] == KNOWN
    assert (await sender.send_once(record, 1.0))[0] == KNOWN
    assert record.endpoint == 0
    assert a.seen.count("eth_sendRawTransaction") == 2 and b.seen == []


async def test_a_resting_pin_that_another_endpoint_knows_is_not_resent() -> None:
    """The pin dies after a send: the other endpoint has the hash, so nothing is sent anywhere."""
    a = Node("a", results={"eth_sendRawTransaction": "0x1"})
    b = Node("b", results={"eth_getTransactionByHash": {"hash": "0x1"}, "eth_getTransactionCount": "0x7"})
    sender = _sender(a, b)
    record = _signed(sender)
    await sender.send_once(record, 1.0)
    a.mode = "dead"
    assert (await sender.send_once(record, 1.0))[0] == AMBIGUOUS  # the pin fails: in doubt
    assert (await sender.send_once(record, 1.0))[0] == KNOWN  # resolved by hash on b
    assert "eth_sendRawTransaction" not in b.seen
    assert record.endpoint == 0


async def test_a_resting_pin_moves_only_when_the_others_lack_it_and_its_nonce_is_free() -> None:
    """Unknown by hash and nonce still free: the pin moves to the other endpoint, which gets the bytes."""
    a = Node("a", "429")
    b = Node(
        "b",
        results={
            "eth_getTransactionByHash": None,
            "eth_getTransactionCount": "0x7",
            "eth_sendRawTransaction": "0x1",
        },
    )
    sender = _sender(a, b)
    record = _signed(sender, nonce=7)
    assert (await sender.send_once(record, 1.0))[0] == AMBIGUOUS
    assert (await sender.send_once(record, 1.0))[0] == KNOWN
    assert record.endpoint == 1
    assert b.seen == ["eth_getTransactionByHash", "eth_getTransactionCount", "eth_sendRawTransaction"]


async def test_a_resting_pin_whose_nonce_was_used_elsewhere_reports_it() -> None:
    """Unknown by hash but the nonce is spent: "nonce used", and nothing is sent."""
    a = Node("a", "dead")
    b = Node("b", results={"eth_getTransactionByHash": None, "eth_getTransactionCount": "0x8"})
    sender = _sender(a, b)
    record = _signed(sender, nonce=7)
    await sender.send_once(record, 1.0)
    assert (await sender.send_once(record, 1.0))[0] == NONCE_USED
    assert "eth_sendRawTransaction" not in b.seen


async def test_a_resting_pin_with_no_other_answer_stays_in_doubt() -> None:
    """No other endpoint can be asked: nothing is concluded and nothing is sent elsewhere."""
    a, b = Node("a", "dead"), Node("b", "502")
    sender = _sender(a, b)
    record = _signed(sender)
    await sender.send_once(record, 1.0)
    assert (await sender.send_once(record, 1.0))[0] == AMBIGUOUS
    assert "eth_sendRawTransaction" not in b.seen


# -- the broker -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rpc_url": "http://a.test", "rpc_urls": ["http://b.test"]},
        {"rpc_urls": []},
        {"rpc_urls": "http://a.test"},
        {"rpc_urls": ["http://a.test", "http://a.test"]},
        {"rpc_urls": ["ws://a.test"]},
        {"rpc_urls": [42]},
    ],
)
def test_bad_rpc_urls_are_config_errors(kwargs: dict[str, Any]) -> None:
    """``rpc_urls`` must be a non-empty list of distinct http(s) URLs, and not given with ``rpc_url``."""
    with pytest.raises(ConfigError):
        AsyncBroker(network="hardhat", **kwargs)


def _chain_node(chain_ids: dict[str, int]) -> httpx.AsyncClient:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(
            200, json={"jsonrpc": "2.0", "id": body["id"], "result": hex(chain_ids[request.url.host])}
        )

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


async def test_open_refuses_an_endpoint_of_another_chain_naming_it() -> None:
    """Every URL's chain id is checked at open; the mismatch names the URL."""
    async with _chain_node({"a.test": 31337, "b.test": 1}) as http:
        broker = AsyncBroker(network="hardhat", rpc_urls=["http://a.test", "http://b.test"], http_client=http)
        with pytest.raises(NetworkMismatchError, match="b.test") as info:
            await broker.open()
        assert (info.value.expected, info.value.actual) == (31337, 1)
        assert broker.state == "closed"


async def test_rpc_health_lists_each_endpoint_of_an_open_broker() -> None:
    """``rpc_health()`` has one entry per URL; a single-URL broker has none; unopened raises."""
    async with _chain_node({"a.test": 31337, "b.test": 31337}) as http:
        broker = AsyncBroker(network="hardhat", rpc_urls=["http://a.test", "http://b.test"], http_client=http)
        with pytest.raises(Exception, match="not open"):
            broker.rpc_health()
        async with broker:
            health = broker.rpc_health()
        assert [h.url for h in health] == ["http://a.test", "http://b.test"]
        assert [h.requests for h in health] == [1, 1]
        assert broker.rpc_health() == health  # readable after closing
        async with AsyncBroker(network="hardhat", rpc_url="http://a.test", http_client=http) as single:
            assert single.rpc_health() == []
