"""Request authentication: acknowledgement checks, ephemeral session headers and API keys.

Reads of the user's sub-account (acknowledged flag, generation, revoked bitmap) are cached
briefly and fetched single-flight, so a cold burst of a thousand ``get_request_headers`` calls
for one provider costs one ``getAccount`` read and one signature.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .._apikeys import ALL_IDS_TAKEN, ApiKey, check_token_id, issue_api_key, pick_token_id, revoked_ids
from .._config import SessionPolicy, checksum
from .._exceptions import AccountNotExistsError, ApiKeyError, ConfigError, NotAcknowledgedError
from .._runtime import Wallet
from .._session import SessionTokenCache
from .._singleflight import SingleFlight
from .._validate import check_int, shown
from ..types import Account, TxReceipt

if TYPE_CHECKING:
    from .._chain import ChainReader

__all__ = ["ApiKeyRegistry", "AuthManager", "InMemoryApiKeyRegistry", "SharedApiKeyRegistry"]

#: The latest expiry an API key can carry (ms since the epoch, a signed 64-bit value).
MAX_TOKEN_MS = 2**63 - 1


def lifetime_in_ms(expires_in: float | timedelta | None, expires_in_ms: int | None) -> int | None:
    """An API key's lifetime in milliseconds from seconds / a ``timedelta`` or from milliseconds.

    ``None`` or ``0`` means the key never expires. A positive lifetime below one millisecond is
    refused rather than rounded to "never".

    Raises:
        ConfigError: both given, a wrong type, a negative, non-finite or sub-millisecond lifetime.
    """
    if expires_in_ms is not None:
        if expires_in is not None:
            raise ConfigError("give expires_in (seconds or a timedelta) or expires_in_ms, not both")
        return check_int("expires_in_ms", expires_in_ms, minimum=0, maximum=MAX_TOKEN_MS)
    if expires_in is None:
        return None
    if isinstance(expires_in, timedelta):
        ms = expires_in // timedelta(milliseconds=1)
        negative = expires_in < timedelta(0)
    elif isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        raise ConfigError(
            f"expires_in must be seconds (int or float) or a timedelta, got {shown(expires_in)}"
        )
    elif not math.isfinite(expires_in):
        raise ConfigError(f"expires_in must be finite, got {expires_in!r}")
    else:
        ms = expires_in * 1000 if isinstance(expires_in, int) else math.floor(expires_in * 1000)
        negative = expires_in < 0
    if negative:
        raise ConfigError(f"expires_in must be 0 (never expires) or more, got {shown(expires_in)}")
    if ms == 0 and expires_in:
        raise ConfigError(f"expires_in must be at least one millisecond, got {shown(expires_in)}")
    return check_int("expires_in (as milliseconds)", int(ms), minimum=0, maximum=MAX_TOKEN_MS)


class ApiKeyRegistry(Protocol):
    """Where issued API key ids are recorded, so two keys never share an id.

    Implement it to persist the records (a database, a file); the default keeps them in memory.
    """

    def issued_ids(self, user: str, provider: str, generation: int) -> Collection[int]:
        """Ids already handed out for ``(user, provider)`` in ``generation``."""
        ...

    def record(self, user: str, key: ApiKey) -> None:
        """Remember a newly issued key (its secret is included; store it safely or drop it)."""
        ...


@runtime_checkable
class SharedApiKeyRegistry(ApiKeyRegistry, Protocol):
    """An :class:`ApiKeyRegistry` shared by several processes: ids are claimed atomically where it lives.

    ``create_api_key`` calls :meth:`claim_id` instead of picking from :meth:`issued_ids`, so two
    processes never hand out one id (``RedisCoordinator.api_key_registry()`` is one).
    """

    async def claim_id(
        self, user: str, provider: str, generation: int, *, revoked: list[int], token_id: int | None
    ) -> int | None:
        """Claim ``token_id`` (or the lowest id in 0..254 neither revoked nor issued); ``None`` if taken.

        Raises:
            CoordinatorError: the registry cannot be reached.
        """
        ...


@dataclass
class InMemoryApiKeyRegistry:
    """The default :class:`ApiKeyRegistry`: ids only, in memory, per broker."""

    _ids: dict[tuple[str, str, int], set[int]] = field(default_factory=dict)

    def issued_ids(self, user: str, provider: str, generation: int) -> Collection[int]:
        """Ids already handed out for ``(user, provider)`` in ``generation``."""
        return self._ids.get((user, provider.lower(), generation), set())

    def record(self, user: str, key: ApiKey) -> None:
        """Remember the key's id (the secret is not kept)."""
        self._ids.setdefault((user, key.provider.lower(), key.generation), set()).add(key.token_id)


class AuthManager:
    """Session headers and API keys for one broker (one chain, one user).

    Args:
        contracts: the chain's contracts (account reads, revocations).
        wallet: the user's wallet (address, signer, transaction sender).
        registry: where issued API key ids are recorded (default: in memory).
        policy: session-token lifetime, reuse margin and cache bounds.
        clock: wall clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        contracts: ChainReader,
        wallet: Wallet,
        *,
        registry: ApiKeyRegistry | None = None,
        policy: SessionPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._contracts = contracts
        self._wallet = wallet
        self._clock = clock
        self.policy = policy or SessionPolicy()
        self.registry: ApiKeyRegistry = registry or InMemoryApiKeyRegistry()
        self._accounts: OrderedDict[str, tuple[float, Account | None]] = OrderedDict()
        self._acks: OrderedDict[str, float] = OrderedDict()
        self._epochs: dict[str, int] = {}
        self._epoch_all = 0
        self._account_flights: SingleFlight[tuple[str, int, int], Account | None] = SingleFlight()
        self._tokens: SessionTokenCache | None = None

    @property
    def tokens(self) -> SessionTokenCache:
        """The ephemeral session-token cache (built on first use)."""
        if self._tokens is None:
            self._tokens = SessionTokenCache(
                account=self._wallet.signer,
                fetch_generation=self._generation,
                clock=self._clock,
                token_lifetime_ms=self.policy.lifetime_ms,
                refresh_margin_ms=self.policy.refresh_margin_ms,
                max_entries=self.policy.max_entries,
            )
        return self._tokens

    # -- account reads ---------------------------------------------------------------------------

    async def read_account(self, provider: str, *, fresh: bool = False) -> Account | None:
        """The user's sub-account with ``provider`` (``None`` if absent), cached for a few minutes.

        Concurrent cached reads share one request. A read that started before :meth:`forget`
        neither stores its (possibly stale) result nor serves callers arriving after it; a
        ``fresh`` read never joins a read already in flight.
        """
        now = self._clock()
        if not fresh:
            hit = self._accounts.get(provider)
            if hit is not None and hit[0] > now:
                self._accounts.move_to_end(provider)
                return hit[1]
        epoch = (self._epoch_all, self._epochs.get(provider, 0))

        async def fetch() -> Account | None:
            try:
                account: Account | None = await self._contracts.get_account(self._wallet.address, provider)
            except AccountNotExistsError:
                account = None
            if (self._epoch_all, self._epochs.get(provider, 0)) == epoch:
                self._remember(provider, account)
            return account

        if fresh:
            return await fetch()
        return await self._account_flights.run((provider, *epoch), fetch)

    def _remember(self, provider: str, account: Account | None) -> None:
        now = self._clock()
        self._accounts[provider] = (now + self.policy.account_ttl, account)
        self._accounts.move_to_end(provider)
        if account is not None and account.acknowledged:
            self._acks[provider] = now + self.policy.ack_ttl
            self._acks.move_to_end(provider)
        for cache in (self._accounts, self._acks):
            while len(cache) > self.policy.max_entries:
                cache.popitem(last=False)

    def forget(self, provider: str | None = None) -> None:
        """Drop cached account reads, acknowledgements and session tokens (one provider or all).

        Called after every write that changes a sub-account (ledger transfers, retrievals,
        refunds that delete the ledger, acknowledgements, revocations), so a cached answer
        (including "no sub-account") never outlives the transaction that changed it. A read
        already in flight does not store its result.
        """
        self.forget_account(provider)
        if self._tokens is not None:
            self._tokens.invalidate(provider)

    def forget_account(self, provider: str | None = None) -> None:
        """Drop cached account reads and acknowledgements (one provider or all), keeping session tokens."""
        if provider is None:
            self._epoch_all += 1
            self._epochs.clear()
            self._accounts.clear()
            self._acks.clear()
        else:
            self._epochs[provider] = self._epochs.get(provider, 0) + 1
            self._accounts.pop(provider, None)
            self._acks.pop(provider, None)

    async def _generation(self, provider: str) -> int:
        account = await self.read_account(provider)
        return account.generation if account is not None else 0

    async def is_acknowledged(self, provider: str, *, fresh: bool = False) -> bool:
        """Whether the user acknowledged ``provider``'s TEE signer (positive answers cached 10 min)."""
        prov = checksum(provider, what="provider")
        if not fresh and self._acks.get(prov, 0.0) > self._clock():
            return True
        account = await self.read_account(prov, fresh=fresh)
        return account is not None and account.acknowledged

    async def require_acknowledged(self, provider: str) -> None:
        """Raise :class:`NotAcknowledgedError` unless the provider is acknowledged."""
        if not await self.is_acknowledged(provider):
            account = self._accounts.get(provider, (0.0, None))[1]
            why = "has no sub-account with" if account is None else "has not acknowledged"
            raise NotAcknowledgedError(f"{self._wallet.address} {why} provider {provider}", provider=provider)

    # -- headers ---------------------------------------------------------------------------------

    async def get_request_headers(self, provider: str) -> dict[str, str]:
        """The ``Authorization`` header for a request to ``provider`` (``Bearer app-sk-...``).

        The ephemeral session token (tokenId 255, 24 h) is cached and reused while more than an
        hour is left; concurrent callers share one signature.

        Raises:
            NotAcknowledgedError: the provider is not acknowledged (or there is no sub-account).
        """
        prov = checksum(provider, what="provider")
        if not self._acks.get(prov, 0.0) > self._clock():  # the cached acknowledgement, inlined: hot path
            await self.require_acknowledged(prov)
        token = await self.tokens.get_token(prov)
        return {"Authorization": token.authorization}

    # -- API keys --------------------------------------------------------------------------------

    async def create_api_key(
        self,
        provider: str,
        *,
        expires_in: float | timedelta | None = None,
        token_id: int | None = None,
        expires_in_ms: int | None = None,
    ) -> ApiKey:
        """Issue a persistent API key (``app-sk-...``) usable as an OpenAI client's ``api_key``.

        Args:
            provider: the provider address.
            expires_in: lifetime in seconds (``int`` or ``float``) or a ``timedelta``; ``None``
                or ``0`` = never expires.
            token_id: 0..254; default: the lowest id neither revoked on chain nor issued by
                this broker's registry.
            expires_in_ms: the lifetime in milliseconds instead, the unit of the TS SDK's
                ``createApiKey(p, {expiresIn})`` (give one of ``expires_in`` and this).

        Raises:
            ConfigError: a negative, non-finite or sub-millisecond lifetime, a lifetime of another
                type, or both ``expires_in`` and ``expires_in_ms``.
            NotAcknowledgedError: no sub-account with the provider.
            ApiKeyError: the id is 255, out of range or revoked, or all ids are taken.
        """
        prov = checksum(provider, what="provider")
        if token_id is not None:
            check_token_id(token_id, 0)  # the type and range; the revocation bitmap is read below
        lifetime_ms = lifetime_in_ms(expires_in, expires_in_ms)
        account = await self.read_account(prov, fresh=True)
        if account is None:
            raise NotAcknowledgedError(
                f"{self._wallet.address} has no sub-account with provider {prov}; API keys need one",
                provider=prov,
            )
        user = self._wallet.address
        if isinstance(self.registry, SharedApiKeyRegistry):
            chosen = await self._claim_shared(self.registry, user, prov, account, token_id)
            return self._issue(user, prov, chosen, account.generation, lifetime_ms)
        # No await between picking and recording: concurrent calls never share an id.
        issued = self.registry.issued_ids(user, prov, account.generation)
        if token_id is None:
            chosen = pick_token_id(account.revoked_bitmap, issued)
        else:
            check_token_id(token_id, account.revoked_bitmap)
            if token_id in issued:
                raise ApiKeyError(
                    f"tokenId {token_id} was already issued for this provider in generation "
                    f"{account.generation}; two keys would share it (revoking one revokes both)",
                    hint="omit token_id to get a free one, or revoke the old key first",
                )
            chosen = token_id
        return self._issue(user, prov, chosen, account.generation, lifetime_ms)

    def _issue(self, user: str, prov: str, token_id: int, generation: int, lifetime_ms: int | None) -> ApiKey:
        """Sign the key and record it (no await: a picked id is recorded at once)."""
        key = issue_api_key(
            self._wallet.signer,
            prov,
            token_id=token_id,
            generation=generation,
            expires_in_ms=lifetime_ms,
            now_ms=int(self._clock() * 1000),
        )
        self.registry.record(user, key)
        return key

    async def _claim_shared(
        self, registry: SharedApiKeyRegistry, user: str, prov: str, account: Account, token_id: int | None
    ) -> int:
        """Claim an id in a shared registry (atomically there), or raise :class:`ApiKeyError`."""
        if token_id is not None:
            check_token_id(token_id, account.revoked_bitmap)
        chosen = await registry.claim_id(
            user, prov, account.generation, revoked=revoked_ids(account.revoked_bitmap), token_id=token_id
        )
        if chosen is not None:
            return chosen
        if token_id is not None:
            raise ApiKeyError(
                f"tokenId {token_id} was already issued for this provider in generation "
                f"{account.generation}; two keys would share it (revoking one revokes both)",
                hint="omit token_id to get a free one, or revoke the old key first",
            )
        raise ApiKeyError(ALL_IDS_TAKEN)

    async def list_revoked_api_keys(self, provider: str) -> list[int]:
        """Ids revoked individually in the current generation (from the on-chain bitmap)."""
        prov = checksum(provider, what="provider")
        account = await self.read_account(prov, fresh=True)
        return revoked_ids(account.revoked_bitmap) if account is not None else []

    async def revoke_api_key(self, provider: str, token_id: int) -> TxReceipt:
        """Revoke one API key id on chain (``revokeToken``).

        Raises:
            ApiKeyError: 255 (use :meth:`revoke_all_tokens`), out of range, or already revoked.
            NotAcknowledgedError: no sub-account with the provider.
        """
        return await self.revoke_api_keys(provider, [token_id])

    async def revoke_api_keys(self, provider: str, token_ids: list[int]) -> TxReceipt:
        """Revoke several API key ids in one transaction (``revokeTokens``).

        Raises:
            ApiKeyError: an id is 255, out of range, already revoked, or repeated.
            NotAcknowledgedError: no sub-account with the provider.
        """
        prov = checksum(provider, what="provider")
        sender = self._wallet.require_sender()
        if isinstance(token_ids, (str, bytes, bytearray)) or not isinstance(token_ids, (list, tuple)):
            raise ApiKeyError(f"token_ids must be a list of ints, got {shown(token_ids)}")
        if not token_ids:
            raise ApiKeyError("no token ids to revoke")
        for tid in token_ids:
            check_token_id(tid, 0)  # the type and range, before anything is read or sent
        if len(set(token_ids)) != len(token_ids):
            raise ApiKeyError("the token id list contains duplicates")
        account = await self.read_account(prov, fresh=True)
        for tid in token_ids:
            check_token_id(tid, account.revoked_bitmap if account is not None else 0)
        if account is None:
            raise NotAcknowledgedError(f"no sub-account with provider {prov}", provider=prov)
        try:
            receipt = await self._contracts.revoke_tokens(sender, prov, token_ids)
        finally:
            self.forget_account(prov)  # the revoked bitmap changed (or may have)
        return receipt

    async def revoke_all_tokens(self, provider: str) -> TxReceipt:
        """Bump the generation on chain: every session token and API key for ``provider`` dies.

        The cached session token is dropped; the next one carries the new generation.

        Raises:
            NotAcknowledgedError: no sub-account with the provider.
        """
        prov = checksum(provider, what="provider")
        sender = self._wallet.require_sender()
        if await self.read_account(prov, fresh=True) is None:
            raise NotAcknowledgedError(f"no sub-account with provider {prov}", provider=prov)
        try:
            receipt = await self._contracts.revoke_all_tokens(sender, prov)
        finally:
            self.forget(prov)
        return receipt
