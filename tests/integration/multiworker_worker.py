"""One worker process of the multi-worker tests: one wallet shared with other processes through Redis.

Usage: ``python multiworker_worker.py <mode> <rpc_url> <redis_url> <namespace> <arg>``, with the private
key in the ``OG_WORKER_KEY`` environment variable (never on the command line). Modes:

* ``deposits <count>``: that many concurrent ``deposit_fund(OG_WORKER_WEI)``; prints the transaction
  hashes, the errors by type and every transaction this process signed (hash, state, what it was for).
* ``autofund <provider>``: waits until ``OG_WORKER_PROCESSES`` workers are ready (a Redis counter),
  then starts auto-funding ``provider`` (buffer ``OG_WORKER_WEI``) and prints its statistics.
* ``budget <count>``: that many concurrent reservations on the shared budget ``swarm`` (limit
  ``OG_WORKER_WEI``), then settles each to its whole amount (nothing goes back, so the sum held
  is the sum spent); prints what was held and refused.

Namespace ``-`` runs without the coordinator (each process on its own: what the tests rule out).
Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import redis.asyncio as aioredis

from og_inference_async import AsyncBroker, BudgetExceededError, OGError, TxPolicy
from og_inference_async.coordination import RedisCoordinator


async def _deposits(broker: AsyncBroker, count: int, wei: int) -> dict[str, Any]:
    hashes: list[str] = []
    errors: list[str] = []

    async def deposit() -> None:
        try:
            hashes.append((await broker.ledger.deposit_fund(wei)).tx_hash)
        except OGError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(deposit)
    records = [[r.tx_hash, r.state.value, r.context] for r in broker.transactions.recent(1000)]
    return {"hashes": hashes, "errors": errors, "records": records}


async def _autofund(broker: AsyncBroker, redis_url: str, namespace: str, provider: str) -> dict[str, Any]:
    client = aioredis.from_url(redis_url)
    key = f"{namespace}:test-barrier"
    try:
        await client.incr(key)
        with anyio.fail_after(60):
            while int(await client.get(key) or 0) < int(os.environ["OG_WORKER_PROCESSES"]):  # noqa: ASYNC110 (polls Redis)
                await anyio.sleep(0.01)  # polls the barrier until every worker is ready
    finally:
        await client.aclose()
    stats = await broker.inference.start_auto_funding(
        provider, interval=3600, buffer=int(os.environ["OG_WORKER_WEI"])
    )
    await broker.inference.stop_auto_funding(provider)
    return {"top_ups": stats.top_ups, "total": stats.topped_up_total, "errors": stats.errors}


async def _budget(broker: AsyncBroker, count: int, limit: int) -> dict[str, Any]:
    budget = broker.budget(limit, shared="swarm")
    holds: list[Any] = []
    refused: list[str] = []

    async def reserve(i: int) -> None:
        try:
            holds.append(await budget.areserve(limit // 97 + i * 1_000_003))
        except BudgetExceededError as exc:
            refused.append(type(exc).__name__)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(reserve, i)
    for hold in holds:
        await hold.akeep()
    return {"held": sum(h.amount for h in holds), "holds": len(holds), "refused": refused}


async def main(argv: list[str]) -> None:
    mode, rpc_url, redis_url, namespace, arg = argv
    # A nonce another worker took and never sent is filled once its lease (5 s) runs out, well inside the
    # receipt bound, so a transaction held behind such a gap is never cancelled for it.
    policy = TxPolicy(receipt_timeout=90.0, receipt_poll_interval=0.02, gap_heal_after=1.0)
    async with RedisCoordinator(redis_url, namespace=namespace, nonce_lease=5.0) as shared:
        broker = AsyncBroker(
            os.environ["OG_WORKER_KEY"],
            network="hardhat",
            rpc_url=rpc_url,
            tx_policy=policy,
            coordinator=None if namespace == "-" else shared,
        )
        async with broker:
            if mode == "deposits":
                report = await _deposits(broker, int(arg), int(os.environ["OG_WORKER_WEI"]))
            elif mode == "budget":
                report = await _budget(broker, int(arg), int(os.environ["OG_WORKER_WEI"]))
            else:
                report = await _autofund(broker, redis_url, namespace, arg)
    print(json.dumps(report))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
