"""``broker.inference``: discovery, acknowledgement, request authentication and API keys."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from .._config import checksum
from .._exceptions import (
    OGError,
    PageLimitError,
    ProviderConnectionError,
    ProviderResponseError,
)
from .._http import send as http_send
from .._redact import redact
from .._session import ApiKey
from .._validate import MAX_UINT256, check_bool, check_int, check_optional_str
from ..types import Service, TxReceipt
from ..types.discovery import ProviderModels, ServiceDetail, ServiceHealth, ServiceMetadata
from ._auth import ApiKeyRegistry, AuthManager, InMemoryApiKeyRegistry
from ._funding import FundingMixin
from ._requests import RequestsMixin

if TYPE_CHECKING:
    from .._broker import AsyncBroker

__all__ = ["ApiKeyRegistry", "InMemoryApiKeyRegistry", "InferenceAPI"]

MAX_PAGE = 50
DISCOVERY_TIMEOUT = 10.0
MAX_DISCOVERY_BYTES = 5 * 1024 * 1024

log = logging.getLogger(__name__)


def _additional_info(svc: Service) -> dict[str, Any]:
    try:
        info = json.loads(svc.additional_info) if svc.additional_info else {}
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _list_of(body: Any, key: str) -> list[dict[str, Any]]:
    items = body.get(key) if isinstance(body, dict) else None
    return [m for m in items if isinstance(m, dict)] if isinstance(items, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class InferenceAPI(RequestsMixin, FundingMixin):
    """Inference operations of one broker. Get it as ``broker.inference``."""

    def __init__(self, broker: AsyncBroker, *, api_key_registry: ApiKeyRegistry | None = None) -> None:
        self._b = broker
        self.auth = AuthManager(broker, registry=api_key_registry, policy=broker.session_policy)
        self._init_requests()
        self._init_funding()

    # -- discovery -------------------------------------------------------------------------------

    async def get_service(self, provider: str) -> Service:
        """The provider's on-chain service.

        Raises:
            ServiceNotFoundError: no service registered for that address on this network.
        """
        prov = checksum(provider, what="provider")
        return await self._b._chain_reader.get_service(prov)

    async def list_services(
        self, offset: int = 0, limit: int = MAX_PAGE, *, include_unacknowledged: bool = False
    ) -> list[Service]:
        """One page of services (the contract allows at most 50 per call).

        Unacknowledged services (whose TEE signer 0G has not acknowledged) are filtered out after
        paging unless ``include_unacknowledged``, so a page may hold fewer than ``limit`` items.

        Raises:
            LimitTooLargeError: ``limit`` above 50 (checked before calling).
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
        services, _ = await self._b._chain_reader.get_all_services(offset, limit)
        return [s for s in services if include_unacknowledged or s.tee_signer_acknowledged]

    async def iter_services(self, *, include_unacknowledged: bool = False) -> AsyncIterator[Service]:
        """Every service, paging by 50 until the contract's total is reached."""
        check_bool("include_unacknowledged", include_unacknowledged)
        offset = 0
        while True:
            services, total = await self._b._chain_reader.get_all_services(offset, MAX_PAGE)
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
            ProviderResponseError: the answer has no ``data`` array.
        """
        svc = await self.get_service(provider)
        url = svc.url.rstrip("/") + "/v1/models"
        reply = await self._get_json(url, provider=svc.provider, what="get_provider_models")
        data = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(data, list):
            raise ProviderResponseError(
                'provider /v1/models returned an unexpected response shape (missing "data" array)',
                provider=svc.provider,
            )
        return ProviderModels(
            provider=svc.provider,
            url=svc.url,
            default_model=svc.model,
            multi_model=_additional_info(svc).get("MultiModel") is True,
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
        base = self._b.network.status_api
        health: dict[str, ServiceHealth] = {}
        infos: dict[tuple[str, str], dict[str, Any]] = {}
        if base:
            results: dict[str, Any] = {}

            async def fetch(name: str) -> None:
                try:
                    results[name] = await self._get_json(f"{base}/{name}", provider=None, what="status API")
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

    async def _get_json(self, url: str, *, provider: str | None, what: str) -> Any:
        """GET ``url`` through the shared client with a 10 s bound and a 5 MB cap; parse JSON."""
        try:
            with anyio.fail_after(DISCOVERY_TIMEOUT):
                reply = await http_send(self._b.http, "GET", url, headers={}, provider=provider, what=what)
        except TimeoutError:
            raise ProviderConnectionError(
                f"{what}: no answer within {DISCOVERY_TIMEOUT:g} s", provider=provider
            ) from None
        if len(reply.raw) > MAX_DISCOVERY_BYTES:
            raise ProviderResponseError(f"{what}: the answer is larger than 5 MB", provider=provider)
        if reply.status >= 400:
            raise ProviderResponseError(
                f"{what}: HTTP {reply.status}", status_code=reply.status, provider=provider
            )
        return reply.json()

    # -- acknowledgement ---------------------------------------------------------------------------

    async def acknowledged(self, provider: str) -> bool:
        """Whether this wallet acknowledged ``provider``'s TEE signer (``False`` without a sub-account)."""
        return await self.auth.is_acknowledged(provider, fresh=True)

    # -- headers and keys --------------------------------------------------------------------------

    async def get_request_headers(self, provider: str) -> dict[str, str]:
        """The ``Authorization`` header for a request to ``provider``.

        The ephemeral session token (tokenId 255, 24 h) is cached and reused while more than an
        hour is left; concurrent callers share one signature.

        Raises:
            NotAcknowledgedError: the provider is not acknowledged (or there is no sub-account).
        """
        return await self.auth.get_request_headers(provider)

    async def create_api_key(
        self, provider: str, expires_in: int | None = None, token_id: int | None = None
    ) -> ApiKey:
        """Issue a persistent API key (``app-sk-...``) usable as an OpenAI client's ``api_key``.

        Args:
            provider: the provider address.
            expires_in: lifetime in milliseconds; ``None`` = never expires.
            token_id: 0..254; default: the lowest free id.

        Raises:
            NotAcknowledgedError: no sub-account with the provider.
            ApiKeyError: the id is unusable or all ids are taken.
        """
        return await self.auth.create_api_key(provider, expires_in=expires_in, token_id=token_id)

    async def revoke_api_key(self, provider: str, token_id: int) -> TxReceipt:
        """Revoke one API key on chain. See :meth:`AuthManager.revoke_api_key`."""
        return await self.auth.revoke_api_key(provider, token_id)

    async def revoke_api_keys(self, provider: str, token_ids: list[int]) -> TxReceipt:
        """Revoke several API keys in one transaction."""
        return await self.auth.revoke_api_keys(provider, token_ids)

    async def list_revoked_api_keys(self, provider: str) -> list[int]:
        """Ids revoked individually in the current generation."""
        return await self.auth.list_revoked_api_keys(provider)

    async def revoke_all_tokens(self, provider: str) -> TxReceipt:
        """Invalidate every session token and API key for ``provider`` (generation bump)."""
        return await self.auth.revoke_all_tokens(provider)
