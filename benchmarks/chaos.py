"""Chaos run (``make chaos``): 200 mixed operations from ONE wallet through a faulty JSON-RPC endpoint.

A fault proxy sits between the SDK and the devnet node and spoils about 20 % of the requests:
HTTP 5xx, 429 (with and without ``Retry-After``, and JSON-RPC -32005), resets, slow answers past
the per-attempt timeout, and forward-then-drop (the node executes the request, the client gets an
error). 200 operations (deposits, transfers to five providers, ledger and account reads) run 10 at a
time from one wallet. Every value-moving operation carries a unique amount, so each transaction on
chain maps back to exactly one operation. Then, straight from the node (no proxy), it checks:

- no operation hung (each is wrapped in a hang detector), and none raised anything but an OGError;
- no operation reported failed had a transaction executed, and none executed twice;
- no transaction is left in doubt ("unknown"), and the node's txpool is empty at the end;
- funds are conserved to the wei: wallet + ledger + sub-accounts + gas spent is unchanged.

Usage: ``python benchmarks/chaos.py [--ops 200] [--fault-rate 0.2] [--seed 1]``. Exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from og_inference_async import AsyncBroker, OGError, RetryPolicy, TxPolicy, og
from og_inference_async.abi import inference_abi, ledger_abi
from og_inference_devnet import start_devnet
from og_inference_devnet.faultproxy import start_rpc_fault_proxy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.chain_helpers import register_provider  # noqa: E402

HANG_BOUND = 120.0  # seconds: an operation still running after this counts as a hang
BASE = og("0.01")


@dataclasses.dataclass
class Op:
    """One operation of the run and how it ended."""

    index: int
    kind: str
    amount: int = 0
    provider: str = ""
    outcome: str = "pending"  # ok | error:<Type> | hang
    foreign: bool = False
    detail: str = ""


async def _run_op(broker: AsyncBroker, op: Op) -> None:
    try:
        with anyio.fail_after(HANG_BOUND):
            if op.kind == "deposit":
                await broker.ledger.deposit_fund(op.amount)
            elif op.kind == "transfer":
                await broker.ledger.transfer_fund(op.provider, op.amount)
            elif op.kind == "read_ledger":
                await broker.ledger.get_ledger()
            else:
                await broker.ledger.get_account(op.provider)
        op.outcome = "ok"
    except TimeoutError:
        op.outcome = "hang"
    except OGError as exc:
        op.outcome = f"error:{type(exc).__name__}"
        op.detail = str(exc)[:160]
    except Exception as exc:  # noqa: BLE001 - counted: the SDK must never let one through
        op.outcome = f"error:{type(exc).__name__}"
        op.foreign = True


async def _wallet_state(dn: Any, user: str, providers: list[str]) -> dict[str, int]:
    async with AsyncBroker(network=dn.network) as reader:
        chain = reader._chain_reader
        ledger = await chain.get_ledger(user)
        subs = 0
        for p in providers:
            subs += (await chain.get_account(user, p)).balance
    wallet = int(await dn.rpc("eth_getBalance", [user, "latest"]), 16)
    return {
        "wallet": wallet,
        "ledger_total": ledger.total,
        "ledger_available": ledger.available,
        "subs": subs,
    }


async def _chain_txs(dn: Any, user: str, first_block: int) -> list[dict[str, Any]]:
    """Every transaction from ``user`` mined since ``first_block``, with its receipt."""
    out = []
    last = int(await dn.rpc("eth_blockNumber", []), 16)
    for n in range(first_block, last + 1):
        block = await dn.rpc("eth_getBlockByNumber", [hex(n), True])
        for tx in block["transactions"]:
            if tx["from"].lower() == user.lower():
                receipt = await dn.rpc("eth_getTransactionReceipt", [tx["hash"]])
                out.append({**tx, "receipt": receipt})
    return out


def _decode_op(tx: dict[str, Any], ledger: str) -> tuple[str, int] | None:
    """``(kind, amount)`` of a wallet transaction; ``None`` for self-transfers (cancels, fillers)."""
    if tx["to"] is None or tx["to"].lower() != ledger.lower():
        return None
    data = bytes.fromhex(tx["input"][2:])
    fn_deposit = ledger_abi().fn("depositFund")
    fn_transfer = ledger_abi().fn("transferFund")
    if data[:4] == fn_deposit.selector:
        return "deposit", int(tx["value"], 16)
    if data[:4] == fn_transfer.selector:
        from eth_abi import decode

        args = decode(list(fn_transfer.input_types), data[4:])
        return "transfer", int(args[-1])
    return "other", 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    _ = inference_abi()

    async with start_devnet() as dn:
        providers = [await register_provider(dn) for _ in range(5)]
        user = dn.accounts[7]
        async with AsyncBroker(user.private_key, network=dn.network) as setup:
            await setup.ledger.add_ledger(og("20"))
            for p in providers:
                await setup.ledger.transfer_fund(p, og("1"))
        first_block = int(await dn.rpc("eth_blockNumber", []), 16) + 1
        before = await _wallet_state(dn, user.address, providers)

        ops: list[Op] = []
        for i in range(args.ops):
            kind = rng.choices(["deposit", "transfer", "read_ledger", "read_account"], [3, 3, 2, 2])[0]
            ops.append(Op(i, kind, amount=BASE + i, provider=rng.choice(providers)))

        share = args.fault_rate / 5  # five fault kinds share the rate
        knobs = dict(
            error_rate=share,
            rate_limit_rate=share,
            retry_after_fraction=0.5,
            json_rate_limit_fraction=0.3,
            reset_rate=share,
            slow_rate=share,
            slow_seconds=2.5,
            forward_then_drop_rate=share,
            skip_methods=("eth_chainId",),
        )
        retry = RetryPolicy(
            attempts=8, max_delay=30.0, initial_backoff=0.05, max_backoff=1.0, attempt_timeout=1.5
        )
        policy = TxPolicy(
            receipt_timeout=30.0,
            rebroadcast_interval=0.5,
            send_timeout=15.0,
            cancel_timeout=30.0,
            gap_heal_after=1.0,
        )
        started = time.perf_counter()
        async with start_rpc_fault_proxy(dn.rpc_url, seed=args.seed, **knobs) as proxy:
            network = dataclasses.replace(dn.network, rpc_url=proxy.url)
            async with AsyncBroker(
                user.private_key, network=network, retry=retry, tx_policy=policy
            ) as broker:
                limiter = anyio.Semaphore(args.concurrency)

                async def one(op: Op) -> None:
                    async with limiter:
                        await _run_op(broker, op)

                async with anyio.create_task_group() as tg:
                    for op in ops:
                        tg.start_soon(one, op)
                in_doubt = broker.transactions.in_doubt()
                records = broker.transactions.recent(1000)
            faults = dict(proxy.faults)
            requests = proxy.requests_seen
            dropped = len(proxy.dropped_tx_hashes)
        elapsed = time.perf_counter() - started

        # Let the node settle, then judge from the chain itself.
        for _ in range(100):
            pool = await dn.rpc("txpool_status", [])
            if int(pool["pending"], 16) == 0 and int(pool["queued"], 16) == 0:
                break
            await anyio.sleep(0.1)
        pool = await dn.rpc("txpool_status", [])
        after = await _wallet_state(dn, user.address, providers)
        txs = await _chain_txs(dn, user.address, first_block)

    executed: Counter[tuple[str, int]] = Counter()
    gas_spent = 0
    fillers = 0
    for tx in txs:
        price = tx["receipt"].get("effectiveGasPrice", tx["gasPrice"])
        gas_spent += int(tx["receipt"]["gasUsed"], 16) * int(price, 16)
        decoded = _decode_op(tx, dn.network.ledger)
        if decoded is None:
            fillers += 1
        elif int(tx["receipt"]["status"], 16) == 1:
            executed[decoded] += 1
    by_amount = {(op.kind, op.amount): op for op in ops if op.kind in ("deposit", "transfer")}
    twice = [k for k, n in executed.items() if n > 1]
    failed_but_landed = [k for k in executed if k in by_amount and by_amount[k].outcome != "ok"]
    ok_not_landed = [k for k, op in by_amount.items() if op.outcome == "ok" and executed[k] != 1]
    strangers = [k for k in executed if k not in by_amount]
    deposited = sum(a for (kind, a), n in executed.items() if kind == "deposit")
    transferred = sum(a for (kind, a), n in executed.items() if kind == "transfer")
    # The ledger total includes the sub-accounts, so wallet + ledger total only changes by gas.
    conserved = (
        before["wallet"] + before["ledger_total"] == after["wallet"] + after["ledger_total"] + gas_spent
    )
    # Exact bookkeeping: the wallet paid deposits and gas; the ledger total grew by the deposits;
    # transfers moved funds from the ledger's available balance into the sub-accounts.
    checks = {
        "wallet paid exactly deposits + gas": before["wallet"] - after["wallet"] == deposited + gas_spent,
        "ledger total grew by exactly the deposits": after["ledger_total"] - before["ledger_total"]
        == deposited,
        "sub-accounts grew by exactly the transfers": after["subs"] - before["subs"] == transferred,
        "available moved by deposits - transfers": after["ledger_available"] - before["ledger_available"]
        == deposited - transferred,
    }
    outcomes = Counter(op.outcome for op in ops)
    hangs = sum(1 for op in ops if op.outcome == "hang")
    foreign = sum(1 for op in ops if op.foreign)
    states = Counter(r.state.value for r in records)
    empty_pool = int(pool["pending"], 16) == 0 and int(pool["queued"], 16) == 0

    print(
        f"\n## Chaos: {args.ops} operations from one wallet, {args.concurrency} at a time, seed {args.seed}"
    )
    print(f"  elapsed                           {elapsed:8.1f} s")
    print(f"  RPC requests through the proxy    {requests:8d}")
    print(f"  faults injected                   {sum(faults.values()):8d}  {dict(sorted(faults.items()))}")
    print(f"  transactions forwarded-then-dropped {dropped:6d}")
    print(f"  operation outcomes                {dict(sorted(outcomes.items()))}")
    print(f"  transaction records by state      {dict(sorted(states.items()))}")
    print(f"  wallet transactions on chain      {len(txs):8d}  (cancels / gap fillers: {fillers})")
    results = {
        "hangs": hangs,
        "non-OGError exceptions": foreign,
        "reported failed but landed": len(failed_but_landed),
        "reported ok but not landed once": len(ok_not_landed),
        "executed twice": len(twice),
        "unknown transactions executed": len(strangers),
        "transactions left in doubt": len(in_doubt),
    }
    for op in ops:
        if op.outcome != "ok":
            print(f"  op {op.index} {op.kind}: {op.outcome} {op.detail}")
    for name, value in results.items():
        print(f"  {name:34s}{value:8d}")
    for name, ok in checks.items():
        print(f"  {name:42s} {'yes' if ok else 'NO'}")
    print(f"  funds conserved to the wei (sum)          {'yes' if conserved else 'NO'}")
    print(f"  txpool empty at the end                   {'yes' if empty_pool else 'NO'}")
    good = all(v == 0 for v in results.values()) and all(checks.values()) and empty_pool
    print(f"\n  verdict: {'PASS' if good else 'FAIL'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
