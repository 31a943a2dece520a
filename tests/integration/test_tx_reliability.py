"""Transaction delivery on the devnet through a faulty node: lost answers, refused signing, hung
receipt polls, unmined transactions resolved or cancelled, and bursts of cancelled callers.

Time bounds here are hang detectors (``anyio.fail_after``), never speed assertions.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from og_inference_async import (
    AsyncBroker,
    ConfigError,
    TransactionNotExecutedError,
    TransactionOutcomeUnknownError,
    TxPolicy,
    og,
)
from og_inference_async.types import TxReceipt, TxState
from og_inference_devnet import Devnet
from og_inference_devnet.faultproxy import RpcFaultProxy

from .chain_helpers import FAST_RETRY, FAST_TX, register_provider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

#: Bound on calls that must complete: a hang detector, not a speed assertion.
HANG_BOUND = 15


def _broker(dn: Devnet, index: int, *, url: str | None = None, policy: TxPolicy = FAST_TX) -> AsyncBroker:
    network = dn.network if url is None else dataclasses.replace(dn.network, rpc_url=url)
    return AsyncBroker(dn.accounts[index].private_key, network=network, retry=FAST_RETRY, tx_policy=policy)


async def _nonce(dn: Devnet, address: str, block: str = "latest") -> int:
    return int(await dn.rpc("eth_getTransactionCount", [address, block]), 16)


async def _pool_empty(dn: Devnet) -> bool:
    status = await dn.rpc("txpool_status")
    return int(status["pending"], 16) == 0 and int(status["queued"], 16) == 0


async def _pool_txs(dn: Devnet, address: str) -> list[dict[str, Any]]:
    content = await dn.rpc("txpool_content")
    out: list[dict[str, Any]] = []
    for part in ("pending", "queued"):
        for sender, by_nonce in (content.get(part) or {}).items():
            if sender.lower() == address.lower():
                out.extend(by_nonce.values())
    return out


async def _mine_when(dn: Devnet, address: str, seen: Callable[[dict[str, Any]], bool]) -> None:
    """Wait (bounded) until the pool holds a transaction of ``address`` matching ``seen``, then mine."""
    with anyio.fail_after(HANG_BOUND):
        while not any(seen(tx) for tx in await _pool_txs(dn, address)):  # noqa: ASYNC110 (polls the node)
            await anyio.sleep(0.01)
    await dn.rpc("evm_mine")


def _self_transfer(address: str) -> Callable[[dict[str, Any]], bool]:
    """A cancelling replacement: a 0-value transfer to the sender itself."""
    return lambda tx: (tx.get("to") or "").lower() == address.lower() and int(tx["value"], 16) == 0


# -- items 2/3: lost answers to sends -----------------------------------------------------------------


async def test_send_whose_answers_are_all_lost_executes_once(
    devnet: Devnet, rpc_fault_proxy: RpcFaultProxy
) -> None:
    """Every ``eth_sendRawTransaction`` is executed by the node, then answered 502: the deposit
    still returns its receipt, runs exactly once, and the nonce advances by one."""
    broker = _broker(devnet, 12, url=rpc_fault_proxy.url)
    async with broker:
        await broker.ledger.add_ledger(og("3"))
        address = broker.address
        assert address is not None
        before = await _nonce(devnet, address)
        rpc_fault_proxy.methods = {"eth_sendRawTransaction"}
        rpc_fault_proxy.forward_then_drop_rate = 1.0
        with anyio.fail_after(HANG_BOUND):
            receipt = await broker.ledger.deposit_fund(og("1"))
        assert receipt.status == 1
        assert rpc_fault_proxy.faults["forward_then_drop"] >= 1
        assert set(rpc_fault_proxy.dropped_tx_hashes) == {receipt.tx_hash}  # only identical bytes re-sent
        assert (await broker.ledger.get_ledger()).total == og("4")
        assert await _nonce(devnet, address) == before + 1
        assert broker.transactions.get(receipt.tx_hash).state is TxState.MINED
        assert broker.transactions.in_doubt() == []
        assert await _pool_empty(devnet)


async def test_sends_failing_half_the_time_all_succeed(
    devnet: Devnet, rpc_fault_proxy: RpcFaultProxy
) -> None:
    """Half of the sends answer 5xx without reaching the node: 10 sequential deposits all succeed,
    none stalls behind an earlier one, each executes once."""
    broker = _broker(devnet, 13, url=rpc_fault_proxy.url)
    async with broker:
        await broker.ledger.add_ledger(og("3"))
        address = broker.address
        assert address is not None
        before = await _nonce(devnet, address)
        rpc_fault_proxy.methods = {"eth_sendRawTransaction"}
        rpc_fault_proxy.error_rate = 0.5
        hashes = []
        for _ in range(10):
            with anyio.fail_after(HANG_BOUND):
                receipt = await broker.ledger.deposit_fund(og("0.1"))
            assert receipt.status == 1
            hashes.append(receipt.tx_hash)
        assert rpc_fault_proxy.faults["error"] > 0
        assert len(set(hashes)) == 10
        assert (await broker.ledger.get_ledger()).total == og("4")
        assert await _nonce(devnet, address) == before + 10
        assert await _pool_empty(devnet)


# -- item 6: a signing failure ----------------------------------------------------------------------


async def test_signing_failure_is_a_config_error_and_keeps_the_nonce(
    devnet: Devnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eth-account refusing to sign: ConfigError, nothing sent, the nonce is not lost, and the next
    transaction goes through at that very nonce."""
    broker = _broker(devnet, 14)
    async with broker:
        await broker.ledger.add_ledger(og("3"))
        address = broker.address
        assert address is not None
        before = await _nonce(devnet, address)
        account = broker._account
        assert account is not None

        def refuse(tx: Any) -> Any:
            raise TypeError("cannot serialise this field")

        monkeypatch.setattr(account, "sign_transaction", refuse)
        with pytest.raises(ConfigError) as info:
            await broker.ledger.deposit_fund(og("1"))
        assert "could not be signed" in str(info.value)
        monkeypatch.undo()
        assert broker.transactions.in_doubt() == []
        assert await _nonce(devnet, address, "pending") == before
        with anyio.fail_after(HANG_BOUND):
            receipt = await broker.ledger.deposit_fund(og("1"))
        assert broker.transactions.get(receipt.tx_hash).nonce == before
        assert await _nonce(devnet, address) == before + 1
        assert (await broker.ledger.get_ledger()).total == og("4")


# -- item 14: hung receipt polls ----------------------------------------------------------------------


async def test_hung_receipt_polls_end_within_the_receipt_timeout(
    devnet: Devnet, rpc_fault_proxy: RpcFaultProxy
) -> None:
    """Receipt polls that never answer: the send ends within ``receipt_timeout`` (plus the hang
    detector's margin) as outcome unknown, never as "not executed"; resolving later finds it mined."""
    policy = dataclasses.replace(
        FAST_TX, receipt_timeout=1.5, cancel_on_timeout=False, rebroadcast_interval=0.1
    )
    broker = AsyncBroker(
        devnet.accounts[15].private_key,
        network=dataclasses.replace(devnet.network, rpc_url=rpc_fault_proxy.url),
        retry=dataclasses.replace(FAST_RETRY, attempt_timeout=0.3),
        tx_policy=policy,
    )
    async with broker:
        await broker.ledger.add_ledger(og("3"))
        rpc_fault_proxy.methods = {"eth_getTransactionReceipt"}
        rpc_fault_proxy.slow_rate = 1.0
        rpc_fault_proxy.slow_seconds = 30.0
        with (
            anyio.fail_after(policy.receipt_timeout + 5),
            pytest.raises(TransactionOutcomeUnknownError) as info,
        ):
            await broker.ledger.deposit_fund(og("1"))
        tx_hash = info.value.tx_hash
        assert tx_hash is not None
        assert rpc_fault_proxy.faults["slow"] > 0
        assert [r.tx_hash for r in broker.transactions.in_doubt()] == [tx_hash]
        rpc_fault_proxy.slow_rate = 0.0
        with anyio.fail_after(HANG_BOUND):
            record = await broker.transactions.resolve(tx_hash)
        assert record.state is TxState.MINED and record.receipt is not None
        assert (await broker.ledger.get_ledger()).total == og("4")
        assert broker.transactions.in_doubt() == []


# -- in-doubt transactions: status, cancel, resolve ----------------------------------------------------


UNMINED = dataclasses.replace(FAST_TX, receipt_timeout=0.5, cancel_on_timeout=False, rebroadcast_interval=0.1)


async def _unknown_deposit(dn: Devnet, broker: AsyncBroker) -> tuple[str, str]:
    """With automine off (the caller restores it): a 1 OG deposit whose outcome is unknown.

    Returns:
        ``(wallet address, the deposit's hash)``.
    """
    await broker.ledger.add_ledger(og("3"))
    address = broker.address
    assert address is not None
    await dn.rpc("evm_setAutomine", [False])
    with pytest.raises(TransactionOutcomeUnknownError) as info:
        await broker.ledger.deposit_fund(og("1"))
    assert info.value.tx_hash is not None
    return address, info.value.tx_hash


async def test_in_doubt_transaction_cancelled_by_hand(devnet: Devnet) -> None:
    """Automine off: the deposit's outcome is unknown, listed in doubt and pending; ``cancel()``
    replaces it, the replacement is mined, nothing was executed."""
    broker = _broker(devnet, 16, policy=UNMINED)
    async with broker:
        try:
            address, tx_hash = await _unknown_deposit(devnet, broker)
            (doubt,) = broker.transactions.in_doubt()
            assert doubt.tx_hash == tx_hash and doubt.state is TxState.UNKNOWN
            assert await broker.transactions.status(tx_hash) is TxState.PENDING

            result: dict[str, Any] = {}

            async def cancel() -> None:
                result["record"] = await broker.transactions.cancel(tx_hash, timeout=HANG_BOUND)

            with anyio.fail_after(HANG_BOUND):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel)
                    tg.start_soon(_mine_when, devnet, address, _self_transfer(address))
            record = result["record"]
            assert record.state is TxState.CANCELLED and record.replacement_hash is not None
            replacement = await devnet.rpc("eth_getTransactionReceipt", [record.replacement_hash])
            assert replacement is not None and int(replacement["status"], 16) == 1
            assert await devnet.rpc("eth_getTransactionReceipt", [tx_hash]) is None
            assert await broker.transactions.status(tx_hash) is TxState.CANCELLED
            assert broker.transactions.in_doubt() == []
        finally:
            await devnet.rpc("evm_setAutomine", [True])
        assert (await broker.ledger.get_ledger()).total == og("3")
        assert await _pool_empty(devnet)


async def test_in_doubt_transaction_resolved(devnet: Devnet) -> None:
    """Automine off: ``resolve()`` re-sends the identical bytes; once mined it reports ``mined``."""
    broker = _broker(devnet, 17, policy=UNMINED)
    async with broker:
        try:
            address, tx_hash = await _unknown_deposit(devnet, broker)
            result: dict[str, Any] = {}

            async def resolve() -> None:
                result["record"] = await broker.transactions.resolve(tx_hash, timeout=HANG_BOUND)

            with anyio.fail_after(HANG_BOUND):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(resolve)
                    tg.start_soon(_mine_when, devnet, address, lambda tx: tx["hash"] == tx_hash)
            record = result["record"]
            assert record.state is TxState.MINED and record.receipt is not None
            assert record.receipt.tx_hash == tx_hash
            assert broker.transactions.in_doubt() == []
        finally:
            await devnet.rpc("evm_setAutomine", [True])
        assert (await broker.ledger.get_ledger()).total == og("4")
        assert await _pool_empty(devnet)


async def test_unmined_transaction_cancelled_automatically(devnet: Devnet) -> None:
    """Automine off and ``cancel_on_timeout``: the SDK replaces the timed-out deposit; once the
    replacement is mined the caller gets TransactionNotExecutedError and nothing was executed."""
    policy = dataclasses.replace(UNMINED, cancel_on_timeout=True, cancel_timeout=HANG_BOUND)
    broker = _broker(devnet, 18, policy=policy)
    async with broker:
        await broker.ledger.add_ledger(og("3"))
        address = broker.address
        assert address is not None
        before = await _nonce(devnet, address)
        await devnet.rpc("evm_setAutomine", [False])
        try:
            errors: list[TransactionNotExecutedError] = []

            async def deposit() -> None:
                with pytest.raises(TransactionNotExecutedError) as info:
                    await broker.ledger.deposit_fund(og("1"))
                errors.append(info.value)

            with anyio.fail_after(HANG_BOUND + 5):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(deposit)
                    tg.start_soon(_mine_when, devnet, address, _self_transfer(address))
            (error,) = errors
            assert error.reason == "cancelled" and error.replacement_hash is not None
            assert error.tx_hash is not None
            assert await devnet.rpc("eth_getTransactionReceipt", [error.tx_hash]) is None
            assert broker.transactions.get(error.tx_hash).state is TxState.CANCELLED
            assert broker.transactions.in_doubt() == []
        finally:
            await devnet.rpc("evm_setAutomine", [True])
        assert (await broker.ledger.get_ledger()).total == og("3")
        assert await _nonce(devnet, address) == before + 1
        assert await _pool_empty(devnet)


async def test_a_deposit_left_in_the_pool_at_a_used_nonce_is_signed_again(
    devnet: Devnet, caplog: pytest.LogCaptureFixture
) -> None:
    """The node keeps our deposit in its pool after a block used its nonce (``anvil_setNonce`` stands in
    for another worker's gap filler): the wait proves it can never execute, well inside the receipt bound,
    and the deposit is signed again at the next nonce; the ledger grows once."""
    broker = _broker(devnet, 18)
    async with broker:
        await broker.ledger.add_ledger(og("3"))
        address = broker.address
        assert address is not None
        nonce = await _nonce(devnet, address)
        receipts: list[TxReceipt] = []

        async def deposit() -> None:
            receipts.append(await broker.ledger.deposit_fund(og("1")))

        await devnet.rpc("evm_setAutomine", [False])
        try:
            with anyio.fail_after(HANG_BOUND), caplog.at_level("INFO", "og_inference_async"):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(deposit)
                    while not await _pool_txs(devnet, address):  # noqa: ASYNC110 (polls the node)
                        await anyio.sleep(0.01)
                    await devnet.rpc("anvil_setNonce", [address, hex(nonce + 1)])
                    stale = await _pool_txs(devnet, address)
                    # mine once the deposit is signed again (the node still holds the first one)
                    with anyio.fail_after(HANG_BOUND):
                        while len(await _pool_txs(devnet, address)) < 2:  # noqa: ASYNC110
                            await anyio.sleep(0.01)
                    await devnet.rpc("evm_setAutomine", [True])
                    await devnet.rpc("evm_mine")
        finally:
            await devnet.rpc("evm_setAutomine", [True])
        assert [int(tx["nonce"], 16) for tx in stale] == [nonce]  # the node still holds it
        (receipt,) = receipts
        mined = await devnet.rpc("eth_getTransactionByHash", [receipt.tx_hash])
        assert int(mined["nonce"], 16) == nonce + 1
        first, second = broker.transactions.recent(2)[::-1]
        assert (first.nonce, first.state, second.state) == (nonce, TxState.REPLACED, TxState.MINED)
        assert "can never be mined" in caplog.text
        assert (await broker.ledger.get_ledger()).total == og("4")


# -- item 1: bursts of cancelled reads and transactions ------------------------------------------------

BURSTS, READ_WIDTH, TX_WIDTH = 10, 20, 10
#: The longest a cancelled call may run before its cancel scope fires, in seconds.
MAX_CANCEL_DELAY = 0.25
SMALL = og("0.01")


async def _cancelled(rng: random.Random, call: Callable[[], Awaitable[Any]], returned: set[str]) -> None:
    """Run ``call``, cancelled after a random delay (or finished first: its receipt is noted)."""
    with anyio.move_on_after(rng.uniform(0.0, MAX_CANCEL_DELAY)):
        result = await call()
        if isinstance(result, TxReceipt):
            returned.add(result.tx_hash)


async def _still_works(broker: AsyncBroker, provider: str, returned: set[str]) -> None:
    """Reads and a deposit complete (bounded) after a burst."""
    with anyio.fail_after(HANG_BOUND):
        await broker.ledger.get_ledger()
        await broker.ledger.get_account(provider)
        receipt = await broker.ledger.deposit_fund(SMALL)
        returned.add(receipt.tx_hash)


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    with anyio.fail_after(HANG_BOUND):
        while not await condition():  # noqa: ASYNC110 (polls the node)
            await anyio.sleep(0.05)


async def test_cancelled_bursts_leave_brokers_working_and_funds_conserved(
    devnet: Devnet, rpc_fault_proxy: RpcFaultProxy
) -> None:
    """On a slow node, 10 bursts of 20 cancelled reads and of 10 cancelled deposits/transfers on
    broker A, while broker B (another wallet) keeps working: every later call completes, every
    cancelled caller's transaction that landed is listed with ``caller_gave_up``, the ledger total
    is exactly what landed, and nothing is left in the node's pool."""
    provider = await register_provider(devnet)
    a = _broker(devnet, 19, url=rpc_fault_proxy.url)
    b = _broker(devnet, 20, url=rpc_fault_proxy.url)
    rng = random.Random(20240612)
    returned: set[str] = set()
    started = time.time()
    async with a, b:
        first = await a.ledger.add_ledger(og("10"))
        second = await a.ledger.transfer_fund(provider, og("1"))
        returned |= {first.tx_hash, second.tx_hash}
        await b.ledger.add_ledger(og("3"))
        rpc_fault_proxy.slow_rate = 0.5  # half of all requests answer late (forwarded at once)
        rpc_fault_proxy.slow_seconds = 0.05
        done = anyio.Event()
        b_calls = 0

        def read(seed: float) -> Callable[[], Awaitable[Any]]:
            choice = random.Random(seed).random()
            if choice < 0.5:
                return a.ledger.get_ledger
            return lambda: a.ledger.get_account(provider)

        def write(seed: float) -> Callable[[], Awaitable[Any]]:
            if random.Random(seed).random() < 0.7:
                return lambda: a.ledger.deposit_fund(SMALL)
            return lambda: a.ledger.transfer_fund(provider, SMALL)

        async def bursts_on_a() -> None:
            for _ in range(BURSTS):
                for width, make in ((READ_WIDTH, read), (TX_WIDTH, write)):
                    async with anyio.create_task_group() as tg:
                        for _ in range(width):
                            tg.start_soon(
                                _cancelled, random.Random(rng.random()), make(rng.random()), returned
                            )
                    await _still_works(a, provider, returned)
            done.set()

        async def b_keeps_working() -> None:
            nonlocal b_calls
            while not done.is_set():
                with anyio.fail_after(HANG_BOUND):
                    await b.ledger.get_ledger()
                    await b.ledger.deposit_fund(SMALL)
                b_calls += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(bursts_on_a)
            tg.start_soon(b_keeps_working)
        assert b_calls > 0 and rpc_fault_proxy.faults["slow"] > 0

        # the transactions of cancelled callers are finished in the background; then the pool is empty
        async def settled() -> bool:
            return not a.transactions.in_doubt()

        await _until(settled)
        await _until(lambda: _pool_empty(devnet))

        ledger_address = devnet.network.ledger.lower()
        landed_value = 0
        gave_up = 0
        # this test's records only (the process-wide history also holds earlier tests' ones, on
        # chains since reverted, some with identical bytes), each hash once
        mine = {r.tx_hash: r for r in a.transactions.recent(1000) if r.created_at >= started}
        for record in mine.values():
            receipt = await devnet.rpc("eth_getTransactionReceipt", [record.tx_hash])
            if receipt is None or record.to.lower() != ledger_address:
                continue
            assert int(receipt["status"], 16) == 1
            assert record.state is TxState.MINED
            landed_value += record.value
            if record.tx_hash not in returned:
                assert record.caller_gave_up, f"{record.tx_hash} landed but no caller got it"
                gave_up += 1
        assert returned <= set(mine)
        assert gave_up > 0
        assert (await a.ledger.get_ledger()).total == landed_value
        await _still_works(a, provider, returned)
        with anyio.fail_after(HANG_BOUND):
            await b.ledger.get_ledger()
