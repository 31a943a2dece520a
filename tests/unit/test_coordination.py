"""Coordinators: the in-process default, and Redis (a real server) shared by several "processes".

Each test uses its own key namespace. Two ``RedisCoordinator`` objects on one server stand for two
processes: they share nothing but the server. Time bounds are hang detectors, never speed assertions.
"""

from __future__ import annotations

import random
import socket
import uuid
from typing import Any

import anyio
import pytest
from eth_account import Account

from og_inference_async import (
    AsyncBroker,
    BudgetExceededError,
    ConfigError,
    CoordinatorError,
    InProcessCoordinator,
    TxPolicy,
)
from og_inference_async._chain import RpcClient, TxSender, get_nonce_allocator
from og_inference_async._chain._nonce import SharedNonceAllocator
from og_inference_async._config import RetryPolicy
from og_inference_async.coordination import RedisCoordinator

from .fakes import FakeProvider, FakeWeb3

pytestmark = pytest.mark.anyio

KEY = "0x" + "11" * 32
ADDRESS = Account.from_key(KEY).address
TO = "0x" + "22" * 20
HANG_BOUND = 15


def _coordinator(url: str, namespace: str, **kwargs: Any) -> RedisCoordinator:
    return RedisCoordinator(url, namespace=namespace, **kwargs)


@pytest.fixture
def namespace() -> str:
    return "test-" + uuid.uuid4().hex


class _Pending:
    """A node's ``pending`` count that counts how often it was read."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.reads = 0

    async def __call__(self) -> int:
        self.reads += 1
        return self.value


def _node(sent: list[str]) -> FakeProvider:
    def send(params: list[str]) -> str:
        sent.append(params[0])
        return "0x" + "00" * 32

    return FakeProvider(
        {
            "eth_estimateGas": lambda p: hex(21000),
            "eth_gasPrice": lambda p: hex(10**9),
            "eth_getTransactionCount": lambda p: hex(7),
            "eth_sendRawTransaction": send,
            "eth_getTransactionReceipt": lambda p: {
                "status": "0x1",
                "blockNumber": "0x5",
                "gasUsed": "0x5208",
                "logs": [],
            },
        }
    )


def _sender(node: FakeProvider, coordinator: RedisCoordinator) -> TxSender:
    rpc = RpcClient(FakeWeb3(node), owned=False, retry=RetryPolicy.no_wait())  # type: ignore[arg-type]
    return TxSender(
        rpc,
        Account.from_key(KEY),
        31337,
        TxPolicy(receipt_timeout=0.5, receipt_poll_interval=0.001, send_timeout=0.5),
        nonces=coordinator.nonce_allocator(31337, ADDRESS),
    )


# -- in process ----------------------------------------------------------------------------------


async def test_in_process_coordinator_is_todays_process_wide_allocator() -> None:
    """The default hands out the process-wide allocator and grants leases at once."""
    coordinator = InProcessCoordinator()
    assert coordinator.nonce_allocator(31337, ADDRESS) is get_nonce_allocator(31337, ADDRESS)
    await coordinator.check()
    async with coordinator.lease("x"):
        async with coordinator.lease("x"):
            pass
    await coordinator.aclose()


def test_broker_defaults_to_the_in_process_coordinator_and_checks_the_type() -> None:
    """No coordinator means in-process; anything that is not a Coordinator is a ConfigError."""
    assert isinstance(AsyncBroker(KEY, network="hardhat").coordinator, InProcessCoordinator)
    with pytest.raises(ConfigError):
        AsyncBroker(KEY, network="hardhat", coordinator="redis://x")  # type: ignore[arg-type]


def test_redis_coordinator_rejects_bad_arguments_and_hides_the_password() -> None:
    """Bad URLs and lease times are ConfigErrors; the repr never shows a password."""
    with pytest.raises(ConfigError):
        RedisCoordinator("http://127.0.0.1:6379")
    with pytest.raises(ConfigError):
        RedisCoordinator("redis://127.0.0.1:6379", nonce_lease=0)
    shown = repr(RedisCoordinator("redis://user:s3cret@127.0.0.1:6379/0"))
    assert "s3cret" not in shown and "127.0.0.1" in shown


# -- nonces through Redis ------------------------------------------------------------------------


async def test_two_processes_share_one_counter_seeded_once(redis_url: str, namespace: str) -> None:
    """200 concurrent takes through two coordinators get 7..206, each once; the node is read once."""
    first, second = _coordinator(redis_url, namespace), _coordinator(redis_url, namespace)
    allocators = [c.nonce_allocator(31337, ADDRESS) for c in (first, second)]
    pending = _Pending(7)
    got: list[int] = []

    async def take(index: int) -> None:
        got.append(await allocators[index % 2].allocate(pending))

    with anyio.fail_after(HANG_BOUND):
        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(take, i)
    assert sorted(got) == list(range(7, 207))
    assert pending.reads <= 2  # a second read can only race the first seed (never lowers the counter)
    for c in (first, second):
        await c.aclose()


async def test_a_given_back_nonce_goes_to_the_next_taker_of_any_process(
    redis_url: str, namespace: str
) -> None:
    """A released nonce goes back to Redis: the next take of ANY process gets it first, no process keeps
    it to itself, and a reseed (the node moved on) drops the given-back ones it spent."""
    first, second = _coordinator(redis_url, namespace), _coordinator(redis_url, namespace)
    a, b = first.nonce_allocator(1, ADDRESS), second.nonce_allocator(1, ADDRESS)
    assert isinstance(a, SharedNonceAllocator) and isinstance(b, SharedNonceAllocator)
    pending = _Pending(3)
    assert [await a.allocate(pending), await a.allocate(pending)] == [3, 4]
    a.release(3)
    assert await a.allocate(pending) == 3  # the give-back is flushed before the take
    a.release(3)
    await a.flush()
    assert await b.allocate(pending) == 3  # the other process takes it: no gap held by a
    assert await a.allocate(pending) == 5
    b.release(3)
    await b.flush()
    b.resync()
    pending.value = 10  # the node moved on (another tool used the wallet, nonce 3 too)
    assert await b.allocate(pending) == 10  # reseeded to max(pending, counter), 3 dropped
    assert await a.allocate(pending) == 11
    for c in (first, second):
        await c.aclose()


async def test_a_given_back_nonce_is_claimed_once_and_never_handed_out_again(
    redis_url: str, namespace: str
) -> None:
    """A waiting worker claims a given-back nonce to fill it; it is then neither claimable nor taken again,
    and a late give-back of a nonce claimed meanwhile does not put it back."""
    first, second = _coordinator(redis_url, namespace), _coordinator(redis_url, namespace)
    a, b = first.nonce_allocator(1, ADDRESS), second.nonce_allocator(1, ADDRESS)
    pending = _Pending(0)
    assert [await a.allocate(pending) for _ in range(3)] == [0, 1, 2]
    a.release(0)
    await a.flush()
    assert await b.claim_gaps(2, 0) == [0]
    assert await b.claim_gaps(2, 0) == []
    a.release(0)  # a stale give-back (b claimed it meanwhile): ignored
    await a.flush()
    assert await b.allocate(pending) == 3
    assert await b.claim_gaps(3, 0) == []  # 0 is leased to b now, 1 and 2 still to a
    b.release(0)  # b's filler at 0 was refused: b gives the nonce it claimed back
    await b.flush()
    assert await a.allocate(pending) == 0
    for c in (first, second):
        await c.aclose()


async def test_a_take_whose_answer_was_lost_returns_the_same_nonce_when_asked_again(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis runs a take but its answer is lost (a client time-out): the take is asked again with the same
    request key and gets the nonce Redis handed out, so no nonce is left taken and never sent."""
    coordinator, other = _coordinator(redis_url, namespace), _coordinator(redis_url, namespace)
    alloc = coordinator.nonce_allocator(1, ADDRESS)
    pending = _Pending(0)
    assert await alloc.allocate(pending) == 0
    real = coordinator._call
    lost: list[str] = []

    async def answer_lost_once(what: str, run: Any) -> Any:
        result = await real(what, run)  # Redis ran it...
        if what == "take a nonce" and not lost:
            lost.append(what)
            raise CoordinatorError("the answer was lost")  # ...and the answer never came
        return result

    monkeypatch.setattr(coordinator, "_call", answer_lost_once)
    assert await alloc.allocate(pending) == 1
    assert lost == ["take a nonce"]
    monkeypatch.setattr(coordinator, "_call", real)
    assert await alloc.allocate(pending) == 2
    alloc.release(0)
    alloc.release(1)
    alloc.release(2)
    await alloc.flush()  # every nonce taken so far is leased to this worker: all three go back
    assert await other.nonce_allocator(1, ADDRESS).claim_gaps(3, 0) == [0, 1, 2]
    for c in (coordinator, other):
        await c.aclose()


async def test_a_nonce_left_by_a_crashed_worker_is_claimed_after_its_lease(
    redis_url: str, namespace: str
) -> None:
    """A taken nonce whose taker never sent it is given to a waiting worker once its lease ran out."""
    crashed = _coordinator(redis_url, namespace, nonce_lease=0.05)
    alive = _coordinator(redis_url, namespace)
    pending = _Pending(0)
    assert await crashed.nonce_allocator(1, ADDRESS).allocate(pending) == 0  # then it "crashes"
    waiting = alive.nonce_allocator(1, ADDRESS)
    assert await waiting.allocate(pending) == 1
    assert await waiting.claim_gaps(1, 0) in ([], [0])
    with anyio.fail_after(HANG_BOUND):
        claimed: list[int] = []
        while not claimed:  # polls until the lease has run out (server time)
            claimed = await waiting.claim_gaps(1, 0)
            await anyio.sleep(0.01)
    assert claimed == [0]
    assert await waiting.claim_gaps(1, 0) == []  # claimed once
    for c in (crashed, alive):
        await c.aclose()


async def test_concurrent_sends_of_two_senders_get_distinct_nonces(redis_url: str, namespace: str) -> None:
    """Two TxSenders (two processes) sending 30 transactions each sign 60 distinct nonces 7..66."""
    sent: list[str] = []
    node = _node(sent)
    coordinators = [_coordinator(redis_url, namespace) for _ in range(2)]
    senders = [_sender(node, c) for c in coordinators]
    with anyio.fail_after(HANG_BOUND):
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(senders[i % 2].send, TO, b"\x01")
    records = [r for s in senders for r in s.nonces.recent(100)]
    assert sorted(r.nonce for r in records) == list(range(7, 67))
    assert sorted(r.raw_hex for r in records) == sorted(sent)  # each signed transaction sent once
    for c in coordinators:
        await c.aclose()


async def test_unreachable_redis_is_a_typed_error_before_anything_is_signed() -> None:
    """With Redis gone, a send raises CoordinatorError and nothing is signed or sent."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    coordinator = RedisCoordinator(f"redis://127.0.0.1:{port}/0", timeout=1.0)
    sent: list[str] = []
    sender = _sender(_node(sent), coordinator)
    with anyio.fail_after(HANG_BOUND):
        with pytest.raises(CoordinatorError, match="nothing was signed"):
            await sender.send(TO, b"\x01")
        with pytest.raises(CoordinatorError):
            await coordinator.check()
        broker = AsyncBroker(KEY, network="hardhat", rpc_url="http://127.0.0.1:9", coordinator=coordinator)
        assert broker.coordinator is coordinator
    assert sent == [] and sender.nonces.recent(10) == []
    await coordinator.aclose()


# -- leases --------------------------------------------------------------------------------------


async def test_a_lease_is_held_by_one_process_at_a_time(redis_url: str, namespace: str) -> None:
    """20 holders through two coordinators: never two inside at once; all get their turn."""
    coordinators = [_coordinator(redis_url, namespace) for _ in range(2)]
    inside = 0
    most = 0
    done = 0

    async def hold(index: int) -> None:
        nonlocal inside, most, done
        async with coordinators[index % 2].lease("topup", ttl=30):
            inside += 1
            most = max(most, inside)
            await anyio.lowlevel.checkpoint()
            inside -= 1
            done += 1

    with anyio.fail_after(HANG_BOUND):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(hold, i)
    assert most == 1 and done == 20
    for c in coordinators:
        await c.aclose()


async def test_a_crashed_holder_loses_its_lease_when_it_expires(redis_url: str, namespace: str) -> None:
    """A lease never released (its holder crashed) is free again after its ttl; a full wait raises."""
    crashed, alive = _coordinator(redis_url, namespace), _coordinator(redis_url, namespace)
    holder = crashed.lease("onboard", ttl=0.2)
    await holder.__aenter__()  # never exited: the holder "crashed"
    with pytest.raises(CoordinatorError, match="not free"):
        async with alive.lease("onboard", wait=0.05):
            pass
    with anyio.fail_after(HANG_BOUND):
        async with alive.lease("onboard", wait=HANG_BOUND):
            pass
    for c in (crashed, alive):
        await c.aclose()


# -- shared budgets ------------------------------------------------------------------------------

BIG = 10**30  # beyond what a Lua double keeps exactly: the store counts in two limbs


def _shared_budget(url: str, namespace: str, limit: int | None, **kwargs: Any) -> Any:
    broker = AsyncBroker(KEY, network="hardhat", coordinator=_coordinator(url, namespace, **kwargs))
    return broker, broker.budget(limit, shared="swarm")


async def test_shared_budget_is_charged_by_every_process(redis_url: str, namespace: str) -> None:
    """Two brokers (two processes) on one shared budget: 200 concurrent holds never pass the limit."""
    limit = BIG + 1_000_003
    pairs = [_shared_budget(redis_url, namespace, limit) for _ in range(2)]
    rng = random.Random(3)
    amounts = [BIG // 100 + rng.randrange(1, 10**6) for _ in range(200)]
    holds: list[Any] = []
    refusals: list[BudgetExceededError] = []

    async def take(budget: Any, amount: int) -> None:
        try:
            holds.append(await budget.areserve(amount))
        except BudgetExceededError as exc:
            refusals.append(exc)

    with anyio.fail_after(HANG_BOUND):
        async with anyio.create_task_group() as tg:
            for i, amount in enumerate(amounts):
                tg.start_soon(take, pairs[i % 2][1], amount)
        held = sum(h.amount for h in holds)
        assert held <= limit and len(holds) + len(refusals) == 200 and refusals
        assert all(r.limit == limit and r.required > r.remaining for r in refusals)
        budget = pairs[0][1]
        assert await budget.totals() == (0, held)
        for i, hold in enumerate(holds):
            await (hold.asettle(hold.amount // 2) if i % 2 else hold.akeep())
        spent = sum(h.amount if i % 2 == 0 else h.amount // 2 for i, h in enumerate(holds))
        assert await budget.totals() == (spent, 0)
        assert pairs[0][1].spent + pairs[1][1].spent == spent  # each process's own share
    for broker, _ in pairs:
        await broker.coordinator.aclose()


async def test_nested_shared_budgets_and_expiry(redis_url: str, namespace: str) -> None:
    """An enclosing shared budget limits its nested one; a crashed process's hold expires."""
    broker = AsyncBroker(KEY, network="hardhat", coordinator=_coordinator(redis_url, namespace))
    with anyio.fail_after(HANG_BOUND):
        async with broker.budget(100, shared="team") as team:
            agent = broker.budget(80, shared="agent-1")
            await (await agent.areserve(70)).asettle(60)
            other = AsyncBroker(KEY, network="hardhat", coordinator=_coordinator(redis_url, namespace))
            async with other.budget(100, shared="team"):  # the same team, in another process
                with pytest.raises(BudgetExceededError, match="shared budget 'team'") as info:
                    await other.budget(None, shared="agent-2").areserve(41)
            assert info.value.remaining == 40 and team.reserved == 0
            await other.coordinator.aclose()
        assert await team.totals() == (60, 0) and await agent.totals() == (60, 0)
        crashed = broker.budget(100, shared="crash", hold_ttl=0.05)
        await crashed.areserve(100)  # never settled: its process "crashed"
        while (await crashed.totals())[1]:  # noqa: ASYNC110 (the server's clock expires it)
            await anyio.sleep(0.02)
        fresh = AsyncBroker(KEY, network="hardhat", coordinator=broker.coordinator)
        await (await fresh.budget(100, shared="crash").areserve(100)).asettle(0)
    await broker.coordinator.aclose()


async def test_shared_budget_needs_a_sharing_coordinator_and_redis(redis_url: str) -> None:
    """No store: ConfigError at once. Redis down: CoordinatorError, nothing held in the process."""
    with pytest.raises(ConfigError, match="shared budget"):
        AsyncBroker(KEY, network="hardhat").budget(10, shared="x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker, budget = _shared_budget(f"redis://127.0.0.1:{port}/0", "down", 10, timeout=1.0)
    with anyio.fail_after(HANG_BOUND):
        with pytest.raises(CoordinatorError, match="shared budget"):
            await budget.areserve(5)
    assert budget.reserved == 0 and budget.spent == 0
    await broker.coordinator.aclose()
