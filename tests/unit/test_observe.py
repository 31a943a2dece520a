"""The observer: top-up counts and events, verification outcomes counted when known, progress events."""

from __future__ import annotations

from typing import Any

import pytest

from og_inference_async import ConfigError, Hooks, VerificationHandle, VerificationResult, VerificationStatus
from og_inference_async._observe import Observer
from og_inference_async.types.funding import TopUpEvent

PROVIDER = "0x" + "ab" * 20


def _top_up(reason: str = "check") -> TopUpEvent:
    return TopUpEvent(
        provider=PROVIDER,
        amount=3 * 10**18,
        deficit=2 * 10**18,
        unsettled_fee=10**18,
        fee_source="provider",
        spendable_before=10**18,
        tx_hash="0x" + "12" * 32,
        reason=reason,  # type: ignore[arg-type]
    )


def test_top_ups_are_counted_by_provider_and_passed_to_the_hook() -> None:
    """on_top_up gets the event's data (wei amounts, reason, hash); the counter goes by provider."""
    events: list[dict[str, Any]] = []
    observer = Observer(Hooks(on_top_up=events.append))
    observer.top_up(_top_up())
    observer.top_up(_top_up("refusal"))
    assert observer.top_ups == {PROVIDER: 2}
    assert events[0] == {
        "provider": PROVIDER,
        "amount_wei": 3 * 10**18,
        "reason": "check",
        "tx_hash": "0x" + "12" * 32,
        "deficit_wei": 2 * 10**18,
        "unsettled_fee_wei": 10**18,
        "fee_source": "provider",
    }
    assert events[1]["reason"] == "refusal"


def test_top_ups_are_counted_without_a_hook() -> None:
    """No on_top_up hook: the top-up is still counted."""
    observer = Observer()
    observer.top_up(_top_up())
    assert observer.top_ups[PROVIDER] == 1


def test_a_background_outcome_is_counted_when_it_resolves() -> None:
    """A pending handle counts nothing until its outcome is known, then counts that outcome once."""
    observer = Observer()
    handle = VerificationHandle()
    observer.verified_when_done(handle)
    assert sum(observer.verification.values()) == 0
    handle.set(VerificationResult(status=VerificationStatus.BOUND, provider=PROVIDER))
    handle.set(VerificationResult(status=VerificationStatus.REJECTED, provider=PROVIDER))  # ignored
    assert observer.verification == {"bound": 1}


def test_an_outcome_known_already_is_counted_at_once() -> None:
    """A handle settled before it is watched counts at once."""
    observer = Observer()
    observer.verified_when_done(
        VerificationHandle(VerificationResult(status=VerificationStatus.SKIPPED, provider=PROVIDER))
    )
    assert observer.verification == {"skipped": 1}


def test_progress_events_and_a_failing_hook(caplog: pytest.LogCaptureFixture) -> None:
    """on_progress gets kind, subject, elapsed and polls; a hook that raises is logged, not raised."""
    events: list[dict[str, Any]] = []
    observer = Observer(Hooks(on_progress=events.append))
    assert observer.watching_progress and not Observer().watching_progress
    observer.progress("settlement", "provider", PROVIDER, 1.5, 2)
    assert events == [{"kind": "settlement", "provider": PROVIDER, "elapsed": 1.5, "polls": 2}]

    def boom(event: dict[str, Any]) -> None:
        raise RuntimeError("hook failed")

    Observer(Hooks(on_progress=boom, on_top_up=boom)).progress("receipt", "tx_hash", "0x01", 0.1, 1)
    Observer(Hooks(on_top_up=boom)).top_up(_top_up())
    assert sum("an event hook raised" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize("name", ["on_top_up", "on_progress", "on_billed"])
def test_new_hooks_must_be_callable(name: str) -> None:
    """A hook that is not callable is a ConfigError."""
    with pytest.raises(ConfigError, match=name):
        Hooks(**{name: "not callable"})  # type: ignore[arg-type]
