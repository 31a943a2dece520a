"""Bursts of cancelled chats and streams: nothing hangs afterwards and the provider never bills twice.

The provider sits behind an HTTP fault proxy that holds half of the chat answers back a little and
throttles the streamed bodies, so the random cancellations land before the request is sent, while
the provider works, while the headers are held back and in the middle of a stream; one test also
cancels calls inside their chain reads (cold caches, a slow node behind the JSON-RPC fault proxy).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

import anyio
import pytest

from og_inference_async import AsyncBroker
from og_inference_async.inference._stream import ChatStream
from og_inference_async.types.inference import ChatResult
from og_inference_devnet import Devnet
from og_inference_devnet.faultproxy import RpcFaultProxy
from og_inference_devnet.provider import ProviderHandle

from .chain_helpers import funded_broker
from .conftest import ProxiedProviderFactory

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
class Tally:
    """What one broker's calls delivered, to compare with what the provider billed."""

    started: int = 0  # calls made, the uncancelled ones included
    cancelled: int = 0
    results: list[ChatResult] = field(default_factory=list)
    streams: list[ChatStream] = field(default_factory=list)

    def delivered(self) -> list[ChatResult]:
        """The chats and streams that finished with a result (the ones the SDK counted a fee for)."""
        return self.results + [s.result for s in self.streams if s.result is not None]


async def cancelled_call(broker: AsyncBroker, provider: str, rng: random.Random, book: Tally) -> None:
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


async def burst(broker: AsyncBroker, provider: str, rng: random.Random, book: Tally) -> None:
    """WIDTH concurrent cancelled calls."""
    async with anyio.create_task_group() as tg:
        for _ in range(WIDTH):
            tg.start_soon(cancelled_call, broker, provider, random.Random(rng.random()), book)


async def still_works(broker: AsyncBroker, provider: str, book: Tally) -> None:
    """Background drains finish; then a normal chat and a normal stream complete (bounded)."""
    book.started += 2
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


def check_billing(chat: ProviderHandle, broker: AsyncBroker, book: Tally) -> None:
    """No request billed twice, every delivered answer billed, the SDK counted exactly what it received."""
    records = chat.core.book.records(broker.address)
    ids = [r.request_id for r in records]
    assert len(ids) == len(set(ids)), "a request was billed twice"
    assert sum(r.fee for r in records) == chat.unsettled_fee(broker.address)
    delivered = book.delivered()
    assert {r.chat_id for r in delivered} <= set(ids), "an answer the SDK received was not billed"
    assert len(ids) <= book.started, "more bills than requests"
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
    broker = await funded_broker(devnet, 8, chat)
    book = Tally()
    async with broker:
        await still_works(broker, chat.address, book)  # warm the service, account and token caches
        for _ in range(BURSTS):
            await burst(broker, chat.address, rng, book)
            await still_works(broker, chat.address, book)
            check_billing(chat, broker, book)
    assert (
        book.started == (BURSTS * WIDTH) + 2 * (BURSTS + 1)
        and book.cancelled > 0
        and proxy.faults["slow"] > 0
    )


async def test_cancellations_on_one_broker_spare_another(
    devnet: Devnet, proxied_provider: ProxiedProviderFactory
) -> None:
    """Two brokers in one process: bursts of cancellations on A never block or break B's calls."""
    chat, _ = await proxied_provider(seed=12, proxy_knobs=PROXY_KNOBS)
    chat.faults.latency = 0.01
    rng = random.Random(99)
    broker_a = await funded_broker(devnet, 9, chat)
    broker_b = await funded_broker(devnet, 10, chat)
    book_a, book_b = Tally(), Tally()
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


async def test_cancellations_during_chain_reads(
    devnet: Devnet, proxied_provider: ProxiedProviderFactory, rpc_fault_proxy: RpcFaultProxy
) -> None:
    """Cold caches and a slow node: bursts cancel calls inside their chain reads; later reads complete."""
    chat, _ = await proxied_provider(seed=13, proxy_knobs=PROXY_KNOBS)
    rng = random.Random(7)
    network = dataclasses.replace(devnet.network, rpc_url=rpc_fault_proxy.url)
    broker = await funded_broker(devnet, 11, chat, network=network)
    rpc_fault_proxy.slow_rate = 0.5  # half of the chain reads answer 50 ms late
    rpc_fault_proxy.slow_seconds = 0.05
    rpc_fault_proxy.methods = {"eth_call"}
    book = Tally()
    async with broker:
        for _ in range(BURSTS // 2):
            broker.inference.forget_service()
            broker.inference.auth.forget()
            await burst(broker, chat.address, rng, book)
            broker.inference.forget_service()
            broker.inference.auth.forget()
            await still_works(broker, chat.address, book)
            check_billing(chat, broker, book)
    assert book.cancelled > 0 and rpc_fault_proxy.faults["slow"] > 0
