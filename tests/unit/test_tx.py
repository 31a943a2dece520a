"""Nonce allocation, sending and receipt handling against a fake node."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import anyio
import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector as selector

from og_inference_async import (
    ContractRevertError,
    InsufficientAvailableBalanceError,
    RPCError,
    TransactionOutcomeUnknownError,
    TxPolicy,
)
from og_inference_async._chain import RpcClient, TxSender
from og_inference_async._chain._tx import NonceAllocator
from og_inference_async._config import RetryPolicy

from .fakes import FakeProvider, FakeWeb3

pytestmark = pytest.mark.anyio

KEY = "0x" + "11" * 32
TO = "0x" + "22" * 20
FAST = TxPolicy(
    receipt_timeout=0.5,
    receipt_poll_interval=0.001,
    receipt_attempts=5,
    rebroadcast_interval=0.01,
    send_timeout=0.5,
    cancel_timeout=0.3,
)


def _receipt(status: int = 1) -> dict[str, Any]:
    return {"status": hex(status), "blockNumber": "0x5", "gasUsed": "0x5208", "logs": []}


def _node(**overrides: Any) -> FakeProvider:
    handlers: dict[str, Any] = {
        "eth_estimateGas": lambda p: hex(21000),
        "eth_gasPrice": lambda p: hex(10**9),
        "eth_getTransactionCount": lambda p: hex(7),
        "eth_sendRawTransaction": lambda p: "0x" + "00" * 32,
        "eth_getTransactionReceipt": lambda p: _receipt(),
    }
    handlers.update(overrides)
    return FakeProvider(handlers)


def _sender(node: FakeProvider, policy: TxPolicy = FAST) -> TxSender:
    rpc = RpcClient(FakeWeb3(node), owned=False, retry=RetryPolicy.no_wait())  # type: ignore[arg-type]
    tx = TxSender(rpc, Account.from_key(KEY), 31337, policy)
    tx.nonces = NonceAllocator(chain_id=31337, address=tx.address)  # isolate from other tests
    return tx


async def test_concurrent_sends_get_distinct_consecutive_nonces() -> None:
    """50 coroutines sending at once receive nonces 7..56 with one pending-count read."""
    node = _node()
    tx = _sender(node)
    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(tx.send, TO, b"\x01")
    assert node.count("eth_getTransactionCount") == 1
    assert node.count("eth_sendRawTransaction") == 50
    assert tx.nonces._next == 57


async def test_revert_during_estimation_sends_nothing() -> None:
    """A revert at estimateGas is decoded and raised; no nonce is taken, nothing is sent."""
    data = (
        "0x"
        + (
            selector("InsufficientAvailableBalance(uint256,uint256)") + encode(["uint256", "uint256"], [1, 2])
        ).hex()
    )
    node = _node(
        eth_estimateGas=lambda p: {"__error__": {"code": 3, "message": "execution reverted", "data": data}}
    )
    tx = _sender(node)
    with pytest.raises(InsufficientAvailableBalanceError) as info:
        await tx.send(TO, b"\x01", context="LedgerManager.transferFund")
    assert info.value.error_args == {"available": 1, "required": 2}
    assert info.value.tx_hash is None
    assert node.count("eth_sendRawTransaction") == 0
    assert node.count("eth_getTransactionCount") == 0


async def test_rejected_send_gives_the_nonce_back() -> None:
    """A transaction the node refused returns its nonce; the next send reuses it."""
    answers = iter([{"__error__": {"code": -32000, "message": "intrinsic gas too low"}}, "0x" + "00" * 32])
    node = _node(eth_sendRawTransaction=lambda p: next(answers))
    tx = _sender(node)
    with pytest.raises(RPCError):
        await tx.send(TO, b"\x01")
    await tx.send(TO, b"\x01")
    sent = [p for m, p in node.calls if m == "eth_sendRawTransaction"]
    assert len(sent) == 2
    assert sent[0] == sent[1]  # same nonce, same fields: the identical signed bytes
    assert tx.nonces._next == 8


async def test_nonce_too_low_resyncs_and_retries_with_a_fresh_nonce() -> None:
    """'nonce too low' reseeds from the node; the retried transaction uses the new nonce."""
    counts = iter([hex(3), hex(9)])
    answers = iter([{"__error__": {"code": -32000, "message": "nonce too low"}}, "0x" + "00" * 32])
    node = _node(
        eth_getTransactionCount=lambda p: next(counts), eth_sendRawTransaction=lambda p: next(answers)
    )
    tx = _sender(node)
    receipt = await tx.send(TO, b"\x01")
    assert receipt.status == 1
    assert node.count("eth_getTransactionCount") == 2
    assert tx.nonces._next == 10


async def test_missing_receipt_without_cancel_is_outcome_unknown_and_only_identical_bytes_resent() -> None:
    """No receipt in bounds: TransactionOutcomeUnknownError carries the hash; re-sends are the same bytes."""
    node = _node(eth_getTransactionReceipt=lambda p: None)
    policy = TxPolicy(
        receipt_timeout=0.3, receipt_poll_interval=0.001, rebroadcast_interval=0.01, cancel_on_timeout=False
    )
    tx = _sender(node, policy)
    with pytest.raises(TransactionOutcomeUnknownError) as info:
        await tx.send(TO, b"\x01")
    assert info.value.tx_hash.startswith("0x") and len(info.value.tx_hash) == 66
    sent = {p[0] for m, p in node.calls if m == "eth_sendRawTransaction"}
    assert len(sent) == 1  # re-sent, but always the identical signed bytes
    assert node.count("eth_sendRawTransaction") >= 2
    (doubt,) = tx.nonces.open_records()
    assert doubt.tx_hash == info.value.tx_hash and doubt.state.value == "unknown"


async def test_missing_receipt_is_cancelled_by_a_self_transfer_at_the_same_nonce() -> None:
    """After the receipt bound, a 0-value self-transfer takes the nonce; the caller learns 'not executed'."""
    from eth_utils import keccak

    from og_inference_async import TransactionNotExecutedError

    hashes: list[str] = []

    def send(p: list[Any]) -> Any:
        h = "0x" + keccak(bytes.fromhex(p[0][2:])).hex()
        if h not in hashes:
            hashes.append(h)
        return h

    def receipt(p: list[Any]) -> Any:
        return _receipt() if len(hashes) > 1 and p[0] == hashes[1] else None

    node = _node(eth_sendRawTransaction=send, eth_getTransactionReceipt=receipt)
    tx = _sender(node)
    with pytest.raises(TransactionNotExecutedError) as info:
        await tx.send(TO, b"\x01")
    assert info.value.reason == "cancelled"
    assert info.value.tx_hash == hashes[0]
    assert info.value.replacement_hash == hashes[1]
    assert len(hashes) == 2  # the original (maybe several times) and one replacement
    assert tx.nonces.open_records() == []
    assert tx.nonces._next == 8  # the replacement reused nonce 7


async def test_a_pooled_transaction_whose_nonce_another_one_used_is_signed_again() -> None:
    """The node keeps our transaction in its pool (as anvil does) but a block used its nonce for
    another one: the wait sees the count pass the nonce with no receipt, and the call is signed
    again at a fresh nonce instead of waiting out the receipt bound."""
    from eth_utils import keccak

    hashes: list[str] = []
    state = {"count": 7}

    def send(p: list[Any]) -> Any:
        h = "0x" + keccak(bytes.fromhex(p[0][2:])).hex()
        if h not in hashes:
            hashes.append(h)
            if len(hashes) == 1:
                state["count"] = 8  # another worker's transaction is mined at nonce 7
        return h

    def receipt(p: list[Any]) -> Any:
        return _receipt() if len(hashes) > 1 and p[0] == hashes[1] else None

    node = _node(
        eth_sendRawTransaction=send,
        eth_getTransactionReceipt=receipt,
        eth_getTransactionByHash=lambda p: {"hash": p[0]},  # still in the pool
        eth_getTransactionCount=lambda p: hex(state["count"]),
        eth_blockNumber=lambda p: "0x10",
    )
    policy = dataclasses.replace(FAST, receipt_timeout=5.0, receipt_attempts=1000, gap_heal_after=0.01)
    tx = _sender(node, policy)
    receipt_ = await tx.send(TO, b"\x01")
    assert receipt_.tx_hash == hashes[1] and len(hashes) == 2
    first, second = tx.nonces.recent(2)[::-1]
    assert (first.nonce, first.state.value) == (7, "replaced")
    assert (second.nonce, second.state.value) == (8, "mined")
    assert ("eth_getTransactionCount", [tx.address, "0x10"]) in node.calls  # asked about one block
    assert tx.nonces.open_records() == []


async def test_a_waiting_transaction_replaced_by_another_is_signed_again() -> None:
    """Another transaction replaced ours in the pool and was mined at its nonce: the re-sent bytes get
    "nonce too low", the node no longer knows ours, and the call is signed again (not raised as lost)."""
    from eth_utils import keccak

    hashes: list[str] = []
    state = {"count": 7}

    def send(p: list[Any]) -> Any:
        h = "0x" + keccak(bytes.fromhex(p[0][2:])).hex()
        if h not in hashes:
            hashes.append(h)
            return h
        state["count"] = 8  # the replacing transaction is mined meanwhile
        return {"__error__": {"code": -32000, "message": "nonce too low"}}

    def receipt(p: list[Any]) -> Any:
        return _receipt() if len(hashes) > 1 and p[0] == hashes[1] else None

    node = _node(
        eth_sendRawTransaction=send,
        eth_getTransactionReceipt=receipt,
        eth_getTransactionByHash=lambda p: None,
        eth_getTransactionCount=lambda p: hex(state["count"]),
    )
    tx = _sender(node, FAST)
    assert (await tx.send(TO, b"\x01")).tx_hash == hashes[1]
    first, second = tx.nonces.recent(2)[::-1]
    assert (first.nonce, first.state.value, second.nonce, second.state.value) == (7, "replaced", 8, "mined")


async def test_transport_error_on_send_resends_the_identical_bytes() -> None:
    """A transport failure while sending is 'maybe sent': the same bytes go again until the node answers."""

    class Boom(Exception):
        pass

    answers = iter([Boom("connection reset"), Boom("connection reset"), "0x" + "00" * 32])
    took = []

    def send(p: list[Any]) -> Any:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        took.append(p[0])
        return answer

    # the node has no receipt (nor the transaction) until it took the bytes
    node = _node(
        eth_sendRawTransaction=send, eth_getTransactionReceipt=lambda p: _receipt() if took else None
    )
    tx = _sender(node)
    receipt = await tx.send(TO, b"\x01")
    assert receipt.status == 1
    raws = [p[0] for m, p in node.calls if m == "eth_sendRawTransaction"]
    assert len(raws) == 3 and len(set(raws)) == 1


async def test_error_after_the_node_took_it_is_never_reported_as_failed() -> None:
    """Forward-then-drop: the node has the transaction but the client got an error; 'nonce too low' on the
    re-send is checked by hash and the mined receipt is returned (the nonce is not given back)."""
    state = {"sent": 0}

    def send(p: list[Any]) -> Any:
        state["sent"] += 1
        if state["sent"] == 1:
            return {"__error__": {"code": -32603, "message": "internal error"}}
        return {"__error__": {"code": -32000, "message": "nonce too low"}}

    node = _node(
        eth_sendRawTransaction=send,
        eth_getTransactionReceipt=lambda p: _receipt(),
        eth_getTransactionByHash=lambda p: {"hash": p[0]},
    )
    tx = _sender(node)
    receipt = await tx.send(TO, b"\x01")
    assert receipt.status == 1
    assert tx.nonces._next == 8


async def test_reverted_receipt_raises_decoded_error_with_hash() -> None:
    """A mined revert is decoded by replaying the call and carries the transaction hash."""
    data = "0x" + (selector("LedgerNotExists(address)") + encode(["address"], [TO])).hex()

    def call(p: list[Any]) -> Any:
        return {"__error__": {"code": 3, "message": "execution reverted", "data": data}}

    node = _node(eth_getTransactionReceipt=lambda p: _receipt(0), eth_call=call)
    tx = _sender(node)
    with pytest.raises(ContractRevertError) as info:
        await tx.send(TO, b"\x01")
    assert info.value.error_name == "LedgerNotExists"
    assert info.value.tx_hash is not None


async def test_max_gas_price_refuses_expensive_sends() -> None:
    """A gas price above the configured cap is refused before signing."""
    from og_inference_async import FeePolicy

    node = _node(eth_gasPrice=lambda p: hex(10**12))
    tx = _sender(node, TxPolicy(fees=FeePolicy(max_gas_price=10**9)))
    with pytest.raises(RPCError):
        await tx.send(TO, b"\x01")
    assert node.count("eth_sendRawTransaction") == 0


async def test_eip1559_mode_sends_typed_transactions() -> None:
    """In eip1559 mode the fee fields come from the base fee and the tip."""
    from og_inference_async import FeePolicy

    node = _node(
        eth_getBlockByNumber=lambda p: {"baseFeePerGas": hex(100)},
        eth_maxPriorityFeePerGas=lambda p: hex(5),
    )
    tx = _sender(node, TxPolicy(fees=FeePolicy(mode="eip1559"), receipt_poll_interval=0.001))
    await tx.send(TO, b"\x01")
    (raw,) = [p[0] for m, p in node.calls if m == "eth_sendRawTransaction"]
    assert raw.startswith("0x02")


async def test_transient_read_errors_are_retried_but_bounded() -> None:
    """Rate-limit errors on reads are retried up to the attempt bound, then raised."""
    node = _node(eth_chainId=lambda p: {"__error__": {"code": -32005, "message": "rate limit exceeded"}})
    rpc = RpcClient(FakeWeb3(node), owned=False, retry=RetryPolicy.no_wait(attempts=3))  # type: ignore[arg-type]
    with pytest.raises(RPCError) as info:
        await rpc.chain_id()
    assert info.value.retryable
    assert node.count("eth_chainId") == 3


def test_release_handles_out_of_order_returns() -> None:
    """Returned nonces are reused lowest first and the counter shrinks back when possible."""
    alloc = NonceAllocator(chain_id=1, address=TO)
    alloc._next = 10
    alloc.release(8)
    alloc.release(9)
    assert alloc._next == 8
    assert alloc._returned == set()


async def test_cancelling_a_send_never_leaks_a_nonce() -> None:
    """A cancellation while the nonce is taken lets the send reach the node first; nonces stay gapless."""
    node = _node(eth_getTransactionReceipt=lambda p: None)
    tx = _sender(node, TxPolicy(receipt_timeout=5, receipt_poll_interval=0.01, receipt_attempts=100))
    with anyio.move_on_after(0.001):
        await tx.send(TO, b"\x01")
    assert node.count("eth_sendRawTransaction") == 1
    assert tx.nonces._next == 8  # nonce 7 went out with the transaction


async def test_estimate_above_gas_cap_is_refused_before_signing() -> None:
    """An estimate above the cap raises ConfigError; nothing is signed or sent (no doomed out-of-gas tx)."""
    from og_inference_async import ConfigError

    node = _node(eth_estimateGas=lambda p: hex(9_000_000))
    tx = _sender(node, TxPolicy(gas_cap=1_000_000))
    with pytest.raises(ConfigError):
        await tx.send(TO, b"\x01")
    assert node.count("eth_sendRawTransaction") == 0


async def test_outcome_unknown_keeps_its_nonce_and_resolves_later() -> None:
    """An unknown outcome keeps its nonce (no reseed, no reuse) and resolves when it is mined."""
    mined: set[str] = set()
    node = _node(eth_getTransactionReceipt=lambda p: _receipt() if p[0] in mined else None)
    policy = TxPolicy(
        receipt_timeout=0.2, receipt_poll_interval=0.001, rebroadcast_interval=0.01, cancel_on_timeout=False
    )
    tx = _sender(node, policy)
    with pytest.raises(TransactionOutcomeUnknownError) as info:
        await tx.send(TO, b"\x01")
    assert tx.nonces._next == 8
    mined.add(info.value.tx_hash)
    record = await tx.resolver.resolve(info.value.tx_hash, None)
    assert record.state.value == "mined"
    assert tx.nonces.open_records() == []


def test_one_allocator_serves_several_event_loops() -> None:
    """Coroutines on two event loops (threads) sharing one wallet never get the same nonce."""
    import threading

    node = _node()
    rpc = RpcClient(FakeWeb3(node), owned=False, retry=RetryPolicy.no_wait())  # type: ignore[arg-type]
    alloc = NonceAllocator(chain_id=31337, address=TO)
    got: list[int] = []

    async def many() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(100):

                async def one() -> None:
                    pending = partial(rpc.request_int, "eth_getTransactionCount", [TO, "pending"])
                    got.append(await alloc.allocate(pending))

                tg.start_soon(one)

    threads = [threading.Thread(target=anyio.run, args=(many,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(7, 207))


async def test_receipt_wait_reports_progress_to_the_observer() -> None:
    """Each poll without a receipt calls on_progress with the hash, the polls so far and the time waited."""
    from og_inference_async import Hooks
    from og_inference_async._observe import Observer

    polls = 0

    def receipt(p: list[Any]) -> Any:
        nonlocal polls
        polls += 1
        return _receipt() if polls > 3 else None

    events: list[dict[str, Any]] = []
    tx = _sender(_node(eth_getTransactionReceipt=receipt))
    tx.observer = Observer(Hooks(on_progress=events.append))
    receipt_ = await tx.send(TO, b"\x01")
    assert [e["polls"] for e in events] == [1, 2, 3]
    assert all(e["kind"] == "receipt" and e["tx_hash"] == receipt_.tx_hash for e in events)
    assert all(isinstance(e["elapsed"], float) and e["elapsed"] >= 0 for e in events)
    assert [e["elapsed"] for e in events] == sorted(e["elapsed"] for e in events)
