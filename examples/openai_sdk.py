"""Using the official OpenAI Python SDK against a 0G provider, on the offline devnet.

Run it with ``.venv/bin/python examples/openai_sdk.py`` (needs ``pip install openai``). It starts a
local chain with the real 0G contracts and the four local providers, funds a user, then:

1. gets an ``openai.AsyncOpenAI`` from ``broker.inference.openai_client(provider)``: it shares the
   broker's HTTP pool and signs a session token for every request (re-signed once if the
   provider says the token is stale);
2. makes a plain and a streamed completion with it;
3. hands the ``ZG-Res-Key`` header, the exact request and response bytes and the usage of a raw
   response to ``process_response`` (the SDK does not see OpenAI-SDK requests by itself);
4. creates a persistent API key (``app-sk-...``) and uses it as the OpenAI ``api_key``, then revokes it.

Against a real network, replace the devnet with ``AsyncBroker(private_key, network="testnet")``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from og_inference_async import AsyncBroker, format_og, og
from og_inference_devnet import start_devnet

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam


async def run(dn: Any, provider: str, *, user_index: int = 9, quiet: bool = False) -> dict[str, Any]:
    """The user's side against a running devnet; returns what it observed.

    Args:
        dn: a running devnet.
        provider: the chatbot provider's address.
        user_index: which dev account plays the user.
        quiet: do not print.
    """
    import openai

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    user = dn.accounts[user_index]
    async with AsyncBroker(user.private_key, network=dn.network) as broker:
        await broker.ledger.add_ledger(og("10"))
        await broker.ledger.transfer_fund(provider, og("3"))
        service = await broker.inference.get_service(provider)
        messages: list[ChatCompletionMessageParam] = [
            {"role": "user", "content": "Hello from the OpenAI SDK"}
        ]

        # 1-2. session tokens, on the broker's pool
        async with await broker.inference.openai_client(provider) as client:
            completion = await client.chat.completions.create(model=service.model, messages=messages)
            say(f"session  : {completion.choices[0].message.content}")
            stream = await client.chat.completions.create(
                model=service.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            say(f"streamed : {streamed}")

            # 3. verification and fee accounting for an OpenAI-SDK request
            raw = await client.chat.completions.with_raw_response.create(
                model=service.model, messages=messages
            )
            parsed = raw.parse()
            outcome = await broker.inference.process_response(
                provider,
                raw.headers.get("ZG-Res-Key"),
                request_body=raw.http_response.request.content,  # the exact bytes sent ...
                response_body=raw.http_response.content,  # ... and received (uncompressed here)
                usage=parsed.usage.model_dump() if parsed.usage else None,
            )
            say(f"verified : {outcome.status.value} (signed by {outcome.signer})")
        # leaving the OpenAI client's block did not close the broker's pool
        say(f"fees     : {format_og(broker.inference.local_fees(provider))} OG counted locally")

        # 4. a persistent API key (what you would hand to another service or tool)
        key = await broker.inference.create_api_key(provider)
        keyed = await broker.inference.openai_client(
            provider, api_key=key.secret.get_secret_value(), max_retries=0
        )
        answer = await keyed.chat.completions.create(model=service.model, messages=messages)
        say(f"api key  : key #{key.token_id}: {answer.choices[0].message.content}")
        await broker.inference.revoke_api_key(provider, key.token_id)
        try:
            await keyed.chat.completions.create(model=service.model, messages=messages)
            revoked_refused = False
        except openai.AuthenticationError:
            revoked_refused = True
        say(f"revoked  : key #{key.token_id} refused afterwards: {revoked_refused}")
        return {
            "session": completion.choices[0].message.content,
            "streamed": streamed,
            "verification": outcome.status.value,
            "api_key": answer.choices[0].message.content,
            "revoked_refused": revoked_refused,
            "local_fees": broker.inference.local_fees(provider),
        }


async def main() -> None:
    """Start the devnet with its providers and run the OpenAI SDK demo against the chatbot."""
    async with start_devnet(with_providers=True) as dn:
        chatbot = next(p for p in dn.providers if p.service_type == "chatbot")
        await run(dn, chatbot.address)


if __name__ == "__main__":
    anyio.run(main)
