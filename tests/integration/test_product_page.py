"""The product page's code (0g-inference-sdk's names) runs on our broker: async with ``await``, and sync.

The page (``shared/reference/0g-inference-quickstart-page.txt``) and 0g-inference-sdk's quickstart
write the flow below. ``page_flow_async`` is it with ``await`` added; ``page_flow_sync`` is it
as written, on ``og_inference_async.sync`` (only the import changes). Both run on the devnet, the
sync one also from a worker thread and from a thread whose own event loop is running (Jupyter).
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from typing import Any

import anyio
import httpx
import pytest

from og_inference_async import AsyncBroker, BrokerStateError
from og_inference_async import og as og_to_wei  # 0g-inference-sdk: from zerog_py_sdk.utils import og_to_wei
from og_inference_async.sync import Broker, create_broker
from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

OG = 10**18
QUESTION = [{"role": "user", "content": "What is 2+2?"}]


async def page_flow_async(broker: Any, expected_provider: str) -> dict[str, Any]:
    """The page's lines with ``await`` added (the raw POST through httpx instead of ``requests``)."""
    services = await broker.inference.list_service()
    provider = next(s.provider for s in services if s.service_type == "chatbot")
    assert provider == expected_provider
    await broker.ledger.add_ledger("3")
    await broker.inference.acknowledge_provider_signer(provider)
    again = await broker.inference.acknowledge_provider_signer(provider)
    await broker.ledger.transfer_fund(provider, "inference", og_to_wei("1"))
    metadata = await broker.inference.get_service_metadata(provider)
    headers = await broker.inference.get_request_headers(provider)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{metadata['endpoint']}/chat/completions",
            headers={"Content-Type": "application/json", **headers},
            json={"model": metadata["model"], "messages": QUESTION},
        )
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    is_valid = await broker.inference.process_response(
        provider_address=provider, content=content, chat_id=body["id"]
    )
    result = await broker.inference.chat(provider, QUESTION)
    checked = await broker.inference.process_response(provider, result.chat_id)
    await broker.ledger.retrieve_fund("inference")
    refunds = await broker.ledger.get_refunds(provider)
    return _observed(again, metadata, response.status_code, content, is_valid, result, checked, refunds)


def page_flow_sync(broker: Any, expected_provider: str) -> dict[str, Any]:
    """The page's lines as written, without ``await`` (the raw POST through urllib, not ``requests``)."""
    services = broker.inference.list_service()
    provider = next(s.provider for s in services if s.service_type == "chatbot")
    assert provider == expected_provider
    broker.ledger.add_ledger("3")
    broker.inference.acknowledge_provider_signer(provider)
    again = broker.inference.acknowledge_provider_signer(provider)
    broker.ledger.transfer_fund(provider, "inference", og_to_wei("1"))
    metadata = broker.inference.get_service_metadata(provider)
    headers = broker.inference.get_request_headers(provider)
    request = urllib.request.Request(
        f"{metadata['endpoint']}/chat/completions",
        data=json.dumps({"model": metadata["model"], "messages": QUESTION}).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        status, body = response.status, json.loads(response.read())
    content = body["choices"][0]["message"]["content"]
    is_valid = broker.inference.process_response(
        provider_address=provider, content=content, chat_id=body["id"]
    )
    result = broker.inference.chat(provider, QUESTION)
    checked = broker.inference.process_response(provider, result.chat_id)
    broker.ledger.retrieve_fund("inference")
    refunds = broker.ledger.get_refunds(provider)
    return _observed(again, metadata, status, content, is_valid, result, checked, refunds)


def _observed(
    again: Any,
    metadata: Any,
    status: int,
    content: str,
    is_valid: Any,
    result: Any,
    checked: Any,
    refunds: Any,
) -> dict[str, Any]:
    return {
        "ack_again": again["status"],
        "endpoint": metadata["endpoint"].endswith("/v1/proxy"),
        "post": status,
        "answered": bool(content),
        "is_valid": "yes" if is_valid else "no",
        "chat": bool(result.content) and result.fee > 0,
        "checked": bool(checked),
        "refund": sum(r.amount for r in refunds),
    }


EXPECTED = {
    "ack_again": "already_acknowledged",
    "endpoint": True,
    "post": 200,
    "answered": True,
    "is_valid": "yes",
    "chat": True,
    "checked": True,
}


async def test_the_page_flow_runs_async(devnet: Devnet, chatbot: ProviderHandle) -> None:
    """Every line of the page runs on AsyncBroker with ``await`` added."""
    async with AsyncBroker(devnet.accounts[10].private_key, network=devnet.network) as broker:
        seen = await page_flow_async(broker, chatbot.address)
    assert seen == {**EXPECTED, "refund": seen["refund"]} and seen["refund"] > 0


async def test_the_page_flow_runs_sync_from_a_worker_thread(devnet: Devnet, chatbot: ProviderHandle) -> None:
    """The same lines without ``await`` on og_inference_async.sync, called from a worker thread."""

    def run() -> dict[str, Any]:
        with Broker(devnet.accounts[11].private_key, network=devnet.network) as broker:
            seen = page_flow_sync(broker, chatbot.address)
            seen["thread"] = threading.current_thread() is not threading.main_thread()
            return seen

    seen = await anyio.to_thread.run_sync(run)
    assert seen == {**EXPECTED, "refund": seen["refund"], "thread": True} and seen["refund"] > 0


async def test_the_sync_broker_runs_inside_a_running_event_loop(
    devnet: Devnet, chatbot: ProviderHandle
) -> None:
    """In a thread whose own loop runs (as in Jupyter), blocking calls still work: the work runs elsewhere."""

    async def notebook_cell() -> dict[str, Any]:
        running = asyncio.get_running_loop()
        broker = create_broker(devnet.accounts[12].private_key, network=devnet.network)
        try:
            seen = page_flow_sync(broker, chatbot.address)
            seen["loop_running"] = running.is_running()
        finally:
            broker.close()
        return seen

    seen = await anyio.to_thread.run_sync(lambda: asyncio.run(notebook_cell()))
    assert seen == {**EXPECTED, "refund": seen["refund"], "loop_running": True}


async def test_sync_iterators_streams_and_lifecycle(devnet: Devnet, chatbot: ProviderHandle) -> None:
    """iter_services and chat_stream become plain iterators; close() is final; a second close does nothing."""

    def run() -> dict[str, Any]:
        broker = Broker(devnet.accounts[13].private_key, network=devnet.network)
        services = list(broker.inference.iter_services())
        broker.ledger.add_ledger(og_to_wei("3"))
        broker.inference.acknowledge_provider_signer(chatbot.address)
        chunks = [c.content for c in broker.inference.chat_stream(chatbot.address, QUESTION)]
        with broker.inference.chat_stream(chatbot.address, QUESTION) as stream:
            streamed = "".join(c.content for c in stream)
        final = stream.result
        verified = broker.wait_verified(final)
        broker.inference.verification = "off"
        policy = broker.inference.verification.mode
        balance = broker.get_wallet_balance()
        broker.close()
        broker.close()
        try:
            broker.ledger.get_ledger()
        except BrokerStateError:
            closed = True
        else:
            closed = False
        return {
            "services": [s.provider for s in services],
            "chunks": "".join(chunks) == streamed and bool(streamed),
            "fee": final.fee > 0,
            "verified": bool(verified),
            "policy": policy,
            "balance": balance > 0,
            "closed": closed,
        }

    seen = await anyio.to_thread.run_sync(run)
    assert chatbot.address in seen["services"]
    assert {k: v for k, v in seen.items() if k != "services"} == {
        "chunks": True,
        "fee": True,
        "verified": True,
        "policy": "off",
        "balance": True,
        "closed": True,
    }
