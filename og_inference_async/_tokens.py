"""The session-token codec: claims, their JSON, signing, decoding, verification and signer recovery.

A token is the compact JSON of :class:`TokenClaims` (exact key order, see PROTOCOL.md 3.1), signed with
EIP-191 ``personal_sign`` over the 32 raw bytes of its keccak256 hash, and sent as
``Authorization: Bearer app-sk-<base64(json "|" signature)>``. Ephemeral session tokens (``tokenId``
255) are issued and cached by :class:`~og_inference_async._session.SessionTokenCache`; persistent
tokens ("API keys") are built in :mod:`og_inference_async._apikeys`.

Everything here is plain synchronous code: encoding, hashing and signing are CPU work (about 25 us
per signature for a local account). Tokens and signatures never appear in reprs or exception messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from coincurve import PrivateKey, PublicKey
from eth_account.messages import SignableMessage, encode_defunct
from eth_utils import keccak, to_checksum_address

from ._exceptions import (
    ConfigError,
    InvalidAddressError,
    TokenDecodeError,
    TokenRejectedError,
    VerificationError,
)

__all__ = [
    "EPHEMERAL_TOKEN_ID",
    "MAX_EPHEMERAL_LIFETIME_MS",
    "MAX_PERSISTENT_TOKEN_ID",
    "TOKEN_PREFIX",
    "DecodedToken",
    "MessageSigner",
    "SignedToken",
    "TokenClaims",
    "TokenRejectedError",
    "decode_token",
    "make_session_claims",
    "personal_sign_text",
    "recover_personal_signer",
    "recover_token_signer",
    "sign_token",
    "verify_token",
]

#: Prefix of every token string (after ``Bearer ``).
TOKEN_PREFIX = "app-sk-"
#: ``tokenId`` of ephemeral session tokens.
EPHEMERAL_TOKEN_ID = 255
#: Highest ``tokenId`` usable by a persistent token (API key).
MAX_PERSISTENT_TOKEN_ID = 254
#: Maximum (and default) lifetime of an ephemeral token: 24 h.
MAX_EPHEMERAL_LIFETIME_MS = 86_400_000
#: Default clock-skew tolerance of :func:`verify_token`.
DEFAULT_SKEW_MS = 60_000

# A real token is ~500 characters; anything far larger is refused before decoding.
_MAX_TOKEN_CHARS = 8192
_MAX_MS = 2**63 - 1
_MAX_UINT256 = 2**256 - 1

_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_SIGNATURE_RE = re.compile(r"0x[0-9a-fA-F]{130}")
_SECP256K1_N = 2**256 - 432420386565659656852420866394968145599  # the secp256k1 group order
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
