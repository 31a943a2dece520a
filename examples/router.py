"""Provider failover: one router over three providers of one model, one killed and one answering 503.

Run it with ``.venv/bin/python examples/router.py``. It starts a local chain with the real 0G
contracts and three chatbot providers serving the same model, each behind a fault proxy, then:

1. ``broker.inference.router(model=...)`` picks among them (equal prices: they take turns) and
   prepares each one the first time it is used (``ensure_ready``: sub-account, funds,
   acknowledgement);
2. a first wave of chats is served by all three;
3. mid-run the first provider is killed (its proxy resets connections, then stops listening) and
   the second starts answering 503 to everything;
4. the next waves are all answered by the third; the dead and refusing providers' circuits open
   after two failures, so they are skipped from then on;
5. nothing was billed twice: what each provider billed equals what the SDK counted for it.

A request the provider may have billed (a 502/504/500, a connection lost after sending) is never
sent to another provider; a 503, a 429 and a connection that never opened are refusals, sent on.
Against a real network: ``AsyncBroker(key, network="testnet")`` and ``router(model="<model>")``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio

from og_inference_async import AsyncBroker, RequestRetryPolicy, og
from og_inference_devnet import start_devnet
from og_inference_devnet.faultproxy import start_http_fault_proxy
from og_inference_devnet.provider import DEFAULT_PROVIDERS, start_provider

WAVE = 10


async def run(dn: Any, handles: list[Any], proxies: list[Any], *, waves: int = 4) -> dict[str, Any]:
    """Send ``waves`` waves of ``WAVE`` concurrent chats through a router over ``handles``; return a summary.

    ``handles[i]`` is reached through ``proxies[i]``. After the first wave ``proxies[0]`` is
    killed and ``handles[1]`` answers 503 to every inference request.
    """
    user = dn.accounts[18]
    addresses = [h.address for h in handles]
    async with AsyncBroker(user.private_key, network=dn.network) as broker:
        await broker.inference.ensure_ready(
            addresses[0], min_balance=og("3"), create_ledger=True, ledger_amount=og("20")
        )
        broker.inference.verification = "off"  # see quickstart.py for verified answers
        # One attempt per provider: the router fails over instead of retrying the same one.
        broker.inference.retry_policy = RequestRetryPolicy(attempts=1)
        router = broker.inference.router(
            model=handles[0].model, providers=addresses, min_balance=og("3"), failure_threshold=2
        )
        served: dict[str, int] = dict.fromkeys(addresses, 0)
        failures: list[str] = []

        async def ask(i: int) -> None:
            try:
                result = await router.chat([{"role": "user", "content": f"question {i}"}])
            except Exception as exc:  # an example's summary: count and show the failure
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            served[result.provider] += 1

        for wave in range(waves):
            if wave == 1:
                proxies[0].reset_rate = 1.0  # killed: connections reset, then nothing listens
                await proxies[0].aclose()
                handles[1].faults.unavailable = -1  # every inference request answered 503
                print("[chaos] provider 1 killed, provider 2 answering 503")
            async with anyio.create_task_group() as tg:
                for i in range(WAVE):
                    tg.start_soon(ask, wave * WAVE + i)
            print(f"[wave {wave}] served so far: {list(served.values())}, {len(failures)} failed")

        billed = {a: h.total_billed for a, h in zip(addresses, handles, strict=True)}
        counted = {a: broker.inference.local_fees(a) for a in addresses}
        for stats in router.stats():
            print(f"[router] {stats.provider}: {stats.circuit}, served {stats.served}, failed {stats.failed}")
        print(
            f"[fees] billed by providers {sum(billed.values())} wei, "
            f"counted by the SDK {sum(counted.values())}"
        )
        return {
            "requests": waves * WAVE,
            "answered": sum(served.values()),
            "failures": failures,
            "served": served,
            "billed": billed,
            "counted": counted,
            "failovers": router.failovers,
            "circuits": {s.provider: s.circuit for s in router.stats()},
        }


async def main() -> None:
    """Start a devnet, three chatbots of one model behind fault proxies, and run the example."""
    _, model, input_price, output_price, _ = DEFAULT_PROVIDERS[0]
    async with start_devnet() as dn, AsyncExitStack() as stack:
        handles, proxies = [], []
        for index in (24, 25, 26):
            proxy = await stack.enter_async_context(start_http_fault_proxy(None, seed=index))
            handle = await start_provider(
                dn,
                dn.task_group,
                service_type="chatbot",
                model=model,
                input_price=input_price,
                output_price=output_price,
                account_index=index,
                settle_interval=None,
                advertised_url=proxy.url,
            )
            stack.push_async_callback(handle.aclose)
            proxy.upstream = handle.local_url
            handles.append(handle)
            proxies.append(proxy)
        summary = await run(dn, handles, proxies)
        print(
            f"[done] {summary['answered']}/{summary['requests']} answered, {summary['failovers']} failovers"
        )


if __name__ == "__main__":
    anyio.run(main)
