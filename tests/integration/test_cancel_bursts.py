"""Bursts of cancelled chats and streams: nothing hangs afterwards and the provider never bills twice.

The provider sits behind an HTTP fault proxy that holds half of the chat answers back a little and
throttles the streamed bodies, so the random cancellations land before the request is sent, while
the provider works, while the headers are held back and in the middle of a stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import anyio
import pytest

from og_inference_async import AsyncBroker, og
from og_inference_async.devnet import Devnet
from og_inference_async.devnet.provider import ProviderHandle
from og_inference_async.inference._retry import RequestRetryPolicy
from og_inference_async.inference._stream import ChatStream
from og_inference_async.types.inference import ChatResult

from ..conftest import ProxiedProviderFactory

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

BURSTS, WIDTH = 10, 20
#: The longest a cancelled call may run before its cancel scope fires, in seconds.
MAX_CANCEL_DELAY = 0.3
#: Bound on the calls made after a burst: a hang detector, not a speed assertion.
HANG_BOUND = 10
WORDS = [{"role": "user", "content": " ".join(f"w{i}" for i in range(30))}]  # a stream of ~33 events
HELLO = [{"role": "user", "content": "still there?"}]
PROXY_KNOBS = {
    "paths": {"/v1/proxy/chat"},
    "slow_rate": 0.5,  # half of the answers come 50 ms late (forwarded at once: already billed)
    "slow_seconds": 0.05,
    "chunk_delay": 0.002,  # streamed bodies trickle, about one event per piece
    "chunk_bytes": 256,
}


@dataclass
class Ledger:
    """What one broker's calls delivered, to compare with what the provider billed."""

    started: int = 0
    cancelled: int = 0
    results: list[ChatResult] = field(default_factory=list)
    streams: list[ChatStream] = field(default_factory=list)

    def delivered(self) -> list[ChatResult]:
        """The chats and streams that finished with a result (the ones the SDK counted a fee for)."""
        return self.results + [s.result for s in self.streams if s.result is not None]


async def funded(dn: Devnet, index: int, provider: ProviderHandle) -> AsyncBroker:
    """An unopened broker for accounts[index] with a funded sub-account with ``provider`` (no retry waits)."""
    key = dn.accounts[index].private_key
    async with AsyncBroker(key, network=dn.network) as setup:
        await setup.ledger.add_ledger(og("5"))
        await setup.ledger.transfer_fund(provider.address, og("3"))
    broker = AsyncBroker(key, network=dn.network)
    broker.inference.retry_policy = RequestRetryPolicy.no_wait()
    broker.inference.verification = "off"
    return broker


async def cancelled_call(broker: AsyncBroker, provider: str, rng: random.Random, book: Ledger) -> None:
    """One chat or stream, cancelled after a random delay (or finished first); streams stop early."""
    delay = rng.uniform(0.0, MAX_CANCEL_DELAY)
    streaming = rng.random() < 0.5
    keep = rng.randint(2, 40)
    book.started += 1
    with anyio.move_on_after(delay) as scope:
        if streaming:
            async with broker.inference.chat_stream(provider, WORDS) as stream:
                book.streams.append(stream)
                got = 0
                async for _ in stream:
                    got += 1
                    if got >= keep:
                        break  # left early: the SDK reads the rest in the background to count the fee
        else:
            book.results.append(await broker.inference.chat(provider, WORDS))
    if scope.cancelled_caught:
        book.cancelled += 1


async def burst(broker: AsyncBroker, provider: str, rng: random.Random, book: Ledger) -> None:
    """WIDTH concurrent cancelled calls."""
    async with anyio.create_task_group() as tg:
        for _ in range(WIDTH):
            tg.start_soon(cancelled_call, broker, provider, random.Random(rng.random()), book)


async def still_works(broker: AsyncBroker, provider: str, book: Ledger) -> None:
    """Background drains finish; then a normal chat and a normal stream complete (bounded)."""
    with anyio.fail_after(HANG_BOUND):
        for stream in book.streams:
            await stream.wait_result()
        result = await broker.inference.chat(provider, HELLO)
        assert result.content == "Echo: still there?"
        book.results.append(result)
        async with broker.inference.chat_stream(provider, HELLO) as stream:
            text = "".join([chunk.content async for chunk in stream])
        assert text == "Echo: still there?" and stream.result is not None
        book.streams.append(stream)


def check_billing(chat: ProviderHandle, broker: AsyncBroker, book: Ledger) -> None:
    """No request billed twice, every delivered answer billed, the SDK counted exactly what it received."""
    records = chat.core.book.records(broker.address)
    ids = [r.request_id for r in records]
    assert len(ids) == len(set(ids)), "a request was billed twice"
    assert sum(r.fee for r in records) == chat.unsettled_fee(broker.address)
    delivered = book.delivered()
    assert {r.chat_id for r in delivered} <= set(ids), "an answer the SDK received was not billed"
    assert len(ids) <= book.started + 2 * BURSTS, "more bills than requests"
    local = broker.inference.local_fees(chat.address)
    assert local == sum(r.fee for r in delivered)
    assert local <= chat.unsettled_fee(broker.address)


async def test_cancellation_bursts_leave_the_broker_working(
    devnet: Devnet, proxied_provider: ProxiedProviderFactory
) -> None:
    """10 bursts of 20 randomly cancelled chats/streams: then calls complete and billing is consistent."""
    chat, proxy = await proxied_provider(seed=11, proxy_knobs=PROXY_KNOBS)
    chat.faults.latency = 0.01
    rng = random.Random(20240611)
    broker = await funded(devnet, 8, chat)
    book = Ledger()
    async with broker:
        await still_works(broker, chat.address, book)  # warm the service, account and token caches
        for _ in range(BURSTS):
            await burst(broker, chat.address, rng, book)
            await still_works(broker, chat.address, book)
            check_billing(chat, broker, book)
    assert book.started == BURSTS * WIDTH and book.cancelled > 0 and proxy.faults["slow"] > 0


async def test_cancellations_on_one_broker_spare_another(
    devnet: Devnet, proxied_provider: ProxiedProviderFactory
) -> None:
    """Two brokers in one process: bursts of cancellations on A never block or break B's calls."""
    chat, _ = await proxied_provider(seed=12, proxy_knobs=PROXY_KNOBS)
    chat.faults.latency = 0.01
    rng = random.Random(99)
    broker_a = await funded(devnet, 9, chat)
    broker_b = await funded(devnet, 10, chat)
    book_a, book_b = Ledger(), Ledger()
    async with broker_a, broker_b:
        await still_works(broker_a, chat.address, book_a)
        await still_works(broker_b, chat.address, book_b)
        done = anyio.Event()

        async def bursts_on_a() -> None:
            for _ in range(3):
                await burst(broker_a, chat.address, rng, book_a)
            done.set()

        async def calls_on_b() -> None:
            while not done.is_set():
                await still_works(broker_b, chat.address, book_b)

        async with anyio.create_task_group() as tg:
            tg.start_soon(bursts_on_a)
            tg.start_soon(calls_on_b)
        await still_works(broker_a, chat.address, book_a)
        check_billing(chat, broker_a, book_a)
        check_billing(chat, broker_b, book_b)
    assert book_a.cancelled > 0 and len(book_b.delivered()) >= 4
