"""Quickstart: the 0G inference flow end to end on the offline devnet.

Run it with ``make demo`` (or ``.venv/bin/python examples/quickstart.py``). It starts a local chain
with the real 0G contracts and four local providers, then, as a user:

1. lists the services on chain,
2. creates a prepaid ledger (the on-chain minimum) and tops it up,
3. acknowledges the chatbot provider's TEE signer (this opens its sub-account),
4. moves more funds into that sub-account,
5. gets the signed session header and sends a chat request,
6. verifies the TEE signature of the response (bound to the exact bytes sent and received),
7. reads the balances by name,
8. waits for the provider to settle the fee on chain (the sub-account drops by the billed fee),
9. requests a refund of what is left (paid back to the ledger after the lock time).

Against a real network, replace the devnet with ``AsyncBroker(private_key, network="testnet")``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from og_inference_async import AsyncBroker, format_og, og
from og_inference_devnet import start_devnet


def say(step: str, text: str = "") -> None:
    """Print one step of the demo."""
    print(f"[{step:>9}] {text}")


async def run(dn: Any, *, settle: Callable[[], Awaitable[Any]] | None = None) -> dict[str, Any]:
    """The user's side of the flow against a running devnet; returns what it observed.

    Args:
        dn: a running devnet with the default providers registered.
        settle: makes the provider settle now (tests); ``None`` waits for its own schedule.
    """
    user = dn.accounts[1]
    async with AsyncBroker(user.private_key, network=dn.network) as broker:
        broker.inference.verification = "background"

        services = [s async for s in broker.inference.iter_services()]
        say("list", f"{len(services)} services on chain")
        for s in services:
            say("list", f"  {s.service_type:<15} {s.model:<28} {s.provider} {s.verifiability}")
        chatbot = next(s for s in services if s.service_type == "chatbot")
        provider = chatbot.provider

        minimum, min_transfer = await broker.ledger.get_min_balances()
        say("fund", f"creating a ledger with {format_og(minimum)} OG (the on-chain minimum), then +2 OG")
        await broker.ledger.add_ledger(minimum)
        await broker.ledger.deposit_fund(og("2"))

        ack = await broker.inference.acknowledge_provider_signer(provider)
        say("ack", f"{ack.status}: {format_og(ack.amount)} OG opened the sub-account")
        again = await broker.inference.acknowledge_provider_signer(provider)
        say("ack", f"second call: {again.status} (idempotent, nothing sent)")

        await broker.ledger.transfer_fund(provider, og("1"))
        say("transfer", f"moved 1 OG more to {provider}")

        headers = await broker.inference.get_request_headers(provider)
        say(
            "headers",
            f"Authorization: Bearer app-sk-... ({len(headers['Authorization'])} chars, cached 24 h)",
        )

        result = await broker.inference.chat(provider, [{"role": "user", "content": "What is 0G Compute?"}])
        say("chat", f"{result.content!r}")
        say("chat", f"chat id {result.chat_id}, usage {result.usage}, fee {format_og(result.fee)} OG")

        verification = await result.verification
        say(
            "verify", f"{verification.status.value}: signed by the on-chain TEE signer over exactly our bytes"
        )
        checked = await broker.inference.process_response(provider, result.chat_id)
        say("verify", f"process_response(provider, chat_id) -> {checked.status.value}")

        ledger = await broker.ledger.get_ledger()
        account = await broker.ledger.get_account(provider)
        say("balances", f"{ledger}; sub-account {format_og(account.spendable)} OG")

        report: Any = None
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                nonlocal report
                report = await broker.inference.wait_settled(provider, timeout=30, poll_interval=0.2)

            tg.start_soon(wait)
            if settle is not None:
                await anyio.sleep(0.05)
                await settle()
        say(
            "settle",
            f"provider settled {format_og(report.fee_settled)} OG on chain "
            f"(sub-account {format_og(report.balance_before)} -> {format_og(report.balance_after)} OG)",
        )

        await broker.ledger.retrieve_fund()
        refunds = await broker.inference.get_refunds(provider)
        for r in refunds:
            say("refund", f"{format_og(r.amount)} OG requested back; unlocks in {r.remaining} s (lock time)")
        return {
            "services": len(services),
            "ack": ack.status,
            "ack_again": again.status,
            "answer": result.content,
            "fee": result.fee,
            "verification": verification.status.value,
            "settled": report.fee_settled,
            "balance_drop": report.balance_before - report.balance_after,
            "pending_refund": sum(r.amount for r in refunds),
        }


async def main() -> None:
    """Start the devnet with its providers and run the flow."""
    async with start_devnet(with_providers=True) as dn:
        say("devnet", f"chain {dn.chain_id} at {dn.rpc_url}; {len(dn.providers)} local providers")
        await run(dn)
    say("done", "devnet stopped")


if __name__ == "__main__":
    anyio.run(main)
