"""RPC failover on the devnet: three fault proxies in front of one anvil serve as three endpoints.

"Killed" is a proxy that resets its open connections and is closed (nothing listens any more);
"rate-limiting" is ``rate_limit_rate=1`` (HTTP 429 or JSON-RPC -32005, nothing forwarded). Time
bounds are hang detectors, never speed assertions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from og_inference_async import AsyncBroker, TxState, og
from og_inference_devnet import Devnet
from og_inference_devnet.faultproxy import RpcFaultProxy, start_rpc_fault_proxy

from .chain_helpers import FAST_RETRY, FAST_TX

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

#: Bound on calls that must complete: a hang detector, not a speed assertion.
HANG_BOUND = 30


@asynccontextmanager
async def _endpoints(dn: Devnet, count: int = 3) -> AsyncIterator[list[RpcFaultProxy]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(start_rpc_fault_proxy(dn.rpc_url, seed=i)) for i in range(count)
        ]


def _broker(dn: Devnet, index: int, proxies: list[RpcFaultProxy]) -> AsyncBroker:
    return AsyncBroker(
        dn.accounts[index].private_key,
        network=dn.network,
        rpc_urls=[p.url for p in proxies],
        retry=FAST_RETRY,
        tx_policy=FAST_TX,
    )


async def _kill(proxy: RpcFaultProxy) -> None:
    """Kill an endpoint: requests on its open (keep-alive) connections are reset, then it stops listening."""
    proxy.reset_rate = 1.0
    await proxy.aclose()


def _ranking(broker: AsyncBroker) -> list[int]:
    """The endpoints in the order the broker would try them now (its own ranking, read without I/O)."""
    rpc = broker._rpc  # noqa: SLF001 (the test needs the live ranking, not a rounded snapshot of it)
    assert rpc is not None and rpc.endpoints is not None
    return rpc.endpoints.health.ranked()


async def _nonce(dn: Devnet, address: str) -> int:
    return int(await dn.rpc("eth_getTransactionCount", [address, "latest"]), 16)


async def _wait_for(condition: object) -> None:
    """Poll a local condition (a callable returning bool), bounded."""
    assert callable(condition)
    with anyio.fail_after(HANG_BOUND):
        while not condition():  # noqa: ASYNC110 (the condition is another task's progress)
            await anyio.sleep(0.01)


async def test_reads_and_deposits_survive_a_killed_and_a_rate_limiting_endpoint(devnet: Devnet) -> None:
    """Mid-run the endpoint serving the reads dies and another rate-limits: every read succeeds, every
    deposit lands exactly once (ledger and nonce conserved), and the health view shows both."""
    async with _endpoints(devnet) as proxies, _broker(devnet, 14, proxies) as broker:
        await broker.ledger.add_ledger(og("3"))
        address = broker.address
        assert address is not None
        nonce_before = await _nonce(devnet, address)
        reads = {"ok": 0}
        deposits: list[str] = []
        chaos_done = anyio.Event()
        roles: dict[str, int] = {}

        async def reader() -> None:
            for i in range(60):
                if i == 30:  # half of the reads before the failures, half during them
                    await chaos_done.wait()
                await broker.get_wallet_balance()
                reads["ok"] += 1

        async def depositor() -> None:
            for _ in range(8):
                receipt = await broker.ledger.deposit_fund(og("0.1"))
                assert receipt.status == 1
                deposits.append(receipt.tx_hash)
                if len(deposits) == 3:
                    await chaos_done.wait()

        async def chaos() -> None:
            # wait until every reader and the depositor are parked: nothing in flight, so the ranking
            # read here is the order the next requests will follow
            await _wait_for(lambda: len(deposits) >= 3 and reads["ok"] >= 90)
            killed, limited, spare = _ranking(broker)  # the one serving the reads, then its successors
            roles.update(killed=killed, limited=limited, spare=spare)
            proxies[limited].json_rate_limit_fraction = 0.5
            proxies[limited].rate_limit_rate = 1.0  # every request refused: half HTTP 429, half -32005
            await _kill(proxies[killed])
            chaos_done.set()

        with anyio.fail_after(HANG_BOUND * 2):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(reader)
                tg.start_soon(depositor)
                tg.start_soon(chaos)
        assert reads["ok"] == 180
        assert len(set(deposits)) == 8
        assert (await broker.ledger.get_ledger()).total == og("3.8")  # to the wei: nothing ran twice
        assert await _nonce(devnet, address) == nonce_before + 8
        assert broker.transactions.in_doubt() == []
        health = broker.rpc_health()
        assert [h.requests > 0 for h in health] == [True, True, True]
        assert proxies[roles["limited"]].faults["rate_limit"] > 0
        assert health[roles["limited"]].rate_limited > 0
        assert health[roles["killed"]].failures > 0 and health[roles["killed"]].cooling_down
        assert health[roles["spare"]].failures == 0


async def test_a_send_in_doubt_on_a_dead_endpoint_is_found_by_hash_not_resent(devnet: Devnet) -> None:
    """The pinned endpoint forwards a transaction, loses the answer and dies: the sender finds the
    transaction by hash through another endpoint and never sends it through one."""
    async with _endpoints(devnet) as proxies, _broker(devnet, 15, proxies) as broker:
        await broker.ledger.add_ledger(og("3"))
        pin = _ranking(broker)[0]  # where the send goes first
        others = [i for i in range(3) if i != pin]
        proxies[pin].methods = {"eth_sendRawTransaction"}
        proxies[pin].forward_then_drop_rate = 1.0
        await devnet.rpc("evm_setAutomine", [False])
        try:
            result: dict[str, str] = {}

            async def deposit() -> None:
                result["hash"] = (await broker.ledger.deposit_fund(og("1"))).tx_hash

            with anyio.fail_after(HANG_BOUND):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(deposit)
                    await _wait_for(lambda: bool(proxies[pin].dropped_tx_hashes))
                    await _kill(proxies[pin])
                    await _wait_for(lambda: broker.rpc_health()[pin].failures >= 2)
                    await devnet.rpc("evm_mine")
        finally:
            await devnet.rpc("evm_setAutomine", [True])
        assert result["hash"] == proxies[pin].dropped_tx_hashes[0]
        assert all(proxies[i].calls["eth_sendRawTransaction"] == 0 for i in others)
        assert (await broker.ledger.get_ledger()).total == og("4")
        assert broker.transactions.get(result["hash"]).state is TxState.MINED


async def test_a_send_refused_by_a_rate_limited_pin_moves_after_a_lookup(devnet: Devnet) -> None:
    """The pinned endpoint rate-limits every send (nothing forwarded): after the other endpoints
    show they do not have it, the identical bytes go through another endpoint, once executed."""
    async with _endpoints(devnet) as proxies, _broker(devnet, 16, proxies) as broker:
        await broker.ledger.add_ledger(og("3"))
        address = broker.address
        assert address is not None
        before = await _nonce(devnet, address)
        pin = _ranking(broker)[0]  # where the send goes first
        others = [i for i in range(3) if i != pin]
        proxies[pin].methods = {"eth_sendRawTransaction"}
        proxies[pin].rate_limit_rate = 1.0
        with anyio.fail_after(HANG_BOUND):
            receipt = await broker.ledger.deposit_fund(og("1"))
        assert proxies[pin].faults["rate_limit"] >= 1
        assert sum(proxies[i].calls["eth_sendRawTransaction"] for i in others) >= 1
        assert (await broker.ledger.get_ledger()).total == og("4")
        assert await _nonce(devnet, address) == before + 1
        assert broker.transactions.get(receipt.tx_hash).state is TxState.MINED
        assert broker.rpc_health()[pin].rate_limited >= 1
