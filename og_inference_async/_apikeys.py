"""API keys (persistent session tokens, ``tokenId`` 0-254): ids, the revocation bitmap, claims, issuing.

An API key is a session token signed once and kept by the user (see :mod:`og_inference_async._tokens`
for the format). Everything here is plain synchronous code; the on-chain reads (generation, bitmap)
and the revocation transactions are the auth service's. API keys never appear in reprs or messages.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ._exceptions import ApiKeyError, ConfigError
from ._tokens import (
    _MAX_MS,
    _MAX_UINT256,
    EPHEMERAL_TOKEN_ID,
    MAX_PERSISTENT_TOKEN_ID,
    MessageSigner,
    SignedToken,
    TokenClaims,
    _check_int,
    _is_int,
    sign_token,
)

__all__ = ["ApiKey", "check_token_id", "issue_api_key", "make_api_key_claims", "pick_token_id", "revoked_ids"]


def _check_bitmap(revoked_bitmap: int) -> None:
    if not _is_int(revoked_bitmap) or not 0 <= revoked_bitmap <= _MAX_UINT256:
        raise ConfigError("revoked_bitmap must be an int in 0..2**256-1")


#: Why no API key id is left.
ALL_IDS_TAKEN = (
    "all 255 API key ids are used or revoked; call revoke_all_tokens(provider) to start a new generation"
)


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
    raise ApiKeyError(ALL_IDS_TAKEN)


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
