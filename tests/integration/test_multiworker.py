"""Many worker processes, one wallet, coordinated through a real Redis server.

Four OS processes each send 25 concurrent deposits from ONE devnet wallet through one
``RedisCoordinator``: every transaction lands, nonces are distinct, the ledger grows by exactly the
sum, and no nonce error reaches a caller. Time bounds are hang detectors, not speed assertions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from og_inference_async import ApiKeyError, AsyncBroker, CoordinatorError, FeePolicy, og
from og_inference_async.coordination import RedisCoordinator
from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle

from ..redis_server import _answers_ping, _free_port
from .chain_helpers import FAST_TX, register_provider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

WORKER = Path(__file__).with_name("multiworker_worker.py")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROCESSES = 4
PER_PROCESS = 25
AMOUNT = 10**15
HANG_BOUND = 180
ACCOUNT = 11


async def _run_worker(dn: Devnet, redis_url: str, namespace: str, mode: str, arg: str, wei: int) -> Any:
    """Run one worker process to its end and return its JSON report."""
    env = {
        **os.environ,
        "OG_WORKER_KEY": dn.accounts[ACCOUNT].private_key,
        "OG_WORKER_WEI": str(wei),
        "OG_WORKER_PROCESSES": str(PROCESSES),
    }
    result = await anyio.run_process(
        [sys.executable, str(WORKER), mode, dn.rpc_url, redis_url, namespace, arg], env=env, check=False
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


async def _run_workers(
    dn: Devnet, redis_url: str, namespace: str, mode: str, arg: str, wei: int
) -> list[Any]:
    reports: list[Any] = []

    async def worker() -> None:
        reports.append(await _run_worker(dn, redis_url, namespace, mode, arg, wei))

    with anyio.fail_after(HANG_BOUND):
        async with anyio.create_task_group() as tg:
            for _ in range(PROCESSES):
                tg.start_soon(worker)
    return reports


async def test_four_processes_share_one_wallet_through_redis(devnet: Devnet, redis_url: str) -> None:
    """4 processes x 25 concurrent deposits from one wallet: 100 land, distinct nonces, exact ledger."""
    namespace = "mw-" + uuid.uuid4().hex
    key = devnet.accounts[ACCOUNT].private_key
    async with RedisCoordinator(redis_url, namespace=namespace) as coordinator:
        async with AsyncBroker(key, network=devnet.network, coordinator=coordinator) as broker:
            if not await broker.ledger.has_ledger():
                await broker.ledger.add_ledger(og(3))
            before = (await broker.ledger.get_ledger()).total
    reports = await _run_workers(devnet, redis_url, namespace, "deposits", str(PER_PROCESS), AMOUNT)

    errors = [e for r in reports for e in r["errors"]]
    hashes = [h for r in reports for h in r["hashes"]]
    records = [tuple(x) for r in reports for x in r["records"]]
    assert errors == []
    assert len(hashes) == PROCESSES * PER_PROCESS == len(set(hashes))
    for tx_hash, state, context in records:
        receipt = await devnet.rpc("eth_getTransactionReceipt", [tx_hash])
        if state == "mined":
            assert receipt is not None and int(receipt["status"], 16) == 1
        else:
            # a worker too slow for its 5 s nonce lease: another worker filled that nonce, and the
            # deposit (proven never executed) was signed again at a fresh nonce
            assert state == "replaced" and receipt is None, (tx_hash, state, context)
    assert {h for h, state, _ in records if state == "mined"} >= set(hashes)
    nonces = [int((await devnet.rpc("eth_getTransactionByHash", [h]))["nonce"], 16) for h in hashes]
    assert len(set(nonces)) == len(nonces)
    async with AsyncBroker(key, network=devnet.network) as broker:
        after = (await broker.ledger.get_ledger()).total
    assert after - before == PROCESSES * PER_PROCESS * AMOUNT


async def test_a_gap_filler_never_replaces_another_workers_pending_transaction(
    devnet: Devnet, redis_url: str
) -> None:
    """Worker A's deposit waits unmined past its nonce lease; worker B's next deposit (at a 3x gas price)
    looks for gaps below it: the node holds A's nonce, so B fills nothing and A's deposit is not replaced."""
    namespace = "gap-" + uuid.uuid4().hex
    key = devnet.accounts[ACCOUNT].private_key
    gwei = 10**9

    def broker(coordinator: RedisCoordinator, price: int) -> AsyncBroker:
        policy = dataclasses.replace(FAST_TX, gap_heal_after=0.1, fees=FeePolicy(gas_price=price))
        return AsyncBroker(key, network=devnet.network, coordinator=coordinator, tx_policy=policy)

    async with (
        RedisCoordinator(redis_url, namespace=namespace, nonce_lease=0.1) as shared_a,
        RedisCoordinator(redis_url, namespace=namespace, nonce_lease=0.1) as shared_b,
        broker(shared_a, 2 * gwei) as a,
        broker(shared_b, 6 * gwei) as b,
    ):
        if not await a.ledger.has_ledger():
            await a.ledger.add_ledger(og(3))
        before = (await a.ledger.get_ledger()).total
        receipts: dict[str, Any] = {}

        async def deposit(name: str, who: AsyncBroker) -> None:
            receipts[name] = await who.ledger.deposit_fund(AMOUNT)

        await devnet.rpc("evm_setAutomine", [False])
        try:
            with anyio.fail_after(HANG_BOUND):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(deposit, "a", a)
                    while not a.transactions.in_doubt() and not a.transactions.recent(1):  # noqa: ASYNC110
                        await anyio.sleep(0.01)  # until A's deposit is signed and sent
                    await anyio.sleep(0.3)  # A's nonce lease runs out while its deposit waits in the pool
                    tg.start_soon(deposit, "b", b)
                    while len(b.transactions.recent(10)) < 1:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                    await anyio.sleep(1.0)  # B looks for gaps below its nonce several times
                    await devnet.rpc("evm_setAutomine", [True])
                    await devnet.rpc("evm_mine", [])
        finally:
            await devnet.rpc("evm_setAutomine", [True])
        contexts = [r.context for w in (a, b) for r in w.transactions.recent(10)]
        assert not [c for c in contexts if "gap filler" in c]
        assert receipts["a"].status == receipts["b"].status == 1
        a_nonce, b_nonce = [
            int((await devnet.rpc("eth_getTransactionByHash", [receipts[n].tx_hash]))["nonce"], 16)
            for n in ("a", "b")
        ]
        assert b_nonce == a_nonce + 1
        assert (await a.ledger.get_ledger()).total == before + 2 * AMOUNT


async def test_four_processes_auto_funding_one_provider_top_up_once(
    devnet: Devnet, redis_url: str, chatbot: ProviderHandle
) -> None:
    """4 processes start auto-funding one provider at the same moment: one top-up, not four."""
    namespace = "af-" + uuid.uuid4().hex
    key = devnet.accounts[ACCOUNT].private_key
    async with AsyncBroker(key, network=devnet.network) as broker:
        if not await broker.ledger.has_ledger():
            await broker.ledger.add_ledger(og(10))
    reports = await _run_workers(devnet, redis_url, namespace, "autofund", chatbot.address, og(2))
    assert [r["errors"] for r in reports] == [0] * PROCESSES
    assert sum(r["top_ups"] for r in reports) == 1


async def test_four_processes_never_overspend_one_shared_budget(devnet: Devnet, redis_url: str) -> None:
    """4 processes x 50 concurrent reservations on one shared budget: never past it, by one wei."""
    namespace = "sb-" + uuid.uuid4().hex
    limit = og(1) + 12_345
    reports = await _run_workers(devnet, redis_url, namespace, "budget", "50", limit)
    async with RedisCoordinator(redis_url, namespace=namespace) as coordinator:
        budget = AsyncBroker(devnet.accounts[ACCOUNT].private_key, coordinator=coordinator).budget(
            limit, shared="swarm"
        )
        spent, reserved = await budget.totals()
    holds = sum(r["holds"] for r in reports)
    refused = [name for r in reports for name in r["refused"]]
    assert holds + len(refused) == PROCESSES * 50 and refused  # more asked than the budget holds
    assert set(refused) == {"BudgetExceededError"}
    held = sum(r["held"] for r in reports)  # every hold was kept whole: nothing went back
    assert held == spent <= limit and reserved == 0
    assert limit - spent < limit // 97 + 50 * 1_000_003  # refused only when the next one did not fit


async def test_chats_charge_a_shared_budget_and_redis_down_sends_nothing(
    devnet: Devnet, chatbot: ProviderHandle
) -> None:
    """A chat settles the shared budget to its fee; with Redis gone, the next chat is refused unsent."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    command = [binary, "--port", str(port), "--save", "", "--appendonly", "no"]
    async with await anyio.open_process(command, stdout=subprocess.DEVNULL) as server:
        with anyio.fail_after(HANG_BOUND):
            while not _answers_ping(port):  # noqa: ASYNC110 (waits for the server to accept)
                await anyio.sleep(0.02)
            coordinator = RedisCoordinator(f"redis://127.0.0.1:{port}/0", timeout=1.0)
            key = devnet.accounts[16].private_key  # used by no other test
            async with AsyncBroker(key, network=devnet.network, coordinator=coordinator) as broker:
                await broker.inference.ensure_ready(
                    chatbot.address, min_balance=og(3), create_ledger=True, ledger_amount=og(10)
                )
                messages = [{"role": "user", "content": "hi"}]
                async with broker.budget(og(1), shared="chats") as budget:
                    result = await broker.inference.chat(chatbot.address, messages)
                    assert await budget.totals() == (result.fee, 0) and result.fee > 0
                    server.terminate()
                    await server.wait()
                    served = chatbot.requests_served
                    with pytest.raises(CoordinatorError):
                        await broker.inference.chat(chatbot.address, messages)
                    assert chatbot.requests_served == served and budget.reserved == 0
            await coordinator.aclose()


async def test_two_processes_never_issue_one_api_key_id(devnet: Devnet, redis_url: str) -> None:
    """Two brokers on separate coordinators (two processes) issue 20 keys at once: ids 0..19, each once."""
    namespace = "ak-" + uuid.uuid4().hex
    provider = await register_provider(devnet)
    key = devnet.accounts[ACCOUNT].private_key
    async with AsyncBroker(key, network=devnet.network) as setup:
        await setup.ledger.add_ledger(og(5))
        await setup.ledger.transfer_fund(provider, og(2))
    coordinators = [RedisCoordinator(redis_url, namespace=namespace) for _ in range(2)]
    brokers = [AsyncBroker(key, network=devnet.network, coordinator=c) for c in coordinators]
    ids: list[int] = []

    async def create(broker: AsyncBroker) -> None:
        ids.append((await broker.inference.create_api_key(provider)).token_id)

    with anyio.fail_after(HANG_BOUND):
        async with brokers[0], brokers[1], anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(create, brokers[i % 2])
        assert sorted(ids) == list(range(20))
        async with AsyncBroker(key, network=devnet.network, coordinator=coordinators[1]) as again:
            with pytest.raises(ApiKeyError, match="already issued"):
                await again.inference.create_api_key(provider, token_id=7)
    for c in coordinators:
        await c.aclose()


async def test_multiworker_fastapi_example_under_uvicorn_workers(
    devnet: Devnet, redis_url: str, chatbot: ProviderHandle, tmp_path: Path
) -> None:
    """The example under ``uvicorn --workers 3``: 30 concurrent deposits land once each; one onboarding."""
    key = devnet.accounts[ACCOUNT].private_key
    async with AsyncBroker(key, network=devnet.network) as setup:
        await setup.ledger.add_ledger(og(10))
        before = (await setup.ledger.get_ledger()).total
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "OG_PRIVATE_KEY": key,
        "OG_RPC_URL": devnet.rpc_url,
        "OG_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/1",  # its own database: the example's keys
        "OG_PROVIDER": chatbot.address,
    }
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "--factory", "--workers", "3"]
    command += ["--port", str(port), "--log-level", "warning", "multiworker_fastapi:create_app"]
    replies: list[httpx.Response] = []
    latencies: list[float] = []
    log_path = tmp_path / "uvicorn.log"
    log_file = log_path.open("wb")  # a file, not a pipe: an unread pipe that fills blocks a worker
    process = await anyio.open_process(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        # no per-request time limit: the hang bound covers the whole exchange (a slow CI machine
        # may take long; the test is about every deposit landing once)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=HANG_BOUND) as client:
            with anyio.fail_after(HANG_BOUND):
                workers: dict[int, list[str]] = {}
                while len(workers) < 3:  # until every worker has started (uvicorn has no readiness signal)
                    try:
                        # a new connection each time, so that any worker may accept it
                        reply = await client.get("/worker", headers={"Connection": "close"})
                        if reply.status_code == 200:
                            workers[reply.json()["worker"]] = reply.json()["startup_actions"]
                            continue
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.05)

                async def deposit() -> None:
                    start = time.monotonic()
                    replies.append(await client.post("/deposit", json={"wei": AMOUNT}))
                    latencies.append(time.monotonic() - start)

                async with anyio.create_task_group() as tg:
                    for _ in range(30):
                        tg.start_soon(deposit)
        assert [r.status_code for r in replies] == [200] * 30, [
            r.text for r in replies if r.status_code != 200
        ]
        assert len({r.json()["tx_hash"] for r in replies}) == 30
        # one worker created and funded the sub-account; the others found it funded
        funding = sorted(a for actions in workers.values() for a in actions if a != "acknowledged")
        assert funding == ["created_account"], workers
    except BaseException:
        print(f"deposit replies after (s): {sorted(round(t, 2) for t in latencies)}")
        print("uvicorn output:\n" + log_path.read_text(errors="replace")[-6000:])
        raise
    finally:
        process.terminate()
        with anyio.fail_after(HANG_BOUND):
            await process.wait()
        log_file.close()
    async with AsyncBroker(key, network=devnet.network) as check:
        ledger = await check.ledger.get_ledger()
        account = await check.ledger.get_account(chatbot.address)
    moved = account.balance
    assert ledger.total - before == 30 * AMOUNT
    assert og(2) <= moved < og(4)  # one onboarding top-up, not one per worker
    print(
        f"\nuvicorn x3: 30 deposits landed (slowest reply {max(latencies):.2f} s); "
        f"sub-account funded once with {moved} wei"
    )
