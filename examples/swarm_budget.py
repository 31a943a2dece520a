"""A swarm of agents on one broker: funding that keeps up, and a spend budget that holds.

Run it with ``.venv/bin/python examples/swarm_budget.py``. It starts a local chain with the real
0G contracts and two chatbot providers, then:

1. opens a sub-account with each provider at the on-chain minimum and starts auto-funding at its
   defaults; 1,000 agents send 3 chats each, spread over both providers. Auto-funding sizes its
   top-ups from the observed spend rate, and a chat the provider refuses for balance is answered
   by ONE top-up shared by every refused agent, then retried once: no balance error reaches an
   agent;
2. 1,000 agents share one swarm budget, each inside its own tagged team budget: every chat
   reserves its worst-case fee before it is sent, so the swarm never spends more than its limit;
   the chats that could pass it are refused with ``BudgetExceededError`` and never sent.

Against a real network, use ``AsyncBroker(private_key, network="testnet")`` and provider
addresses from ``broker.inference.list_services()``.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from og_inference_async import AsyncBroker, BudgetExceededError, InsufficientBalanceError, format_og, og
from og_inference_devnet import start_devnet
from og_inference_devnet.provider import start_provider

#: wei per token in and out: a devnet chat of about ten tokens costs about 0.01 OG.
PRICE = 10**15


async def swarm(broker: AsyncBroker, providers: list[Any], n_agents: int, chats: int) -> dict[str, Any]:
    """``n_agents`` agents x ``chats`` chats over ``providers`` with auto-funding at its defaults."""
    addresses = [p.address for p in providers]
    for address in addresses:
        minimum = await broker.inference.acknowledge_provider_signer(address, initial_amount=og("1"))
        print(f"[swarm] sub-account with {address[:10]}: {minimum.status}, {format_og(minimum.amount)} OG")
        await broker.inference.start_auto_funding(address)
    rpc = broker._chain_reader.rpc  # the RPC client counts its requests (as in agents.py)
    rpc_before = rpc.request_count
    answered = 0
    balance_errors = 0
    failures: dict[str, int] = {}

    async def agent(i: int) -> None:
        nonlocal answered, balance_errors
        for j in range(chats):
            provider = addresses[(i + j) % len(addresses)]
            try:
                await broker.inference.chat(provider, [{"role": "user", "content": f"agent {i} chat {j}"}])
                answered += 1
            except InsufficientBalanceError:
                balance_errors += 1
            except Exception as exc:  # an example's summary: count the failure by type
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n_agents):
            tg.start_soon(agent, i)
    elapsed = time.perf_counter() - started
    stats = [broker.inference.auto_funding_stats(a) for a in addresses]
    rpc_used = rpc.request_count - rpc_before
    top_ups = sum(s.top_ups for s in stats if s is not None)
    refills = sum(s.refills for s in stats if s is not None)
    print(
        f"[swarm] {answered}/{n_agents * chats} chats answered in {elapsed:.1f} s; {balance_errors} balance "
        f"errors; {top_ups} top-ups ({refills} after a refusal); "
        f"{rpc_used} RPC requests"
    )
    return {
        "chats": n_agents * chats,
        "answered": answered,
        "balance_errors": balance_errors,
        "failures": failures,
        "elapsed": elapsed,
        "top_ups": top_ups,
        "refills": refills,
        "rpc_requests": rpc_used,
        "stats": stats,
    }


async def budgeted(broker: AsyncBroker, provider: Any, n_agents: int, limit: int) -> dict[str, Any]:
    """``n_agents`` concurrent agents under one swarm budget of ``limit`` wei, in 4 tagged teams."""
    billed_before = provider.total_billed
    served_before = provider.requests_served
    answered = 0
    refused = 0

    async def agent(i: int) -> None:
        nonlocal answered, refused
        async with broker.budget(None, tag=f"team-{i % 4}"):  # nested in the swarm budget
            try:
                await broker.inference.chat(
                    provider.address, [{"role": "user", "content": f"agent {i} asks"}], max_tokens=16
                )
                answered += 1
            except BudgetExceededError:
                refused += 1

    async with broker.budget(limit, tag="swarm") as budget:
        async with anyio.create_task_group() as tg:
            for i in range(n_agents):
                tg.start_soon(agent, i)
    billed = provider.total_billed - billed_before
    sent = provider.requests_served - served_before
    print(
        f"[budget] limit {format_og(limit)} OG: spent {format_og(budget.spent)} OG (provider billed "
        f"{format_og(billed)} OG); {answered} answered, {refused} refused before sending, {sent} sent; "
        f"by tag { ({t: format_og(v) for t, v in sorted(budget.spent_by_tag().items())}) }"
    )
    return {
        "limit": limit,
        "spent": budget.spent,
        "reserved": budget.reserved,
        "billed": billed,
        "answered": answered,
        "refused": refused,
        "sent": sent,
        "by_tag": budget.spent_by_tag(),
    }


async def run(
    dn: Any, providers: list[Any], *, n_agents: int = 1000, chats: int = 3, limit: int = og("20")
) -> dict[str, Any]:
    """Run the swarm, then the budgeted swarm (both with ``n_agents`` agents) and return their figures."""
    user = dn.accounts[18]
    async with AsyncBroker(user.private_key, network=dn.network) as broker:
        broker.inference.verification = "off"  # agents here trust the provider; see quickstart.py
        await broker.ledger.add_ledger(og("500"))
        result = {"swarm": await swarm(broker, providers, n_agents, chats)}
        result["budget"] = await budgeted(broker, providers[0], n_agents, limit)
        await broker.inference.stop_auto_funding()
    return result


async def start_chatbots(dn: Any, count: int = 2, *, first_account: int = 20) -> list[Any]:
    """Start ``count`` chatbots at :data:`PRICE` per token in the devnet's task group."""
    return [
        await start_provider(
            dn,
            dn.task_group,
            service_type="chatbot",
            model=f"og-devnet/swarm-chat-{i}",
            input_price=PRICE,
            output_price=PRICE,
            account_index=first_account + i,
        )
        for i in range(count)
    ]


async def main() -> None:
    """Start a devnet and two chatbots, then run the swarm."""
    async with start_devnet() as dn:
        providers = await start_chatbots(dn)
        await run(dn, providers)
        for provider in providers:
            await provider.aclose()
    print("[done]")


if __name__ == "__main__":
    anyio.run(main)
