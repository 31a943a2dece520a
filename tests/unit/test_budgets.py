"""Spend budgets, worst-case fee bounds, the spend rate, and the auto-funding caps (no I/O)."""

from __future__ import annotations

import io
import random
import wave

import anyio
import pytest

from og_inference_async import (
    AsyncBroker,
    BudgetExceededError,
    ConfigError,
    FundingCapError,
    InsufficientBalanceError,
    ProviderInsufficientBalanceError,
    ProviderServerError,
    TransportFailure,
)
from og_inference_async.inference._estimate import (
    TEMPLATE_TOKENS,
    audio_seconds,
    chat_bound,
    image_bound,
    output_cap,
)
from og_inference_async.inference._fees import LocalFeeBook
from og_inference_async.inference._funding_auto import AutoFundingConfig, plan_top_up, spend_headroom
from og_inference_async.inference.budgets import BudgetBook, may_have_billed
from og_inference_async.inference.funding import AutoFundingService

pytestmark = pytest.mark.anyio

OG = 10**18
KEY = "0x" + "42" * 32


def test_reserve_settle_and_release() -> None:
    """A hold counts as reserved until it settles to the real fee or is released."""
    budget = BudgetBook().budget(100)
    hold = budget.reserve(60)
    assert budget.reserved == 60 and budget.remaining == 40
    with pytest.raises(BudgetExceededError) as info:
        budget.reserve(41)
    assert info.value.required == 41 and info.value.remaining == 40 and budget.refusals == 1
    hold.settle(25)
    hold.keep()  # a second close does nothing
    assert budget.spent == 25 and budget.reserved == 0 and budget.remaining == 75
    budget.reserve(75).release()
    assert budget.spent == 25 and budget.remaining == 75


async def test_nested_budgets_and_tags() -> None:
    """A budget made inside another counts against both; spending is totalled per innermost tag."""
    book = BudgetBook()
    async with book.budget(100, tag="swarm") as swarm:
        assert book.current() is swarm
        async with book.budget(30, tag="agent-1") as agent:
            assert agent.parent is swarm and book.pick(None) is agent
            agent.reserve(20).settle(20)
            with pytest.raises(BudgetExceededError) as info:
                agent.reserve(11)
            assert info.value.tag == "agent-1"
        untagged = book.budget(None)
        untagged.reserve(90 - 20).settle(70)
        with pytest.raises(BudgetExceededError) as outer:
            book.budget(None).reserve(11)
        assert outer.value.tag == "swarm" and outer.value.remaining == 10
    assert book.current() is None
    assert swarm.spent == 90 and swarm.spent_by_tag() == {"agent-1": 20, "swarm": 70}


async def test_a_thousand_agents_never_overspend() -> None:
    """1,000 concurrent tasks on one budget: spent <= limit to the wei, every refusal typed."""
    book = BudgetBook()
    budget = book.budget(10**6)
    rng = random.Random(7)
    refused = 0

    async def agent(worst: int, real: int) -> None:
        nonlocal refused
        try:
            hold = budget.reserve(worst)
        except BudgetExceededError:
            refused += 1
            return
        await anyio.lowlevel.checkpoint()
        hold.settle(real)

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            worst = rng.randint(1, 5000)
            tg.start_soon(agent, worst, rng.randint(0, worst))
    assert budget.spent <= budget.limit == 10**6 and budget.reserved == 0
    assert refused == budget.refusals and refused + budget.requests == 1000


def test_budget_of_another_broker_is_refused() -> None:
    """budget= must come from the same broker."""
    with pytest.raises(ConfigError):
        BudgetBook().pick(BudgetBook().budget(1))


async def test_what_may_have_been_billed() -> None:
    """Refusals and unsent requests are released; lost answers are kept."""
    assert not may_have_billed(ProviderInsufficientBalanceError("402", status_code=402))
    assert not may_have_billed(TransportFailure("refused", provider=None, not_sent=True))
    assert may_have_billed(TransportFailure("read", provider=None, not_sent=False))
    assert not may_have_billed(ProviderServerError("500", status_code=500))
    assert may_have_billed(anyio.get_cancelled_exc_class()())


def test_chat_bound_and_output_cap() -> None:
    """The chat bound is bytes + template tokens in and the output cap out; no cap, no bound."""
    body = b'{"messages":[{"role":"user","content":"hi"}]}'
    bound = chat_bound(body, 10, 3, 5)
    assert bound.input_units == len(body) + TEMPLATE_TOKENS and bound.fee == bound.input_units * 3 + 50
    assert output_cap({"max_completion_tokens": 7, "max_tokens": 9}) == 7 and output_cap({}) is None
    with pytest.raises(ConfigError):
        chat_bound(body, None, 3, 5)
    assert chat_bound(body, None, 3, 0).output_units == 0
    assert image_bound(3, 11).fee == 33


def test_audio_seconds_reads_wav_headers() -> None:
    """A WAV gives its duration rounded up; other bytes count at 32 kbit/s."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 8000 * 2 + b"\0\0")
    assert audio_seconds(buffer.getvalue()) == 3
    assert audio_seconds(b"x" * 8001) == 3


def test_spend_rate_over_a_window() -> None:
    """The rate needs fees in two seconds; it divides by the window or the time since the first fee."""
    now = [100.0]
    book = LocalFeeBook(clock=lambda: now[0])
    book.add("p", 10 * OG)
    assert book.rate("p", 30) == 0
    now[0] = 104.0
    book.add("p", 10 * OG)
    assert book.rate("p", 30) == 5 * OG  # 20 OG in 4 s
    now[0] = 200.0
    assert book.rate("p", 30) == 0


def test_headroom_grows_with_the_spend_rate() -> None:
    """A rate needs a margin of (interval + lag) of spending and moves 10 s ahead."""
    assert spend_headroom(OG, 0.5, 1.5) == (2 * OG, 10 * OG)
    assert plan_top_up(unsettled=OG, spendable=OG, buffer=4 * OG, min_transfer=OG, extra=10 * OG) == (
        4 * OG,
        14 * OG,
    )


async def test_caps_refuse_a_top_up_they_cannot_cover() -> None:
    """max_total and max_per_hour cut a top-up, and raise FundingCapError when the need is above them."""
    service = AutoFundingService.__new__(AutoFundingService)
    service._moves = {}
    service._moved_total = {"p": 8 * OG}
    config = AutoFundingConfig(interval=1.0, buffer=OG, min_transfer=OG, max_total=10 * OG)
    assert service._within_caps("p", config, OG, 5 * OG, 0) == 2 * OG
    with pytest.raises(FundingCapError) as info:
        service._within_caps("p", config, 3 * OG, 5 * OG, 0)
    assert isinstance(info.value, InsufficientBalanceError)
    assert info.value.cap == "max_total" and info.value.available == 2 * OG and info.value.required == 3 * OG


async def test_broker_budget_needs_no_open_broker() -> None:
    """broker.budget() does no I/O; budget= of another broker is refused before anything is sent."""
    broker = AsyncBroker(KEY)
    budget = broker.budget("1", tag="x")
    assert budget.limit == OG and "tag='x'" in repr(budget)
    with pytest.raises(ConfigError):
        broker.budget(1, default_max_tokens=0)
