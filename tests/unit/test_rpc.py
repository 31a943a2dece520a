"""The JSON-RPC layer against junk and slow nodes: typed errors naming the method, bounded retries,
``Retry-After`` honoured, and the broker's close from any task or cancel scope."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from eth_account import Account

from og_inference_async import (
    AsyncBroker,
    OGError,
    RPCError,
    TransactionOutcomeUnknownError,
    TxPolicy,
    TxState,
)
from og_inference_async._chain import RpcClient, TxSender
from og_inference_async._chain._provider import PooledHTTPProvider
from og_inference_async._chain._tx import NonceAllocator
from og_inference_async._config import RetryPolicy

from .fakes import FakeProvider, FakeWeb3

pytestmark = pytest.mark.anyio

KEY = "0x" + "11" * 32
TO = "0x" + "22" * 20
FAST = TxPolicy(
    receipt_timeout=1.0,
    receipt_poll_interval=0.001,
    receipt_attempts=50,
    rebroadcast_interval=0.05,
    send_timeout=0.5,
    cancel_on_timeout=False,
)
URL = "http://127.0.0.1:1/rpc"


@dataclass
class Reply:
    """A raw HTTP answer, as the broker's poster returns it."""

    status: int
    raw: bytes
    headers: httpx.Headers = field(default_factory=httpx.Headers)


class ScriptedPoster:
    """A poster answering each POST from a list of replies (or a function of the request body)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.bodies: list[Any] = []
        self.times: list[float] = []

    async def __call__(self, body: bytes, timeout: float) -> Reply:
        self.times.append(time.monotonic())
        request = json.loads(body)
        self.bodies.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, Reply):
            return answer
        raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return Reply(200, raw)


def _pooled(poster: ScriptedPoster, retry: RetryPolicy | None = None) -> RpcClient:
    return RpcClient.on_pool(URL, poster, retry=retry or RetryPolicy.no_wait())


def _result(value: Any) -> Any:
    return lambda req: {"jsonrpc": "2.0", "id": req["id"], "result": value}


def _fake_client(node: FakeProvider, retry: RetryPolicy | None = None) -> RpcClient:
    return RpcClient(FakeWeb3(node), owned=False, retry=retry or RetryPolicy.no_wait())  # type: ignore[arg-type]


def _receipt(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"status": "0x1", "blockNumber": "0x5", "gasUsed": "0x5208", "logs": []}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def _node(**overrides: Any) -> FakeProvider:
    handlers: dict[str, Any] = {
        "eth_estimateGas": lambda p: hex(21000),
        "eth_gasPrice": lambda p: hex(10**9),
        "eth_getTransactionCount": lambda p: hex(7),
        "eth_sendRawTransaction": lambda p: "0x" + "00" * 32,
        "eth_getTransactionReceipt": lambda p: _receipt(),
        "eth_getTransactionByHash": lambda p: None,
    }
    handlers.update(overrides)
    return FakeProvider(handlers)


def _sender(node: FakeProvider, policy: TxPolicy = FAST) -> TxSender:
    tx = TxSender(_fake_client(node), Account.from_key(KEY), 31337, policy)
    tx.nonces = NonceAllocator(chain_id=31337, address=tx.address)  # isolated from other tests
    return tx


def _names(exc: RPCError, method: str) -> bool:
    return exc.method == method and method in str(exc)


# -- item 8: junk from the node -------------------------------------------------------------------


@pytest.mark.parametrize("junk", ["0xzz", "not hex", None, 12, ["0x00"], {"x": 1}])
async def test_junk_eth_call_result_is_an_rpc_error_naming_the_method(junk: Any) -> None:
    """A non-hex ``eth_call`` result never escapes as ValueError/TypeError."""
    rpc = _fake_client(FakeProvider({"eth_call": lambda p: junk}))
    with pytest.raises(RPCError) as info:
        await rpc.eth_call(TO, b"\x01")
    assert _names(info.value, "eth_call")


@pytest.mark.parametrize("junk", [31337, None, "abc", True, "0x", "0x" + "f" * 80, [], 1.5])
async def test_junk_chain_id_is_an_rpc_error_naming_the_method(junk: Any) -> None:
    """``eth_chainId`` of the wrong type: an RPCError, from the client and from ``broker.open``."""
    node = FakeProvider({"eth_chainId": lambda p: junk})
    with pytest.raises(RPCError) as info:
        await _fake_client(node).chain_id()
    assert _names(info.value, "eth_chainId")
    broker = AsyncBroker(KEY, network="hardhat", web3=FakeWeb3(node))  # type: ignore[arg-type]
    with pytest.raises(RPCError):
        await broker.open()
    assert broker.state == "closed"


@pytest.mark.parametrize("junk", [None, "seven", 7, "0x"])
async def test_junk_nonce_is_an_rpc_error_and_nothing_is_sent(junk: Any) -> None:
    """A ``null`` (or otherwise junk) pending count: RPCError naming the method; no send."""
    node = _node(eth_getTransactionCount=lambda p: junk)
    tx = _sender(node)
    with pytest.raises(RPCError) as info:
        await tx.send(TO, b"\x01")
    assert _names(info.value, "eth_getTransactionCount")
    assert node.count("eth_sendRawTransaction") == 0
    assert tx.nonces.open_records() == []


@pytest.mark.parametrize(
    ("method", "junk"),
    [
        ("eth_estimateGas", None),
        ("eth_estimateGas", "lots"),
        ("eth_gasPrice", None),
        ("eth_gasPrice", {"price": 1}),
    ],
)
async def test_junk_fee_or_gas_answers_are_rpc_errors_before_signing(method: str, junk: Any) -> None:
    """Junk where the send path reads gas or fees: RPCError naming the method, nothing signed."""
    node = _node(**{method: lambda p: junk})
    tx = _sender(node)
    with pytest.raises(RPCError) as info:
        await tx.send(TO, b"\x01")
    assert _names(info.value, method)
    assert node.count("eth_sendRawTransaction") == 0 and tx.nonces.allocated == 0


@pytest.mark.parametrize(
    "bad",
    [
        _receipt(blockNumber=None),
        _receipt(gasUsed="lots"),
        _receipt(gasUsed=21000),
        _receipt(status=None, blockNumber=None),
        _receipt(status="ok"),
        "0x1",
        ["receipt"],
    ],
)
async def test_malformed_receipts_are_skipped_and_polling_goes_on(bad: Any) -> None:
    """A malformed receipt is not a receipt: the sender polls on until a well-formed one comes."""
    answers = [bad, bad, _receipt(blockNumber="0x9")]
    node = _node(eth_getTransactionReceipt=lambda p: answers.pop(0) if len(answers) > 1 else answers[0])
    tx = _sender(node)
    receipt = await tx.send(TO, b"\x01")
    assert receipt.block_number == 9 and receipt.status == 1
    assert node.count("eth_getTransactionReceipt") >= 3
    assert node.count("eth_sendRawTransaction") >= 1


async def test_error_object_that_is_a_string_is_an_rpc_error() -> None:
    """``{"error": "boom"}``: an RPCError naming the method, single and in a batch."""
    poster = ScriptedPoster(lambda req: {"jsonrpc": "2.0", "id": req["id"], "error": "boom"})
    rpc = _pooled(poster)
    with pytest.raises(RPCError) as info:
        await rpc.request("eth_blockNumber")
    assert _names(info.value, "eth_blockNumber")

    batch = ScriptedPoster(lambda reqs: [{"jsonrpc": "2.0", "id": r["id"], "error": "boom"} for r in reqs])
    (item,) = await _pooled(batch).batch([("eth_gasPrice", [])])
    assert isinstance(item, RPCError) and _names(item, "eth_gasPrice")

    whole = ScriptedPoster({"jsonrpc": "2.0", "id": None, "error": "boom"})
    with pytest.raises(RPCError) as info:
        await _pooled(whole).batch([("eth_gasPrice", []), ("eth_blockNumber", [])])
    assert info.value.method == "batch"


@pytest.mark.parametrize(
    "answer",
    [
        lambda reqs: [{"jsonrpc": "2.0", "id": reqs[0]["id"], "result": "0x1"}],  # one answer for two
        lambda reqs: [],
        lambda reqs: ["0x1", "0x2"],  # items that are not objects
        lambda reqs: [None, {"jsonrpc": "2.0", "id": reqs[1]["id"], "result": "0x2"}],
        lambda reqs: {"jsonrpc": "2.0", "result": ["0x1", "0x2"]},
        lambda reqs: "0x1",
    ],
)
async def test_malformed_batch_responses_are_rpc_errors(answer: Any) -> None:
    """A batch answer of the wrong length or with non-object items: RPCError, never a crash."""
    poster = ScriptedPoster(answer)
    with pytest.raises(RPCError) as info:
        await _pooled(poster).batch([("eth_gasPrice", []), ("eth_blockNumber", [])])
    assert info.value.method in ("batch", "eth_gasPrice", "eth_blockNumber")
    assert info.value.method is not None and info.value.method in str(info.value)


async def test_malformed_batch_from_a_borrowed_provider_is_an_rpc_error() -> None:
    """The same through a foreign provider (``make_batch_request``) of the wrong length."""

    class ShortBatch(FakeProvider):
        async def make_batch_request(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
            return (await super().make_batch_request(calls))[:1]

    node = ShortBatch({"eth_gasPrice": lambda p: "0x1", "eth_blockNumber": lambda p: "0x2"})
    with pytest.raises(RPCError) as info:
        await _fake_client(node).batch([("eth_gasPrice", []), ("eth_blockNumber", [])])
    assert info.value.method == "batch"


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>bad gateway</html>",
        b"",
        b"[1, 2]",
        b'"0x1"',
        b'{"jsonrpc": "2.0", "id": 1}',
        b"null",
    ],
)
async def test_junk_bodies_are_rpc_errors_naming_the_method(raw: bytes) -> None:
    """Not JSON, not an object, no result: RPCError naming the method."""
    with pytest.raises(RPCError) as info:
        await _pooled(ScriptedPoster(raw)).request("eth_blockNumber")
    assert _names(info.value, "eth_blockNumber")


# -- item 14: bounded attempts, retries, Retry-After ------------------------------------------------


async def test_read_that_times_out_once_is_retried_with_the_default_budget() -> None:
    """One attempt hangs past ``attempt_timeout``; the default budget leaves room for another."""
    hung = anyio.Event()

    class HangOnce(FakeProvider):
        async def make_request(self, method: str, params: list[Any]) -> dict[str, Any]:
            if not hung.is_set():
                hung.set()
                await anyio.sleep_forever()
            return await super().make_request(method, params)

    default = RetryPolicy()
    assert default.max_delay >= 2 * default.attempt_timeout
    policy = RetryPolicy(attempt_timeout=0.2, max_delay=2.0, initial_backoff=0.0, max_backoff=0.0)
    node = HangOnce({"eth_blockNumber": lambda p: "0x2a"})
    rpc = _fake_client(node, policy)
    with anyio.fail_after(5):
        assert await rpc.request_int("eth_blockNumber") == 42
    assert hung.is_set() and node.count("eth_blockNumber") == 1 and rpc.request_count == 2


async def test_an_attempt_is_cut_at_attempt_timeout_and_sends_are_not_retried() -> None:
    """A send that hangs is cut after one attempt (never retried by the RPC layer)."""

    class Hang(FakeProvider):
        async def make_request(self, method: str, params: list[Any]) -> dict[str, Any]:
            await anyio.sleep_forever()
            raise AssertionError  # pragma: no cover

    policy = RetryPolicy(attempt_timeout=0.1, max_delay=5.0, initial_backoff=0.0, max_backoff=0.0)
    rpc = _fake_client(Hang(), policy)
    with anyio.fail_after(5), pytest.raises(RPCError) as info:
        await rpc.request("eth_sendRawTransaction", ["0x00"], retry=False)
    assert info.value.retryable and _names(info.value, "eth_sendRawTransaction")
    assert rpc.request_count == 1


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_from_the_node_is_honoured(status: int) -> None:
    """HTTP 429/503 with ``Retry-After: 1``: the next attempt waits at least that long."""
    poster = ScriptedPoster(Reply(status, b"slow down", httpx.Headers({"Retry-After": "1"})), _result("0x2a"))
    policy = RetryPolicy(
        attempts=3, max_delay=10.0, initial_backoff=0.0, max_backoff=0.0, attempt_timeout=2.0
    )
    rpc = _pooled(poster, policy)
    with anyio.fail_after(8):
        assert await rpc.request_int("eth_blockNumber") == 42
    assert len(poster.times) == 2
    assert poster.times[1] - poster.times[0] >= 1.0


async def test_retry_after_is_reported_on_the_error() -> None:
    """Without retries the 429 surfaces as a retryable RPCError carrying ``retry_after``."""
    poster = ScriptedPoster(Reply(429, b"", httpx.Headers({"Retry-After": "3"})))
    with pytest.raises(RPCError) as info:
        await _pooled(poster).request("eth_blockNumber", retry=False)
    assert info.value.retryable and info.value.retry_after == 3.0 and info.value.code == 429


async def test_provider_speaks_web3_and_batches_in_order() -> None:
    """``PooledHTTPProvider`` answers web3's interface; batch answers come back in call order."""
    poster = ScriptedPoster(
        lambda reqs: [{"jsonrpc": "2.0", "id": r["id"], "result": r["method"]} for r in reversed(reqs)]
    )
    provider = PooledHTTPProvider(URL, poster)
    out = await provider.make_batch_request([("a", []), ("b", []), ("c", [])])  # type: ignore[list-item]
    assert [r["result"] for r in out] == ["a", "b", "c"]
    assert "PooledHTTPProvider" in repr(provider)


# -- item 9: closing inside cancel scopes and from another task ------------------------------------


def _broker() -> AsyncBroker:
    return AsyncBroker(KEY, network="hardhat", web3=FakeWeb3(FakeProvider()))  # type: ignore[arg-type]


async def test_aclose_inside_fail_after_keeps_cancel_scopes_working() -> None:
    """``aclose()`` inside ``fail_after``: no RuntimeError; later scopes still time out; idempotent."""
    broker = _broker()
    await broker.open()
    started = anyio.Event()

    async def background() -> None:
        started.set()
        await anyio.sleep_forever()

    broker.task_group.start_soon(background)
    await started.wait()
    with anyio.fail_after(5):
        await broker.aclose()
    assert broker.state == "closed"
    with anyio.fail_after(5):
        await broker.aclose()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            await anyio.sleep_forever()
    with anyio.move_on_after(0.05) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_aclose_from_another_task_than_open() -> None:
    """Open in one task, close in another (inside its own ``fail_after``): no RuntimeError."""
    broker = _broker()
    opened = anyio.Event()
    closed = anyio.Event()

    async def opener() -> None:
        await broker.open()
        opened.set()
        await closed.wait()
        with pytest.raises(TimeoutError):  # this task's scopes still work after the other closed
            with anyio.fail_after(0.05):
                await anyio.sleep_forever()

    async def closer() -> None:
        await opened.wait()
        with anyio.fail_after(5):
            await broker.aclose()
            await broker.aclose()
        closed.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(opener)
            tg.start_soon(closer)
    assert broker.state == "closed"


async def test_aclose_in_a_cancelled_scope_still_closes() -> None:
    """A closer whose scope is already cancelled still finishes closing (shielded, bounded)."""
    broker = _broker()
    await broker.open()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await broker.aclose()
    assert broker.state == "closed"
    with pytest.raises(OGError):
        broker.task_group  # noqa: B018


async def test_unanswered_lookup_after_nonce_too_low_is_never_not_executed() -> None:
    """The node says "nonce too low" to a re-send but cannot be asked for the receipt: the outcome
    is unknown (the transaction may well be mined), never "not executed"."""
    sends = []

    def send(p: list[Any]) -> Any:
        sends.append(p[0])
        if len(sends) == 1:
            return "0x" + "00" * 32
        return {"__error__": {"code": -32000, "message": "nonce too low"}}

    def unreachable(p: list[Any]) -> Any:
        raise ConnectionResetError("reset")

    node = _node(
        eth_sendRawTransaction=send,
        eth_getTransactionReceipt=unreachable,
        eth_getTransactionByHash=unreachable,
    )
    tx = _sender(node, dataclasses.replace(FAST, receipt_timeout=0.3))
    with anyio.fail_after(5), pytest.raises(TransactionOutcomeUnknownError):
        await tx.send(TO, b"\x01")
    assert len(sends) >= 2 and len(set(sends)) == 1
    (record,) = tx.nonces.open_records()
    assert record.state is TxState.UNKNOWN
