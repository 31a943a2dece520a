"""Session tokens and API keys as data: build, sign (encode), decode and verify them.

A 0G session token is the compact JSON of :class:`TokenClaims`, signed with EIP-191 ``personal_sign``
over its keccak256 hash and sent as ``Authorization: Bearer app-sk-<base64(json "|" signature)>``
(PROTOCOL.md 3.1). The broker issues and caches tokens on its own; this module is for code that
handles them directly: a provider or gateway checking what clients send, a test double of a
provider, a tool minting API keys offline. Everything here is plain synchronous code (no I/O).

::

    from og_inference_async.tokens import decode_token, make_session_claims, sign_token, verify_token

    signed = sign_token(make_session_claims(user, provider, generation=0, now_ms=now), account)
    decoded = decode_token(signed.authorization)        # TokenDecodeError when malformed
    verify_token(decoded, expected_provider=provider)   # TokenRejectedError (reason code) when refused

Generation and revocation live on chain: a verifier compares ``decoded.claims.generation`` with the
sub-account's ``generation`` and looks ``decoded.claims.token_id`` up in its revocation bitmap
(:func:`revoked_ids`); :func:`check_token_id` checks an id for a NEW API key. Tokens, signatures and
API keys never appear in reprs or error messages.
"""

from __future__ import annotations

from ._apikeys import ApiKey, check_token_id, issue_api_key, make_api_key_claims, revoked_ids
from ._tokens import (
    EPHEMERAL_TOKEN_ID,
    MAX_EPHEMERAL_LIFETIME_MS,
    MAX_PERSISTENT_TOKEN_ID,
    TOKEN_PREFIX,
    DecodedToken,
    MessageSigner,
    SignedToken,
    TokenClaims,
    TokenRejectedError,
    decode_token,
    make_session_claims,
    personal_sign_text,
    recover_personal_signer,
    recover_token_signer,
    sign_token,
    verify_token,
)

__all__ = [
    # the format
    "TOKEN_PREFIX",
    "EPHEMERAL_TOKEN_ID",
    "MAX_PERSISTENT_TOKEN_ID",
    "MAX_EPHEMERAL_LIFETIME_MS",
    "TokenClaims",
    # building and signing (encoding)
    "make_session_claims",
    "MessageSigner",
    "sign_token",
    "SignedToken",
    "personal_sign_text",
    # decoding and verifying
    "decode_token",
    "DecodedToken",
    "verify_token",
    "TokenRejectedError",
    "recover_token_signer",
    "recover_personal_signer",
    # API keys (persistent tokens) and their revocation bitmap
    "make_api_key_claims",
    "issue_api_key",
    "ApiKey",
    "check_token_id",
    "revoked_ids",
]
