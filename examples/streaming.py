"""Streaming chat completions with og-inference-async, on the offline devnet.

Run it with ``.venv/bin/python examples/streaming.py``. It starts a local chain with the real 0G
contracts and the four local providers, funds a user, then:

1. streams one answer word by word, and prints its usage, fee, chat id and verification
   (``required``: the TEE signature must cover exactly the SSE bytes received),
2. stops reading another stream early (the SDK reads the rest in the background: the provider
   bills the whole answer, so the fee is counted and the response verified anyway),
3. runs three streams at once on the broker's single shared HTTP pool.

Against a real network, replace the devnet with ``AsyncBroker(private_key, network="testnet")``
and pick a chatbot provider from ``broker.inference.list_services()``.
"""

from __future__ import annotations

from typing import Any

import anyio

from og_inference_async import AsyncBroker, format_og, og
from og_inference_devnet import start_devnet


async def run(dn: Any, provider: str, *, user_index: int = 8, quiet: bool = False) -> dict[str, Any]:
    """The user's side against a running devnet; returns what it observed.

    Args:
        dn: a running devnet.
        provider: the chatbot provider's address.
        user_index: which dev account plays the user.
        quiet: do not print.
    """

    def say(text: str = "", end: str = "\n") -> None:
        if not quiet:
            print(text, end=end, flush=True)

    user = dn.accounts[user_index]
    async with AsyncBroker(user.private_key, network=dn.network) as broker:
        await broker.ledger.add_ledger(og("10"))
        await broker.ledger.transfer_fund(provider, og("3"))  # opens and acknowledges the sub-account

        # 1. one stream, verified before it counts as done
        question = [{"role": "user", "content": "Tell me how streaming works on 0G Compute"}]
        say("> ", end="")
        async with broker.inference.chat_stream(provider, question, verify="required") as stream:
            async for chunk in stream:
                say(chunk.content, end="")
        say()
        result = stream.result
        assert result is not None
        verification = await result.verification
        say(
            f"  usage {result.usage}, fee {format_og(result.fee)} OG, chat id {result.chat_id}, "
            f"verification {verification.status.value}"
        )

        # 2. stop early
        async with broker.inference.chat_stream(
            provider, [{"role": "user", "content": "a b c d e f"}]
        ) as early:
            async for chunk in early:
                if chunk.content:
                    seen = early.content  # what we read before leaving
                    break
        # the provider bills the whole answer anyway: the rest is read in the background so the
        # fee is counted and the response verified
        drained = await early.wait_result()
        assert drained is not None
        say(f"  stopped reading after {seen!r}; drained in the background: {drained.content!r}")

        # 3. three streams at once on one HTTP pool
        answers: dict[int, str] = {}

        async def ask(i: int) -> None:
            async with broker.inference.chat_stream(
                provider, [{"role": "user", "content": f"stream {i}"}]
            ) as s:
                answers[i] = (await s.final()).content

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(ask, i)
        for i in sorted(answers):
            say(f"  concurrent stream {i}: {answers[i]}")
        local = broker.inference.local_fees(provider)
        say(f"  fees counted locally for this provider: {format_og(local)} OG")
        return {
            "content": result.content,
            "fee": result.fee,
            "verification": verification.status.value,
            "early_content": seen,
            "drained": drained.content,
            "concurrent": answers,
            "local_fees": local,
        }


async def main() -> None:
    """Start the devnet with its providers and run the streaming demo against the chatbot."""
    async with start_devnet(with_providers=True) as dn:
        chatbot = next(p for p in dn.providers if p.service_type == "chatbot")
        await run(dn, chatbot.address)


if __name__ == "__main__":
    anyio.run(main)
