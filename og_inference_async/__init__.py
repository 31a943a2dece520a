"""og-inference-async: the async-native Python SDK for the 0G Compute Network inference marketplace.

Start with :class:`AsyncBroker`::

    async with AsyncBroker(private_key, network="testnet") as broker:
        await broker.ledger.add_ledger(og("3"))

Importing the package is cheap: the error tree, units, networks and policies load with it; the rest
(the broker, web3, httpx, aiohttp, the pydantic result models, signing) loads on first use of a name
that needs it, through the module ``__getattr__`` below (PEP 562).
"""

import typing as _typing

from ._config import (
    HARDHAT,
    MAINNET,
    NETWORKS,
    TESTNET,
    FeePolicy,
    Network,
    RetryPolicy,
    SessionPolicy,
    TxPolicy,
    get_network,
)
from ._exceptions import *  # noqa: F403  (the error tree is part of the public API)
from ._redact import redact
from ._retry import RequestRetryPolicy
from ._units import WEI_PER_OG, Amount, format_og, og, to_wei

if _typing.TYPE_CHECKING:
    from ._apikeys import ApiKey
    from ._broker import AsyncBroker
    from ._chain import reset_nonce_allocators
    from ._observe import BrokerStats, Hooks, combine_hooks
    from .coordination import Coordinator, InProcessCoordinator
    from .inference import ApiKeyRegistry, InMemoryApiKeyRegistry
    from .inference._stream import ChatStream
    from .inference._verify import VerificationPolicy
    from .inference.budgets import Budget
    from .inference.router import CircuitBreaker, ProviderRouter
    from .transactions import TransactionsAPI
    from .types import (
        Account,
        ChainEvent,
        Ledger,
        ProviderBalance,
        Refund,
        RpcEndpointHealth,
        Service,
        ServiceInfo,
        TxReceipt,
        TxRecord,
        TxState,
    )
    from .types.discovery import ProviderModels, ServiceDetail, ServiceHealth, ServiceMetadata
    from .types.funding import (
        AckResult,
        AutoFundingStats,
        ProviderRefundResult,
        ReadyAction,
        ReadyReport,
        RefundCompletion,
        RefundStatus,
        SettlementReport,
        TopUpEvent,
    )
    from .types.inference import (
        ChatChunk,
        ChatResult,
        FeeBreakdown,
        GeneratedImage,
        ImageResult,
        InferenceResult,
        RouteStats,
        ServiceVerification,
        TranscriptionResult,
        VerificationHandle,
        VerificationResult,
        VerificationStatus,
        VerificationStep,
    )

# Name -> submodule it is imported from on first access. Generated from the TYPE_CHECKING block above
# by scripts/gen_init_all.py, with __all__.
_LAZY: dict[str, str] = {
    "Account": ".types",
    "AckResult": ".types.funding",
    "ApiKey": "._apikeys",
    "ApiKeyRegistry": ".inference",
    "AsyncBroker": "._broker",
    "AutoFundingStats": ".types.funding",
    "BrokerStats": "._observe",
    "Budget": ".inference.budgets",
    "ChainEvent": ".types",
    "ChatChunk": ".types.inference",
    "ChatResult": ".types.inference",
    "ChatStream": ".inference._stream",
    "CircuitBreaker": ".inference.router",
    "Coordinator": ".coordination",
    "FeeBreakdown": ".types.inference",
    "GeneratedImage": ".types.inference",
    "Hooks": "._observe",
    "ImageResult": ".types.inference",
    "InMemoryApiKeyRegistry": ".inference",
    "InProcessCoordinator": ".coordination",
    "InferenceResult": ".types.inference",
    "Ledger": ".types",
    "ProviderBalance": ".types",
    "ProviderModels": ".types.discovery",
    "ProviderRefundResult": ".types.funding",
    "ProviderRouter": ".inference.router",
    "ReadyAction": ".types.funding",
    "ReadyReport": ".types.funding",
    "Refund": ".types",
    "RefundCompletion": ".types.funding",
    "RefundStatus": ".types.funding",
    "RouteStats": ".types.inference",
    "RpcEndpointHealth": ".types",
    "Service": ".types",
    "ServiceDetail": ".types.discovery",
    "ServiceHealth": ".types.discovery",
    "ServiceInfo": ".types",
    "ServiceMetadata": ".types.discovery",
    "ServiceVerification": ".types.inference",
    "SettlementReport": ".types.funding",
    "TopUpEvent": ".types.funding",
    "TransactionsAPI": ".transactions",
    "TranscriptionResult": ".types.inference",
    "TxReceipt": ".types",
    "TxRecord": ".types",
    "TxState": ".types",
    "VerificationHandle": ".types.inference",
    "VerificationPolicy": ".inference._verify",
    "VerificationResult": ".types.inference",
    "VerificationStatus": ".types.inference",
    "VerificationStep": ".types.inference",
    "combine_hooks": "._observe",
    "reset_nonce_allocators": "._chain",
}

__version__ = "0.1.0.dev0"

__all__ = [
    "Account",
    "AccountExistsError",
    "AccountNotExistsError",
    "AckResult",
    "AdditionalInfoTooLongError",
    "AlreadyInitializedError",
    "Amount",
    "ApiKey",
    "ApiKeyError",
    "ApiKeyRegistry",
    "AsyncBroker",
    "AutoFundingStats",
    "BatchSizeTooLargeError",
    "BelowMinimumError",
    "BrokerStateError",
    "BrokerStats",
    "Budget",
    "BudgetExceededError",
    "CallFailedError",
    "CallerNotLedgerError",
    "CallerNotRegisteredServiceError",
    "CannotAddStakeWhenUpdatingError",
    "CannotRevokeWithNonZeroBalanceError",
    "ChainError",
    "ChainEvent",
    "ChatChunk",
    "ChatResult",
    "ChatStream",
    "CircuitBreaker",
    "ConfigError",
    "ContractInvalidAddressError",
    "ContractRevertError",
    "Coordinator",
    "CoordinatorError",
    "DirectDepositsDisabledError",
    "FeeBreakdown",
    "FeePolicy",
    "FundingCapError",
    "GeneratedImage",
    "HARDHAT",
    "Hooks",
    "ImageJobTimeoutError",
    "ImageResult",
    "InMemoryApiKeyRegistry",
    "InProcessCoordinator",
    "InferenceResult",
    "InsufficientAvailableBalanceError",
    "InsufficientBalanceError",
    "InsufficientStakeError",
    "InvalidAddressError",
    "InvalidAmountError",
    "InvalidServiceAddressError",
    "InvalidServiceTypeError",
    "InvalidTEESignatureError",
    "Ledger",
    "LedgerExistsError",
    "LedgerInsufficientBalanceError",
    "LedgerLockedError",
    "LedgerNotExistsError",
    "LedgerServiceNotFoundError",
    "LimitTooLargeError",
    "LockTimeOutOfRangeError",
    "MAINNET",
    "MinimumDepositRequiredError",
    "MustWithdrawAllFundsFirstError",
    "NETWORKS",
    "Network",
    "NetworkMismatchError",
    "NoProviderAvailableError",
    "NoRecommendedServiceError",
    "NoSettlementsProvidedError",
    "NotAcknowledgedError",
    "OGError",
    "PageLimitError",
    "PanicError",
    "ProviderAuthError",
    "ProviderBalance",
    "ProviderCannotBeUserError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderInsufficientBalanceError",
    "ProviderModels",
    "ProviderNotAcknowledgedError",
    "ProviderRateLimitError",
    "ProviderRefundResult",
    "ProviderResponseError",
    "ProviderRouter",
    "ProviderServerError",
    "REVERT_ERRORS",
    "RPCError",
    "ReadyAction",
    "ReadyReport",
    "Refund",
    "RefundCompletion",
    "RefundStatus",
    "RequestRetryPolicy",
    "ResponseVerificationError",
    "RetryPolicy",
    "RevertedError",
    "RouteStats",
    "RpcEndpointHealth",
    "Service",
    "ServiceAlreadyRegisteredError",
    "ServiceDetail",
    "ServiceHealth",
    "ServiceInfo",
    "ServiceMetadata",
    "ServiceMustImplementIServingError",
    "ServiceNameExistsError",
    "ServiceNotExistError",
    "ServiceNotFoundError",
    "ServiceNotRegisteredError",
    "ServiceRegistryLimitReachedError",
    "ServiceTypeMismatchError",
    "ServiceTypeRequiredError",
    "ServiceVerification",
    "SessionPolicy",
    "SettlementReport",
    "SettlementTimeoutError",
    "TESTNET",
    "TokenDecodeError",
    "TokenError",
    "TokenRejectedError",
    "TokenVerificationError",
    "TooManyProvidersError",
    "TooManyProvidersForServiceError",
    "TooManyRefundsError",
    "TooManySettlementsError",
    "TopUpEvent",
    "TransactionNotExecutedError",
    "TransactionOutcomeUnknownError",
    "TransactionsAPI",
    "TranscriptionResult",
    "TransferFailedError",
    "TransportFailure",
    "TxPolicy",
    "TxReceipt",
    "TxRecord",
    "TxState",
    "VerificationError",
    "VerificationHandle",
    "VerificationPolicy",
    "VerificationResult",
    "VerificationStatus",
    "VerificationStep",
    "VersionRequiredError",
    "WEI_PER_OG",
    "ZeroAddressNotAllowedError",
    "ZeroAmountNotAllowedError",
    "combine_hooks",
    "format_og",
    "get_network",
    "og",
    "redact",
    "reset_nonce_allocators",
    "to_wei",
]


def __getattr__(name: str) -> object:
    """Import a lazily exported name from its submodule on first access, then keep it here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes, the lazily exported names included."""
    return sorted(set(globals()) | set(_LAZY))
