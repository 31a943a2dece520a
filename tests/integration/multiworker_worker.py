"""One worker process of the multi-worker test: N concurrent deposits from a wallet shared through Redis.

Usage: ``python multiworker_worker.py <rpc_url> <ledger> <inference> <redis_url> <namespace> <count> <wei>``
(namespace ``-`` runs without the coordinator; the private key comes from the ``OG_WORKER_KEY``
environment variable, never the command line).
Prints one JSON line: the transaction hashes, the errors by type, and the transactions' final states.
"""

from __future__ import annotations

import json
import os
import sys

import anyio

from og_inference_async import AsyncBroker, OGError, TxPolicy
from og_inference_async.coordination import RedisCoordinator


async def main(argv: list[str]) -> None:
    rpc_url, ledger, inference, redis_url, namespace, count, wei = argv
    hashes: list[str] = []
    errors: list[str] = []
    policy = TxPolicy(receipt_timeout=30.0, receipt_poll_interval=0.02, gap_heal_after=1.0)

    # namespace "-": no coordinator (each process on its own: the collisions the test rules out)
    async with RedisCoordinator(redis_url, namespace=namespace) as shared:
        coordinator = None if namespace == "-" else shared
        broker = AsyncBroker(
            os.environ["OG_WORKER_KEY"],
            network="hardhat",
            rpc_url=rpc_url,
            ledger_address=ledger,
            inference_address=inference,
            tx_policy=policy,
            coordinator=coordinator,
        )
        async with broker:

            async def deposit() -> None:
                try:
                    hashes.append((await broker.ledger.deposit_fund(int(wei))).tx_hash)
                except OGError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

            async with anyio.create_task_group() as tg:
                for _ in range(int(count)):
                    tg.start_soon(deposit)
            states = [r.state.value for r in broker.transactions.recent(1000)]
    print(json.dumps({"hashes": hashes, "errors": errors, "states": states}))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
