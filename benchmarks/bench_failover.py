"""RPC failover on the devnet (plain script: ``python benchmarks/bench_failover.py``).

Three JSON-RPC fault proxies in front of the devnet's anvil serve as three endpoints of one broker
(``rpc_urls``). Reader tasks read the wallet balance while a depositor sends ``deposit_fund``
transactions one after another. Halfway through the reads the primary endpoint is killed (its
proxy closed) and the second starts rate-limiting every request (half HTTP 429, half JSON-RPC
-32005). Reported:

* reads that succeeded, out of those started, before and during the failures;
* read latency p50 / p99 with all endpoints healthy and during the failures (the latency added),
  and, for reference, the same reads on a broker with a single ``rpc_url`` (the cost of the
  fallback provider when nothing fails);
* deposits landed, distinct transaction hashes, the nonces used on chain, ``eth_sendRawTransaction``
  calls per endpoint, and whether the ledger total is exact to the wei (nothing ran twice);
* the health view (``broker.rpc_health()``) at the end.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from typing import Any

import anyio

from og_inference_async import AsyncBroker, RetryPolicy, TxPolicy, og
from og_inference_devnet import start_devnet
from og_inference_devnet.faultproxy import start_rpc_fault_proxy

READERS = 8
READS_PER_READER = 250
WARMUP = 50
DEPOSIT = og("0.01")
RETRY = RetryPolicy(attempts=6, max_delay=10.0, initial_backoff=0.01, max_backoff=0.2, attempt_timeout=2.0)
TX = TxPolicy(receipt_poll_interval=0.01, rebroadcast_interval=0.2, receipt_timeout=20.0)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


class Run:
    """Readers and a depositor on one broker; with ``chaos``, endpoints fail when half the reads started."""

    def __init__(self, broker: AsyncBroker, proxies: list[Any] | None) -> None:
        self.broker = broker
        self.proxies = proxies
        self.phase = "healthy"
        self.stats: dict[str, dict[str, Any]] = {
            name: {"started": 0, "ok": 0, "failed": 0, "latency": []} for name in ("healthy", "failing")
        }
        self.receipts: list[str] = []
        self.deposit_errors: list[str] = []
        self.wall = 0.0
        self.killed = self.limited = -1

    async def _chaos(self) -> None:
        assert self.proxies is not None
        self.phase = "failing"
        self.killed, self.limited = _busiest(self.broker)
        self.proxies[self.limited].json_rate_limit_fraction = 0.5
        self.proxies[self.limited].rate_limit_rate = 1.0  # every request refused: half 429, half -32005
        self.proxies[self.killed].reset_rate = 1.0  # killed: open connections reset, then nothing listens
        await self.proxies[self.killed].aclose()

    async def _reader(self) -> None:
        halfway = READERS * READS_PER_READER // 2
        for _ in range(READS_PER_READER):
            row = self.stats[self.phase]
            row["started"] += 1
            t = time.perf_counter()
            try:
                await self.broker.get_wallet_balance()
            except Exception as exc:  # counted, not raised: the benchmark reports failures
                row["failed"] += 1
                print(f"  read failed: {type(exc).__name__}: {exc}")
                continue
            row["latency"].append(time.perf_counter() - t)
            row["ok"] += 1
            if (
                self.proxies is not None
                and self.phase == "healthy"
                and self.stats["healthy"]["started"] >= halfway
            ):
                await self._chaos()

    async def _depositor(self, done: anyio.Event) -> None:
        while not done.is_set():
            try:
                self.receipts.append((await self.broker.ledger.deposit_fund(DEPOSIT)).tx_hash)
            except Exception as exc:  # counted, not raised
                self.deposit_errors.append(f"{type(exc).__name__}: {exc}")

    async def run(self) -> None:
        """Warm up, then run the readers while the depositor deposits."""
        for _ in range(WARMUP):
            await self.broker.get_wallet_balance()
        done = anyio.Event()
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._depositor, done)
            async with anyio.create_task_group() as readers:
                for _ in range(READERS):
                    readers.start_soon(self._reader)
            done.set()
        self.wall = time.perf_counter() - t0


def _busiest(broker: AsyncBroker) -> tuple[int, int]:
    """The endpoint reads go to now (the one to kill) and the next one (the one to rate-limit)."""
    endpoints = broker._rpc.endpoints if broker._rpc is not None else None
    assert endpoints is not None
    first = endpoints.health.best()
    assert first is not None
    second = endpoints.health.best(exclude=first)
    assert second is not None
    return first, second


async def _nonce(dn: Any, address: str) -> int:
    return int(await dn.rpc("eth_getTransactionCount", [address, "latest"]), 16)


async def main() -> None:
    async with start_devnet() as dn, AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(start_rpc_fault_proxy(dn.rpc_url, seed=i)) for i in range(3)
        ]
        key = dn.accounts[3].private_key
        async with AsyncBroker(
            key, network=dn.network, rpc_url=proxies[2].url, retry=RETRY, tx_policy=TX
        ) as one:
            await one.ledger.add_ledger(og("3"))
            reference = Run(one, None)
            await reference.run()
        for proxy in proxies:
            proxy.reset_counters()  # the counts below are the failover broker's alone
        broker = AsyncBroker(
            dn.accounts[2].private_key,
            network=dn.network,
            rpc_urls=[p.url for p in proxies],
            retry=RETRY,
            tx_policy=TX,
        )
        async with broker:
            await broker.ledger.add_ledger(og("3"))
            address = broker.address
            assert address is not None
            nonce_before = await _nonce(dn, address)
            total_before = (await broker.ledger.get_ledger()).total
            run = Run(broker, proxies)
            await run.run()
            nonce_after = await _nonce(dn, address)
            total_after = (await broker.ledger.get_ledger()).total
            health = broker.rpc_health()

    print("## RPC failover: 3 endpoints, the busiest killed and the next rate-limiting halfway")
    print(f"  {READERS} readers x {READS_PER_READER} balance reads, one depositor; wall {run.wall:.2f} s")
    print(f"  killed endpoint {run.killed}, rate-limiting endpoint {run.limited}")
    print(f"  {'phase':38s} {'reads ok/started':>17s} {'p50 ms':>8s} {'p99 ms':>8s}")
    rows = (
        (reference.stats["healthy"], "single rpc_url, healthy (reference)"),
        (run.stats["healthy"], "rpc_urls, all healthy"),
        (run.stats["failing"], "rpc_urls, one killed, one 429ing"),
    )
    for row, label in rows:
        print(
            f"  {label:38s} {row['ok']:>8d}/{row['started']:<8d} "
            f"{_pct(row['latency'], 0.5):8.2f} {_pct(row['latency'], 0.99):8.2f}"
        )
    base, healthy, failing = (r[0]["latency"] for r in rows)
    print(
        f"  latency added by the failures: p50 {_pct(failing, 0.5) - _pct(healthy, 0.5):+.2f} ms, "
        f"p99 {_pct(failing, 0.99) - _pct(healthy, 0.99):+.2f} ms; "
        f"fallback provider when healthy vs one rpc_url: p50 {_pct(healthy, 0.5) - _pct(base, 0.5):+.2f} ms"
    )
    sends = [p.calls["eth_sendRawTransaction"] for p in proxies]
    exact = total_after - total_before == len(run.receipts) * DEPOSIT
    print("\n## Transactions (rpc_urls broker)")
    print(f"  deposits landed          {len(run.receipts)} ({len(set(run.receipts))} distinct hashes)")
    print(f"  deposits failed          {len(run.deposit_errors)} {run.deposit_errors[:3]}")
    print(f"  nonces used on chain     {nonce_after - nonce_before}")
    print(f"  sendRawTransaction calls per endpoint {sends} (re-sends of identical bytes included)")
    print(f"  ledger exact to the wei  {exact} (moved {total_after - total_before} wei)")
    print("\n## Health at the end")
    for h in health:
        print(
            f"  {h.url:26s} score {h.score:.3f} requests {h.requests:5d} failures {h.failures:4d} "
            f"rate-limited {h.rate_limited:4d} cooling {h.cooling_down} "
            f"latency {(h.latency or 0) * 1000:.2f} ms"
        )
    assert run.stats["healthy"]["failed"] == run.stats["failing"]["failed"] == 0, "a read failed"
    assert exact, "the ledger moved more than the deposits that landed"
    assert nonce_after - nonce_before == len(run.receipts) == len(set(run.receipts)), (
        "a transaction ran twice"
    )


if __name__ == "__main__":
    anyio.run(main)
