"""Run every benchmark script in this folder, one after another (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "bench_devnet",
    "bench_chain",
    "bench_failover",
    "bench_session",
    "bench_headers",
    "bench_provider",
    "bench_e2e",
    "bench_vs_ts",
    "bench_swarm",
]


def main() -> int:
    """Run each benchmark as its own process (a clean event loop and clean caches each)."""
    failed = []
    for name in ORDER:
        print(f"\n===== {name} =====", flush=True)
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py")])
        if code:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
