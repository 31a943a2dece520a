"""Chain-layer benchmarks on the devnet (plain script: ``python benchmarks/bench_chain.py``).

1. Account reads (``getAccount``) through the SDK vs a raw JSON-RPC ``eth_call`` on the SAME HTTP
   transport: the raw side posts pre-encoded calldata with an ``httpx.AsyncClient`` from
   :func:`og_inference_async._http.make_http_client` (the aiohttp-backed transport the broker
   uses), parses the JSON and decodes the result hex. Measured both ways: sequential median
   latency and throughput at concurrency 20. Target: the SDK at least 0.67x the raw speed
   (raw latency / SDK latency; SDK throughput / raw throughput). Also shown: the SDK's raw
   ``RpcClient.eth_call`` (provider cost without ABI decoding) and web3's contract-call path.
   Sequential samples interleave the variants; concurrent phases alternate over several rounds
   and the best round of each variant counts, so a noisy neighbour hurts both alike.
2. 20 concurrent ``transfer_fund`` calls from ONE wallet vs one transfer (wall-time ratio).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from og_inference_async import AsyncBroker, og
from og_inference_async._chain import inference_abi, reset_nonce_allocators
from og_inference_async._http import make_http_client, transport_name
from og_inference_devnet import start_devnet

N_SEQ = 400  # sequential reads per variant
N_CONC = 2000  # reads per concurrent phase
WORKERS = 20
ROUNDS = 3  # concurrent phases per variant (alternating); the best counts
WARMUP = 100
TARGET = 0.67

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.chain_helpers import register_provider  # noqa: E402

Read = Callable[[], Awaitable[Any]]


async def _register(dn: Any, n: int) -> list[str]:
    return [await register_provider(dn) for _ in range(n)]


async def _throughput(read: Read, total: int, workers: int) -> float:
    """Reads per second when ``workers`` tasks share ``total`` reads."""
    per = total // workers

    async def worker() -> None:
        for _ in range(per):
            await read()

    t = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return per * workers / (time.perf_counter() - t)


async def bench_reads(dn: Any, provider: str) -> dict[str, dict[str, float]]:
    """``{variant: {"ms": sequential median, "rps": concurrency-20 throughput}}``."""
    user = dn.accounts[1]
    fn = inference_abi().fn("getAccount")
    calldata_bytes = fn.encode(user.address, provider)
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_call",
            "params": [{"to": dn.inference, "data": "0x" + calldata_bytes.hex()}, "latest"],
        },
        separators=(",", ":"),
    ).encode()
    headers = {"Content-Type": "application/json"}

    async with make_http_client() as client, AsyncBroker(user.private_key, network=dn.network) as broker:
        assert transport_name(client) == "aiohttp", "the raw side must use the aiohttp transport"
        assert transport_name(broker._http) == "aiohttp", "the broker must use the aiohttp transport"

        async def raw() -> bytes:
            resp = await client.post(dn.rpc_url, content=body, headers=headers)
            return bytes.fromhex(resp.json()["result"][2:])

        rpc = broker._chain_reader.rpc

        async def sdk_rpc() -> bytes:
            return await rpc.eth_call(dn.inference, calldata_bytes)

        async def sdk() -> Any:
            return await broker.ledger.get_account(provider)

        contract = broker._chain_reader.rpc.w3.eth.contract(address=dn.inference, abi=inference_abi().abi)

        async def web3_call() -> Any:
            return await contract.functions.getAccount(user.address, provider).call()

        # same answer on every path
        assert await raw() == await sdk_rpc()
        assert (await sdk()).balance in (await web3_call())

        variants: dict[str, Read] = {
            "raw eth_call": raw,
            "SDK get_account": sdk,
            "SDK rpc.eth_call": sdk_rpc,
            "web3 contract call": web3_call,
        }
        for read in variants.values():  # warm-up: connections, caches, code paths
            for _ in range(WARMUP):
                await read()
            await _throughput(read, WORKERS * 10, WORKERS)

        samples: dict[str, list[float]] = {k: [] for k in variants}
        for i in range(N_SEQ):
            for name, read in variants.items():
                if name == "web3 contract call" and i % 4:
                    continue  # slow reference path: a quarter of the samples
                t = time.perf_counter()
                await read()
                samples[name].append(time.perf_counter() - t)

        rps: dict[str, float] = {k: 0.0 for k in variants}
        for _ in range(ROUNDS):
            for name, read in variants.items():
                total = N_CONC // 4 if name == "web3 contract call" else N_CONC
                rps[name] = max(rps[name], await _throughput(read, total, WORKERS))

    return {k: {"ms": statistics.median(samples[k]) * 1000, "rps": rps[k]} for k in variants}


def report_reads(reads: dict[str, dict[str, float]]) -> None:
    """Print the read table and the SDK/raw speed ratios beside the target."""
    print(
        f"\n## Account reads (getAccount) on the devnet, aiohttp transport for both sides"
        f"\n   sequential: median of {N_SEQ}; concurrent: {N_CONC} reads by {WORKERS} workers,"
        f" best of {ROUNDS}"
    )
    print(f"  {'':22s} {'seq median':>11s} {'conc-20':>12s}")
    for k, v in reads.items():
        print(f"  {k:22s} {v['ms']:8.3f} ms {v['rps']:8.0f} /s")
    raw = reads["raw eth_call"]
    print(f"\n  x of raw speed (target >= {TARGET:.2f}x)  sequential  concurrent-20")
    for k in ("SDK get_account", "SDK rpc.eth_call", "web3 contract call"):
        seq = raw["ms"] / reads[k]["ms"]
        conc = reads[k]["rps"] / raw["rps"]
        ok = "ok" if min(seq, conc) >= TARGET else "BELOW"
        if k == "web3 contract call":
            ok = "(reference)"
        print(f"  {k:32s} {seq:9.2f}x {conc:12.2f}x   {ok}")


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
    report_reads(reads)
    print("\n## Transfers from one wallet")
    for k, v in transfers.items():
        print(f"  {k:28s} {v:7.3f}")
    ratio = transfers["20 concurrent transfers (s)"] / transfers["1 transfer (s)"]
    print(f"  20-concurrent / single       {ratio:7.2f}x")


if __name__ == "__main__":
    anyio.run(main)
