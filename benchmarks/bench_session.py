"""Benchmark of og_inference_async._tokens and ._session: signing, decoding and the session-token cache.

Run from the repository root with ``PYTHONPATH=. .venv/bin/python benchmarks/bench_session.py`` (or after
``pip install -e .``). Measures:

* sign / decode / verify cost per token (eth-keys backend shown);
* warm ``get_token`` calls per second, sequentially and from 64 concurrent tasks;
* a cold burst of 1,000 concurrent ``get_token`` calls on a fresh cache (fetches, signatures, wall time),
  with a ``fetch_generation`` that takes 5 ms like a local RPC round trip;
* memory of a cache holding 10,000 providers (tracemalloc).
"""

from __future__ import annotations

import time
import tracemalloc

import anyio
from eth_account import Account
from eth_keys.backends import get_backend
from eth_utils import to_checksum_address

from og_inference_async._session import SessionTokenCache
from og_inference_async._tokens import decode_token, make_session_claims, sign_token, verify_token

ACCOUNT = Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


async def fetch_zero(provider: str) -> int:
    """A fetcher with no latency."""
    return 0


async def fetch_slow(provider: str) -> int:
    """A fetcher that takes 5 ms, like a local RPC call."""
    await anyio.sleep(0.005)
    return 0


def bench_codec() -> None:
    """Per-token cost of signing, decoding and verifying."""
    n = 2000
    claims = make_session_claims(ACCOUNT.address, PROVIDER, generation=0, now_ms=int(time.time() * 1000))
    start = time.perf_counter()
    for _ in range(n):
        token = sign_token(claims, ACCOUNT)
    sign_us = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        decoded = decode_token(token.authorization)
    decode_us = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):
        verify_token(decoded)
    verify_us = (time.perf_counter() - start) / n * 1e6
    print(f"eth-keys backend: {type(get_backend()).__name__}")
    print(f"sign_token:   {sign_us:8.1f} us/token")
    print(f"decode_token: {decode_us:8.1f} us/token")
    print(f"verify_token: {verify_us:8.1f} us/token (ecrecover + checks)")


async def bench_warm() -> None:
    """Warm get_token throughput, sequential and at concurrency 64."""
    cache = SessionTokenCache(account=ACCOUNT, fetch_generation=fetch_zero)
    await cache.get_token(PROVIDER)
    n = 200_000
    start = time.perf_counter()
    for _ in range(n):
        await cache.get_token(PROVIDER)
    elapsed = time.perf_counter() - start
    print(f"warm get_token, sequential:     {n / elapsed:12,.0f} calls/s ({elapsed / n * 1e6:.2f} us/call)")

    per_task = 3_000
    tasks = 64

    async def worker() -> None:
        for _ in range(per_task):
            await cache.get_token(PROVIDER)
            await anyio.lowlevel.checkpoint()  # interleave like real request handlers

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(worker)
    elapsed = time.perf_counter() - start
    total = per_task * tasks
    print(
        f"warm get_token, concurrency 64: {total / elapsed:12,.0f} calls/s "
        f"(incl. one checkpoint per call; {cache.stats.signatures} signature)"
    )


async def bench_cold_burst() -> None:
    """1,000 concurrent callers on a fresh cache."""
    for label, fetcher in (("0 ms fetch", fetch_zero), ("5 ms fetch", fetch_slow)):
        cache = SessionTokenCache(account=ACCOUNT, fetch_generation=fetcher)
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(cache.get_token, PROVIDER)
        elapsed = time.perf_counter() - start
        s = cache.stats
        print(
            f"cold burst of 1,000 ({label}): {elapsed * 1000:7.2f} ms wall, fetches={s.generation_fetches}, "
            f"signatures={s.signatures}, coalesced={s.coalesced}, hits={s.hits}"
        )


async def bench_memory() -> None:
    """Memory held by a cache of 10,000 providers."""
    providers = [to_checksum_address(f"0x{i + 1:040x}") for i in range(10_000)]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    cache = SessionTokenCache(account=ACCOUNT, fetch_generation=fetch_zero)
    start = time.perf_counter()
    for p in providers:
        await cache.get_token(p)
    elapsed = time.perf_counter() - start
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(
        f"cache of {len(cache):,} providers: {size / 1e6:.1f} MB ({size / len(cache):,.0f} B/entry); "
        f"filled in {elapsed:.2f} s under tracemalloc"
    )


async def main() -> None:
    """Run every benchmark."""
    bench_codec()
    await bench_warm()
    await bench_cold_burst()
    await bench_memory()


if __name__ == "__main__":
    anyio.run(main)
