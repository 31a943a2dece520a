"""OpenTelemetry spans and metrics from the broker's events (the ``[otel]`` extra).

``pip install "og-inference-async[otel]"``, then hand :func:`otel_hooks` to the broker::

    from og_inference_async import AsyncBroker, combine_hooks
    from og_inference_async.otel import otel_hooks

    async with AsyncBroker(key, hooks=combine_hooks(my_hooks, otel_hooks())) as broker:
        ...

The providers default to the global ones (``opentelemetry.trace.set_tracer_provider`` and
``opentelemetry.metrics.set_meter_provider``), so an application already set up for
OpenTelemetry needs nothing more. ``import og_inference_async`` never imports this module.

Spans (their parent is the span current where the SDK was called):

* ``og.provider.request``: one per attempt of a provider HTTP request, from the moment it is
  sent until it is answered or fails; attributes ``og.provider``, ``og.route``, ``og.attempt``,
  ``og.retry`` and ``http.response.status_code`` or ``error.type``. An attempt cancelled before
  its answer is ended (``error.type`` ``"abandoned"``) when its task sends the next one.
* ``og.transaction``: one per mined transaction (an instant: it is reported once mined);
  attributes ``og.tx.kind``, ``og.tx.hash``, ``og.tx.status`` (``"mined"``), ``og.tx.block``,
  ``og.tx.gas_used``, ``og.tx.value_wei`` (a decimal string: wei overflow 64-bit integers).

Metrics (counters):

* ``og.provider.requests`` by ``og.provider``, ``og.route`` and ``og.outcome`` (the HTTP status,
  or the error's type);
* ``og.fees`` (wei) by ``og.provider``: the fees counted locally, as ``local_fees``;
* ``og.transactions`` by ``og.tx.kind``;
* ``og.top_ups`` by ``og.provider`` and ``og.reason``.

Only the fields listed are copied from the events: keys, session tokens, API keys and headers
are never in the events, hence never in a span or a metric point.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import anyio
from opentelemetry import metrics, trace

from ._exceptions import ConfigError
from ._observe import HOOK_NAMES, Hooks
from ._validate import shown

__all__ = ["REQUEST_SPAN", "TRANSACTION_SPAN", "otel_hooks"]

#: The name of the span of one provider request attempt.
REQUEST_SPAN = "og.provider.request"
#: The name of the span of one mined transaction.
TRANSACTION_SPAN = "og.transaction"

_SCOPE = "og_inference_async"


def otel_hooks(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    *,
    max_open_spans: int = 10_000,
) -> Hooks:
    """:class:`~og_inference_async.Hooks` recording the broker's events as spans and metrics.

    Args:
        tracer_provider: where spans go (default: the global tracer provider).
        meter_provider: where metric points go (default: the global meter provider).
        max_open_spans: request spans kept open at most; past it the oldest is ended as
            ``"abandoned"`` (a bound for requests whose answer never came).

    Raises:
        ConfigError: ``max_open_spans`` is not a positive int.
    """
    if isinstance(max_open_spans, bool) or not isinstance(max_open_spans, int) or max_open_spans < 1:
        raise ConfigError(f"max_open_spans must be a positive int, got {shown(max_open_spans)}")
    return _Telemetry(tracer_provider, meter_provider, max_open_spans).hooks()


def _task_key() -> int:
    """The running task's id (a task sends its attempts one at a time); 0 outside a task."""
    try:
        return anyio.get_current_task().id
    except Exception:  # no event loop running: the hook was called from plain code
        return 0


class _Telemetry:
    """The tracer, the meter's counters and the request spans still open."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        max_open_spans: int,
    ) -> None:
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        self._requests = meter.create_counter(
            "og.provider.requests", unit="{request}", description="Provider HTTP request attempts"
        )
        self._fees = meter.create_counter("og.fees", unit="wei", description="Fees counted locally")
        self._transactions = meter.create_counter(
            "og.transactions", unit="{transaction}", description="Transactions mined"
        )
        self._top_ups = meter.create_counter(
            "og.top_ups", unit="{top_up}", description="Auto-funding top-ups of provider sub-accounts"
        )
        self._open: OrderedDict[int, trace.Span] = OrderedDict()
        self._max_open = max_open_spans

    def hooks(self) -> Hooks:
        """The hooks feeding this telemetry (every event it has a method for)."""
        return Hooks(**{name: getattr(self, name) for name in HOOK_NAMES if hasattr(self, name)})

    def on_request(self, event: dict[str, Any]) -> None:
        """Open the attempt's span (ending one its task left open)."""
        key = _task_key()
        stale = self._open.pop(key, None)
        if stale is not None:
            _end_abandoned(stale)
        attempt = int(event["attempt"])
        attributes: dict[str, Any] = {
            "og.route": event["route"],
            "og.attempt": attempt,
            "og.retry": attempt > 1,
        }
        if event.get("provider") is not None:
            attributes["og.provider"] = event["provider"]
        self._open[key] = self._tracer.start_span(
            REQUEST_SPAN, kind=trace.SpanKind.CLIENT, attributes=attributes
        )
        while len(self._open) > self._max_open:
            _end_abandoned(self._open.popitem(last=False)[1])

    def on_response(self, event: dict[str, Any]) -> None:
        """Count the attempt and end its span with its status or error."""
        error = event.get("error")
        status = event.get("status")
        outcome = str(error) if error is not None else str(status)
        labels = {"og.route": event["route"], "og.outcome": outcome}
        if event.get("provider") is not None:
            labels["og.provider"] = event["provider"]
        self._requests.add(1, labels)
        span = self._open.pop(_task_key(), None)
        if span is None:
            return
        if error is not None:
            span.set_attribute("error.type", str(error))
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(error)))
        elif isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_status(trace.Status(trace.StatusCode.ERROR))
        span.end()

    def on_transaction(self, event: dict[str, Any]) -> None:
        """Record the mined transaction: an instant span and a count by kind."""
        kind = str(event["kind"])
        self._transactions.add(1, {"og.tx.kind": kind})
        attributes: dict[str, Any] = {
            "og.tx.kind": kind,
            "og.tx.hash": str(event["tx_hash"]),
            "og.tx.status": "mined",
            "og.tx.block": int(event["block"]),
            "og.tx.gas_used": int(event["gas_used"]),
            "og.tx.value_wei": str(event["value_wei"]),
        }
        self._tracer.start_span(TRANSACTION_SPAN, kind=trace.SpanKind.CLIENT, attributes=attributes).end()

    def on_top_up(self, event: dict[str, Any]) -> None:
        """Count the top-up by provider and reason."""
        self._top_ups.add(1, {"og.provider": str(event["provider"]), "og.reason": str(event["reason"])})

    def on_billed(self, event: dict[str, Any]) -> None:
        """Add the request's fee (wei) to the provider's total."""
        self._fees.add(int(event["fee_wei"]), {"og.provider": str(event["provider"])})


def _end_abandoned(span: trace.Span) -> None:
    """End a request span whose answer never came (the attempt was cancelled)."""
    span.set_attribute("error.type", "abandoned")
    span.set_status(trace.Status(trace.StatusCode.ERROR, "abandoned"))
    span.end()
