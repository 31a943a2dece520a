"""Chain-layer benchmarks on the devnet (plain script: ``python benchmarks/bench_chain.py``).

1. Account-read latency through the SDK vs a raw JSON-RPC ``eth_call`` with pre-encoded calldata
   over httpx (target: SDK <= 1.5x raw), plus web3's contract-call path for reference.
2. 20 concurrent ``transfer_fund`` calls from ONE wallet vs one transfer (wall-time ratio).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from og_inference_async import AsyncBroker, og
from og_inference_async._chain import inference_abi, reset_nonce_allocators
from og_inference_async.devnet import start_devnet

N_READS = 300


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.chain_helpers import register_provider  # noqa: E402


async def _register(dn: Any, n: int) -> list[str]:
    return [await register_provider(dn) for _ in range(n)]


async def bench_reads(dn: Any, provider: str) -> dict[str, float]:
    user = dn.accounts[1]
    fn = inference_abi().fn("getAccount")
    calldata = "0x" + fn.encode(user.address, provider).hex()
    call = {"to": dn.inference, "data": calldata}
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]}
    out: dict[str, float] = {}
    async with httpx.AsyncClient() as client:
        for _ in range(30):
            await client.post(dn.rpc_url, json=body)
        samples = []
        for _ in range(N_READS):
            t = time.perf_counter()
            (await client.post(dn.rpc_url, json=body)).json()
            samples.append(time.perf_counter() - t)
        out["raw eth_call (httpx)"] = statistics.median(samples) * 1000
    async with AsyncBroker(user.private_key, network=dn.network) as broker:
        for _ in range(30):
            await broker.ledger.get_account(provider)
        samples = []
        for _ in range(N_READS):
            t = time.perf_counter()
            await broker.ledger.get_account(provider)
            samples.append(time.perf_counter() - t)
        out["SDK get_account"] = statistics.median(samples) * 1000
        # web3's contract layer, for reference
        w3 = broker._chain_reader.rpc.w3
        contract = w3.eth.contract(address=dn.inference, abi=inference_abi().abi)
        samples = []
        for _ in range(60):
            t = time.perf_counter()
            await contract.functions.getAccount(user.address, provider).call()
            samples.append(time.perf_counter() - t)
        out["web3 contract call"] = statistics.median(samples) * 1000
    return out


async def bench_transfers(dn: Any, providers: list[str]) -> dict[str, float]:
    user = dn.accounts[2]
    out: dict[str, float] = {}
    async with AsyncBroker(user.private_key, network=dn.network) as broker:
        await broker.ledger.add_ledger(og("40"))
        t = time.perf_counter()
        await broker.ledger.transfer_fund(providers[0], og("1"))
        out["1 transfer (s)"] = time.perf_counter() - t
        t = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for p in providers[1:21]:
                tg.start_soon(broker.ledger.transfer_fund, p, og("1"))
        out["20 concurrent transfers (s)"] = time.perf_counter() - t
    return out


async def main() -> None:
    async with start_devnet() as dn:
        providers = await _register(dn, 21)
        snap = await dn.snapshot()
        await dn.rpc("anvil_impersonateAccount", [dn.accounts[1].address])
        async with AsyncBroker(dn.accounts[1].private_key, network=dn.network) as b:
            await b.ledger.add_ledger(og("3"))
            await b.ledger.transfer_fund(providers[0], og("1"))
        reads = await bench_reads(dn, providers[0])
        await dn.revert(snap)
        reset_nonce_allocators()
        transfers = await bench_transfers(dn, providers)
    print(f"\n## Account read latency (median of {N_READS}, ms)")
    for k, v in reads.items():
        print(f"  {k:28s} {v:7.3f} ms")
    print(f"  SDK / raw ratio              {reads['SDK get_account'] / reads['raw eth_call (httpx)']:7.2f}x")
    print("\n## Transfers from one wallet")
    for k, v in transfers.items():
        print(f"  {k:28s} {v:7.3f}")
    ratio = transfers["20 concurrent transfers (s)"] / transfers["1 transfer (s)"]
    print(f"  20-concurrent / single       {ratio:7.2f}x")


if __name__ == "__main__":
    anyio.run(main)
