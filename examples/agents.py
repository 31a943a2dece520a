"""Many agents, one wallet: 100 concurrent agents share ONE broker against a devnet chatbot.

Run it with ``.venv/bin/python examples/agents.py``. It starts a local chain with the real 0G
contracts and one chatbot provider, then:

1. ``ensure_ready`` makes the wallet ready in one call (ledger, funded sub-account,
   acknowledgement) - the transactions are sent once, whatever the number of agents;
2. auto-funding keeps the sub-account above the provider's unsettled fee in the background
   (inside the broker's task group, stopped when the broker closes);
3. 100 agents ask the chatbot at the same time, sharing the broker's HTTP pool, its cached
   session token and its nonce allocator;
4. the provider settles, and ``wait_settled`` reports the fee taken on chain.

Against a real network, use ``AsyncBroker(private_key, network="testnet")`` and a provider
address from ``broker.inference.list_services()``.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from og_inference_async import AsyncBroker, format_og, og
from og_inference_devnet import start_devnet
from og_inference_devnet.provider import start_provider


async def run(dn: Any, provider_handle: Any, n_agents: int = 100) -> dict[str, Any]:
    """Run ``n_agents`` concurrent agents on one broker against ``provider_handle``; return a summary.

    The provider should settle on demand (``settle_interval=None``): the example triggers the
    settlement itself with ``provider_handle.settle_now()``.
    """
    user = dn.accounts[19]
    provider = provider_handle.address
    async with AsyncBroker(user.private_key, network=dn.network) as broker:
        ready = await broker.inference.ensure_ready(
            provider, min_balance=og("5"), create_ledger=True, ledger_amount=og("10")
        )
        print(f"[ready] {ready}")
        funding = await broker.inference.start_auto_funding(provider, interval=5.0)
        print(f"[auto-funding] first check: {funding.checks} check, {funding.top_ups} top-ups")

        broker.inference.verification = "off"  # agents here trust the provider; see quickstart.py
        rpc = broker._chain_reader.rpc
        rpc_before = rpc.request_count
        answers: dict[int, str] = {}
        failures: dict[int, str] = {}

        async def agent(i: int) -> None:
            text = f"agent {i} reporting"
            try:
                result = await broker.inference.chat(provider, [{"role": "user", "content": text}])
                answers[i] = result.content
            except Exception as exc:  # an example's summary: count and show the failure
                failures[i] = f"{type(exc).__name__}: {exc}"

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n_agents):
                tg.start_soon(agent, i)
        elapsed = time.perf_counter() - started
        correct = sum(1 for i, a in answers.items() if f"agent {i} reporting" in a)
        rpc_used = rpc.request_count - rpc_before
        billed = provider_handle.unsettled_fee(user.address)
        print(
            f"[agents] {len(answers)}/{n_agents} answered ({correct} correct) in {elapsed:.2f} s "
            f"= {len(answers) / elapsed:.0f} req/s; {len(failures)} failed; {rpc_used} RPC requests in total"
        )
        for i, why in sorted(failures.items())[:3]:
            print(f"[agents]   agent {i}: {why}")

        settlements: list[Any] = []

        async def wait() -> None:
            settlements.append(await broker.inference.wait_settled(provider, timeout=30, poll_interval=0.05))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.05)  # let wait_settled read its baseline first
            await provider_handle.settle_now()
        (settled,) = settlements
        print(
            f"[settled] billed {format_og(billed)} OG, settled {format_og(settled.fee_settled)} OG "
            f"(nonce {settled.nonce_before} -> {settled.nonce_after})"
        )
        stats = broker.inference.auto_funding_stats(provider)
        await broker.inference.stop_auto_funding()
        return {
            "agents": n_agents,
            "answered": len(answers),
            "correct": correct,
            "failures": failures,
            "elapsed": elapsed,
            "rpc_requests": rpc_used,
            "ready": ready,
            "billed": billed,
            "settlement": settled,
            "auto_funding": stats,
        }


async def main() -> None:
    """Start a devnet and a chatbot that settles on demand, then run the agents."""
    async with start_devnet() as dn:
        chat = await start_provider(
            dn,
            dn.task_group,
            service_type="chatbot",
            model="og-devnet/echo-chat-7b",
            input_price=1_000_000_000_000,
            output_price=2_000_000_000_000,
            account_index=20,
            settle_interval=None,
        )
        print(f"[devnet] chain {dn.chain_id} at {dn.rpc_url}; chatbot {chat.address} at {chat.url}")
        await run(dn, chat)
        await chat.aclose()
    print("[done]")


if __name__ == "__main__":
    anyio.run(main)
