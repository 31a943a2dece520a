"""The single-flight cache of ephemeral session tokens (one per provider).

The token format, signing and verification live in :mod:`og_inference_async._tokens`; API keys
(persistent tokens) in :mod:`og_inference_async._apikeys`. Only :meth:`SessionTokenCache.get_token`
does I/O (it fetches the sub-account's generation); everything else is plain synchronous code.
Tokens never appear in reprs or log records.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import anyio
import anyio.to_thread
from eth_utils import to_checksum_address

from ._exceptions import ConfigError
from ._singleflight import Flight
from ._tokens import (
    _MAX_MS,
    MAX_EPHEMERAL_LIFETIME_MS,
    MessageSigner,
    SignedToken,
    _check_address_format,
    _check_int,
    _is_int,
    make_session_claims,
    sign_token,
)

__all__ = ["DEFAULT_REFRESH_MARGIN_MS", "SessionCacheStats", "SessionTokenCache"]

logger = logging.getLogger(__name__)

#: Default reuse margin of the session cache: reissue when 1 h or less of life is left ([TS] rule).
DEFAULT_REFRESH_MARGIN_MS = 3_600_000
# During a refresh, and when a refresh fails, a cached token is still served while it has more than
# this much life left (capped by the refresh margin); below it callers wait for / get the new token.
_MIN_REMAINING_MS = 60_000


@dataclass
class SessionCacheStats:
    """Counters of a :class:`SessionTokenCache` (a snapshot; see :attr:`SessionTokenCache.stats`).

    Attributes:
        signatures: tokens signed.
        generation_fetches: calls made to ``fetch_generation``.
        hits: calls answered from the cache without waiting.
        misses: flights started (the caller fetched and signed a new token).
        coalesced: waits on a flight started by another caller.
        failures: flights that ended with an exception.
        evictions: entries dropped by the LRU bound.
    """

    signatures: int = 0
    generation_fetches: int = 0
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    failures: int = 0
    evictions: int = 0


class _Entry:
    __slots__ = ("flight", "token")

    def __init__(self) -> None:
        self.token: SignedToken | None = None
        self.flight: Flight[SignedToken] | None = None  # stale once invalidate() dropped the entry


class SessionTokenCache:
    """Per-provider cache of ephemeral session tokens with single-flight issuance.

    Policy:

    * A cached token is reused while more than ``refresh_margin_ms`` of its life is left (the TS
      SDK's rule: a 24 h token is reused for about 23 h).
    * When a token enters the margin, the first caller refreshes it (fetches the generation and
      signs); callers arriving meanwhile keep getting the still-valid cached token. If that refresh
      fails, the refreshing caller also gets the cached token (a warning is logged) and the next
      call tries again. Once less than ``min(60 s, refresh_margin_ms)`` is left, callers wait for
      the refresh and its failure is raised to them.
    * With no usable token, exactly one caller (the leader) fetches and signs; concurrent callers
      wait on the same flight and get the same token, or the same exception. Failures are not
      cached: the next call starts a new flight.
    * If the leader is cancelled, its waiters wake up and one of them takes over the flight.
    * :meth:`invalidate` drops tokens; a flight running at that moment is marked stale, so its
      result is neither stored nor returned: its callers start over with a fresh generation.
    * No lock exists, and so none is held across I/O: state changes happen between awaits, on one
      event loop. At most ``max_entries`` providers are kept (least recently used evicted).

    Args:
        account: the user's signer (eth-account ``LocalAccount`` or compatible).
        fetch_generation: ``async (provider) -> int``, the sub-account's on-chain generation
            (0 when it does not exist).
        clock: wall clock in seconds (injectable for tests).
        token_lifetime_ms: lifetime of issued tokens, 1..86,400,000 ms.
        refresh_margin_ms: reissue when this much life or less is left; ``0 <= margin < lifetime``.
        max_entries: LRU bound on the number of providers, at least 1.
        nonce_factory: makes each token's nonce.
        sign_in_thread: sign in a worker thread instead of inline (signing takes ~0.2 ms).

    Raises:
        ConfigError: a bad lifetime, margin or bound.
    """

    def __init__(
        self,
        *,
        account: MessageSigner,
        fetch_generation: Callable[[str], Awaitable[int]],
        clock: Callable[[], float] = time.time,
        token_lifetime_ms: int = MAX_EPHEMERAL_LIFETIME_MS,
        refresh_margin_ms: int = DEFAULT_REFRESH_MARGIN_MS,
        max_entries: int = 10_000,
        nonce_factory: Callable[[], str] = lambda: secrets.token_hex(16),
        sign_in_thread: bool = False,
    ) -> None:
        _check_int("token_lifetime_ms", token_lifetime_ms, 1, MAX_EPHEMERAL_LIFETIME_MS)
        if not _is_int(refresh_margin_ms) or not 0 <= refresh_margin_ms < token_lifetime_ms:
            raise ConfigError(
                f"refresh_margin_ms must be an int in 0..token_lifetime_ms-1 "
                f"(token_lifetime_ms={token_lifetime_ms}), got {refresh_margin_ms!r}",
                hint="pass a smaller refresh_margin_ms, e.g. a quarter of the lifetime",
            )
        _check_int("max_entries", max_entries, 1, _MAX_MS)
        address = getattr(account, "address", None)
        if not callable(getattr(account, "sign_message", None)) or not isinstance(address, str):
            raise ConfigError("account must have an address and a sign_message method")
        self._account = account
        self._address = to_checksum_address(_check_address_format("account address", address))
        self._fetch_generation = fetch_generation
        self._clock = clock
        self._lifetime_ms = token_lifetime_ms
        self._refresh_margin_ms = refresh_margin_ms
        self._min_remaining_ms = min(_MIN_REMAINING_MS, refresh_margin_ms)
        self._max_entries = max_entries
        self._nonce_factory = nonce_factory
        self._sign_in_thread = sign_in_thread
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._stats = SessionCacheStats()

    def __repr__(self) -> str:
        return f"SessionTokenCache(address={self._address!r}, entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def stats(self) -> SessionCacheStats:
        """A snapshot of the counters."""
        return replace(self._stats)

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    async def get_token(self, provider: str) -> SignedToken:
        """Return a valid session token for ``provider``, issuing one if needed.

        Args:
            provider: the provider address, checksummed by the caller; it is the cache key and is
                written into the token as given.

        Returns:
            A token with more than the refresh margin of life left (or, while a refresh is running
            or after it failed, a cached one with at least ``min(60 s, margin)`` left).

        Raises:
            InvalidAddressError: ``provider`` is not an address.
            Exception: whatever ``fetch_generation`` raised, handed to every caller of that flight.
        """
        while True:
            now = self._now_ms()
            entry = self._entries.get(provider)
            fallback: SignedToken | None = None
            if entry is not None:
                token = entry.token
                if token is not None:
                    remaining = token.claims.expires_at - now
                    if remaining > self._refresh_margin_ms or (
                        entry.flight is not None and remaining > self._min_remaining_ms
                    ):
                        self._entries.move_to_end(provider)
                        self._stats.hits += 1
                        return token
                    if remaining > self._min_remaining_ms:
                        fallback = token
                flight = entry.flight
                if flight is not None:
                    self._stats.coalesced += 1
                    landed, shared = await flight.wait()
                    if not landed:
                        continue
                    assert shared is not None
                    return shared
            result = await self._lead(provider, fallback)
            if result is not None:
                return result

    async def _lead(self, provider: str, fallback: SignedToken | None) -> SignedToken | None:
        """Run one flight. ``None`` means it went stale and the caller must start over."""
        _check_address_format("provider", provider)
        entry = self._entries.get(provider)
        if entry is None:
            entry = _Entry()
            self._entries[provider] = entry
        self._entries.move_to_end(provider)
        flight: Flight[SignedToken] = Flight()
        entry.flight = flight
        self._evict()
        self._stats.misses += 1
        try:
            await flight.run(lambda: self._issue(provider))
            if flight.error is None and not flight.stale:
                entry.token = flight.result
        finally:
            if entry.flight is flight:
                entry.flight = None
                if entry.token is None and self._entries.get(provider) is entry:
                    del self._entries[provider]
            flight.done.set()
            self._evict()  # entries kept while in flight may have pushed the cache over its bound
        if flight.stale:
            return None
        if flight.error is not None:
            self._stats.failures += 1
            if fallback is not None and fallback.claims.expires_at - self._now_ms() > self._min_remaining_ms:
                logger.warning(
                    "refreshing the session token for provider %s failed (%s); using the cached token",
                    provider,
                    type(flight.error).__name__,
                )
                return fallback
        return flight.outcome()

    async def _issue(self, provider: str) -> SignedToken:
        self._stats.generation_fetches += 1
        generation = await self._fetch_generation(provider)
        claims = make_session_claims(
            self._address,
            provider,
            generation=generation,
            now_ms=self._now_ms(),
            lifetime_ms=self._lifetime_ms,
            nonce=self._nonce_factory(),
        )
        if self._sign_in_thread:
            token = await anyio.to_thread.run_sync(sign_token, claims, self._account)
        else:
            token = sign_token(claims, self._account)
        self._stats.signatures += 1
        logger.debug(
            "issued a session token for provider %s (generation %d, expires at %d)",
            provider,
            claims.generation,
            claims.expires_at,
        )
        return token

    def _evict(self) -> None:
        excess = len(self._entries) - self._max_entries
        if excess <= 0:
            return
        # Oldest first; entries with a flight in progress are kept so their callers stay coalesced.
        idle = (key for key, entry in self._entries.items() if entry.flight is None)
        victims = list(itertools.islice(idle, excess))
        for key in victims:
            del self._entries[key]
        self._stats.evictions += len(victims)

    def invalidate(self, provider: str | None = None) -> None:
        """Drop the cached token of ``provider``, or of every provider when ``None``.

        Call it after ``revoke_all_tokens`` (the generation changed). A flight running for a dropped
        provider is marked stale: its result is discarded and its callers issue a new token.
        """
        if provider is None:
            entries = list(self._entries.values())
            self._entries.clear()
        else:
            dropped = self._entries.pop(provider, None)
            entries = [] if dropped is None else [dropped]
        for entry in entries:
            if entry.flight is not None:
                entry.flight.stale = True
