"""Many worker processes, one wallet, coordinated through a real Redis server.

Four OS processes each send 25 concurrent deposits from ONE devnet wallet through one
``RedisCoordinator``: every transaction lands, nonces are distinct, the ledger grows by exactly the
sum, and no nonce error reaches a caller. Time bounds are hang detectors, not speed assertions.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import anyio
import pytest

from og_inference_async import AsyncBroker, og
from og_inference_async.coordination import RedisCoordinator
from og_inference_devnet import Devnet

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

WORKER = Path(__file__).with_name("multiworker_worker.py")
PROCESSES = 4
PER_PROCESS = 25
AMOUNT = 10**15
HANG_BOUND = 180
ACCOUNT = 11


async def _run_worker(dn: Devnet, redis_url: str, namespace: str) -> dict[str, list[str]]:
    result = await anyio.run_process(
        [
            sys.executable,
            str(WORKER),
            dn.rpc_url,
            dn.network.ledger,
            dn.network.inference,
            redis_url,
            namespace,
            str(PER_PROCESS),
            str(AMOUNT),
        ],
        env={**os.environ, "OG_WORKER_KEY": dn.accounts[ACCOUNT].private_key},
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    report: dict[str, list[str]] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return report


async def test_four_processes_share_one_wallet_through_redis(devnet: Devnet, redis_url: str) -> None:
    """4 processes x 25 concurrent deposits from one wallet: 100 land, distinct nonces, exact ledger."""
    namespace = "mw-" + uuid.uuid4().hex
    key = devnet.accounts[ACCOUNT].private_key
    async with RedisCoordinator(redis_url, namespace=namespace) as coordinator:
        async with AsyncBroker(key, network=devnet.network, coordinator=coordinator) as broker:
            if not await broker.ledger.has_ledger():
                await broker.ledger.add_ledger(og(3))
            before = (await broker.ledger.get_ledger()).total
    reports: list[dict[str, list[str]]] = []

    async def worker() -> None:
        reports.append(await _run_worker(devnet, redis_url, namespace))

    with anyio.fail_after(HANG_BOUND):
        async with anyio.create_task_group() as tg:
            for _ in range(PROCESSES):
                tg.start_soon(worker)

    errors = [e for r in reports for e in r["errors"]]
    hashes = [h for r in reports for h in r["hashes"]]
    states = [s for r in reports for s in r["states"]]
    assert errors == []
    assert len(hashes) == PROCESSES * PER_PROCESS == len(set(hashes))
    assert states == ["mined"] * len(hashes)  # no transaction signed twice, none replaced
    nonces = [int((await devnet.rpc("eth_getTransactionByHash", [h]))["nonce"], 16) for h in hashes]
    assert len(set(nonces)) == len(nonces)
    async with AsyncBroker(key, network=devnet.network) as broker:
        after = (await broker.ledger.get_ledger()).total
    assert after - before == PROCESSES * PER_PROCESS * AMOUNT
