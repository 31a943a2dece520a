"""Discovery: the providers' on-chain services, their model lists and the network's status API.

:class:`ServiceDirectory` reads one provider's service (fresh, or cached for
:data:`SERVICE_TTL` seconds with single-flight reads, for the request path);
:class:`DiscoveryService` lists and describes services.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import OGError, PageLimitError, ProviderResponseError
from .._redact import redact
from .._singleflight import SingleFlight
from .._transport import ProviderTransport
from .._validate import MAX_UINT256, check_bool, check_int, check_optional_str
from ..types import Service
from ..types.discovery import ProviderModels, ServiceDetail, ServiceHealth, ServiceMetadata
from ._common import provider_address
from ._verify import parse_additional_info

if TYPE_CHECKING:
    from .._chain import ChainReader

__all__ = ["MAX_PAGE", "SERVICE_TTL", "DiscoveryService", "ServiceDirectory"]

log = logging.getLogger(__name__)

#: The most services the contract returns per page.
MAX_PAGE = 50
#: Seconds a provider's on-chain service (URL, prices, signer) is trusted before it is read again.
SERVICE_TTL = 300.0
#: Bounds of the discovery reads (model lists, the status API).
DISCOVERY_TIMEOUT = 10.0
MAX_DISCOVERY_BYTES = 5 * 1024 * 1024


class ServiceDirectory:
    """One provider's on-chain service, read fresh or from a short cache.

    Args:
        contracts: the chain's contracts.
        clock: a monotonic clock for the cache (injectable for tests).
    """

    def __init__(self, contracts: ChainReader, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._contracts = contracts
        self._clock = clock
        self._services: dict[str, tuple[float, Service]] = {}
        self._flights: SingleFlight[str, Service] = SingleFlight()

    async def get(self, provider: str) -> Service:
        """The service as the chain has it now (``provider`` checksummed).

        Raises:
            ServiceNotFoundError: no service for that provider.
        """
        return await self._contracts.get_service(provider)

    async def cached(self, provider: str, *, fresh: bool = False) -> Service:
        """The service, cached for :data:`SERVICE_TTL` seconds (concurrent reads share one).

        Raises:
            ServiceNotFoundError: no service for that provider.
        """
        if not fresh:
            hit = self._services.get(provider)
            if hit is not None and hit[0] > self._clock():
                return hit[1]

        async def fetch() -> Service:
            service = await self.get(provider)
            self._services[provider] = (self._clock() + SERVICE_TTL, service)
            return service

        return await self._flights.run(provider, fetch)

    def remember(self, service: Service, ttl: float = SERVICE_TTL) -> None:
        """Cache ``service`` for ``ttl`` seconds (what a fresh read would have stored)."""
        self._services[service.provider] = (self._clock() + ttl, service)

    def forget(self, provider: str | None = None) -> None:
        """Drop the cached service of one provider (checksummed) or of all."""
        if provider is None:
            self._services.clear()
        else:
            self._services.pop(provider, None)


def _list_of(body: Any, key: str) -> list[dict[str, Any]]:
    items = body.get(key) if isinstance(body, dict) else None
    return [m for m in items if isinstance(m, dict)] if isinstance(items, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class DiscoveryService:
    """Lists and describes services.

    Args:
        contracts: the chain's contracts.
        directory: single-service reads.
        transport: for the providers' model lists and the status API.
        status_api: the network's status API base URL, when it has one.
    """

    def __init__(
        self,
        contracts: ChainReader,
        directory: ServiceDirectory,
        transport: ProviderTransport,
        *,
        status_api: str | None = None,
    ) -> None:
        self._contracts = contracts
        self._directory = directory
        self._transport = transport
        self._status_api = status_api

    async def get_service(self, provider: str) -> Service:
        """The provider's on-chain service.

        Raises:
            ServiceNotFoundError: no service registered for that address on this network.
        """
        return await self._directory.get(provider_address(provider))

    async def list_services(
        self, offset: int = 0, limit: int = MAX_PAGE, *, include_unacknowledged: bool = False
    ) -> list[Service]:
        """One page of services (the contract allows at most 50 per call).

        Unacknowledged services (whose TEE signer 0G has not acknowledged) are filtered out after
        paging unless ``include_unacknowledged``, so a page may hold fewer than ``limit`` items.

        Raises:
            PageLimitError: ``limit`` above 50 (checked before calling; a ``ConfigError``).
            ConfigError: ``offset`` / ``limit`` not ints (bools refused), a negative offset or a
                non-positive limit.
        """
        check_int("offset", offset, minimum=0, maximum=MAX_UINT256)
        check_int("limit", limit, minimum=1)
        check_bool("include_unacknowledged", include_unacknowledged)
        if limit > MAX_PAGE:
            raise PageLimitError(
                f"limit {limit} is above the contract's maximum of {MAX_PAGE}; use iter_services()",
                limit=limit,
                maximum=MAX_PAGE,
            )
        services, _ = await self._contracts.get_all_services(offset, limit)
        return [s for s in services if include_unacknowledged or s.tee_signer_acknowledged]

    async def iter_services(self, *, include_unacknowledged: bool = False) -> AsyncIterator[Service]:
        """Every service, paging by 50 until the contract's total is reached."""
        check_bool("include_unacknowledged", include_unacknowledged)
        offset = 0
        while True:
            services, total = await self._contracts.get_all_services(offset, MAX_PAGE)
            for s in services:
                if include_unacknowledged or s.tee_signer_acknowledged:
                    yield s
            offset += len(services)
            if not services or offset >= total:
                return

    async def get_service_metadata(self, provider: str, model: str | None = None) -> ServiceMetadata:
        """The OpenAI-compatible endpoint (``<url>/v1/proxy``) and model for ``provider``.

        Args:
            provider: the provider address.
            model: a model id to use instead of the service's default (multi-model providers).

        Raises:
            ConfigError: ``model`` is not a non-empty str.
            ServiceNotFoundError: no service for that address on this network.
        """
        check_optional_str("model", model)
        svc = await self.get_service(provider)
        return ServiceMetadata(
            endpoint=svc.endpoint,
            model=model or svc.model,
            provider=svc.provider,
            service_type=svc.service_type,
        )

    async def get_provider_models(self, provider: str) -> ProviderModels:
        """The provider's model catalogue (``GET <url>/v1/models``, no auth, 10 s, 5 MB at most).

        Raises:
            ServiceNotFoundError: no service for that address.
            ProviderConnectionError: the provider could not be reached in time.
            ProviderError: the provider answered with an error status (typed by status).
            ProviderResponseError: the answer has no ``data`` array.
        """
        svc = await self.get_service(provider)
        url = svc.url.rstrip("/") + "/v1/models"
        body = await self._get_json(url, provider=svc.provider, what="get_provider_models", retry=True)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProviderResponseError(
                'provider /v1/models returned an unexpected response shape (missing "data" array)',
                provider=svc.provider,
            )
        return ProviderModels(
            provider=svc.provider,
            url=svc.url,
            default_model=svc.model,
            multi_model=parse_additional_info(svc).get("MultiModel") is True,
            models=tuple(m for m in data if isinstance(m, dict)),
        )

    async def list_services_with_detail(
        self, offset: int = 0, limit: int = MAX_PAGE, *, include_unacknowledged: bool = False
    ) -> list[ServiceDetail]:
        """:meth:`list_services` plus health and model info from the network's status API.

        The status API is best effort: when the network has none (the devnet, custom networks) or
        it cannot be reached within 10 s, the services come back with ``health=None``.
        """
        services = await self.list_services(offset, limit, include_unacknowledged=include_unacknowledged)
        base = self._status_api
        health: dict[str, ServiceHealth] = {}
        infos: dict[tuple[str, str], dict[str, Any]] = {}
        if base:
            results: dict[str, Any] = {}

            async def fetch(name: str) -> None:
                try:
                    results[name] = await self._get_json(
                        f"{base}/{name}", provider=None, what="status API", retry=False
                    )
                except OGError as exc:
                    log.info("status API %s unavailable: %s", name, redact(str(exc)))

            async with anyio.create_task_group() as tg:
                tg.start_soon(fetch, "health")
                tg.start_soon(fetch, "models")
            for m in _list_of(results.get("health"), "services"):
                status = m.get("status")
                checks = _dict(m.get("checks"))
                rt = _dict(_dict(m.get("performance")).get("response_time"))
                if isinstance(m.get("provider"), str) and isinstance(status, str):
                    health[m["provider"].lower()] = ServiceHealth(
                        status=status,
                        uptime=_number(checks.get("uptime")),
                        avg_response_time=_number(rt.get("avg")) or 0.0,
                        last_check=str(m["lastCheck"]) if m.get("lastCheck") is not None else None,
                    )
            for m in _list_of(results.get("models"), "data"):
                if isinstance(m.get("provider"), str) and isinstance(m.get("id"), str):
                    infos[(m["provider"].lower(), m["id"])] = m
        return [
            ServiceDetail(
                service=s,
                health=health.get(s.provider.lower()),
                model_info=infos.get((s.provider.lower(), s.model)),
            )
            for s in services
        ]

    async def _get_json(self, url: str, *, provider: str | None, what: str, retry: bool) -> Any:
        """GET ``url`` without auth, bounded to 10 s and 5 MB, and parse the JSON body."""
        reply = await self._transport.request(
            provider,
            "GET",
            url,
            what=what,
            idempotent=True,
            auth=False,
            retry=retry,
            deadline=DISCOVERY_TIMEOUT,
            max_bytes=MAX_DISCOVERY_BYTES,
        )
        return reply.json()
