"""Benchmark a swarm on one broker: funding that keeps up, and a budget that holds.

Usage::

    .venv/bin/python benchmarks/bench_swarm.py [--agents 1000] [--chats 3] [--limit 20]

What it measures (on a fresh devnet with two chatbots at 0.001 OG per token, through
``examples/swarm_budget.py``):

1. Swarm: ``--agents`` agents x ``--chats`` chats on one broker over both providers, each
   sub-account opened at the on-chain minimum (1 OG), auto-funding at its defaults. Reported:
   chats answered, balance errors that reached an agent (the target is 0), top-ups (and how many
   answered a refusal), RPC requests, wall time.
2. Budget: ``--agents`` concurrent agents, each in a tagged team budget nested in one swarm
   budget of ``--limit`` OG, one chat each with ``max_tokens=16``. Reported: spent vs limit (the
   target is spent <= limit), what the provider billed (equal to spent), chats answered, refused
   (``BudgetExceededError``, before sending) and sent (equal to answered).

The figures are printed and written as one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from og_inference_async import og
from og_inference_devnet import start_devnet

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "swarm_budget.py"


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("example_swarm_budget", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def main(agents: int, chats: int, limit: str) -> dict[str, Any]:
    """Start a devnet and two chatbots, run the example's swarm and budget, return the figures."""
    example = _example()
    async with start_devnet() as dn:
        providers = await example.start_chatbots(dn)
        result = await example.run(dn, providers, n_agents=agents, chats=chats, limit=og(limit))
        for provider in providers:
            await provider.aclose()
    swarm, budget = result["swarm"], result["budget"]
    figures = {
        "swarm_chats": swarm["chats"],
        "swarm_answered": swarm["answered"],
        "swarm_balance_errors": swarm["balance_errors"],
        "swarm_other_failures": swarm["failures"],
        "swarm_top_ups": swarm["top_ups"],
        "swarm_top_ups_after_refusal": swarm["refills"],
        "swarm_rpc_requests": swarm["rpc_requests"],
        "swarm_seconds": round(swarm["elapsed"], 2),
        "budget_limit_wei": budget["limit"],
        "budget_spent_wei": budget["spent"],
        "budget_billed_wei": budget["billed"],
        "budget_answered": budget["answered"],
        "budget_refused": budget["refused"],
        "budget_sent": budget["sent"],
        "budget_within_limit": budget["spent"] <= budget["limit"],
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--chats", type=int, default=3)
    parser.add_argument("--limit", default="20", help="the swarm budget in OG")
    args = parser.parse_args()
    anyio.run(main, args.agents, args.chats, args.limit)
