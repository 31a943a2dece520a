"""The single-flight ephemeral session-token cache (og_inference_async._session.SessionTokenCache)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from og_inference_async._exceptions import ConfigError, InvalidAddressError, RPCError
from og_inference_async._session import SessionTokenCache
from og_inference_async._tokens import SignedToken, decode_token, verify_token

pytestmark = pytest.mark.anyio

ACCOUNT = Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
NOW_MS = 1_700_000_000_000
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def provider(i: int) -> str:
    return to_checksum_address(f"0x{i + 1:040x}")


class FakeClock:
    """A wall clock in seconds that only moves when told to."""

    def __init__(self, ms: int = NOW_MS) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000

    def advance(self, ms: int) -> None:
        self.ms += ms


class Fetcher:
    """A fake ``fetch_generation``: counts calls, optionally blocks on a gate and fails on demand."""

    def __init__(self, *, gated: bool = False) -> None:
        self.calls = 0
        self.generation = 0
        self.errors: list[Exception] = []
        self.gate: anyio.Event | None = anyio.Event() if gated else None
        self.started = anyio.Event()

    async def __call__(self, provider: str) -> int:
        self.calls += 1
        generation = self.generation  # read "the chain" before blocking, like a real RPC call
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        return generation


def make_cache(fetcher: Fetcher, clock: FakeClock | None = None, **kwargs: Any) -> SessionTokenCache:
    return SessionTokenCache(account=ACCOUNT, fetch_generation=fetcher, clock=clock or FakeClock(), **kwargs)


async def test_cold_burst_of_1000_is_one_fetch_and_one_signature() -> None:
    """1000 concurrent callers on a cold entry share one fetch and one signature and get the same token."""
    fetcher = Fetcher(gated=True)
    cache = make_cache(fetcher)
    results: list[SignedToken] = []

    async def call() -> None:
        results.append(await cache.get_token(PROVIDER))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            assert fetcher.gate is not None
            fetcher.gate.set()
    assert len(results) == 1000 and all(token is results[0] for token in results)
    stats = cache.stats
    assert (fetcher.calls, stats.signatures, stats.generation_fetches) == (1, 1, 1)
    assert (stats.misses, stats.coalesced, stats.hits) == (1, 999, 0)


async def test_warm_calls_are_hits_and_token_verifies() -> None:
    """A cached token is returned again without fetching; it is a valid 24 h tokenId-255 token."""
    fetcher = Fetcher()
    fetcher.generation = 7
    cache = make_cache(fetcher)
    first = await cache.get_token(PROVIDER)
    for _ in range(10):
        assert await cache.get_token(PROVIDER) is first
    assert (fetcher.calls, cache.stats.hits) == (1, 10)
    claims = first.claims
    assert (claims.token_id, claims.generation, claims.provider) == (255, 7, PROVIDER)
    assert (claims.timestamp, claims.expires_at) == (NOW_MS, NOW_MS + DAY_MS)
    verify_token(decode_token(first.authorization), expected_provider=PROVIDER, now_ms=NOW_MS)


async def test_refresh_after_margin_with_fake_clock() -> None:
    """The token is reused while more than the margin (1 h) is left, then reissued."""
    clock = FakeClock()
    fetcher = Fetcher()
    cache = make_cache(fetcher, clock)
    first = await cache.get_token(PROVIDER)
    clock.advance(DAY_MS - HOUR_MS - 1)  # 1 h + 1 ms left
    assert await cache.get_token(PROVIDER) is first
    clock.advance(1)  # exactly 1 h left: no longer reused
    second = await cache.get_token(PROVIDER)
    assert second is not first
    assert second.claims.timestamp == NOW_MS + DAY_MS - HOUR_MS
    assert second.claims.nonce != first.claims.nonce
    assert await cache.get_token(PROVIDER) is second
    assert cache.stats.signatures == 2


async def test_callers_during_a_refresh_keep_the_cached_token() -> None:
    """While one caller refreshes a token inside the margin, others get the still-valid token at once."""
    clock = FakeClock()
    fetcher = Fetcher()
    cache = make_cache(fetcher, clock)
    first = await cache.get_token(PROVIDER)
    clock.advance(DAY_MS - HOUR_MS)
    fetcher.gate = anyio.Event()
    refreshed: list[SignedToken] = []

    async def refresher() -> None:
        refreshed.append(await cache.get_token(PROVIDER))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(refresher)
            await anyio.wait_all_tasks_blocked()
            assert fetcher.calls == 2
            for _ in range(5):
                assert await cache.get_token(PROVIDER) is first
            fetcher.gate.set()
    assert refreshed[0] is not first
    assert await cache.get_token(PROVIDER) is refreshed[0]
    assert fetcher.calls == 2


async def test_failed_refresh_inside_margin_serves_cached_token(caplog: pytest.LogCaptureFixture) -> None:
    """A failed refresh while the old token is valid returns it, logs a warning, and retries next call."""
    clock = FakeClock()
    fetcher = Fetcher()
    cache = make_cache(fetcher, clock)
    first = await cache.get_token(PROVIDER)
    clock.advance(DAY_MS - HOUR_MS + 1)
    fetcher.errors.append(RPCError("rpc down"))
    with caplog.at_level(logging.WARNING, logger="og_inference_async._session"):
        assert await cache.get_token(PROVIDER) is first
    assert "RPCError" in caplog.text and PROVIDER in caplog.text
    assert cache.stats.failures == 1
    second = await cache.get_token(PROVIDER)
    assert second is not first and fetcher.calls == 3


async def test_nearly_expired_token_is_not_served() -> None:
    """With under a minute left, callers wait for the refresh and get its failure, not the old token."""
    clock = FakeClock()
    fetcher = Fetcher()
    cache = make_cache(fetcher, clock)
    await cache.get_token(PROVIDER)
    clock.advance(DAY_MS - 30_000)
    fetcher.errors.append(RPCError("rpc down"))
    with pytest.raises(RPCError):
        await cache.get_token(PROVIDER)
    fresh = await cache.get_token(PROVIDER)
    assert fresh.claims.timestamp == clock.ms


async def test_failure_reaches_every_waiter_then_recovers() -> None:
    """A failed flight hands the same exception to all its callers; the next call starts a new flight."""
    fetcher = Fetcher(gated=True)
    boom = RPCError("connection refused", retryable=True)
    fetcher.errors.append(boom)
    cache = make_cache(fetcher)
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await cache.get_token(PROVIDER)
        except RPCError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            assert fetcher.gate is not None
            fetcher.gate.set()
    assert len(errors) == 20 and all(exc is boom for exc in errors)
    assert len(cache) == 0  # a failed cold flight leaves no entry behind
    token = await cache.get_token(PROVIDER)
    assert token.claims.token_id == 255
    stats = cache.stats
    assert (fetcher.calls, stats.failures, stats.signatures) == (2, 1, 1)


async def test_bad_generation_from_fetcher_is_config_error_for_all() -> None:
    """A fetcher returning a non-int generation fails the flight with ConfigError."""

    async def bad_fetch(provider: str) -> int:
        return "3"  # type: ignore[return-value]

    cache = SessionTokenCache(account=ACCOUNT, fetch_generation=bad_fetch)
    with pytest.raises(ConfigError):
        await cache.get_token(PROVIDER)
    assert cache.stats.signatures == 0


async def test_leader_cancellation_hands_over_to_a_waiter() -> None:
    """If the leader is cancelled mid-fetch, a waiter takes over and every other caller gets its token."""
    fetcher = Fetcher(gated=True)
    cache = make_cache(fetcher)
    leader_scope = anyio.CancelScope()
    results: list[SignedToken] = []

    async def leader() -> None:
        with leader_scope:
            await cache.get_token(PROVIDER)

    async def waiter() -> None:
        results.append(await cache.get_token(PROVIDER))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await fetcher.started.wait()
            for _ in range(10):
                tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert fetcher.calls == 1
            leader_scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert fetcher.calls == 2  # exactly one waiter took over; the rest joined its flight
            assert fetcher.gate is not None
            fetcher.gate.set()
    assert leader_scope.cancelled_caught
    assert len(results) == 10 and all(token is results[0] for token in results)
    assert cache.stats.signatures == 1


async def test_cancelled_leader_without_waiters_leaves_no_entry() -> None:
    """A cancelled cold flight with nobody waiting leaves the cache empty; the next call issues a token."""
    fetcher = Fetcher(gated=True)
    cache = make_cache(fetcher)
    with anyio.move_on_after(0.05):
        await cache.get_token(PROVIDER)
    assert len(cache) == 0
    assert fetcher.gate is not None
    fetcher.gate.set()
    assert (await cache.get_token(PROVIDER)).claims.token_id == 255


async def test_cancelled_waiter_does_not_disturb_the_flight() -> None:
    """Cancelling one waiter leaves the leader and the other waiters unaffected."""
    fetcher = Fetcher(gated=True)
    cache = make_cache(fetcher)
    scope = anyio.CancelScope()
    results: list[SignedToken] = []

    async def cancelled_waiter() -> None:
        with scope:
            await cache.get_token(PROVIDER)

    async def call() -> None:
        results.append(await cache.get_token(PROVIDER))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await fetcher.started.wait()
            tg.start_soon(cancelled_waiter)
            tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert fetcher.gate is not None
            fetcher.gate.set()
    assert len(results) == 2 and results[0] is results[1]
    assert fetcher.calls == 1


async def test_invalidate_during_flight_discards_the_stale_result() -> None:
    """A flight overtaken by invalidate() is neither stored nor returned; its callers get a newer token."""
    fetcher = Fetcher(gated=True)
    fetcher.generation = 1
    cache = make_cache(fetcher)
    results: list[SignedToken] = []

    async def call() -> None:
        results.append(await cache.get_token(PROVIDER))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            assert fetcher.calls == 1
            cache.invalidate(PROVIDER)  # e.g. after revoke_all_tokens bumped the generation
            fetcher.generation = 2
            tg.start_soon(call)  # a caller arriving now must not join the stale flight
            await anyio.wait_all_tasks_blocked()
            assert fetcher.calls == 2
            assert fetcher.gate is not None
            fetcher.gate.set()
    assert len(results) == 4
    assert {token.claims.generation for token in results} == {2}
    assert (await cache.get_token(PROVIDER)).claims.generation == 2


async def test_invalidate_one_and_all() -> None:
    """invalidate(provider) drops one token, invalidate() drops all; both are reissued on demand."""
    fetcher = Fetcher()
    cache = make_cache(fetcher)
    a1 = await cache.get_token(provider(1))
    b1 = await cache.get_token(provider(2))
    cache.invalidate(provider(1))
    cache.invalidate(provider(99))  # unknown: no-op
    assert await cache.get_token(provider(2)) is b1
    assert await cache.get_token(provider(1)) is not a1
    cache.invalidate()
    assert len(cache) == 0
    assert await cache.get_token(provider(2)) is not b1
    assert fetcher.calls == 4


async def test_lru_bound_evicts_least_recently_used() -> None:
    """Beyond max_entries the least recently used provider is evicted."""
    fetcher = Fetcher()
    cache = make_cache(fetcher, max_entries=3)
    for i in (1, 2, 3):
        await cache.get_token(provider(i))
    await cache.get_token(provider(1))  # provider 1 becomes most recent
    await cache.get_token(provider(4))  # evicts provider 2
    assert len(cache) == 3 and cache.stats.evictions == 1
    signatures = cache.stats.signatures
    await cache.get_token(provider(1))
    await cache.get_token(provider(3))
    assert cache.stats.signatures == signatures  # still cached
    await cache.get_token(provider(2))
    assert cache.stats.signatures == signatures + 1  # was evicted
    assert len(cache) == 3


async def test_lru_never_evicts_an_entry_in_flight() -> None:
    """An entry whose flight is running is not evicted, so its callers stay coalesced."""
    fetcher = Fetcher()
    cache = make_cache(fetcher, max_entries=1)
    fetcher.gate = anyio.Event()
    results: list[SignedToken] = []

    async def call(p: str) -> None:
        results.append(await cache.get_token(p))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, provider(1))
            tg.start_soon(call, provider(2))
            tg.start_soon(call, provider(1))
            await anyio.wait_all_tasks_blocked()
            assert fetcher.calls == 2
            fetcher.gate.set()
    assert len(results) == 3 and len(cache) == 1
    assert cache.stats.signatures == 2


async def test_sign_in_thread() -> None:
    """With sign_in_thread=True tokens are signed in a worker thread and are identical in form."""
    fetcher = Fetcher()
    cache = make_cache(fetcher, sign_in_thread=True)
    token = await cache.get_token(PROVIDER)
    verify_token(decode_token(token.authorization), expected_provider=PROVIDER, now_ms=NOW_MS)
    assert await cache.get_token(PROVIDER) is token


async def test_custom_lifetime_and_nonce_factory() -> None:
    """token_lifetime_ms and nonce_factory shape the issued tokens."""
    nonces = iter(["n1", "n2"])
    cache = make_cache(
        Fetcher(), token_lifetime_ms=600_000, refresh_margin_ms=60_000, nonce_factory=lambda: next(nonces)
    )
    token = await cache.get_token(PROVIDER)
    assert (token.claims.expires_at - token.claims.timestamp, token.claims.nonce) == (600_000, "n1")


async def test_invalid_provider_is_rejected_before_fetching() -> None:
    """A provider that is not an address raises InvalidAddressError without a fetch or an entry."""
    fetcher = Fetcher()
    cache = make_cache(fetcher)
    with pytest.raises(InvalidAddressError):
        await cache.get_token("not-an-address")
    assert fetcher.calls == 0 and len(cache) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token_lifetime_ms": 0},
        {"token_lifetime_ms": DAY_MS + 1},
        {"token_lifetime_ms": True},
        {"refresh_margin_ms": DAY_MS},
        {"refresh_margin_ms": -1},
        {"token_lifetime_ms": HOUR_MS},  # the default 1 h margin does not fit in a 1 h token
        {"max_entries": 0},
        {"account": object()},
    ],
)
async def test_bad_configuration_is_config_error(kwargs: dict[str, Any]) -> None:
    """Out-of-range lifetime, margin or bound, or an account without sign_message, raise ConfigError."""
    params: dict[str, Any] = {"account": ACCOUNT, "fetch_generation": Fetcher()}
    params.update(kwargs)
    with pytest.raises(ConfigError):
        SessionTokenCache(**params)


async def test_no_secret_in_logs_reprs_or_stats(caplog: pytest.LogCaptureFixture) -> None:
    """Across issuance, hits, refresh and failure, no token or signature reaches logs or reprs."""
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    fetcher = Fetcher()
    cache = make_cache(fetcher, clock)
    tokens = [await cache.get_token(PROVIDER)]
    clock.advance(DAY_MS - HOUR_MS + 1)
    fetcher.errors.append(RPCError("down"))
    tokens.append(await cache.get_token(PROVIDER))
    tokens.append(await cache.get_token(PROVIDER))
    logging.getLogger("test").info("%r %s %r", cache, tokens, cache.stats)
    assert "issued a session token" in caplog.text
    for token in tokens:
        for secret in (token.signature[2:], token.token_string[7:], token.authorization):
            assert secret not in caplog.text
            assert secret not in repr(cache) and secret not in repr(token)


async def test_stats_is_a_snapshot() -> None:
    """stats returns a copy that does not change under later calls."""
    cache = make_cache(Fetcher())
    before = cache.stats
    await cache.get_token(PROVIDER)
    assert before.signatures == 0 and cache.stats.signatures == 1
