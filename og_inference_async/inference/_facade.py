"""``broker.inference``: the facade over the inference services (exported by the package).

Every public method keeps the official TS SDK's name (in snake case) and delegates in one line
to the service that does the work (the services and who builds them are listed in ``_graph``)::

    broker.inference.chat(...)  ->  services.chat.chat(...)

A delegation is a :class:`_Delegate`: looking it up on ``broker.inference`` gives the service's
bound method itself (its signature, docstring and types), so a call costs what a direct call to
the service costs. ``with_options(...)`` returns a view whose request methods apply default
call options (timeout, retries, extra headers, query and body), the openai shape. The
policies (``verification``, ``retry_policy``) can be set before the broker opens; the reads of
local state (``local_fees``, ``has_auto_funding``, ``auto_funding_stats``, ...) work once it has
opened, also after it closed; every other call needs an open broker
(:class:`~og_inference_async.BrokerStateError` otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from .._options import CALL_OPTIONS, CallOptions
from .._retry import RequestRetryPolicy
from ._common import RequestPolicies, provider_address
from ._graph import InferenceServices
from ._verify import VerificationPolicy
from .audio import AudioRequests
from .auth import ApiKeyRegistry, AuthManager, InMemoryApiKeyRegistry
from .discovery import DiscoveryService
from .funding import AutoFundingService
from .images import ImageRequests
from .onboarding import OnboardingService
from .requests import ChatRequests, FeeEstimator
from .router import RouterService
from .settlement import SettlementService
from .verification import VerificationService

__all__ = ["ApiKeyRegistry", "InMemoryApiKeyRegistry", "InferenceAPI", "InferenceServices", "RequestPolicies"]

P = ParamSpec("P")
R = TypeVar("R")


class _HasServices(Protocol):
    """A namespace that delegates: ``_s()`` gives the open broker's services, ``_state()`` them for reads."""

    _s: Callable[[], InferenceServices]
    _state: Callable[[], InferenceServices]
    _options: CallOptions | None


class _Delegate(Generic[P, R]):
    """A facade method that calls ``<service>.<method>`` of the broker's services.

    Args:
        service: the field of :class:`InferenceServices` that holds the service.
        method: the service's method (its name, signature and docstring are the facade's).
        local: a read of local state, allowed once the broker has opened, also after it closed.
        request: a provider request that takes call options (a ``with_options`` view adds its own).
    """

    def __init__(
        self,
        service: str,
        method: Callable[Concatenate[Any, P], R],
        *,
        local: bool = False,
        request: bool = False,
    ) -> None:
        self._service = service
        self._name = method.__name__
        self._local = local
        self._request = request
        self.__doc__ = method.__doc__
        self.__wrapped__ = method

    @overload
    def __get__(self, api: None, owner: type[Any]) -> _Delegate[P, R]: ...

    @overload
    def __get__(self, api: _HasServices, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, api: _HasServices | None, owner: type[Any]) -> _Delegate[P, R] | Callable[P, R]:
        if api is None:
            return self
        # Resolved at lookup, not at call: the service's own bound method is handed out, so a call
        # costs one broker-state check more than calling the service directly (no wrapper frame).
        services = api._state() if self._local else api._s()
        method: Callable[P, R] = getattr(getattr(services, self._service), self._name)
        if not self._request:
            return method
        defaults = api._options
        return method if defaults is None else _with_defaults(method, defaults)


def _with_defaults(method: Callable[P, R], defaults: CallOptions) -> Callable[P, R]:
    """``method`` called with a view's default call options under the call's own."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        own = {name: kwargs.pop(name) for name in CALL_OPTIONS & kwargs.keys()}
        merged = defaults.merged(CallOptions.of(own) if own else None)
        return method(*args, **kwargs, **merged.as_kwargs())

    call.__doc__ = method.__doc__
    return call


class _Alias:
    """Another SDK's name for a delegation: looking it up gives the same bound method.

    Args:
        delegate: the delegation it names.
        origin: whose name it is (for the docstring).
    """

    def __init__(self, delegate: _Delegate[Any, Any], origin: str) -> None:
        self._delegate = delegate
        self.__doc__ = f"``{delegate._name}`` under {origin}'s name.\n\n{delegate.__doc__ or ''}"

    def __get__(self, api: _HasServices | None, owner: type[Any]) -> Any:
        return self if api is None else self._delegate.__get__(api, owner)


class InferenceAPI:
    """Inference operations of one broker. Get it as ``broker.inference``.

    Args:
        services: returns the open broker's services (raises ``BrokerStateError`` when the
            broker is not open).
        policies: the verification and retry policies, shared with the services.
        state: returns the services for reads of local state, which stay possible after the
            broker closed (default: ``services``).
        options: default call options of the request methods (a :meth:`with_options` view).
    """

    def __init__(
        self,
        services: Callable[[], InferenceServices],
        policies: RequestPolicies,
        *,
        state: Callable[[], InferenceServices] | None = None,
        options: CallOptions | None = None,
    ) -> None:
        self._s = services
        self._state = state or services
        self._policies = policies
        self._options = options

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> InferenceAPI:
        """A view of this namespace whose requests use these call options by default (openai's shape).

        The view shares the broker, its pool, caches and policies; only the defaults of the
        request methods (``chat``, ``chat_stream``, ``generate_image``, ``edit_image``,
        ``generate_image_async``, ``wait_image_job``, ``transcribe``) differ. A call's own
        options win; mappings merge key by key. Views of views add up::

            fast = broker.inference.with_options(timeout=10, max_retries=0)
            result = await fast.chat(provider, messages)

        Args:
            timeout: seconds each attempt may take (connect, write, pool and each read).
            max_retries: retries after the first attempt (the attempts of ``retry_policy``
                become ``max_retries + 1``; only billing-safe retries are ever made).
            extra_headers: headers added to every request (not ``Authorization``,
                ``Content-Type``, ``Accept-Encoding``: the SDK sets those).
            extra_query: query parameters added to every request URL.
            extra_body: body parameters (form fields for uploads) added to every request.

        Returns:
            The view (an :class:`InferenceAPI`).

        Raises:
            ConfigError: a bad value (nothing is sent).
        """
        given = {
            "timeout": timeout,
            "max_retries": max_retries,
            "extra_headers": extra_headers,
            "extra_query": extra_query,
            "extra_body": extra_body,
        }
        own = CallOptions.of({k: v for k, v in given.items() if v is not None})
        merged = own if self._options is None else self._options.merged(own)
        return InferenceAPI(self._s, self._policies, state=self._state, options=merged)

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
        """The :class:`RequestRetryPolicy` of this broker's provider requests (settable).

        The one place of provider retry configuration, also given as ``AsyncBroker(request_retry=)``;
        per call or per :meth:`with_options` view, ``max_retries=`` overrides its attempts. The
        chain's JSON-RPC retries are another policy: ``AsyncBroker(retry=RetryPolicy(...))``.
        """
        return self._policies.retry

    @retry_policy.setter
    def retry_policy(self, value: RequestRetryPolicy) -> None:
        self._policies.retry = value

    @property
    def auth(self) -> AuthManager:
        """Session headers, account reads and API keys (the session-token cache is ``auth.tokens``)."""
        return self._s().auth

    # -- discovery -------------------------------------------------------------------------------

    get_service = _Delegate("discovery", DiscoveryService.get_service)
    list_services = _Delegate("discovery", DiscoveryService.list_services)
    list_service = _Alias(list_services, "the TS SDK's and 0g-inference-sdk")
    iter_services = _Delegate("discovery", DiscoveryService.iter_services)
    get_service_metadata = _Delegate("discovery", DiscoveryService.get_service_metadata)
    get_provider_models = _Delegate("discovery", DiscoveryService.get_provider_models)
    list_services_with_detail = _Delegate("discovery", DiscoveryService.list_services_with_detail)
    list_service_with_detail = _Alias(list_services_with_detail, "the TS SDK's and 0g-inference-sdk")

    def forget_service(self, provider: str | None = None) -> None:
        """Drop cached service metadata (URL, prices, signer) of one provider or all."""
        self._state().directory.forget(None if provider is None else provider_address(provider))

    # -- acknowledgement, headers and keys -------------------------------------------------------

    async def acknowledged(self, provider: str) -> bool:
        """Whether this wallet acknowledged ``provider``'s TEE signer (``False`` without a sub-account)."""
        return await self._s().auth.is_acknowledged(provider, fresh=True)

    get_request_headers = _Delegate("auth", AuthManager.get_request_headers)
    create_api_key = _Delegate("auth", AuthManager.create_api_key)
    revoke_api_key = _Delegate("auth", AuthManager.revoke_api_key)
    revoke_api_keys = _Delegate("auth", AuthManager.revoke_api_keys)
    revoke_tokens = _Alias(revoke_api_keys, "0g-inference-sdk")
    list_revoked_api_keys = _Delegate("auth", AuthManager.list_revoked_api_keys)
    revoke_all_tokens = _Delegate("auth", AuthManager.revoke_all_tokens)

    # -- onboarding ------------------------------------------------------------------------------

    acknowledge_provider_signer = _Delegate("onboarding", OnboardingService.acknowledge_provider_signer)
    ensure_ready = _Delegate("onboarding", OnboardingService.ensure_ready)

    # -- requests --------------------------------------------------------------------------------

    chat = _Delegate("chat", ChatRequests.chat, request=True)
    chat_stream = _Delegate("chat", ChatRequests.chat_stream, request=True)
    openai_client = _Delegate("chat", ChatRequests.openai_client)
    generate_image = _Delegate("images", ImageRequests.generate_image, request=True)
    edit_image = _Delegate("images", ImageRequests.edit_image, request=True)
    generate_image_async = _Delegate("images", ImageRequests.generate_image_async, request=True)
    wait_image_job = _Delegate("images", ImageRequests.wait_image_job, request=True)
    transcribe = _Delegate("audio", AudioRequests.transcribe, request=True)
    estimate_fee = _Delegate("estimates", FeeEstimator.estimate_fee)
    router = _Delegate("routing", RouterService.router)

    # -- verification and local fees -------------------------------------------------------------

    process_response = _Delegate("verification", VerificationService.process_response)
    verify_service = _Delegate("verification", VerificationService.verify_service)

    def local_fees(self, provider: str) -> int:
        """Fees (wei) this broker estimated for ``provider``'s requests since start or the last reset.

        The estimate uses the on-chain prices and the usage each response reported (PROTOCOL 4.6).
        """
        return self._state().fees.total(provider_address(provider))

    def reset_local_fees(self, provider: str | None = None) -> None:
        """Forget the locally counted fees of one provider (or of all), e.g. after a settlement."""
        self._state().fees.reset(None if provider is None else provider_address(provider))

    # -- auto-funding ----------------------------------------------------------------------------

    start_auto_funding = _Delegate("funding", AutoFundingService.start_auto_funding)
    stop_auto_funding = _Delegate("funding", AutoFundingService.stop_auto_funding)
    has_auto_funding = _Delegate("funding", AutoFundingService.has_auto_funding, local=True)
    auto_funding_stats = _Delegate("funding", AutoFundingService.auto_funding_stats, local=True)

    # -- settlement and refunds ------------------------------------------------------------------

    wait_settled = _Delegate("settlement", SettlementService.wait_settled)
    get_refunds = _Delegate("settlement", SettlementService.get_refunds)
    complete_refunds = _Delegate("settlement", SettlementService.complete_refunds)
