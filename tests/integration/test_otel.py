"""OpenTelemetry on the devnet: a chat and a deposit become spans and metric points, without secrets."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from og_inference_async import AsyncBroker, Hooks, combine_hooks, og
from og_inference_async.otel import REQUEST_SPAN, TRANSACTION_SPAN, otel_hooks
from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

USER = 8
HELLO = [{"role": "user", "content": "hello telemetry"}]


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], int]]]:
    """Every counter's data points as ``(attributes, value)``, by metric name."""
    data = reader.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], int]]] = {}
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = found.setdefault(metric.name, [])
                points.extend((dict(p.attributes or {}), int(p.value)) for p in metric.data.data_points)  # type: ignore[union-attr]
    return found


def _total(points: list[tuple[dict[str, Any], int]], **match: Any) -> int:
    """The sum of the points whose attributes include ``match``."""
    return sum(value for attrs, value in points if all(attrs.get(k) == v for k, v in match.items()))


async def test_chat_and_deposit_become_spans_and_metrics(devnet: Devnet, chatbot: ProviderHandle) -> None:
    """Request and transaction spans, fee/request/transaction counters; no key, token or API key."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    billed: list[dict[str, Any]] = []
    hooks = combine_hooks(otel_hooks(tracer_provider, meter_provider), Hooks(on_billed=billed.append))
    key = devnet.accounts[USER].private_key
    async with AsyncBroker(key, network=devnet.network, hooks=hooks) as broker:
        await broker.inference.ensure_ready(chatbot.address, create_ledger=True, ledger_amount=og("3"))
        result = await broker.inference.chat(chatbot.address, HELLO, max_tokens=8, timeout=30)
        receipt = await broker.ledger.deposit_fund(og("1"))
        token = (await broker.inference.get_request_headers(chatbot.address))["Authorization"]
        api_key = await broker.inference.create_api_key(chatbot.address, expires_in=3600)

    spans: list[ReadableSpan] = list(exporter.get_finished_spans())
    chats = [s for s in spans if s.name == REQUEST_SPAN and (s.attributes or {}).get("og.route") == "chat"]
    assert len(chats) == 1
    chat = dict(chats[0].attributes or {})
    assert chat["og.provider"] == chatbot.address and chat["og.attempt"] == 1 and chat["og.retry"] is False
    assert chat["http.response.status_code"] == 200
    deposits = [
        dict(s.attributes or {})
        for s in spans
        if s.name == TRANSACTION_SPAN
        and (s.attributes or {}).get("og.tx.kind") == "LedgerManager.depositFund"
    ]
    assert deposits == [
        {
            "og.tx.kind": "LedgerManager.depositFund",
            "og.tx.hash": receipt.tx_hash,
            "og.tx.status": "mined",
            "og.tx.block": receipt.block_number,
            "og.tx.gas_used": receipt.gas_used,
            "og.tx.value_wei": str(og("1")),
        }
    ]

    points = _points(reader)
    assert _total(points["og.fees"], **{"og.provider": chatbot.address}) == result.fee > 0
    assert billed == [{"provider": chatbot.address, "fee_wei": result.fee}]  # the user's hook ran too
    assert _total(points["og.provider.requests"], **{"og.route": "chat", "og.outcome": "200"}) == 1
    assert _total(points["og.transactions"], **{"og.tx.kind": "LedgerManager.depositFund"}) == 1

    secrets = (
        key.removeprefix("0x").lower(),
        token.removeprefix("Bearer ").strip(),
        "app-sk-",
        api_key.secret.get_secret_value(),
    )
    shown = [str(v).lower() for s in spans for v in (s.attributes or {}).values()]
    shown += [str(v).lower() for series in points.values() for attrs, _ in series for v in attrs.values()]
    assert shown and not any(secret.lower() in value for secret in secrets for value in shown)
