"""``broker.inference``: the facade over the inference services.

Every public method keeps the official TS SDK's name (in snake case) and delegates in one line to
the service that does the work; the services and who builds them are listed in ``_graph``:

=========================  ====================================================================
service                    methods
=========================  ====================================================================
``discovery``              ``get_service``, ``list_services``, ``iter_services``,
                           ``get_service_metadata``, ``get_provider_models``,
                           ``list_services_with_detail``
``auth``                   ``acknowledged``, ``get_request_headers``, API keys and revocation
``onboarding``             ``acknowledge_provider_signer``, ``ensure_ready``
``chat`` / ``images`` /    ``chat``, ``chat_stream``, ``openai_client``; ``generate_image``,
``audio``                  ``edit_image``, ``generate_image_async``, ``wait_image_job``;
                           ``transcribe``
``verification``           ``process_response``, ``verify_service``
``funding``                ``start_auto_funding``, ``stop_auto_funding``, ``has_auto_funding``,
                           ``auto_funding_stats``
``settlement``             ``wait_settled``, ``get_refunds``, ``complete_refunds``
=========================  ====================================================================

A delegating method carries the docstring of the service method it calls. The policies
(``verification``, ``retry_policy``) can be set before the broker opens; the reads of local
state (``local_fees``, ``has_auto_funding``, ``auto_funding_stats``, ...) work once it has
opened, also after it closed; every other call needs an open broker
(:class:`~og_inference_async.BrokerStateError` otherwise).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._retry import RequestRetryPolicy
from .._session import ApiKey
from .._units import Amount
from ..types import Service, TxReceipt
from ..types.discovery import ProviderModels, ServiceDetail, ServiceMetadata
from ..types.funding import (
    AckResult,
    AutoFundingStats,
    ReadyReport,
    RefundCompletion,
    RefundStatus,
    SettlementReport,
    TopUpEvent,
)
from ..types.inference import (
    ChatResult,
    ImageResult,
    ServiceVerification,
    TranscriptionResult,
    VerificationResult,
)
from ._common import RequestPolicies, provider_address
from ._graph import InferenceServices
from ._stream import ChatStream
from ._verify import VerificationPolicy
from .audio import AudioRequests
from .auth import ApiKeyRegistry, AuthManager, InMemoryApiKeyRegistry
from .discovery import MAX_PAGE, DiscoveryService
from .funding import DEFAULT_BUFFER, DEFAULT_MIN_TRANSFER, AutoFundingService
from .images import ImageRequests
from .onboarding import DEFAULT_MIN_BALANCE, OnboardingService
from .requests import ChatRequests
from .settlement import SettlementService
from .verification import VerificationService

if TYPE_CHECKING:
    import openai

__all__ = ["ApiKeyRegistry", "InMemoryApiKeyRegistry", "InferenceAPI", "InferenceServices", "RequestPolicies"]

F = TypeVar("F", bound=Callable[..., Any])


def _delegates_to(target: Callable[..., Any]) -> Callable[[F], F]:
    """Give a facade method the docstring of the service method it calls."""

    def apply(method: F) -> F:
        method.__doc__ = target.__doc__
        return method

    return apply


class InferenceAPI:
    """Inference operations of one broker. Get it as ``broker.inference``.

    Args:
        services: returns the open broker's services (raises ``BrokerStateError`` when the
            broker is not open).
        policies: the verification and retry policies, shared with the services.
        state: returns the services for reads of local state, which stay possible after the
            broker closed (default: ``services``).
    """

    def __init__(
        self,
        services: Callable[[], InferenceServices],
        policies: RequestPolicies,
        *,
        state: Callable[[], InferenceServices] | None = None,
    ) -> None:
        self._s = services
        self._state = state or services
        self._policies = policies

    # -- configuration ---------------------------------------------------------------------------

    @property
    def verification(self) -> VerificationPolicy:
        """The verification policy of this broker's requests (settable with a mode name)."""
        return self._policies.verification

    @verification.setter
    def verification(self, value: str | VerificationPolicy) -> None:
        self._policies.verification = value

    @property
    def retry_policy(self) -> RequestRetryPolicy:
        """The :class:`RequestRetryPolicy` of this broker's provider requests."""
        return self._policies.retry

    @retry_policy.setter
    def retry_policy(self, value: RequestRetryPolicy) -> None:
        self._policies.retry = value

    @property
    def auth(self) -> AuthManager:
        """Session headers, account reads and API keys (the session-token cache is ``auth.tokens``)."""
        return self._s().auth

    # -- discovery -------------------------------------------------------------------------------

    @_delegates_to(DiscoveryService.get_service)
    async def get_service(self, provider: str) -> Service:
        return await self._s().discovery.get_service(provider)

    @_delegates_to(DiscoveryService.list_services)
    async def list_services(
        self, offset: int = 0, limit: int = MAX_PAGE, *, include_unacknowledged: bool = False
    ) -> list[Service]:
        return await self._s().discovery.list_services(
            offset, limit, include_unacknowledged=include_unacknowledged
        )

    @_delegates_to(DiscoveryService.iter_services)
    def iter_services(self, *, include_unacknowledged: bool = False) -> AsyncIterator[Service]:
        return self._s().discovery.iter_services(include_unacknowledged=include_unacknowledged)

    @_delegates_to(DiscoveryService.get_service_metadata)
    async def get_service_metadata(self, provider: str, model: str | None = None) -> ServiceMetadata:
        return await self._s().discovery.get_service_metadata(provider, model)

    @_delegates_to(DiscoveryService.get_provider_models)
    async def get_provider_models(self, provider: str) -> ProviderModels:
        return await self._s().discovery.get_provider_models(provider)

    @_delegates_to(DiscoveryService.list_services_with_detail)
    async def list_services_with_detail(
        self, offset: int = 0, limit: int = MAX_PAGE, *, include_unacknowledged: bool = False
    ) -> list[ServiceDetail]:
        return await self._s().discovery.list_services_with_detail(
            offset, limit, include_unacknowledged=include_unacknowledged
        )

    def forget_service(self, provider: str | None = None) -> None:
        """Drop cached service metadata (URL, prices, signer) of one provider or all."""
        self._state().directory.forget(None if provider is None else provider_address(provider))

    # -- acknowledgement, headers and keys -------------------------------------------------------

    async def acknowledged(self, provider: str) -> bool:
        """Whether this wallet acknowledged ``provider``'s TEE signer (``False`` without a sub-account)."""
        return await self._s().auth.is_acknowledged(provider, fresh=True)

    @_delegates_to(AuthManager.get_request_headers)
    async def get_request_headers(self, provider: str) -> dict[str, str]:
        return await self._s().auth.get_request_headers(provider)

    @_delegates_to(AuthManager.create_api_key)
    async def create_api_key(
        self, provider: str, expires_in: int | None = None, token_id: int | None = None
    ) -> ApiKey:
        return await self._s().auth.create_api_key(provider, expires_in=expires_in, token_id=token_id)

    @_delegates_to(AuthManager.revoke_api_key)
    async def revoke_api_key(self, provider: str, token_id: int) -> TxReceipt:
        return await self._s().auth.revoke_api_key(provider, token_id)

    @_delegates_to(AuthManager.revoke_api_keys)
    async def revoke_api_keys(self, provider: str, token_ids: list[int]) -> TxReceipt:
        return await self._s().auth.revoke_api_keys(provider, token_ids)

    @_delegates_to(AuthManager.list_revoked_api_keys)
    async def list_revoked_api_keys(self, provider: str) -> list[int]:
        return await self._s().auth.list_revoked_api_keys(provider)

    @_delegates_to(AuthManager.revoke_all_tokens)
    async def revoke_all_tokens(self, provider: str) -> TxReceipt:
        return await self._s().auth.revoke_all_tokens(provider)

    # -- onboarding ------------------------------------------------------------------------------

    @_delegates_to(OnboardingService.acknowledge_provider_signer)
    async def acknowledge_provider_signer(
        self, provider: str, *, initial_amount: Amount | None = None
    ) -> AckResult:
        return await self._s().onboarding.acknowledge_provider_signer(provider, initial_amount=initial_amount)

    @_delegates_to(OnboardingService.ensure_ready)
    async def ensure_ready(
        self,
        provider: str,
        *,
        min_balance: Amount = DEFAULT_MIN_BALANCE,
        create_ledger: bool = False,
        ledger_amount: Amount | None = None,
    ) -> ReadyReport:
        return await self._s().onboarding.ensure_ready(
            provider, min_balance=min_balance, create_ledger=create_ledger, ledger_amount=ledger_amount
        )

    # -- requests --------------------------------------------------------------------------------

    @_delegates_to(ChatRequests.chat)
    async def chat(
        self,
        provider: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> ChatResult:
        return await self._s().chat.chat(provider, messages, model=model, verify=verify, **params)

    @_delegates_to(ChatRequests.chat_stream)
    def chat_stream(
        self,
        provider: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        verify: str | VerificationPolicy | None = None,
        include_usage: bool = True,
        drain_on_exit: bool = True,
        drain_timeout: float = 60.0,
        hold_until_verified: bool = False,
        **params: Any,
    ) -> ChatStream:
        return self._s().chat.chat_stream(
            provider,
            messages,
            model=model,
            verify=verify,
            include_usage=include_usage,
            drain_on_exit=drain_on_exit,
            drain_timeout=drain_timeout,
            hold_until_verified=hold_until_verified,
            **params,
        )

    @_delegates_to(ChatRequests.openai_client)
    async def openai_client(
        self, provider: str, *, api_key: str | None = None, **kwargs: Any
    ) -> openai.AsyncOpenAI:
        return await self._s().chat.openai_client(provider, api_key=api_key, **kwargs)

    @_delegates_to(ImageRequests.generate_image)
    async def generate_image(
        self,
        provider: str,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        model: str | None = None,
        response_format: str | None = None,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> ImageResult:
        return await self._s().images.generate_image(
            provider,
            prompt,
            n=n,
            size=size,
            model=model,
            response_format=response_format,
            verify=verify,
            **params,
        )

    @_delegates_to(ImageRequests.edit_image)
    async def edit_image(
        self,
        provider: str,
        image: bytes | str | os.PathLike[str],
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        model: str | None = None,
        response_format: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> ImageResult:
        return await self._s().images.edit_image(
            provider,
            image,
            prompt,
            n=n,
            size=size,
            model=model,
            response_format=response_format,
            filename=filename,
            content_type=content_type,
            verify=verify,
            **params,
        )

    @_delegates_to(ImageRequests.generate_image_async)
    async def generate_image_async(
        self,
        provider: str,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        model: str | None = None,
        response_format: str | None = None,
        max_wait: float = 300.0,
        max_polls: int = 600,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> ImageResult:
        return await self._s().images.generate_image_async(
            provider,
            prompt,
            n=n,
            size=size,
            model=model,
            response_format=response_format,
            max_wait=max_wait,
            max_polls=max_polls,
            verify=verify,
            **params,
        )

    @_delegates_to(ImageRequests.wait_image_job)
    async def wait_image_job(
        self,
        provider: str,
        job_id: str,
        *,
        max_wait: float = 300.0,
        max_polls: int = 600,
        verify: str | VerificationPolicy | None = None,
        n: int | None = None,
        model: str | None = None,
        request_sha256: str | None = None,
    ) -> ImageResult:
        return await self._s().images.wait_image_job(
            provider,
            job_id,
            max_wait=max_wait,
            max_polls=max_polls,
            verify=verify,
            n=n,
            model=model,
            request_sha256=request_sha256,
        )

    @_delegates_to(AudioRequests.transcribe)
    async def transcribe(
        self,
        provider: str,
        audio: bytes | str | os.PathLike[str],
        filename: str | None = None,
        *,
        model: str | None = None,
        language: str | None = None,
        response_format: str | None = None,
        content_type: str | None = None,
        verify: str | VerificationPolicy | None = None,
        **params: Any,
    ) -> TranscriptionResult:
        return await self._s().audio.transcribe(
            provider,
            audio,
            filename,
            model=model,
            language=language,
            response_format=response_format,
            content_type=content_type,
            verify=verify,
            **params,
        )

    # -- verification and local fees -------------------------------------------------------------

    @_delegates_to(VerificationService.process_response)
    async def process_response(
        self,
        provider: str,
        chat_id: str | None,
        *,
        request_body: bytes | None = None,
        response_body: bytes | None = None,
        usage: Mapping[str, Any] | str | None = None,
        model: str | None = None,
    ) -> VerificationResult:
        return await self._s().verification.process_response(
            provider,
            chat_id,
            request_body=request_body,
            response_body=response_body,
            usage=usage,
            model=model,
        )

    @_delegates_to(VerificationService.verify_service)
    async def verify_service(self, provider: str, output_dir: str | None = None) -> ServiceVerification:
        return await self._s().verification.verify_service(provider, output_dir)

    def local_fees(self, provider: str) -> int:
        """Fees (wei) this broker estimated for ``provider``'s requests since start or the last reset.

        The estimate uses the on-chain prices and the usage each response reported (PROTOCOL 4.6).
        """
        return self._state().fees.total(provider_address(provider))

    def reset_local_fees(self, provider: str | None = None) -> None:
        """Forget the locally counted fees of one provider (or of all), e.g. after a settlement."""
        self._state().fees.reset(None if provider is None else provider_address(provider))

    # -- auto-funding ----------------------------------------------------------------------------

    @_delegates_to(AutoFundingService.start_auto_funding)
    async def start_auto_funding(
        self,
        provider: str,
        *,
        interval: float = 30.0,
        buffer: Amount = DEFAULT_BUFFER,
        min_transfer: Amount = DEFAULT_MIN_TRANSFER,
        on_error: Callable[[Exception], Any] | None = None,
        on_top_up: Callable[[TopUpEvent], Any] | None = None,
    ) -> AutoFundingStats:
        return await self._s().funding.start_auto_funding(
            provider,
            interval=interval,
            buffer=buffer,
            min_transfer=min_transfer,
            on_error=on_error,
            on_top_up=on_top_up,
        )

    @_delegates_to(AutoFundingService.stop_auto_funding)
    async def stop_auto_funding(self, provider: str | None = None) -> None:
        await self._s().funding.stop_auto_funding(provider)

    @_delegates_to(AutoFundingService.has_auto_funding)
    def has_auto_funding(self, provider: str) -> bool:
        return self._state().funding.has_auto_funding(provider)

    @_delegates_to(AutoFundingService.auto_funding_stats)
    def auto_funding_stats(self, provider: str) -> AutoFundingStats | None:
        return self._state().funding.auto_funding_stats(provider)

    # -- settlement and refunds ------------------------------------------------------------------

    @_delegates_to(SettlementService.wait_settled)
    async def wait_settled(
        self,
        provider: str,
        *,
        timeout: float = 120.0,  # noqa: ASYNC109 - a bounded poll; the bound is part of the API
        poll_interval: float = 1.0,
    ) -> SettlementReport:
        return await self._s().settlement.wait_settled(provider, timeout=timeout, poll_interval=poll_interval)

    @_delegates_to(SettlementService.get_refunds)
    async def get_refunds(self, provider: str | None = None) -> list[RefundStatus]:
        return await self._s().settlement.get_refunds(provider)

    @_delegates_to(SettlementService.complete_refunds)
    async def complete_refunds(self, provider: str | None = None) -> RefundCompletion:
        return await self._s().settlement.complete_refunds(provider)
