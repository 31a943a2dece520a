"""Quickstart: the 0G inference flow end to end on the offline devnet.

Run it with ``make demo`` (or ``.venv/bin/python examples/quickstart.py``). It starts a local chain
with the real 0G contracts and four local providers, then, as a user:

1. lists the services on chain,
2. creates a prepaid ledger (>= the on-chain minimum),
3. moves funds into a provider's sub-account (which acknowledges its TEE signer),
4. reads the balances by name,
5. requests a refund of what sits in the sub-account (paid back after the lock time).

Against a real network, replace the devnet with ``AsyncBroker(private_key, network="testnet")``.
"""

from __future__ import annotations

from typing import Any

import anyio

from og_inference_async import AsyncBroker, format_og, og
from og_inference_async.devnet import start_devnet


def say(step: str, text: str = "") -> None:
    """Print one step of the demo."""
    print(f"[{step}] {text}" if text else f"[{step}]")


async def run(dn: Any) -> dict[str, Any]:
    """The user's side of the flow against a running devnet; returns what it observed."""
    user = dn.accounts[1]
    async with AsyncBroker(user.private_key, network=dn.network) as broker:
        services = [s async for s in broker.inference.iter_services()]
        say("list", f"{len(services)} services on chain")
        for s in services:
            say("list", f"  {s.service_type:<15} {s.model:<28} {s.provider} {s.verifiability}")
        chatbot = next(s for s in services if s.service_type == "chatbot")

        minimum, min_transfer = await broker.ledger.get_min_balances()
        say("fund", f"creating a ledger with {format_og(minimum)} OG (on-chain minimum)")
        await broker.ledger.add_ledger(minimum)
        await broker.ledger.deposit_fund(og("2"))

        say("transfer", f"moving {format_og(2 * min_transfer)} OG to {chatbot.provider}")
        receipt = await broker.ledger.transfer_fund(chatbot.provider, 2 * min_transfer)
        say("transfer", f"tx {receipt.tx_hash} gas {receipt.gas_used}")
        acknowledged = await broker.inference.acknowledged(chatbot.provider)
        say("acknowledge", f"provider acknowledged: {acknowledged}")

        headers = await broker.inference.get_request_headers(chatbot.provider)
        say("headers", f"Authorization: Bearer app-sk-... ({len(headers['Authorization'])} chars)")

        ledger = await broker.ledger.get_ledger()
        say("balances", str(ledger))

        (refund,) = await broker.ledger.retrieve_fund()
        account = await broker.ledger.get_account(chatbot.provider)
        say("refund", f"requested {format_og(account.pending_refund)} OG back (unlocks after the lock time)")
        return {"services": len(services), "ledger": ledger, "pending_refund": account.pending_refund}


async def main() -> None:
    """Start the devnet with its providers and run the flow."""
    async with start_devnet(with_providers=True) as dn:
        say("devnet", f"chain {dn.chain_id} at {dn.rpc_url}; {len(dn.providers)} providers")
        await run(dn)
    say("done")


if __name__ == "__main__":
    anyio.run(main)
