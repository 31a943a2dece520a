"""Devnet start-up benchmark: ``python benchmarks/bench_devnet.py [--runs N]``.

Measures, with the npm artifacts already cached (a warm-up run installs them if needed and
is not counted):

- start to ready: entering ``start_devnet()`` until the contracts are deployed and checked;
- of which anvil: spawning the binary until ``eth_chainId`` answers;
- of which deploy: the ten deployment transactions plus the checks;
- stop: leaving the block until anvil has exited;
- snapshot + revert: one ``evm_snapshot`` / ``evm_revert`` pair on a running devnet.

Prints a small table of median / min / max in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from og_inference_devnet import ensure_artifacts, start_devnet  # noqa: E402
from og_inference_devnet._anvil import run_anvil  # noqa: E402
from og_inference_devnet._deploy import deploy  # noqa: E402

OWNER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


async def _bench(runs: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k in ("start to ready", "  anvil", "  deploy", "stop")}
    artifacts = await ensure_artifacts()
    async with start_devnet():  # warm-up: imports, key derivation, artifact cache in memory
        pass
    for _ in range(runs):
        t0 = time.perf_counter()
        async with start_devnet():
            t1 = time.perf_counter()
        t2 = time.perf_counter()
        results["start to ready"].append(t1 - t0)
        results["stop"].append(t2 - t1)
    async with httpx.AsyncClient(trust_env=False) as http:
        for _ in range(runs):
            t0 = time.perf_counter()
            async with run_anvil(artifacts.anvil, http) as node:
                t1 = time.perf_counter()
                await deploy(node.rpc, artifacts.contracts, OWNER, 86400)
                t2 = time.perf_counter()
            results["  anvil"].append(t1 - t0)
            results["  deploy"].append(t2 - t1)
    pairs: list[float] = []
    async with start_devnet() as dn:
        for _ in range(max(runs, 50)):
            t0 = time.perf_counter()
            await dn.revert(await dn.snapshot())
            pairs.append(time.perf_counter() - t0)
    results["snapshot + revert"] = pairs
    return results


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description="devnet start-to-ready benchmark")
    parser.add_argument("--runs", type=int, default=5, help="measured runs (default 5)")
    args = parser.parse_args()
    results = anyio.run(_bench, args.runs)
    print(f"devnet benchmark, {args.runs} runs, artifacts cached (ms)")
    print(f"{'phase':<20} {'median':>8} {'min':>8} {'max':>8} {'n':>4}")
    for name, values in results.items():
        ms = [v * 1000 for v in values]
        print(f"{name:<20} {statistics.median(ms):>8.1f} {min(ms):>8.1f} {max(ms):>8.1f} {len(ms):>4}")


if __name__ == "__main__":
    main()
