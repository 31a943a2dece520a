"""``broker.inference``: discovery, acknowledgement, request authentication and API keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from .._config import checksum
from .._exceptions import ContractRevertError, LimitTooLargeError, ServiceNotFoundError
from .._session import ApiKey
from ..types import Service, TxReceipt
from ._auth import ApiKeyRegistry, AuthManager, InMemoryApiKeyRegistry
from ._funding import FundingMixin
from ._requests import RequestsMixin

if TYPE_CHECKING:
    from .._broker import AsyncBroker

__all__ = ["ApiKeyRegistry", "InMemoryApiKeyRegistry", "InferenceAPI"]

MAX_PAGE = 50


class InferenceAPI(RequestsMixin, FundingMixin):
    """Inference operations of one broker. Get it as ``broker.inference``."""

    def __init__(self, broker: AsyncBroker, *, api_key_registry: ApiKeyRegistry | None = None) -> None:
        self._b = broker
        self.auth = AuthManager(broker, registry=api_key_registry)
        self._init_requests()
        self._init_funding()

    # -- discovery -------------------------------------------------------------------------------

    async def get_service(self, provider: str) -> Service:
        """The provider's on-chain service.

        Raises:
            ServiceNotFoundError: no service registered for that address on this network.
        """
        prov = checksum(provider, what="provider")
        try:
            return await self._b._chain_reader.get_service(prov)
        except ContractRevertError as exc:
            if isinstance(exc, ServiceNotFoundError):
                raise
            raise ServiceNotFoundError(f"provider {prov} has no service", identifier=prov) from exc

    async def list_services(
        self, offset: int = 0, limit: int = MAX_PAGE, *, include_unacknowledged: bool = False
    ) -> list[Service]:
        """One page of services (the contract allows at most 50 per call).

        Unacknowledged services (whose TEE signer 0G has not acknowledged) are filtered out after
        paging unless ``include_unacknowledged``, so a page may hold fewer than ``limit`` items.

        Raises:
            LimitTooLargeError: ``limit`` above 50 (checked before calling).
            ConfigError: negative offset or non-positive limit.
        """
        from .._exceptions import ConfigError

        if not isinstance(offset, int) or offset < 0:
            raise ConfigError("offset must be a non-negative int")
        if not isinstance(limit, int) or limit <= 0:
            raise ConfigError("limit must be a positive int")
        if limit > MAX_PAGE:
            raise LimitTooLargeError(
                f"limit {limit} is above the contract's maximum of {MAX_PAGE}; use iter_services()",
                error_args={"limit": limit, "max": MAX_PAGE},
            )
        services, _ = await self._b._chain_reader.get_all_services(offset, limit)
        return [s for s in services if include_unacknowledged or s.tee_signer_acknowledged]

    async def iter_services(self, *, include_unacknowledged: bool = False) -> AsyncIterator[Service]:
        """Every service, paging by 50 until the contract's total is reached."""
        offset = 0
        while True:
            services, total = await self._b._chain_reader.get_all_services(offset, MAX_PAGE)
            for s in services:
                if include_unacknowledged or s.tee_signer_acknowledged:
                    yield s
            offset += len(services)
            if not services or offset >= total:
                return

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
