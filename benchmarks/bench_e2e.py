"""Benchmark end-to-end chat requests through the SDK against plain httpx on the same devnet provider.

Usage::

    .venv/bin/python benchmarks/bench_e2e.py [--duration 4] [--concurrency 64] [--rounds 2]
        [--modes sdk,sdk-background,httpx+aiohttp[,httpx]]

What it measures (one devnet chatbot provider that settles on demand only; a funded user):

- ``sdk``: ``broker.inference.chat(provider, messages)`` with verification ``off``: the cached
  session header, the cached service, the request through the broker's shared client (the
  httpx-aiohttp transport), the raw-bytes hashing, JSON parsing, the result model and the local
  fee counter.
- ``sdk-background``: the same with the DEFAULT verification, ``background``: every response's
  signature is also fetched (``GET /v1/proxy/signature/<chat id>``, a second request to the same
  provider) and checked (an ECDSA recovery) in the broker's task group, at most 32 at a time.
  Its requests/s include that work; outcomes still queued when the window closes are waited for
  afterwards and reported (``verified``, ``drain_s``).
- ``httpx+aiohttp``: plain ``httpx.AsyncClient`` on the same aiohttp transport, posting the same
  body with a precomputed ``Authorization`` header (the baseline the SDK is compared with).
- ``httpx``: plain httpx on its default transport, for reference (not run by default).

Each load runs in its own process (the provider keeps the main process), first at the given
concurrency for requests/s and latency, then at concurrency 1 for the latency the SDK adds to a
lone request. Modes alternate over ``--rounds`` rounds; the best round of each is reported. The
SDK's locally counted fees are compared with what the provider billed during its runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio

OG = 10**18
SCRIPT = str(Path(__file__).resolve())
MODEL = "bench/echo"
MESSAGES = [{"role": "user", "content": "hi there"}]


def summarize(latencies: list[float], ok: int, errors: dict[str, int], elapsed: float) -> dict[str, Any]:
    lat = sorted(latencies)
    return {
        "ok": ok,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": round(ok / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3) if lat else None,
        "p99_ms": round(lat[min(int(len(lat) * 0.99), len(lat) - 1)] * 1000, 3) if lat else None,
    }


def load_parser(description: str | None, *, rounds: int) -> argparse.ArgumentParser:
    """Options of a benchmark whose load runs in child processes of itself (hidden: --load, --mode)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    return parser


async def start_bench_provider(dn: Any) -> Any:
    """The benchmarks' devnet chatbot provider: ``MODEL``, 1e12 / 2e12 wei a token, on-demand settlement."""
    from og_inference_async.devnet.provider import start_provider

    return await start_provider(
        dn,
        dn.task_group,
        service_type="chatbot",
        model=MODEL,
        input_price=10**12,
        output_price=2 * 10**12,
        account_index=20,
        settle_interval=None,
    )


def print_profile(profiler: Any, top: int = 25) -> None:
    """Print a cProfile's CPU share per package, then its ``top`` functions by own time (to stderr)."""
    import pstats

    stats = pstats.Stats(profiler, stream=sys.stderr)
    by_package: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        parts = filename.replace("\\", "/").split("/")
        package = next(
            (parts[i + 1] for i, part in enumerate(parts) if part == "site-packages"),
            "og_inference_async" if "og_inference_async" in parts else parts[-1],
        )
        by_package[package] = by_package.get(package, 0.0) + tottime
    total = sum(by_package.values())
    for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1])[:12]:
        print(f"{package:>24}: {100 * seconds / total:5.1f} % of the load process's CPU", file=sys.stderr)
    stats.sort_stats("tottime").print_stats(top)


async def _drive(send: Any, concurrency: int, duration: float) -> dict[str, Any]:
    """Run ``send()`` from ``concurrency`` workers: 0.5 s warm-up, then ``duration`` seconds measured."""
    ok = 0
    errors: dict[str, int] = {}
    latencies: list[float] = []
    deadline = 0.0

    async def worker() -> None:
        nonlocal ok
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                await send()
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)
            ok += 1

    deadline = time.perf_counter() + 0.5
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    ok = 0
    errors.clear()
    latencies.clear()
    start = time.perf_counter()
    deadline = start + duration
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return summarize(latencies, ok, errors, time.perf_counter() - start)


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    """One load-generator process: ``--mode`` sdk, sdk-background, httpx+aiohttp or httpx."""
    setup = json.loads(args.load)
    out: dict[str, Any] = {"mode": args.mode}
    if args.mode in ("sdk", "sdk-background"):
        from og_inference_async import AsyncBroker, VerificationPolicy
        from og_inference_async.types.inference import VerificationResult

        outcomes: dict[str, int] = {}
        served = 0

        def count(result: VerificationResult) -> None:
            outcomes[result.status.value] = outcomes.get(result.status.value, 0) + 1

        async with AsyncBroker(setup["key"], network="hardhat", rpc_url=setup["rpc_url"]) as broker:
            if args.mode == "sdk":
                broker.inference.verification = "off"
            else:
                broker.inference.verification = VerificationPolicy(mode="background", on_result=count)
            provider = setup["provider"]

            async def send_sdk() -> None:
                nonlocal served
                await broker.inference.chat(provider, MESSAGES)
                served += 1

            await send_sdk()  # sign the session token, read the account and the service once
            before = broker.inference.local_fees(provider)
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            out["load"] = await _drive(send_sdk, args.concurrency, args.duration)
            if profiler is not None:
                profiler.disable()
                print_profile(profiler)
            if args.mode == "sdk-background":
                # outcomes still queued when the load window closed: wait for them (bounded)
                backlog = served - sum(outcomes.values())
                started = time.perf_counter()
                for _ in range(6000):
                    if sum(outcomes.values()) >= served:
                        break
                    await anyio.sleep(0.005)
                out["load"]["backlog_at_end"] = backlog
                out["load"]["drain_s"] = round(time.perf_counter() - started, 3)
            out["single"] = await _drive(send_sdk, 1, args.single_duration)
            out["local_fees"] = broker.inference.local_fees(provider) - before
            if args.mode == "sdk-background":
                for _ in range(2000):
                    if sum(outcomes.values()) >= served:
                        break
                    await anyio.sleep(0.005)
                out["verified"] = dict(outcomes)
                out["requests"] = served
        return out

    import httpx

    body = json.dumps({"model": MODEL, "messages": MESSAGES}, separators=(",", ":")).encode()
    headers = {
        "Authorization": setup["header"],
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
    }
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=128)
    transport = None
    if args.mode == "httpx+aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(limits=limits, timeout=30, transport=transport) as http:

        async def send_httpx() -> None:
            response = await http.post(setup["url"], content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            response.json()

        out["load"] = await _drive(send_httpx, args.concurrency, args.duration)
        out["single"] = await _drive(send_httpx, 1, args.single_duration)
    return out


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from eth_account import Account

    from og_inference_async import AsyncBroker, og
    from og_inference_async._session import make_session_claims, sign_token
    from og_inference_async.devnet import start_devnet

    async with start_devnet() as dn:
        chat = await start_bench_provider(dn)
        user = dn.accounts[8]
        async with AsyncBroker(user.private_key, network=dn.network) as broker:
            await broker.ledger.add_ledger(og("1000"))
            await broker.ledger.transfer_fund(chat.address, og("900"))
        me = Account.from_key(user.private_key)
        claims = make_session_claims(me.address, chat.address, generation=0, now_ms=int(time.time() * 1000))
        setup = {
            "key": user.private_key,
            "rpc_url": dn.rpc_url,
            "provider": chat.address,
            "url": chat.url + "/v1/proxy/chat/completions",
            "header": sign_token(claims, me).authorization,
        }
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in args.modes.split(",")}
        fee_checks: list[bool] = []
        for _ in range(args.rounds):
            for mode in runs:
                billed_before = chat.unsettled_fee(me.address)
                result = await anyio.run_process(
                    [
                        sys.executable,
                        SCRIPT,
                        "--load",
                        json.dumps(setup),
                        "--mode",
                        mode,
                        "--concurrency",
                        str(args.concurrency),
                        "--duration",
                        str(args.duration),
                        "--single-duration",
                        str(args.single_duration),
                        *(["--profile"] if args.profile and mode == "sdk" else []),
                    ],
                    check=True,
                    stderr=None,
                )
                run = json.loads(result.stdout.decode().strip().splitlines()[-1])
                if mode.startswith("sdk"):
                    billed = chat.unsettled_fee(me.address) - billed_before
                    # the SDK's warm-up request is billed but not in its counted delta
                    fee_checks.append(0 <= billed - run["local_fees"] <= 10**14)
                runs[mode].append(run)
    best = {mode: max(rs, key=lambda r: r["load"]["rps"]) for mode, rs in runs.items()}
    report: dict[str, Any] = {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "runs": runs,
        "best": {m: {"load": r["load"], "single": r["single"]} for m, r in best.items()},
        "sdk_fees_match_provider": all(fee_checks) if fee_checks else None,
    }
    if "sdk-background" in best:
        report["background_verification"] = {
            "outcomes": best["sdk-background"].get("verified"),
            "requests": best["sdk-background"].get("requests"),
            "backlog_at_end": best["sdk-background"]["load"].get("backlog_at_end"),
            "drain_s": best["sdk-background"]["load"].get("drain_s"),
        }
    base = best.get("httpx+aiohttp")
    for mode, key in (("sdk", "sdk"), ("sdk-background", "sdk_background")):
        if mode not in best or base is None:
            continue
        sdk = best[mode]
        report[f"{key}_vs_httpx_aiohttp_rps_ratio"] = round(sdk["load"]["rps"] / base["load"]["rps"], 3)
        report[f"{key}_added_latency_ms"] = {
            f"c{args.concurrency}_p50": round(sdk["load"]["p50_ms"] - base["load"]["p50_ms"], 3),
            f"c{args.concurrency}_p99": round(sdk["load"]["p99_ms"] - base["load"]["p99_ms"], 3),
            "c1_p50": round(sdk["single"]["p50_ms"] - base["single"]["p50_ms"], 3),
            "c1_p99": round(sdk["single"]["p99_ms"] - base["single"]["p99_ms"], 3),
        }
    if "sdk" in best and "httpx" in best:
        report["sdk_vs_httpx_default_rps_ratio"] = round(
            best["sdk"]["load"]["rps"] / best["httpx"]["load"]["rps"], 3
        )
    return report


def main() -> None:
    """Run the benchmark (or, with ``--load``, one load-generator process)."""
    parser = load_parser(__doc__, rounds=2)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--single-duration", type=float, default=1.5)
    parser.add_argument("--modes", default="sdk,sdk-background,httpx+aiohttp")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the SDK load process")
    args = parser.parse_args()
    if args.load:
        print(json.dumps(anyio.run(_load, args)))
        return
    report = anyio.run(_bench, args)
    for mode, run in report["best"].items():
        load, single = run["load"], run["single"]
        print(
            f"{mode:>14}: {load['rps']:>8.1f} req/s at c={report['concurrency']} "
            f"(p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, errors {load['errors']}); "
            f"c=1 p50 {single['p50_ms']} ms, p99 {single['p99_ms']} ms"
        )
    for key, label in (("sdk", "verification off"), ("sdk_background", "verification background (default)")):
        if f"{key}_vs_httpx_aiohttp_rps_ratio" in report:
            print(
                f"SDK, {label} / plain httpx (same aiohttp transport): "
                f"{report[f'{key}_vs_httpx_aiohttp_rps_ratio']}x; "
                f"latency added (ms): {report[f'{key}_added_latency_ms']}"
            )
    if "background_verification" in report:
        print(f"background verification outcomes: {report['background_verification']}")
    if "sdk_vs_httpx_default_rps_ratio" in report:
        print(f"SDK / plain httpx (default transport): {report['sdk_vs_httpx_default_rps_ratio']}x")
    print(f"SDK fees counted locally == provider's bill: {report['sdk_fees_match_provider']}")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}))


if __name__ == "__main__":
    main()
