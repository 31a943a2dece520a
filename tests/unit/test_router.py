"""The provider router: circuit breaker, ranking, and which failures fail over (fakes, no network)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

from og_inference_async import (
    CircuitBreaker,
    ConfigError,
    NoProviderAvailableError,
    ProviderServerError,
    ResponseVerificationError,
    TransportFailure,
    VerificationResult,
    VerificationStatus,
)
from og_inference_async._exceptions import ProviderRateLimitError, ServiceNotExistError
from og_inference_async.inference.router import RouterService

from .test_requests import make_service

pytestmark = pytest.mark.anyio

A = "0x" + "a" * 40
B = "0x" + "b" * 40
C = "0x" + "c" * 40


class Clock:
    """A fake monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeChat:
    """Answers chat per provider from a script: an exception to raise, or a result."""

    def __init__(self, script: dict[str, list[Any]]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def chat(self, prov: str, messages: Any, **kwargs: Any) -> Any:
        self.calls.append(prov)
        steps = self.script.get(prov) or []
        step = steps.pop(0) if len(steps) > 1 else (steps[0] if steps else None)
        if isinstance(step, BaseException):
            raise step
        return SimpleNamespace(provider=prov)


class FakeOnboarding:
    """Counts ensure_ready calls; fails for the providers in ``broken``."""

    def __init__(self, broken: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.broken = broken or set()

    async def ensure_ready(self, provider: str, *, min_balance: int) -> None:
        self.calls.append(provider)
        await anyio.lowlevel.checkpoint()
        if provider in self.broken:
            raise ServiceNotExistError("gone", error_args={})


def make_router(
    script: dict[str, list[Any]],
    *,
    prices: dict[str, int] | None = None,
    broken: set[str] | None = None,
    **kwargs: Any,
) -> tuple[Any, FakeChat, FakeOnboarding, Clock]:
    from og_inference_async._config import checksum

    prices = prices or {}
    services = {
        checksum(p): make_service(provider=checksum(p), input_price=prices.get(p, 1)) for p in (A, B, C)
    }

    class Directory:
        async def cached(self, prov: str) -> Any:
            return services[prov]

    chat = FakeChat({checksum(k): v for k, v in script.items()})
    onboarding = FakeOnboarding({checksum(b) for b in (broken or set())})
    clock = Clock()
    svc = RouterService(
        chat=cast(Any, chat),
        images=cast(Any, None),
        audio=cast(Any, None),
        discovery=cast(Any, None),
        directory=cast(Any, Directory()),
        onboarding=cast(Any, onboarding),
        clock=clock,
    )
    kwargs.setdefault("providers", [A, B, C])
    return svc.router(model="m", **kwargs), chat, onboarding, clock


def addr(p: str) -> str:
    from og_inference_async._config import checksum

    return checksum(p)


def verification_failure() -> ResponseVerificationError:
    outcome = VerificationResult(status=VerificationStatus.REJECTED, provider=A)
    return ResponseVerificationError("bad", verification=outcome, fee=5)


def test_breaker_opens_after_threshold_and_lets_one_trial_through_after_cooldown() -> None:
    """Consecutive failures open the circuit; after the cooldown one trial runs; success closes it."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=2, cooldown=10.0, clock=clock)
    assert breaker.acquire()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.acquire()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.acquire()
    clock.now = 10.0
    assert breaker.state == "half_open"
    assert breaker.acquire() and not breaker.acquire()  # one trial at a time
    breaker.record_failure()  # a failed trial opens it again at once
    assert breaker.state == "open"
    clock.now = 20.0
    assert breaker.acquire()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.acquire()


def test_breaker_release_frees_the_trial_without_a_verdict() -> None:
    """A trial that ends with no verdict (cancelled, bad input) lets the next request try."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.record_failure()
    clock.now = 1.0
    assert breaker.acquire()
    breaker.release()
    assert breaker.acquire()


async def test_refusals_and_unsent_requests_fail_over_to_the_next_provider() -> None:
    """503, 429 and a connection never opened go to the next provider; the result names who served."""
    router, chat, _, _ = make_router(
        {
            A: [ProviderServerError("x", status_code=503)],
            B: [ProviderRateLimitError("x", status_code=429)],
            C: [TransportFailure("x", provider=C, not_sent=True)],
        },
        prices={A: 1, B: 2, C: 3},
    )
    with pytest.raises(NoProviderAvailableError) as info:
        await router.chat([{"role": "user", "content": "hi"}])
    assert chat.calls == [addr(A), addr(B), addr(C)]
    assert [p for p, _ in info.value.failures] == chat.calls
    router2, chat2, _, _ = make_router(
        {A: [ProviderServerError("x", status_code=503)]}, prices={A: 1, B: 2, C: 3}
    )
    result = await router2.chat([{"role": "user", "content": "hi"}])
    assert result.provider == addr(B) and chat2.calls == [addr(A), addr(B)]


@pytest.mark.parametrize(
    "error",
    [
        ProviderServerError("x", status_code=502),
        ProviderServerError("x", status_code=500),
        TransportFailure("x", provider=A, not_sent=False),
    ],
)
async def test_a_request_that_may_have_been_billed_is_never_sent_again(error: Exception) -> None:
    """502/500 and a read error are raised as they are: no other provider gets the request."""
    router, chat, _, _ = make_router({A: [error]}, prices={A: 1, B: 2, C: 3})
    with pytest.raises(type(error)):
        await router.chat([{"role": "user", "content": "hi"}])
    assert chat.calls == [addr(A)]


async def test_verification_failure_fails_over() -> None:
    """Under required, a response that failed verification sends the request to the next provider."""
    router, chat, _, _ = make_router({A: [verification_failure()]}, prices={A: 1, B: 2, C: 3})
    result = await router.chat([{"role": "user", "content": "hi"}], verify="required")
    assert result.provider == addr(B)
    assert chat.calls == [addr(A), addr(B)]


async def test_open_circuit_skips_the_provider_until_the_cooldown_ends() -> None:
    """After ``failure_threshold`` failures a provider is not tried; after the cooldown it is again."""
    router, chat, _, clock = make_router(
        {A: [ProviderServerError("x", status_code=503)]},
        prices={A: 1, B: 2, C: 3},
        failure_threshold=2,
        cooldown=5.0,
    )
    for _ in range(2):
        await router.chat([{"role": "user", "content": "hi"}])
    chat.calls.clear()
    assert (await router.chat([{"role": "user", "content": "hi"}])).provider == addr(B)
    assert chat.calls == [addr(B)]
    stats = {s.provider: s for s in router.stats()}
    assert stats[addr(A)].circuit == "open" and stats[addr(A)].failed == 2 and stats[addr(B)].served == 3
    clock.now = 5.0
    chat.script[addr(A)] = []
    chat.calls.clear()
    assert (await router.chat([{"role": "user", "content": "hi"}])).provider == addr(A)
    assert {s.provider: s.circuit for s in router.stats()}[addr(A)] == "closed"


async def test_equal_providers_take_turns() -> None:
    """Providers of equal price share the requests in turn; the cheapest one takes them all."""
    router, chat, _, _ = make_router({})
    served = [(await router.chat([{"role": "user", "content": "hi"}])).provider for _ in range(6)]
    assert sorted(served) == sorted([addr(A), addr(B), addr(C)] * 2)
    router2, _, _, _ = make_router({}, prices={A: 5, B: 1, C: 5})
    served = [(await router2.chat([{"role": "user", "content": "hi"}])).provider for _ in range(3)]
    assert served == [addr(B)] * 3


async def test_providers_are_prepared_once_and_a_failed_preparation_fails_over() -> None:
    """ensure_ready runs once per provider, shared by concurrent first requests; its failure skips."""
    router, chat, onboarding, _ = make_router({}, prices={A: 1, B: 2, C: 3}, broken={A})
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(router.chat, [{"role": "user", "content": "hi"}])
    assert onboarding.calls.count(addr(B)) == 1
    assert addr(A) not in chat.calls and set(chat.calls) == {addr(B)}


async def test_bad_input_is_raised_without_failover() -> None:
    """A ConfigError is the caller's, not the provider's: raised at once, circuit untouched."""
    router, chat, _, _ = make_router({A: [ConfigError("bad")]}, prices={A: 1, B: 2, C: 3})
    with pytest.raises(ConfigError):
        await router.chat([{"role": "user", "content": "hi"}])
    assert chat.calls == [addr(A)]
    assert all(s.failed == 0 for s in router.stats())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "random"},
        {"model": " "},
        {"providers": []},
        {"providers": "0x" + "a" * 40},
        {"failure_threshold": 0},
        {"cooldown": -1},
        {"prepare": "yes"},
    ],
)
def test_router_arguments_are_checked_before_anything_is_sent(kwargs: dict[str, Any]) -> None:
    """Bad router arguments raise ConfigError at once."""
    svc = RouterService(
        chat=cast(Any, None),
        images=cast(Any, None),
        audio=cast(Any, None),
        discovery=cast(Any, None),
        directory=cast(Any, None),
        onboarding=cast(Any, None),
    )
    kwargs = {"model": "m", **kwargs}
    with pytest.raises(ConfigError):
        svc.router(**kwargs)
