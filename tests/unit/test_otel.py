"""combine_hooks, the on_billed event, and og_inference_async.otel's spans and counters off the devnet."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from og_inference_async import ConfigError, Hooks, combine_hooks
from og_inference_async._observe import HOOK_NAMES
from og_inference_async.inference._fees import LocalFeeBook
from og_inference_async.otel import REQUEST_SPAN, otel_hooks

PROVIDER = "0x" + "ab" * 20


def test_combined_hooks_run_in_order_and_a_failure_stays_isolated(caplog: pytest.LogCaptureFixture) -> None:
    """Each set's callback runs in the order given; one that raises is logged and the next still runs."""
    seen: list[str] = []

    def boom(event: dict[str, Any]) -> None:
        raise RuntimeError("hook bug")

    combined = combine_hooks(
        Hooks(on_billed=lambda e: seen.append("a")),
        None,
        Hooks(on_billed=boom, on_request=lambda e: seen.append("r")),
        Hooks(on_billed=lambda e: seen.append("c")),
    )
    assert combined.on_billed is not None and combined.on_request is not None
    with caplog.at_level(logging.WARNING):
        combined.on_billed({"provider": PROVIDER, "fee_wei": 1})
    assert seen == ["a", "c"] and "an event hook raised" in caplog.text
    assert combined.on_transaction is None and combine_hooks() == Hooks()


def test_one_hook_is_kept_as_it_is() -> None:
    """A single callback of an event is not wrapped."""

    def hook(event: dict[str, Any]) -> None:
        return None

    assert combine_hooks(Hooks(on_response=hook), Hooks()).on_response is hook
    assert set(HOOK_NAMES) == set(Hooks.__dataclass_fields__)


def test_the_fee_book_reports_each_fee_counted_once() -> None:
    """on_add sees every counted fee; a job fetched twice is reported once."""
    added: list[tuple[str, int]] = []
    book = LocalFeeBook(on_add=lambda provider, fee: added.append((provider, fee)))
    book.add(PROVIDER, 5)
    book.record(PROVIDER, None, once="job-1")
    book.record(PROVIDER, None, once="job-1")
    assert added == [(PROVIDER, 5), (PROVIDER, 0)]


def _telemetry(**options: Any) -> tuple[Hooks, InMemorySpanExporter, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    hooks = otel_hooks(tracer_provider, MeterProvider(metric_readers=[reader]), **options)
    return hooks, exporter, reader


def _request(hooks: Hooks, attempt: int = 1) -> None:
    assert hooks.on_request is not None
    hooks.on_request({"provider": PROVIDER, "route": "chat", "attempt": attempt})


def _response(hooks: Hooks, attempt: int = 1, **outcome: Any) -> None:
    assert hooks.on_response is not None
    hooks.on_response({"provider": PROVIDER, "route": "chat", "attempt": attempt, **outcome})


@pytest.mark.anyio
async def test_failed_attempts_and_a_retry_end_their_spans_as_errors() -> None:
    """An error or a 5xx ends the span in ERROR; the retry is marked; attempts count by outcome."""
    hooks, exporter, reader = _telemetry()
    _request(hooks)
    _response(hooks, error="ReadTimeout")
    _request(hooks, 2)
    _response(hooks, 2, status=503)
    _request(hooks, 3)
    _response(hooks, 3, status=200)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [REQUEST_SPAN] * 3
    first, second, third = (dict(s.attributes or {}) for s in spans)
    assert first["error.type"] == "ReadTimeout" and first["og.retry"] is False
    assert second["http.response.status_code"] == 503 and second["og.retry"] is True
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    data = reader.get_metrics_data()
    assert data is not None
    (metric,) = data.resource_metrics[0].scope_metrics[0].metrics
    outcomes = {p.attributes["og.outcome"]: p.value for p in metric.data.data_points}  # type: ignore[index]
    assert outcomes == {"ReadTimeout": 1, "503": 1, "200": 1}


@pytest.mark.anyio
async def test_an_attempt_never_answered_is_ended_as_abandoned() -> None:
    """The task's next attempt ends the open span; past max_open_spans the oldest is ended."""
    hooks, exporter, _ = _telemetry(max_open_spans=1)
    _request(hooks)
    _request(hooks)
    (abandoned,) = exporter.get_finished_spans()
    assert (abandoned.attributes or {})["error.type"] == "abandoned"
    assert abandoned.status.status_code is StatusCode.ERROR


def test_top_ups_and_transactions_are_counted() -> None:
    """on_top_up counts by provider and reason; a transaction is an instant span and a count."""
    hooks, exporter, reader = _telemetry()
    assert hooks.on_top_up is not None and hooks.on_transaction is not None
    hooks.on_top_up({"provider": PROVIDER, "amount_wei": 10**19, "reason": "refusal", "tx_hash": "0x01"})
    hooks.on_transaction(
        {
            "kind": "LedgerManager.depositFund",
            "tx_hash": "0x02",
            "value_wei": 10**20,
            "block": 7,
            "gas_used": 1,
        }
    )
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["og.tx.value_wei"] == str(10**20)  # beyond 64 bits: a string
    data = reader.get_metrics_data()
    assert data is not None
    counts = {
        m.name: [(dict(p.attributes or {}), p.value) for p in m.data.data_points]  # type: ignore[union-attr]
        for m in data.resource_metrics[0].scope_metrics[0].metrics
    }
    assert counts["og.top_ups"] == [({"og.provider": PROVIDER, "og.reason": "refusal"}, 1)]
    assert counts["og.transactions"] == [({"og.tx.kind": "LedgerManager.depositFund"}, 1)]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_max_open_spans_must_be_a_positive_int(bad: Any) -> None:
    """A bad bound is a ConfigError."""
    with pytest.raises(ConfigError, match="max_open_spans"):
        otel_hooks(max_open_spans=bad)


def test_importing_the_package_does_not_import_opentelemetry() -> None:
    """Only ``og_inference_async.otel`` loads opentelemetry."""
    code = "import sys, og_inference_async; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
