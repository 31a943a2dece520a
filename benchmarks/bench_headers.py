"""``broker.inference.get_request_headers`` on the devnet (plain script).

Run: ``.venv/bin/python benchmarks/bench_headers.py``. Measures, through a real broker and chain:

* cold burst: 1,000 concurrent calls for one provider on a fresh broker: signatures, JSON-RPC
  requests, wall time;
* warm calls per second, sequential and at concurrency 64;
* memory of the session cache + account cache with 10,000 providers (tracemalloc, synthetic
  accounts so no chain writes are needed).
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from og_inference_async import AsyncBroker, og  # noqa: E402
from og_inference_async.types import Account  # noqa: E402
from og_inference_devnet import start_devnet  # noqa: E402
from tests.integration.chain_helpers import register_provider  # noqa: E402


async def main() -> None:
    """Run the three measurements and print a table."""
    async with start_devnet() as dn:
        provider = await register_provider(dn)
        user = dn.accounts[1]
        async with AsyncBroker(user.private_key, network=dn.network) as b:
            await b.ledger.add_ledger(og("5"))
            await b.ledger.transfer_fund(provider, og("2"))

        async with AsyncBroker(user.private_key, network=dn.network) as broker:
            rpc = broker._chain_reader.rpc
            before = rpc.request_count
            t = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(1000):
                    tg.start_soon(broker.inference.get_request_headers, provider)
            cold = time.perf_counter() - t
            signatures = broker.inference.auth.tokens.stats.signatures
            requests = rpc.request_count - before

            n = 50_000
            t = time.perf_counter()
            for _ in range(n):
                await broker.inference.get_request_headers(provider)
            seq = n / (time.perf_counter() - t)

            per_task = 2_000

            async def worker() -> None:
                for _ in range(per_task):
                    await broker.inference.get_request_headers(provider)
                    await anyio.lowlevel.checkpoint()

            t = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(64):
                    tg.start_soon(worker)
            conc = 64 * per_task / (time.perf_counter() - t)

            # Memory: 10,000 providers in the account cache and the token cache.
            auth = broker.inference.auth
            tracemalloc.start()
            base = tracemalloc.take_snapshot()
            from eth_account import Account as EthAccount

            far = time.time() + 3600
            for _ in range(10_000):
                p = EthAccount.create().address
                acct = Account(
                    user=user.address,
                    provider=p,
                    nonce=0,
                    balance=og("1"),
                    pending_refund=0,
                    refunds=(),
                    additional_info="",
                    acknowledged=True,
                    generation=0,
                    revoked_bitmap=0,
                )
                auth._accounts[p] = (far, acct)
                auth._acks[p] = far
                await auth.get_request_headers(p)
            snap = tracemalloc.take_snapshot()
            tracemalloc.stop()
            mem = sum(s.size_diff for s in snap.compare_to(base, "filename"))

    print("## get_request_headers through AsyncBroker on the devnet")
    print(f"  cold burst 1,000 callers      {cold * 1000:8.1f} ms")
    print(f"    signatures={signatures}  rpc requests={requests}")
    print(f"  warm, sequential              {seq:10,.0f} calls/s")
    print(f"  warm, 64 concurrent tasks     {conc:10,.0f} calls/s")
    print(f"  10,000 providers cached       {mem / 1e6:8.1f} MB  ({mem / 10_000 / 1000:.2f} KB each)")


if __name__ == "__main__":
    anyio.run(main)
