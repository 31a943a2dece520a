"""Discovery on the devnet: metadata, model catalogues, paging, filtering and status-API degradation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from og_inference_async import AsyncBroker, LimitTooLargeError, Network, ServiceNotFoundError
from og_inference_async._chain import inference_abi

from .chain_helpers import register_provider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_metadata_and_models(devnet: Any, chatbot: Any) -> None:
    """The endpoint ends in /v1/proxy; a model override is passed through; /v1/models lists the model."""
    async with AsyncBroker(network=devnet.network, rpc_url=devnet.rpc_url) as broker:
        meta = await broker.inference.get_service_metadata(chatbot.address)
        assert meta.endpoint == chatbot.url.rstrip("/") + "/v1/proxy"
        assert meta.model == chatbot.model and meta.service_type == "chatbot"
        assert (
            await broker.inference.get_service_metadata(chatbot.address, "other/model")
        ).model == "other/model"
        models = await broker.inference.get_provider_models(chatbot.address)
        assert chatbot.model in models.ids and models.default_model == chatbot.model
        with pytest.raises(ServiceNotFoundError):
            await broker.inference.get_service_metadata(devnet.accounts[5].address)


async def test_paging_and_filtering(devnet: Any) -> None:
    """iter_services pages past 50; unacknowledged services are hidden unless asked for."""
    for _ in range(52):
        await register_provider(devnet)
    hidden = await register_provider(devnet)
    revoke = inference_abi().fn("revokeTEESignerAcknowledgement").encode(hidden)
    await devnet.send_as(devnet.owner.address, devnet.inference, revoke)
    async with AsyncBroker(network=devnet.network, rpc_url=devnet.rpc_url) as broker:
        everything = [s async for s in broker.inference.iter_services(include_unacknowledged=True)]
        visible = [s async for s in broker.inference.iter_services()]
        assert len(everything) == 53 and len(visible) == 52
        assert hidden not in {s.provider for s in visible}
        assert len(await broker.inference.list_services(0, 50)) == 50
        with pytest.raises(LimitTooLargeError):
            await broker.inference.list_services(0, 51)
        details = await broker.inference.list_services_with_detail(0, 10)
        assert len(details) == 10 and all(d.health is None for d in details)  # devnet: no status API


def _with_status_api(devnet: Any) -> Network:
    return Network(
        name="devnet-with-status",
        chain_id=devnet.chain_id,
        rpc_url=devnet.rpc_url,
        ledger=devnet.ledger,
        inference=devnet.inference,
        status_api="http://status.test",
    )


async def test_status_api_health_is_merged(devnet: Any) -> None:
    """Health and model info from the status API are attached to the matching services."""
    provider = await register_provider(devnet, model="m/one")
    router = respx.mock(assert_all_called=False, assert_all_mocked=False)
    router.route(host="127.0.0.1").pass_through()
    router.get("http://status.test/health").respond(
        json={
            "services": [
                {
                    "provider": provider.lower(),
                    "status": "healthy",
                    "checks": {"uptime": 99.5},
                    "performance": {"response_time": {"avg": 120}},
                    "lastCheck": "2026-11-26T00:00:00Z",
                }
            ]
        }
    )
    router.get("http://status.test/models").respond(json={"data": [{"provider": provider, "id": "m/one"}]})
    with router:
        async with httpx.AsyncClient() as client:
            async with AsyncBroker(network=_with_status_api(devnet), http_client=client) as broker:
                (detail,) = [
                    d
                    for d in await broker.inference.list_services_with_detail()
                    if d.service.provider == provider
                ]
    assert detail.health is not None and detail.health.status == "healthy" and detail.health.uptime == 99.5
    assert detail.health.avg_response_time == 120.0
    assert detail.model_info == {"provider": provider, "id": "m/one"}


async def test_status_api_outage_degrades_cleanly(devnet: Any) -> None:
    """When the status API fails, services still come back, with no health attached."""
    await register_provider(devnet)
    router = respx.mock(assert_all_called=False, assert_all_mocked=False)
    router.route(host="127.0.0.1").pass_through()
    router.get("http://status.test/health").respond(503)
    router.get("http://status.test/models").mock(side_effect=httpx.ConnectError("down"))
    with router:
        async with httpx.AsyncClient() as client:
            async with AsyncBroker(network=_with_status_api(devnet), http_client=client) as broker:
                details = await broker.inference.list_services_with_detail()
    assert details and all(d.health is None and d.model_info is None for d in details)
