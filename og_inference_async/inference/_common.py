"""What the inference services share: the per-broker request policies and the provider check."""

from __future__ import annotations

from .._config import checksum
from .._exceptions import ConfigError
from .._retry import RequestRetryPolicy
from .._validate import shown
from ._verify import VerificationPolicy

__all__ = ["RequestPolicies", "provider_address"]


def provider_address(provider: str) -> str:
    """``provider`` checksummed.

    Raises:
        InvalidAddressError: not an address.
    """
    return checksum(provider, what="provider")


class RequestPolicies:
    """The verification and retry policies of one broker's requests.

    The facade sets them (``broker.inference.verification = "required"``); the services and the
    provider transport read them on every call, so a change applies to the next request.

    Args:
        verification: the verification policy or a mode name (default ``"background"``).
        retry: the retry policy of provider requests (default :class:`RequestRetryPolicy`).

    Raises:
        ConfigError: an unknown mode, or ``retry`` not a :class:`RequestRetryPolicy`.
    """

    def __init__(
        self,
        verification: str | VerificationPolicy = "background",
        retry: RequestRetryPolicy | None = None,
    ) -> None:
        self._verification = VerificationPolicy.coerce(verification)
        self._retry = RequestRetryPolicy()
        if retry is not None:
            self.retry = retry

    @property
    def verification(self) -> VerificationPolicy:
        """The default verification policy (settable with a mode name)."""
        return self._verification

    @verification.setter
    def verification(self, value: str | VerificationPolicy) -> None:
        self._verification = VerificationPolicy.coerce(value)

    @property
    def retry(self) -> RequestRetryPolicy:
        """The :class:`RequestRetryPolicy` of provider requests."""
        return self._retry

    @retry.setter
    def retry(self, value: RequestRetryPolicy) -> None:
        if not isinstance(value, RequestRetryPolicy):
            raise ConfigError(f"retry_policy must be a RequestRetryPolicy, got {shown(value)}")
        self._retry = value

    def pick(self, verify: str | VerificationPolicy | None) -> VerificationPolicy:
        """The policy of one call: ``verify`` when given, else the default."""
        return self._verification if verify is None else VerificationPolicy.coerce(verify)
