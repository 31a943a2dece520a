"""Benchmark the devnet provider: start-to-ready time and raw chat capacity of one provider.

Usage::

    .venv/bin/python benchmarks/bench_provider.py [--duration 5] [--concurrency 64] \
        [--clients aiohttp,httpx-aiohttp]

What it measures:

1. ``start_devnet(with_providers=True)``: anvil + contracts + the four default providers, from the
   call to the moment the ``async with`` body runs (artifacts already cached), over ``--starts`` runs.
   Then, on a running devnet, the four default providers plus ``--extra-providers`` chatbots with
   fresh keys, started concurrently, until every one is registered on chain and serving.
2. Non-streaming ``/v1/proxy/chat/completions`` requests per second against the chatbot provider at
   the given concurrency, with one precomputed ``Authorization`` header (an ephemeral session token;
   every request still goes through the provider's token, account, generation, revocation and
   balance checks, bills a fee and stores a signature). The load is generated in a separate process
   (``--load`` mode of this script) so client and server do not share one interpreter; each client
   library is measured in turn: ``aiohttp`` directly, and httpx with the aiohttp-backed transport of
   ``httpx-aiohttp``; plain ``httpx`` can be added with ``--clients``.

The figures are printed as a table and as one JSON line.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

OG = 10**18
SCRIPT = str(Path(__file__).resolve())


async def _load(url: str, header: str, concurrency: int, duration: float, client: str) -> dict[str, Any]:
    """Send chat requests from ``concurrency`` workers for ``duration`` seconds; return counts and latency."""
    body = json.dumps(
        {"model": "og-devnet/echo-chat-7b", "messages": [{"role": "user", "content": "hi there"}]}
    )
    headers = {"Authorization": header, "Content-Type": "application/json"}
    ok = 0
    errors: dict[str, int] = {}
    latencies: list[float] = []
    deadline = 0.0

    async def run_with(send: Any) -> None:
        nonlocal ok, deadline

        async def worker() -> None:
            nonlocal ok
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                status = await send()
                latencies.append(time.perf_counter() - t0)
                if status == 200:
                    ok += 1
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        # warm-up: open the connections
        deadline = time.perf_counter() + 0.5
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        ok = 0
        errors.clear()
        latencies.clear()
        deadline = time.perf_counter() + duration
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)

    start = time.perf_counter()
    if client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def send_aiohttp() -> int:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    return resp.status

            start = time.perf_counter() + 0.5
            await run_with(send_aiohttp)
    else:
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        if client == "httpx-aiohttp":
            from httpx_aiohttp import AiohttpTransport

            http = httpx.AsyncClient(transport=AiohttpTransport(), limits=limits, timeout=30)
        else:
            http = httpx.AsyncClient(limits=limits, timeout=30)
        async with http:

            async def send_httpx() -> int:
                resp = await http.post(url, content=body, headers=headers)
                return resp.status_code

            start = time.perf_counter() + 0.5
            await run_with(send_httpx)
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)
    return {
        "client": client,
        "ok": ok,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": round(ok / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2) if lat else None,
    }


async def _many_providers(extra: int) -> float:
    """Seconds for the default providers plus ``extra`` chatbots (fresh keys) to start concurrently."""
    from eth_account import Account

    from og_inference_devnet import start_devnet
    from og_inference_devnet.provider import start_default_providers, start_provider

    async with start_devnet() as dn:
        t0 = time.perf_counter()
        await start_default_providers(dn, dn.task_group)
        async with anyio.create_task_group() as tg:
            for i in range(extra):
                key = Account.create().key.hex()
                tg.start_soon(
                    functools.partial(
                        start_provider,
                        dn,
                        dn.task_group,
                        service_type="chatbot",
                        model=f"m{i}",
                        input_price=1,
                        output_price=1,
                        private_key=key,
                        settle_interval=None,
                    )
                )
        return time.perf_counter() - t0


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from eth_account import Account

    from og_inference_async.abi import ledger_abi
    from og_inference_async.tokens import make_session_claims, sign_token
    from og_inference_devnet import start_devnet

    starts: list[float] = []
    for _ in range(args.starts - 1):
        t0 = time.perf_counter()
        async with start_devnet(with_providers=True):
            starts.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    async with start_devnet(with_providers=True) as dn:
        starts.append(time.perf_counter() - t0)
        chat = dn.providers[0]
        user = Account.from_key(dn.accounts[1].private_key)
        await dn.send_as(user.address, dn.ledger, ledger_abi().fn("addLedger").encode(""), value=1000 * OG)
        await dn.send_as(
            user.address,
            dn.ledger,
            ledger_abi().fn("transferFund").encode(chat.address, dn.service_name, 500 * OG),
        )
        claims = make_session_claims(user.address, chat.address, generation=0, now_ms=int(time.time() * 1000))
        header = sign_token(claims, user).authorization
        url = chat.url + "/v1/proxy/chat/completions"
        runs = []
        for client in args.clients.split(","):
            result = await anyio.run_process(
                [
                    sys.executable,
                    SCRIPT,
                    "--load",
                    url,
                    "--header",
                    header,
                    "--concurrency",
                    str(args.concurrency),
                    "--duration",
                    str(args.duration),
                    "--client",
                    client,
                ],
                check=True,
            )
            runs.append(json.loads(result.stdout.decode().strip().splitlines()[-1]))
        await anyio.sleep(2.5)  # let one settlement round run
        settled_ok = chat.unsettled_fee(user.address) < chat.total_billed
    many = await _many_providers(args.extra_providers)
    return {
        "many_providers": {"providers": 4 + args.extra_providers, "start_to_ready_s": round(many, 3)},
        "start_to_ready_s": {
            "runs": [round(s, 3) for s in starts],
            "median": round(statistics.median(starts), 3),
            "max": round(max(starts), 3),
        },
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "chat_rps": runs,
        "settlement_kept_up": settled_ok,
    }


def main() -> None:
    """Run the benchmark (or, with ``--load``, one load-generator process)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--starts", type=int, default=3, help="how many devnet start-ups to time")
    parser.add_argument("--clients", default="aiohttp,httpx-aiohttp")
    parser.add_argument("--extra-providers", type=int, default=16, help="chatbots started with the defaults")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--header", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        out = anyio.run(_load, args.load, args.header, args.concurrency, args.duration, args.client)
        print(json.dumps(out))
        return
    report = anyio.run(_bench, args)
    s = report["start_to_ready_s"]
    print(f"chain + 4 providers start-to-ready: median {s['median']} s, max {s['max']} s  (runs {s['runs']})")
    many = report["many_providers"]
    print(f"{many['providers']} providers started concurrently, devnet running: {many['start_to_ready_s']} s")
    for run in report["chat_rps"]:
        print(
            f"chat, non-streaming, concurrency {report['concurrency']}, client {run['client']:>14}: "
            f"{run['rps']:8.1f} req/s  p50 {run['p50_ms']} ms  p99 {run['p99_ms']} ms  errors {run['errors']}"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
