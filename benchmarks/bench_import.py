"""What ``import og_inference_async`` costs (plain script, no devnet).

Run: ``.venv/bin/python benchmarks/bench_import.py [RUNS]``. Each run is a fresh interpreter, so
nothing is cached in the process; the OS file cache is warmed by one discarded run first. Prints:

* the median wall time of ``python -c "import og_inference_async"`` over RUNS runs (default 15),
  minus the median of a bare ``python -c "pass"`` (interpreter start-up), and both raw figures;
* how many modules the import adds to ``sys.modules`` and whether any heavy dependency is among
  them (web3, eth_account, eth_abi, httpx, aiohttp, pydantic, coincurve, tenacity);
* the same figures for the first ``og_inference_async.AsyncBroker`` access, for constructing a
  read-only ``AsyncBroker(network="testnet")`` and one with a private key (which loads eth-account
  to derive the address), and the heavy dependencies each construction loaded: web3, httpx and
  aiohttp load only when a broker opens.

For a per-module breakdown use ``python -X importtime -c "import og_inference_async"``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

HEAVY = ("web3", "eth_account", "eth_abi", "httpx", "aiohttp", "pydantic", "coincurve", "tenacity")

COUNT = """
import json, sys
before = set(sys.modules)
import og_inference_async
after_import = set(sys.modules)
og_inference_async.AsyncBroker
after_broker = set(sys.modules)
og_inference_async.AsyncBroker(network="testnet")
after_read_only = set(sys.modules)
og_inference_async.AsyncBroker(KEY, network="testnet")
after_wallet = set(sys.modules)
print(json.dumps({
    "import": len(after_import - before),
    "heavy": [m for m in HEAVY if m in after_import],
    "broker": len(after_broker - before),
    "read_only": len(after_read_only - before),
    "read_only_heavy": [m for m in HEAVY if m in after_read_only],
    "wallet": len(after_wallet - before),
    "wallet_heavy": [m for m in HEAVY if m in after_wallet],
}))
"""
#: a throwaway key (never funded): construction derives its address, nothing is sent
KEY = "0x" + "11" * 32
PREAMBLE = f"HEAVY = {HEAVY!r}\nKEY = {KEY!r}\n"


def _wall(code: str) -> float:
    """Seconds one fresh interpreter takes to run ``code``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def _median(code: str, runs: int) -> float:
    """Median wall time of ``runs`` fresh interpreters running ``code`` (after one warm-up run)."""
    _wall(code)
    return statistics.median(_wall(code) for _ in range(runs))


def main() -> None:
    """Measure and print the figures."""
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    bare = _median("pass", runs)
    imported = _median("import og_inference_async", runs)
    broker = _median("import og_inference_async; og_inference_async.AsyncBroker", runs)
    read_only = _median("import og_inference_async as o; o.AsyncBroker(network='testnet')", runs)
    wallet = _median(f"import og_inference_async as o; o.AsyncBroker({KEY!r}, network='testnet')", runs)
    out = subprocess.run(
        [sys.executable, "-c", PREAMBLE + COUNT], check=True, capture_output=True, text=True
    ).stdout
    counts = json.loads(out)
    rows = [
        ("runs per figure", f"{runs}"),
        ("interpreter start-up (median)", f"{bare * 1000:.1f} ms"),
        (
            "import og_inference_async (median)",
            f"{imported * 1000:.1f} ms ({(imported - bare) * 1000:.1f} net)",
        ),
        ("  + og_inference_async.AsyncBroker", f"{broker * 1000:.1f} ms ({(broker - bare) * 1000:.1f} net)"),
        ("modules added by the import", f"{counts['import']}"),
        ("  heavy dependencies loaded", ", ".join(counts["heavy"]) or "none"),
        ("  + AsyncBroker(network=...)", f"{read_only * 1000:.1f} ms ({(read_only - bare) * 1000:.1f} net)"),
        ("  + AsyncBroker(key, network=...)", f"{wallet * 1000:.1f} ms ({(wallet - bare) * 1000:.1f} net)"),
        ("modules added once AsyncBroker used", f"{counts['broker']}"),
        ("modules once a read-only broker built", f"{counts['read_only']}"),
        ("  heavy dependencies loaded", ", ".join(counts["read_only_heavy"]) or "none"),
        ("modules once a broker with a key built", f"{counts['wallet']}"),
        ("  heavy dependencies loaded", ", ".join(counts["wallet_heavy"]) or "none"),
    ]
    for label, value in rows:
        print(f"{label + ':':<42}{value}")


if __name__ == "__main__":
    main()
