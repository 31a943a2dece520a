"""The whole error tree of og-inference-async.

Every exception the public API raises derives from :class:`OGError`. Foreign
exceptions (httpx, aiohttp, web3, eth-abi) are translated at the boundary and
chained with ``raise ... from exc``. Messages never contain private keys, API
keys, session tokens or signatures.

::

    OGError
    ├── ConfigError (also ValueError)          bad argument or configuration, nothing was sent
    │   ├── InvalidAddressError
    │   ├── InvalidAmountError
    │   ├── BelowMinimumError                  amount below an on-chain minimum
    │   ├── NetworkMismatchError               the RPC serves another chain id
    │   ├── ServiceTypeMismatchError           the provider offers another service type
    │   ├── ApiKeyError                        API key ids: exhausted, revoked, out of range
    │   └── PageLimitError                     page size above 50 (also a LimitTooLargeError)
    ├── BrokerStateError (also RuntimeError)   broker used before opening or after closing
    ├── InsufficientBalanceError               not enough money somewhere (carries amounts)
    │   └── FundingCapError                    a top-up would pass max_total / max_per_hour
    ├── BudgetExceededError                    a request could pass its spend budget; nothing was sent
    ├── NotAcknowledgedError                   the user has not acknowledged the provider's signer
    ├── ServiceNotFoundError                   no such provider / service on this network
    ├── ChainError
    │   ├── RPCError                           transport or JSON-RPC failure
    │   ├── ContractRevertError                decoded custom error (name, args, tx hash)
    │   │   └── one subclass per custom error of both ABIs (LedgerNotExistsError, ...)
    │   ├── TransactionOutcomeUnknownError     maybe sent, not resolved within the bounds: carries the hash
    │   ├── TransactionNotExecutedError        definitely not executed (refused, cancelled or replaced)
    │   └── SettlementTimeoutError             wait_settled ran out of time (also TimeoutError)
    ├── TokenError
    │   ├── TokenDecodeError                   malformed app-sk token
    │   └── TokenVerificationError             signature / fields do not check out
    │       └── TokenRejectedError             verify_token refused it (``reason`` code)
    ├── ProviderError                          the provider's HTTP API answered with an error
    │   ├── ProviderConnectionError            could not reach the provider
    │   ├── ProviderAuthError                  401 / 403
    │   ├── ProviderRateLimitError             429
    │   ├── ProviderServerError                5xx
    │   ├── TransportFailure                   a transport error; says whether the request provably never left
    │   ├── ProviderInsufficientBalanceError   402 / insufficient balance (also an InsufficientBalanceError)
    │   ├── ProviderResponseError              answered, but not in the expected shape
    │   ├── NoProviderAvailableError           a router ran out of providers (every failure attached)
    │   └── ImageJobTimeoutError               an async image job did not finish in time
    └── VerificationError                      a TEE response or attestation check failed
        └── ResponseVerificationError          "required" policy: the response failed (content withheld)

Every exception class of the SDK is defined in this module. ``REVERT_ERRORS`` maps each custom
error name to its class; it fills itself as the classes are defined (``__init_subclass__``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._redact import redact

if TYPE_CHECKING:
    from .types.inference import VerificationResult

__all__ = [
    "AccountExistsError",
    "AccountNotExistsError",
    "AdditionalInfoTooLongError",
    "AlreadyInitializedError",
    "ApiKeyError",
    "BatchSizeTooLargeError",
    "BelowMinimumError",
    "BrokerStateError",
    "BudgetExceededError",
    "CallFailedError",
    "CallerNotLedgerError",
    "CallerNotRegisteredServiceError",
    "CannotAddStakeWhenUpdatingError",
    "CannotRevokeWithNonZeroBalanceError",
    "ChainError",
    "ConfigError",
    "ContractInvalidAddressError",
    "ContractRevertError",
    "FundingCapError",
    "DirectDepositsDisabledError",
    "ImageJobTimeoutError",
    "InsufficientAvailableBalanceError",
    "InsufficientBalanceError",
    "InsufficientStakeError",
    "InvalidAddressError",
    "InvalidAmountError",
    "InvalidServiceAddressError",
    "InvalidServiceTypeError",
    "InvalidTEESignatureError",
    "LedgerExistsError",
    "LedgerInsufficientBalanceError",
    "LedgerLockedError",
    "LedgerNotExistsError",
    "LedgerServiceNotFoundError",
    "LimitTooLargeError",
    "LockTimeOutOfRangeError",
    "MinimumDepositRequiredError",
    "MustWithdrawAllFundsFirstError",
    "NetworkMismatchError",
    "NoProviderAvailableError",
    "NoRecommendedServiceError",
    "NoSettlementsProvidedError",
    "NotAcknowledgedError",
    "OGError",
    "PageLimitError",
    "PanicError",
    "ProviderAuthError",
    "ProviderCannotBeUserError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderInsufficientBalanceError",
    "ProviderNotAcknowledgedError",
    "ProviderRateLimitError",
    "ProviderResponseError",
    "ProviderServerError",
    "REVERT_ERRORS",
    "RPCError",
    "ResponseVerificationError",
    "RevertedError",
    "ServiceAlreadyRegisteredError",
    "ServiceMustImplementIServingError",
    "ServiceNameExistsError",
    "ServiceNotExistError",
    "ServiceNotFoundError",
    "ServiceNotRegisteredError",
    "ServiceRegistryLimitReachedError",
    "ServiceTypeMismatchError",
    "ServiceTypeRequiredError",
    "SettlementTimeoutError",
    "TokenDecodeError",
    "TokenError",
    "TokenRejectedError",
    "TokenVerificationError",
    "TooManyProvidersError",
    "TooManyProvidersForServiceError",
    "TooManyRefundsError",
    "TooManySettlementsError",
    "TransactionNotExecutedError",
    "TransactionOutcomeUnknownError",
    "TransferFailedError",
    "TransportFailure",
    "VerificationError",
    "VersionRequiredError",
    "ZeroAddressNotAllowedError",
    "ZeroAmountNotAllowedError",
]


class OGError(Exception):
    """Base class of every error raised by og-inference-async."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class ConfigError(OGError, ValueError):
    """A bad argument or configuration. Raised before any transaction or request is sent."""


class InvalidAddressError(ConfigError):
    """An address is malformed, zero where not allowed, or otherwise unusable."""


class InvalidAmountError(ConfigError):
    """An amount is a float, negative, zero where not allowed, or not parseable."""


class BelowMinimumError(ConfigError):
    """An amount is below a minimum read from the chain.

    Attributes:
        amount: the amount asked for, in wei.
        minimum: the on-chain minimum, in wei.
    """

    def __init__(self, message: str, *, amount: int, minimum: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.amount = amount
        self.minimum = minimum


class NetworkMismatchError(ConfigError):
    """The RPC endpoint serves a different chain than the one configured."""

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class ServiceTypeMismatchError(ConfigError):
    """The provider's on-chain service type does not serve the request (e.g. chat on text-to-image).

    Raised before anything is sent, so nothing is billed.

    Attributes:
        provider: the provider address.
        service_type: the service type registered on chain.
        expected: the service types that serve the request.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        service_type: str,
        expected: tuple[str, ...],
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.provider = provider
        self.service_type = service_type
        self.expected = expected


class ApiKeyError(ConfigError):
    """An API key (persistent token) id cannot be used: all taken, already revoked or out of range."""


class BrokerStateError(OGError, RuntimeError):
    """The broker was used before ``async with`` opened it, or after it was closed."""


class InsufficientBalanceError(OGError):
    """Not enough funds in the wallet, the ledger or a provider sub-account.

    Attributes:
        required: wei needed, when known.
        available: wei available, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        required: int | None = None,
        available: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.required = required
        self.available = available


class FundingCapError(InsufficientBalanceError):
    """A top-up was needed but would pass an auto-funding cap; nothing was sent.

    Raised to the callers that needed the money (a request refused for balance, with
    auto-funding on) and passed to the loop's ``on_error``; counted in the loop's statistics.

    Attributes:
        provider: the provider address.
        cap: ``"max_total"`` (wei moved to the provider since funding started) or
            ``"max_per_hour"`` (wei moved in the last hour).
        limit: the cap, in wei.
        moved: wei already moved under that cap.
        required: the top-up that was needed, in wei.
        available: what the cap still allows, in wei.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        cap: str,
        limit: int,
        moved: int,
        required: int,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, required=required, available=max(limit - moved, 0), hint=hint)
        self.provider = provider
        self.cap = cap
        self.limit = limit
        self.moved = moved


class BudgetExceededError(OGError):
    """A request could cost more than what is left of its spend budget; nothing was sent.

    The SDK compares the request's worst-case fee with the remaining budget (and with every
    enclosing budget's) before sending, so a budget is never overspent.

    Attributes:
        required: the request's worst-case fee, in wei.
        remaining: what the tightest budget had left (limit - spent - reserved), in wei.
        limit: that budget's limit, in wei.
        tag: that budget's tag, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        required: int,
        remaining: int,
        limit: int,
        tag: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.required = required
        self.remaining = remaining
        self.limit = limit
        self.tag = tag


class NotAcknowledgedError(OGError):
    """The user has not acknowledged the provider's TEE signer (or has no sub-account with it)."""

    hint = "call broker.inference.acknowledge_provider_signer(provider) first"

    def __init__(self, message: str, *, provider: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.provider = provider


#: The name the 0G docs' troubleshooting section uses for :class:`NotAcknowledgedError`.
ProviderNotAcknowledgedError = NotAcknowledgedError


class ServiceNotFoundError(OGError):
    """The provider or service is not registered on this network."""

    hint = "check the network (testnet vs mainnet) and that the address appears in list_services()"

    def __init__(self, message: str, *, identifier: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.identifier = identifier


class ChainError(OGError):
    """Something went wrong talking to the chain."""


class RPCError(ChainError):
    """A JSON-RPC transport failure or error response.

    Attributes:
        code: the JSON-RPC error code, when there was one.
        retryable: whether the failure looked transient (timeouts, 429, 5xx, rate limits).
        retry_after: seconds the node asked to wait (HTTP ``Retry-After``), when it did.
        method: the JSON-RPC method that failed, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        data: Any = None,
        retryable: bool = False,
        retry_after: float | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.data = data
        self.retryable = retryable
        self.retry_after = retry_after
        self.method = method


#: Custom error name -> exception class, filled by each subclass that names an ``error_type``.
REVERT_ERRORS: dict[str, type[ContractRevertError]] = {}


class ContractRevertError(ChainError):
    """A contract call or transaction reverted.

    Attributes:
        error_name: the custom error's name (``"LedgerNotExists"``), ``"Error"`` for
            ``Error(string)``, ``"Panic"``, or ``None`` when the revert data was not decodable.
        error_args: the decoded arguments by name.
        selector: the 4-byte selector as ``0x`` hex, when known.
        data: the raw revert data as ``0x`` hex, when known.
        tx_hash: the transaction hash when a sent transaction reverted; ``None`` for calls,
            gas estimation and checks made before sending.
    """

    #: The custom error this class stands for; ``None`` on the base class.
    error_type: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register a subclass that stands for a custom error in :data:`REVERT_ERRORS`."""
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("error_type")
        if isinstance(name, str):
            if name in REVERT_ERRORS:
                raise TypeError(f"two exception classes stand for the custom error {name!r}")
            REVERT_ERRORS[name] = cls

    def __init__(
        self,
        message: str,
        *,
        error_name: str | None = None,
        error_args: dict[str, Any] | None = None,
        selector: str | None = None,
        data: str | None = None,
        tx_hash: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.error_name = error_name if error_name is not None else self.error_type
        self.error_args = dict(error_args or {})
        self.selector = selector
        self.data = data
        self.tx_hash = tx_hash


class TransactionOutcomeUnknownError(ChainError):
    """A transaction may have reached the node, and neither its receipt nor a definite refusal
    or cancellation came within the bounds.

    It may still be mined. The SDK never signs another transaction for the same intent: resolve
    it with ``broker.transactions.resolve(tx_hash)`` (re-sends the identical bytes) or
    ``broker.transactions.cancel(tx_hash)`` (a 0-value self-transfer at the same nonce).

    Attributes:
        tx_hash: the transaction's hash.
        nonce: its nonce.
        replacement_hash: the hash of a cancelling replacement that was sent, if any.
    """

    hint = "resolve it with broker.transactions.resolve(tx_hash) or cancel it with broker.transactions.cancel"

    def __init__(
        self, message: str, *, tx_hash: str, nonce: int | None = None, replacement_hash: str | None = None
    ) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash
        self.nonce = nonce
        self.replacement_hash = replacement_hash


class TransactionNotExecutedError(ChainError):
    """A signed transaction definitely did not execute and never will.

    Either the node refused it, or its nonce was taken by another transaction (a cancelling
    replacement the SDK sent, or one from elsewhere). Nothing of it happened on chain, so the
    operation may be tried again.

    Attributes:
        tx_hash: the transaction's hash.
        nonce: its nonce.
        reason: ``"cancelled"`` (replaced by the SDK's 0-value self-transfer) or ``"replaced"``
            (its nonce was used by another transaction).
        replacement_hash: the transaction that took the nonce, when known.
    """

    hint = "nothing was executed; the operation can be tried again"

    def __init__(
        self,
        message: str,
        *,
        tx_hash: str,
        nonce: int | None = None,
        reason: str = "cancelled",
        replacement_hash: str | None = None,
    ) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash
        self.nonce = nonce
        self.reason = reason
        self.replacement_hash = replacement_hash


class SettlementTimeoutError(ChainError, TimeoutError):
    """No settlement by the provider landed on chain within the time given to ``wait_settled``.

    Attributes:
        provider: the provider address.
        nonce: the settlement nonce that was waited past.
        waited: seconds spent waiting.
    """

    hint = "the provider settles on its own schedule; wait longer or check that it is running"

    def __init__(self, message: str, *, provider: str, nonce: int, waited: float) -> None:
        super().__init__(message)
        self.provider = provider
        self.nonce = nonce
        self.waited = waited


class TokenError(OGError):
    """A session token or API key problem."""


class TokenDecodeError(TokenError):
    """An ``app-sk-`` token is malformed (base64, separator, JSON or field types)."""


class TokenVerificationError(TokenError):
    """A token decoded but does not verify (signature, provider, expiry, ...)."""


class TokenRejectedError(TokenVerificationError):
    """A token failed :func:`verify_token`; ``reason`` says why, as a stable code.

    Attributes:
        reason: one of ``"bad_signature"``, ``"wrong_signer"``, ``"wrong_provider"``,
            ``"bad_token_id"``, ``"no_expiry"``, ``"bad_lifetime"``, ``"lifetime_too_long"``,
            ``"not_yet_valid"``, ``"expired"``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProviderError(OGError):
    """The provider's HTTP API answered with an error.

    The message, ``body`` and hint may quote the provider's answer, which may echo what it
    received: all three pass through :func:`~og_inference_async.redact` (bearer tokens,
    ``app-sk-`` tokens, API keys and 32/65-byte hex values are replaced by ``[redacted]``).

    Attributes:
        status_code: the HTTP status, when there was a response.
        body: the (size-limited, redacted) response body text, when there was one.
        provider: the provider address.
        retryable: whether retrying the same request could succeed.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str | None = None,
        provider: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(redact(message), hint=redact(hint) if hint is not None else None)
        self.status_code = status_code
        self.body = redact(body) if body is not None else None
        self.provider = provider


class ProviderConnectionError(ProviderError):
    """The provider could not be reached (connect error, timeout, broken TLS)."""

    retryable = True


class TransportFailure(ProviderConnectionError):
    """A transport error, with whether the request can be known NOT to have reached the provider.

    Attributes:
        not_sent: ``True`` when the failure happened before the request was sent (connection
            refused, connect timeout, no free connection in the pool): repeating it is safe even
            for a billed call. ``False`` when it may have been received (read error or timeout).
    """

    def __init__(self, message: str, *, provider: str | None, not_sent: bool) -> None:
        super().__init__(message, provider=provider)
        self.not_sent = not_sent


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (HTTP 401 or 403)."""


class ProviderRateLimitError(ProviderError):
    """HTTP 429. ``retry_after`` holds the provider's ``Retry-After`` in seconds, when sent."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ProviderServerError(ProviderError):
    """HTTP 5xx from the provider."""

    retryable = True


class ProviderResponseError(ProviderError):
    """The provider answered, but not in the shape the protocol expects."""


class NoProviderAvailableError(ProviderError):
    """A provider router found no provider to serve a request.

    Every candidate either failed in a way that allows failing over (a refusal, a connection
    that never opened, a verification failure under ``required``) or has its circuit open.

    Attributes:
        failures: ``(provider, error)`` for each provider tried, in order (the last one is also
            the ``__cause__``).
    """

    def __init__(self, message: str, *, failures: tuple[tuple[str, OGError], ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


class ProviderInsufficientBalanceError(ProviderError, InsufficientBalanceError):
    """The provider refused a request for balance (HTTP 402 or its insufficient-balance answer).

    Both a :class:`ProviderError` (with ``status_code``, redacted ``body`` and ``provider``) and an
    :class:`InsufficientBalanceError` (with ``required`` / ``available`` from the answer). A
    refused request is not billed. ``fee`` is the refused request's fee when the answer says.
    """

    def __init__(
        self,
        message: str,
        *,
        required: int | None = None,
        available: int | None = None,
        status_code: int | None = None,
        body: str | None = None,
        provider: str | None = None,
        hint: str | None = None,
        fee: int | None = None,
    ) -> None:
        ProviderError.__init__(
            self, message, status_code=status_code, body=body, provider=provider, hint=hint
        )
        self.required = required
        self.available = available
        self.fee = fee


class ImageJobTimeoutError(ProviderError):
    """An async image job did not finish in time.

    Resume with ``wait_image_job(provider, err.job_id, request_sha256=err.request_sha256)`` (the
    hash lets the result's signature be checked against the submitted request: ``BOUND``).

    Attributes:
        job_id: the provider's job id.
        last_status: the last status the provider reported.
        request_sha256: hex sha256 of the submitted request body, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        last_status: str | None,
        provider: str | None,
        request_sha256: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.job_id = job_id
        self.last_status = last_status
        self.request_sha256 = request_sha256


class VerificationError(OGError):
    """A TEE response signature or attestation check failed (fail-closed policy)."""


class ResponseVerificationError(VerificationError):
    """A response failed verification under the ``required`` policy (fail closed).

    The content of the response is withheld: it is neither returned nor attached here (the
    provider may have changed it after signing). What the response cost is kept, because the
    provider bills it anyway.

    Attributes:
        verification: the outcome that failed the policy (chat id, signer, hashes, reason).
        fee: the fee (wei) counted locally for the withheld response (see ``local_fees``).
        usage: the usage the provider reported for it, when it did (unverified).
    """

    def __init__(
        self,
        message: str,
        *,
        verification: VerificationResult,
        fee: int = 0,
        usage: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.verification = verification
        self.fee = fee
        self.usage = usage


# --- one class per custom error of the LedgerManager and InferenceServing ABIs ---------------


class AccountExistsError(ContractRevertError):
    """A sub-account for this user and provider already exists."""

    error_type = "AccountExists"


class AccountNotExistsError(ContractRevertError):
    """No sub-account exists for this user and provider."""

    error_type = "AccountNotExists"
    hint = "transfer funds to the provider first (ledger.transfer_fund) or call acknowledge_provider_signer"


class AdditionalInfoTooLongError(ContractRevertError):
    """additionalInfo is longer than 4096 bytes."""

    error_type = "AdditionalInfoTooLong"


class AlreadyInitializedError(ContractRevertError):
    """The contract was already initialized."""

    error_type = "AlreadyInitialized"


class BatchSizeTooLargeError(ContractRevertError):
    """Too many users in one batch read."""

    error_type = "BatchSizeTooLarge"


class CallFailedError(ContractRevertError):
    """transferFund's call into the service contract failed."""

    error_type = "CallFailed"
    hint = (
        "transferFund hides the inner error of the service call; "
        "check the provider address and the sub-account"
    )


class CallerNotLedgerError(ContractRevertError):
    """Only the LedgerManager may call this function."""

    error_type = "CallerNotLedger"


class CallerNotRegisteredServiceError(ContractRevertError):
    """Only a registered service contract may call this function."""

    error_type = "CallerNotRegisteredService"


class CannotAddStakeWhenUpdatingError(ContractRevertError):
    """A service update must not send value."""

    error_type = "CannotAddStakeWhenUpdating"


class CannotRevokeWithNonZeroBalanceError(ContractRevertError):
    """The acknowledgement cannot be revoked while the sub-account holds funds."""

    error_type = "CannotRevokeWithNonZeroBalance"


class DirectDepositsDisabledError(ContractRevertError):
    """Plain value transfers to the contract are refused."""

    error_type = "DirectDepositsDisabled"


class InsufficientAvailableBalanceError(ContractRevertError, InsufficientBalanceError):
    """The ledger's available balance does not cover the amount."""

    error_type = "InsufficientAvailableBalance"
    hint = "deposit more with ledger.deposit_fund"


class LedgerInsufficientBalanceError(ContractRevertError, InsufficientBalanceError):
    """The ledger's available balance is lower than the refund asked for."""

    error_type = "InsufficientBalance"


class InsufficientStakeError(ContractRevertError, InsufficientBalanceError):
    """A provider registration sent less than the minimum stake."""

    error_type = "InsufficientStake"


class ContractInvalidAddressError(ContractRevertError):
    """A zero or invalid address was passed to the contract."""

    error_type = "InvalidAddress"


class InvalidServiceAddressError(ContractRevertError):
    """The service address is zero."""

    error_type = "InvalidServiceAddress"


class InvalidServiceTypeError(ContractRevertError):
    """The service type is not known to the ledger."""

    error_type = "InvalidServiceType"


class InvalidTEESignatureError(ContractRevertError):
    """A TEE settlement signature is invalid."""

    error_type = "InvalidTEESignature"


class LedgerExistsError(ContractRevertError):
    """The ledger already exists for this user."""

    error_type = "LedgerExists"
    hint = "use ledger.deposit_fund to add funds"


class LedgerLockedError(ContractRevertError):
    """The ledger is locked by a call in progress (re-entrancy guard)."""

    error_type = "LedgerLocked"


class LedgerNotExistsError(ContractRevertError):
    """No ledger exists for this user."""

    error_type = "LedgerNotExists"
    hint = "create one with ledger.add_ledger (at least the on-chain minimum)"


class LimitTooLargeError(ContractRevertError):
    """A page limit above the contract's maximum (50)."""

    error_type = "LimitTooLarge"


class PageLimitError(ConfigError, LimitTooLargeError):
    """A page size above what the contract serves, refused before anything is read.

    A :class:`ConfigError` (nothing was sent); also a :class:`LimitTooLargeError`, the revert the
    contract would have answered.
    """

    def __init__(self, message: str, *, limit: int, maximum: int) -> None:
        LimitTooLargeError.__init__(self, message, error_args={"limit": limit, "max": maximum})
        self.limit = limit
        self.maximum = maximum


class LockTimeOutOfRangeError(ContractRevertError):
    """The lock time is outside [1 h, 7 d]."""

    error_type = "LockTimeOutOfRange"


class MinimumDepositRequiredError(ContractRevertError):
    """The amount is below the contract's minimum, or would leave less than it."""

    error_type = "MinimumDepositRequired"


class MustWithdrawAllFundsFirstError(ContractRevertError):
    """The ledger still holds funds and cannot be deleted."""

    error_type = "MustWithdrawAllFundsFirst"
    hint = "retrieve and refund all funds first"


class NoRecommendedServiceError(ContractRevertError):
    """No recommended service is set for this type."""

    error_type = "NoRecommendedService"


class NoSettlementsProvidedError(ContractRevertError):
    """An empty settlement list."""

    error_type = "NoSettlementsProvided"


class ProviderCannotBeUserError(ContractRevertError):
    """The provider address equals the user address."""

    error_type = "ProviderCannotBeUser"


class ServiceAlreadyRegisteredError(ContractRevertError):
    """The service address is already registered."""

    error_type = "ServiceAlreadyRegistered"


class ServiceMustImplementIServingError(ContractRevertError):
    """The service contract does not implement IServing."""

    error_type = "ServiceMustImplementIServing"


class ServiceNameExistsError(ContractRevertError):
    """The service full name is already taken."""

    error_type = "ServiceNameExists"


class ServiceNotExistError(ContractRevertError, ServiceNotFoundError):
    """The provider has no service registered in InferenceServing."""

    error_type = "ServiceNotExist"


class LedgerServiceNotFoundError(ContractRevertError, ServiceNotFoundError):
    """The service name is not registered in the ledger."""

    error_type = "ServiceNotFound"


class ServiceNotRegisteredError(ContractRevertError, ServiceNotFoundError):
    """The service is not registered in the ledger."""

    error_type = "ServiceNotRegistered"


class ServiceRegistryLimitReachedError(ContractRevertError):
    """The ledger's service registry is full."""

    error_type = "ServiceRegistryLimitReached"


class ServiceTypeRequiredError(ContractRevertError):
    """An empty service type."""

    error_type = "ServiceTypeRequired"


class TooManyProvidersError(ContractRevertError):
    """More than 20 providers in one retrieveFund call."""

    error_type = "TooManyProviders"


class TooManyProvidersForServiceError(ContractRevertError):
    """The user already has the maximum number (50) of providers for this service."""

    error_type = "TooManyProvidersForService"


class TooManyRefundsError(ContractRevertError):
    """The sub-account already has the maximum number (5) of pending refunds."""

    error_type = "TooManyRefunds"
    hint = "wait for the lock time to pass and retrieve again to collect matured refunds"


class TooManySettlementsError(ContractRevertError):
    """More than 50 settlements in one call."""

    error_type = "TooManySettlements"


class TransferFailedError(ContractRevertError):
    """A native-token transfer made by the contract failed."""

    error_type = "TransferFailed"


class VersionRequiredError(ContractRevertError):
    """An empty service version."""

    error_type = "VersionRequired"


class ZeroAddressNotAllowedError(ContractRevertError):
    """The zero address is not allowed here."""

    error_type = "ZeroAddressNotAllowed"


class ZeroAmountNotAllowedError(ContractRevertError):
    """A zero amount is not allowed here."""

    error_type = "ZeroAmountNotAllowed"


class RevertedError(ContractRevertError):
    """A plain ``revert(string)`` / ``require`` failure (``Error(string)``)."""

    error_type = "Error"


class PanicError(ContractRevertError):
    """A Solidity panic (``Panic(uint256)``)."""

    error_type = "Panic"
