"""Session tokens and API keys: the ``app-sk-`` codec, signing, and the single-flight token cache.

A token is the compact JSON of :class:`TokenClaims` (exact key order, see PROTOCOL.md 3.1), signed with
EIP-191 ``personal_sign`` over the 32 raw bytes of its keccak256 hash, and sent as
``Authorization: Bearer app-sk-<base64(json "|" signature)>``. Ephemeral session tokens (``tokenId``
255) are issued and cached by :class:`SessionTokenCache`; persistent tokens ("API keys", ``tokenId``
0-254) are built with :func:`make_api_key_claims` / :func:`issue_api_key`.

Everything here except :meth:`SessionTokenCache.get_token` is plain synchronous code: encoding, hashing
and signing are CPU work (about 0.2 ms per signature with the coincurve backend of eth-keys).
Tokens, signatures and API keys never appear in reprs, log records or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Protocol

import anyio
import anyio.to_thread
from coincurve import PrivateKey, PublicKey
from eth_account.messages import SignableMessage, encode_defunct
from eth_utils import keccak, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ._exceptions import (
    ApiKeyError,
    ConfigError,
    InvalidAddressError,
    TokenDecodeError,
    TokenRejectedError,
    VerificationError,
)
from ._singleflight import Flight

__all__ = [
    "EPHEMERAL_TOKEN_ID",
    "MAX_EPHEMERAL_LIFETIME_MS",
    "MAX_PERSISTENT_TOKEN_ID",
    "TOKEN_PREFIX",
    "ApiKey",
    "DecodedToken",
    "MessageSigner",
    "SessionCacheStats",
    "SessionTokenCache",
    "SignedToken",
    "TokenClaims",
    "TokenRejectedError",
    "check_token_id",
    "decode_token",
    "issue_api_key",
    "make_api_key_claims",
    "make_session_claims",
    "personal_sign_text",
    "pick_token_id",
    "recover_personal_signer",
    "recover_token_signer",
    "revoked_ids",
    "sign_token",
    "verify_token",
]

logger = logging.getLogger(__name__)

#: Prefix of every token string (after ``Bearer ``).
TOKEN_PREFIX = "app-sk-"
#: ``tokenId`` of ephemeral session tokens.
EPHEMERAL_TOKEN_ID = 255
#: Highest ``tokenId`` usable by a persistent token (API key).
MAX_PERSISTENT_TOKEN_ID = 254
#: Maximum (and default) lifetime of an ephemeral token: 24 h.
MAX_EPHEMERAL_LIFETIME_MS = 86_400_000
#: Default reuse margin of the session cache: reissue when 1 h or less of life is left ([TS] rule).
DEFAULT_REFRESH_MARGIN_MS = 3_600_000
#: Default clock-skew tolerance of :func:`verify_token`.
DEFAULT_SKEW_MS = 60_000

# A real token is ~500 characters; anything far larger is refused before decoding.
_MAX_TOKEN_CHARS = 8192
_MAX_MS = 2**63 - 1
_MAX_UINT256 = 2**256 - 1
# During a refresh, and when a refresh fails, a cached token is still served while it has more than
# this much life left (capped by the refresh margin); below it callers wait for / get the new token.
_MIN_REMAINING_MS = 60_000

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_SIGNATURE_RE = re.compile(r"0x[0-9a-fA-F]{130}")
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_UPPER_NIBBLES = frozenset("89abcdef")
_CLAIM_KEYS = ("address", "provider", "timestamp", "expiresAt", "nonce", "generation", "tokenId")


# --- claims ------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in {low}..{high}, got {value}")


def _check_address_format(name: str, value: object) -> str:
    if not isinstance(value, str) or _ADDRESS_RE.fullmatch(value) is None:
        raise InvalidAddressError(f"{name} must be a 0x-prefixed 20-byte hex address")
    return value


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The signed fields of a session token or API key.

    The constructor validates types strictly (ints must be ``int``, not ``bool``/``float``/``str``)
    and EIP-55 checksums ``address``; ``provider`` is kept exactly as given, because the signature
    covers the literal string (the TS client does not normalise it).

    Attributes:
        address: the user's (signer's) address, checksummed.
        provider: the provider address, as given.
        timestamp: issue time, ms since the epoch.
        expires_at: expiry, ms since the epoch; ``0`` means never (persistent tokens only).
        nonce: any unique string (32 hex chars by default).
        generation: the on-chain ``account.generation`` the token belongs to.
        token_id: ``255`` for ephemeral session tokens, ``0``-``254`` for API keys.

    Raises:
        ConfigError: a field has the wrong type or is out of range
            (:class:`InvalidAddressError` for the addresses).
    """

    address: str
    provider: str
    timestamp: int
    expires_at: int
    nonce: str
    generation: int
    token_id: int

    def __post_init__(self) -> None:
        _check_address_format("address", self.address)
        _check_address_format("provider", self.provider)
        _check_int("timestamp", self.timestamp, 0, _MAX_MS)
        _check_int("expires_at", self.expires_at, 0, _MAX_MS)
        _check_int("generation", self.generation, 0, _MAX_UINT256)
        _check_int("token_id", self.token_id, 0, EPHEMERAL_TOKEN_ID)
        if not isinstance(self.nonce, str):
            raise ConfigError(f"nonce must be a str, got {type(self.nonce).__name__}")
        try:
            self.nonce.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError("nonce must be valid Unicode (no lone surrogates)") from None
        object.__setattr__(self, "address", to_checksum_address(self.address))

    @property
    def is_ephemeral(self) -> bool:
        """Whether this is an ephemeral session token (``token_id == 255``)."""
        return self.token_id == EPHEMERAL_TOKEN_ID

    def to_json(self) -> str:
        """Serialise exactly like the TS SDK's ``JSON.stringify``.

        Returns:
            Compact JSON with keys ``address, provider, timestamp, expiresAt, nonce, generation,
            tokenId`` in that order; non-ASCII characters are written as UTF-8, not ``\\u`` escapes.
        """
        return json.dumps(
            {
                "address": self.address,
                "provider": self.provider,
                "timestamp": self.timestamp,
                "expiresAt": self.expires_at,
                "nonce": self.nonce,
                "generation": self.generation,
                "tokenId": self.token_id,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )


def make_session_claims(
    address: str,
    provider: str,
    *,
    generation: int,
    now_ms: int,
    lifetime_ms: int = MAX_EPHEMERAL_LIFETIME_MS,
    nonce: str | None = None,
) -> TokenClaims:
    """Build the claims of an ephemeral session token (``tokenId`` 255).

    Args:
        address: the user's address (checksummed in the result).
        provider: the provider address, written into the token as given.
        generation: the sub-account's current on-chain generation (0 if it does not exist).
        now_ms: issue time in ms.
        lifetime_ms: 1..86,400,000 ms.
        nonce: defaults to 32 random hex chars.

    Raises:
        ConfigError: a bad lifetime or field.
    """
    _check_int("lifetime_ms", lifetime_ms, 1, MAX_EPHEMERAL_LIFETIME_MS)
    _check_int("now_ms", now_ms, 0, _MAX_MS - lifetime_ms)
    return TokenClaims(
        address=address,
        provider=provider,
        timestamp=now_ms,
        expires_at=now_ms + lifetime_ms,
        nonce=secrets.token_hex(16) if nonce is None else nonce,
        generation=generation,
        token_id=EPHEMERAL_TOKEN_ID,
    )


# --- signing -------------------------------------------------------------------------------------


class _HasSignature(Protocol):
    @property
    def signature(self) -> bytes: ...


class MessageSigner(Protocol):
    """Anything that signs EIP-191 messages like an eth-account ``LocalAccount``."""

    @property
    def address(self) -> str:
        """The signer's address."""
        ...

    def sign_message(self, signable_message: SignableMessage, /) -> _HasSignature:
        """Sign an EIP-191 message; the result has a 65-byte ``signature``."""
        ...


def _personal_sign(account: MessageSigner, payload: bytes) -> str:
    """EIP-191 ``personal_sign`` of ``payload`` as ``0x`` + 130 hex chars.

    An eth-account ``LocalAccount`` is signed with coincurve directly: the same deterministic
    (RFC 6979, low-s) signature its coincurve backend makes, in about 25 us instead of about
    120 us. Any other signer goes through its own ``sign_message``.
    """
    key = getattr(account, "key", None)
    if isinstance(key, (bytes, bytearray)) and len(key) == 32:
        prefix = b"\x19Ethereum Signed Message:\n" + str(len(payload)).encode("ascii")
        raw = _private_key(bytes(key)).sign_recoverable(keccak(prefix + payload), hasher=None)
        return "0x" + raw[:64].hex() + f"{raw[64] + 27:02x}"
    return _signature_hex(account.sign_message(encode_defunct(primitive=payload)))


@lru_cache(maxsize=64)
def _private_key(secret: bytes) -> PrivateKey:
    """The coincurve key of a secret (cached: a process signs with few keys, over and over)."""
    return PrivateKey(secret)


def _signature_hex(signed: _HasSignature) -> str:
    raw = bytes(signed.signature)
    if len(raw) != 65:
        raise ConfigError(f"the account returned a {len(raw)}-byte signature; expected 65")
    return "0x" + raw.hex()


@dataclass(frozen=True, slots=True, repr=False)
class SignedToken:
    """A signed token, ready to send. Its repr hides the signature and token string.

    Attributes:
        claims: the signed fields.
        raw_message: the exact JSON that was hashed and signed.
        signature: ``0x`` + 130 lowercase hex chars (r, s, v).
        authorization: the full header value, ``"Bearer app-sk-..."``.
    """

    claims: TokenClaims
    raw_message: str
    signature: str
    authorization: str

    @property
    def token_string(self) -> str:
        """The ``app-sk-...`` string (an API key, or the header value without ``Bearer ``)."""
        return self.authorization[len("Bearer ") :]

    def __repr__(self) -> str:
        c = self.claims
        return (
            f"SignedToken(provider={c.provider!r}, token_id={c.token_id}, generation={c.generation}, "
            f"expires_at={c.expires_at}, token=<redacted>)"
        )


def sign_token(claims: TokenClaims, account: MessageSigner) -> SignedToken:
    """Sign token claims: keccak256 of the UTF-8 JSON, then ``personal_sign`` over the 32 hash bytes.

    Args:
        claims: the fields to sign; ``claims.address`` must be the account's address.
        account: an eth-account ``LocalAccount`` or anything with ``address`` and ``sign_message``.

    Returns:
        The signed token with its ``app-sk-`` string and ``Authorization`` value.

    Raises:
        ConfigError: ``claims.address`` is not the account's address, or the signature is malformed.
    """
    if str(account.address).lower() != claims.address.lower():
        raise ConfigError("claims.address is not the address of the signing account")
    raw = claims.to_json()
    digest = keccak(raw.encode("utf-8"))
    signature = _personal_sign(account, digest)
    encoded = base64.b64encode(f"{raw}|{signature}".encode()).decode("ascii")
    return SignedToken(
        claims=claims,
        raw_message=raw,
        signature=signature,
        authorization=f"Bearer {TOKEN_PREFIX}{encoded}",
    )


def personal_sign_text(text: str, account: MessageSigner) -> str:
    """EIP-191 ``personal_sign`` over the UTF-8 bytes of ``text`` (used for response signatures).

    Returns:
        ``0x`` + 130 lowercase hex chars.
    """
    return _personal_sign(account, text.encode("utf-8"))


@lru_cache(maxsize=256)
def _checksum(address: bytes) -> str:
    """EIP-55 checksum of a 20-byte address (as ``to_checksum_address``, without its input coercion).

    Cached: a broker sees the same few signers (TEE keys, its own wallet) over and over.
    """
    hex_address = address.hex()
    flags = keccak(hex_address.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if f in _UPPER_NIBBLES else c for c, f in zip(hex_address, flags))


def _recover(data: bytes, signature: str) -> str:
    """The checksummed address that EIP-191 ``personal_sign``-ed ``data``.

    Recovers with coincurve directly (what eth-keys' coincurve backend does underneath): about
    35 us instead of about 95 us through ``Account.recover_message``, whose argument coercion and
    two address checksums cost more than the curve arithmetic. The checks are those of eth-account
    and eth-keys: 65 bytes of hex, ``v`` in 27/28 (or 0/1), ``r`` and ``s`` below the curve order.
    """
    if not isinstance(signature, str) or _SIGNATURE_RE.fullmatch(signature) is None:
        raise ValueError("signature must be 0x + 130 hex chars")
    raw = bytes.fromhex(signature[2:])
    v = raw[64]
    if v not in (0, 1, 27, 28):  # eth-account would also take EIP-155 v values; wallets never send them
        raise ValueError("signature v must be 27 or 28 (or 0 or 1)")
    if int.from_bytes(raw[:32], "big") >= _SECP256K1_N or int.from_bytes(raw[32:64], "big") >= _SECP256K1_N:
        raise ValueError("signature r and s must be below the secp256k1 order")
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode("ascii") + data)
    public_key = PublicKey.from_signature_and_message(raw[:64] + bytes((v % 27,)), digest, hasher=None)
    return _checksum(keccak(public_key.format(compressed=False)[1:])[-20:])


def recover_personal_signer(text: str, signature: str) -> str:
    """Recover the checksummed address that ``personal_sign``-ed ``text``.

    Raises:
        VerificationError: the signature is not 65-byte hex or does not recover to an address.
    """
    try:
        return _recover(text.encode("utf-8"), signature)
    except Exception as exc:  # eth-keys raises several types for bad r/s/v
        raise VerificationError(f"signature does not recover ({type(exc).__name__})") from None


# --- decoding and verification -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class DecodedToken:
    """A token parsed by :func:`decode_token` (not yet verified). Its repr hides the signature.

    Attributes:
        claims: the parsed fields (``address`` checksummed).
        raw_message: the JSON exactly as it was signed.
        signature: the ``0x`` signature as found in the token.
    """

    claims: TokenClaims
    raw_message: str
    signature: str

    @property
    def message_hash(self) -> bytes:
        """keccak256 of the raw message (the 32 bytes that were ``personal_sign``-ed)."""
        return keccak(self.raw_message.encode("utf-8"))

    def __repr__(self) -> str:
        c = self.claims
        return (
            f"DecodedToken(address={c.address!r}, provider={c.provider!r}, token_id={c.token_id}, "
            f"generation={c.generation}, expires_at={c.expires_at}, signature=<redacted>)"
        )


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_token(value: str) -> DecodedToken:
    """Parse ``"Bearer app-sk-..."`` or ``"app-sk-..."`` without checking the signature.

    The base64 payload is split on its last ``|`` into the JSON and the signature. Field types are
    checked strictly; unknown extra keys are ignored (the signature covers them anyway).

    Args:
        value: an Authorization header value or a bare token / API key.

    Returns:
        The parsed token; pass it to :func:`verify_token`.

    Raises:
        TokenDecodeError: anything malformed (prefix, base64, separator, JSON, field types,
            signature format). The message never contains the token.
    """
    if not isinstance(value, str):
        raise TokenDecodeError(f"token must be a str, got {type(value).__name__}")
    if len(value) > _MAX_TOKEN_CHARS:
        raise TokenDecodeError(f"token is too long ({len(value)} characters)")
    text = value.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].lstrip(" ")
    if not text.startswith(TOKEN_PREFIX):
        raise TokenDecodeError(f"token does not start with {TOKEN_PREFIX!r}")
    try:
        payload = base64.b64decode(text[len(TOKEN_PREFIX) :], validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # bad alphabet/padding, non-ASCII input, bad UTF-8
        raise TokenDecodeError("token payload is not valid base64 of UTF-8 text") from None
    raw, sep, signature = payload.rpartition("|")
    if not sep:
        raise TokenDecodeError("token payload has no '|' between the message and the signature")
    if _SIGNATURE_RE.fullmatch(signature) is None:
        raise TokenDecodeError("token signature is not 0x followed by 130 hex characters")
    try:
        obj = json.loads(raw, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise TokenDecodeError(f"token message is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise TokenDecodeError("token message is not a JSON object")
    missing = [key for key in _CLAIM_KEYS if key not in obj]
    if missing:
        raise TokenDecodeError(f"token message lacks {', '.join(missing)}")
    for key in ("address", "provider"):
        if not isinstance(obj[key], str) or _ADDRESS_RE.fullmatch(obj[key]) is None:
            raise TokenDecodeError(f"token field {key!r} is not a 0x address")
    if not isinstance(obj["nonce"], str):
        raise TokenDecodeError("token field 'nonce' is not a string")
    for key in ("timestamp", "expiresAt", "generation", "tokenId"):
        if not _is_int(obj[key]):
            raise TokenDecodeError(f"token field {key!r} is not an integer")
    try:
        claims = TokenClaims(
            address=obj["address"],
            provider=obj["provider"],
            timestamp=obj["timestamp"],
            expires_at=obj["expiresAt"],
            nonce=obj["nonce"],
            generation=obj["generation"],
            token_id=obj["tokenId"],
        )
    except ConfigError as exc:
        raise TokenDecodeError(f"token field out of range: {exc.message}") from None
    return DecodedToken(claims=claims, raw_message=raw, signature=signature)


def recover_token_signer(decoded: DecodedToken) -> str:
    """Recover the checksummed address that signed a decoded token.

    Raises:
        TokenRejectedError: (a :class:`TokenVerificationError`, reason ``"bad_signature"``) the
            signature does not recover (v not 27/28/0/1, bad r or s).
    """
    try:
        return _recover(decoded.message_hash, decoded.signature)
    except Exception as exc:  # eth-keys raises several types for bad r/s/v
        raise TokenRejectedError(
            f"token signature does not recover ({type(exc).__name__})", reason="bad_signature"
        ) from None


def verify_token(
    decoded: DecodedToken,
    *,
    expected_provider: str | None = None,
    now_ms: int | None = None,
    max_ephemeral_ms: int = MAX_EPHEMERAL_LIFETIME_MS,
    skew_ms: int = DEFAULT_SKEW_MS,
) -> None:
    """Check a decoded token's signature, provider, lifetime and id (what a provider checks offline).

    Generation and revocation-bitmap checks need the chain; the caller does them with
    ``decoded.claims.generation`` and ``decoded.claims.token_id``.

    Args:
        decoded: from :func:`decode_token`.
        expected_provider: if given, must equal ``claims.provider`` case-insensitively.
        now_ms: the current time in ms (default: the system clock).
        max_ephemeral_ms: longest lifetime (``expiresAt - timestamp``) allowed for tokenId 255.
        skew_ms: clock-skew tolerance for "issued in the future" and "expired".

    Raises:
        TokenRejectedError: (a :class:`TokenVerificationError`) with the precise reason in its
            message and a stable code in ``reason``.
    """
    claims = decoded.claims
    if not 0 <= claims.token_id <= EPHEMERAL_TOKEN_ID:
        raise TokenRejectedError(f"tokenId {claims.token_id} is outside 0..255", reason="bad_token_id")
    signer = recover_token_signer(decoded)
    if signer != claims.address:
        raise TokenRejectedError(
            f"token is signed by {signer}, not by its address {claims.address}", reason="wrong_signer"
        )
    if expected_provider is not None and claims.provider.lower() != expected_provider.lower():
        raise TokenRejectedError(
            f"token is for provider {claims.provider}, not for {expected_provider}", reason="wrong_provider"
        )
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if claims.is_ephemeral:
        if claims.expires_at == 0:
            raise TokenRejectedError(
                "ephemeral token (tokenId 255) has expiresAt 0 (never)", reason="no_expiry"
            )
        lifetime = claims.expires_at - claims.timestamp
        if lifetime <= 0:
            raise TokenRejectedError("ephemeral token expires before it was issued", reason="bad_lifetime")
        if lifetime > max_ephemeral_ms:
            raise TokenRejectedError(
                f"ephemeral token lifetime {lifetime} ms exceeds the maximum {max_ephemeral_ms} ms",
                reason="lifetime_too_long",
            )
    if claims.timestamp > now + skew_ms:
        raise TokenRejectedError(
            f"token timestamp {claims.timestamp} is in the future (now {now})", reason="not_yet_valid"
        )
    if claims.expires_at != 0 and claims.expires_at + skew_ms <= now:
        raise TokenRejectedError(f"token expired at {claims.expires_at} (now {now})", reason="expired")


# --- ephemeral token cache -----------------------------------------------------------------------


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


# --- API keys (persistent tokens) ----------------------------------------------------------------


def _check_bitmap(revoked_bitmap: int) -> None:
    if not _is_int(revoked_bitmap) or not 0 <= revoked_bitmap <= _MAX_UINT256:
        raise ConfigError("revoked_bitmap must be an int in 0..2**256-1")


def revoked_ids(bitmap: int) -> list[int]:
    """The token ids whose bit is set in an on-chain ``revokedBitmap``, ascending.

    Raises:
        ConfigError: the bitmap is not a uint256.
    """
    _check_bitmap(bitmap)
    return [i for i in range(bitmap.bit_length()) if bitmap >> i & 1]


def check_token_id(token_id: int, revoked_bitmap: int) -> None:
    """Check that ``token_id`` can be used for a new API key.

    Raises:
        ApiKeyError: it is 255 (the ephemeral id), outside 0..254, or already revoked.
    """
    if not _is_int(token_id):
        raise ApiKeyError(f"tokenId must be an int, got {type(token_id).__name__}")
    if token_id == EPHEMERAL_TOKEN_ID:
        raise ApiKeyError(
            "tokenId 255 is the ephemeral session id and cannot be used/revoked individually; "
            "use revoke_all_tokens"
        )
    if not 0 <= token_id <= MAX_PERSISTENT_TOKEN_ID:
        raise ApiKeyError(f"tokenId {token_id} is outside 0..254")
    _check_bitmap(revoked_bitmap)
    if revoked_bitmap >> token_id & 1:
        raise ApiKeyError(
            f"tokenId {token_id} is already revoked",
            hint="pick another id, or call revoke_all_tokens(provider) to start a new generation",
        )


def pick_token_id(revoked_bitmap: int, issued: Collection[int] = ()) -> int:
    """The lowest API key id in 0..254 that is neither revoked nor in ``issued``.

    Args:
        revoked_bitmap: the sub-account's on-chain ``revokedBitmap``.
        issued: ids the caller knows to be in use by live keys.

    Raises:
        ApiKeyError: every id is used or revoked.
    """
    _check_bitmap(revoked_bitmap)
    taken = set(issued)
    for token_id in range(MAX_PERSISTENT_TOKEN_ID + 1):
        if not revoked_bitmap >> token_id & 1 and token_id not in taken:
            return token_id
    raise ApiKeyError(
        "all 255 API key ids are used or revoked; call revoke_all_tokens(provider) to start a new generation"
    )


def make_api_key_claims(
    address: str,
    provider: str,
    *,
    token_id: int,
    generation: int,
    now_ms: int,
    expires_in_ms: int | None,
    nonce: str,
) -> TokenClaims:
    """Build the claims of a persistent token (API key).

    Args:
        address: the user's address (checksummed in the result).
        provider: the provider address, written as given.
        token_id: 0..254 (check it against the bitmap with :func:`check_token_id`).
        generation: the sub-account's current on-chain generation.
        now_ms: issue time in ms.
        expires_in_ms: lifetime in ms; ``None`` or ``0`` means the key never expires.
        nonce: any unique string (32 random hex chars recommended).

    Raises:
        ApiKeyError: ``token_id`` is 255 or outside 0..254.
        ConfigError: a negative ``expires_in_ms`` or another bad field.
    """
    if not _is_int(token_id) or not 0 <= token_id <= MAX_PERSISTENT_TOKEN_ID:
        check_token_id(token_id, 0)  # raises the precise ApiKeyError
    if expires_in_ms is None:
        expires_in_ms = 0
    _check_int("expires_in_ms", expires_in_ms, 0, _MAX_MS)
    _check_int("now_ms", now_ms, 0, _MAX_MS - expires_in_ms)
    return TokenClaims(
        address=address,
        provider=provider,
        timestamp=now_ms,
        expires_at=now_ms + expires_in_ms if expires_in_ms else 0,
        nonce=nonce,
        generation=generation,
        token_id=token_id,
    )


class ApiKey(BaseModel):
    """A persistent token ("API key") for one provider. Its repr and str hide the secret.

    Use ``key.secret.get_secret_value()`` as the OpenAI SDK's ``api_key`` with
    ``base_url=<service url>/v1/proxy``.

    Attributes:
        token_id: 0..254; revoke it with ``revoke_api_key(provider, token_id)``.
        created_at: issue time, ms since the epoch.
        expires_at: expiry in ms since the epoch; 0 = never.
        provider: the provider address as written in the token.
        generation: the generation it belongs to (``revoke_all_tokens`` invalidates it).
        secret: the ``app-sk-...`` string.
    """

    model_config = ConfigDict(frozen=True, strict=True)

    token_id: int = Field(ge=0, le=MAX_PERSISTENT_TOKEN_ID)
    created_at: int = Field(ge=0)
    expires_at: int = Field(ge=0)
    provider: str
    generation: int = Field(ge=0)
    secret: SecretStr

    @classmethod
    def from_token(cls, token: SignedToken) -> ApiKey:
        """Wrap a signed persistent token.

        Raises:
            ApiKeyError: the token is an ephemeral one (tokenId 255).
        """
        claims = token.claims
        if claims.is_ephemeral:
            raise ApiKeyError("an ephemeral session token (tokenId 255) is not an API key")
        return cls(
            token_id=claims.token_id,
            created_at=claims.timestamp,
            expires_at=claims.expires_at,
            provider=claims.provider,
            generation=claims.generation,
            secret=SecretStr(token.token_string),
        )


def issue_api_key(
    account: MessageSigner,
    provider: str,
    *,
    token_id: int,
    generation: int,
    expires_in_ms: int | None = None,
    now_ms: int | None = None,
    nonce: str | None = None,
) -> ApiKey:
    """Build and sign an API key (no I/O: the caller picked ``token_id`` and read ``generation``).

    Args:
        account: the user's signer.
        provider: the provider address, written as given.
        token_id: 0..254, e.g. from :func:`pick_token_id`.
        generation: the sub-account's current on-chain generation.
        expires_in_ms: lifetime in ms; ``None``/``0`` = never expires.
        now_ms: issue time (default: the system clock).
        nonce: default 32 random hex chars.

    Raises:
        ApiKeyError: a bad ``token_id``.
        ConfigError: another bad argument.
    """
    claims = make_api_key_claims(
        account.address,
        provider,
        token_id=token_id,
        generation=generation,
        now_ms=int(time.time() * 1000) if now_ms is None else now_ms,
        expires_in_ms=expires_in_ms,
        nonce=secrets.token_hex(16) if nonce is None else nonce,
    )
    return ApiKey.from_token(sign_token(claims, account))
