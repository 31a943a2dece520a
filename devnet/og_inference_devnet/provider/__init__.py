"""A protocol-faithful local 0G inference provider for the devnet.

It behaves like a real 0G provider as the official TS SDK 0.9.0 sees it: it registers on chain
(``addOrUpdateService`` with a TEE signer, acknowledged by the owner), checks ``app-sk-``
session tokens and API keys against the chain, serves OpenAI-shaped endpoints from a small
deterministic local model, signs every response with its TEE key, bills per request and settles
with EIP-712 ``TEESettlement`` signatures.

::

    async with start_devnet() as dn:
        chat = await start_provider(
            dn, dn.task_group, service_type="chatbot", model="m", input_price=10**12,
            output_price=2 * 10**12, account_index=20, settle_interval=None,
        )
        ...  # requests to chat.url + "/v1/proxy/chat/completions"
        await chat.settle_now()

Endpoints (under the service URL): ``POST /v1/proxy/chat/completions`` (JSON or SSE),
``/v1/proxy/images/generations``, ``/v1/proxy/images/edits`` (multipart),
``/v1/proxy/audio/transcriptions`` (multipart), ``POST /v1/async/images/{generations,edits}`` ->
202 and ``GET /v1/async/jobs/{id}``, ``GET /v1/proxy/signature/{chat_id}``, ``GET /v1/quote``,
``GET /v1/proxy/attestation/report``, ``GET /v1/models`` (no auth) and
``GET /v1/user/{address}/unsettledfee`` (billed and unsettled fees plus those reserved by accepted async
jobs, so auto-funding tops up for what is about to be owed).

The model: a chat answers ``"Echo: <last user message>"`` (cut to ``max_tokens`` words); tokens
are whitespace-separated words; images are PNGs coloured from the prompt's hash; a transcription
of a text upload is its text, of a WAV file names its duration.

Request checks, in order, and their answers (body ``{"error": {"code", "message", ...}}``):

=====  ==========================  ==========================================================
HTTP   code                        when
=====  ==========================  ==========================================================
404    ``unsupported_endpoint``    a route of another service type (chat on a text-to-image
                                   provider, ...; async job polls on non-image providers)
429    ``rate_limited``            fault knob ``rate_limit`` (with ``Retry-After``)
503    ``service_unavailable``     fault knob ``unavailable`` (with ``Retry-After``)
500    ``internal_error``          fault knob ``error_rate`` (seeded RNG)
401    ``missing_token``           no ``Authorization: Bearer ...`` header
401    ``malformed_token``         not ``app-sk-`` + base64(JSON ``|`` signature), bad fields
401    ``invalid_signature``       the signature does not recover to the token's ``address``
403    ``wrong_provider``          the token's ``provider`` is another provider (case-insensitive)
401    ``invalid_token_lifetime``  ephemeral token (id 255) with ``expiresAt`` 0 or over 24 h
401    ``token_not_yet_valid``     ``timestamp`` in the future (beyond ``clock_skew_ms``, default 0)
401    ``token_expired``           ``expiresAt`` passed (0 = never, persistent keys only)
404    ``account_not_found``       the user has no sub-account with this provider
401    ``generation_mismatch``     token ``generation`` != on-chain generation (revokeAllTokens)
401    ``token_revoked``           persistent id (0-254) set in the on-chain ``revokedBitmap``
403    ``not_acknowledged``        the account's ``acknowledged`` flag is false
402    ``insufficient_balance``    balance rule failed; ``required``/``available``/``unsettled``/
                                   ``pending``/``fee`` (wei, decimal strings) sit inside ``error``
403    ``address_mismatch``        ``/v1/user/{address}/unsettledfee`` for another address
400    ``invalid_request``         bad JSON / form, missing ``messages``/``prompt``/file, bad ``n``
404    ``model_not_found``         a ``model`` other than the registered one
404    ``not_found``               unknown chat id (signature) or job id, unknown route
403    ``forbidden``               a POST outside ``/v1/proxy`` (e.g. ``<url>/chat/completions``)
503    ``chain_unavailable``       the node could not be read
=====  ==========================  ==========================================================

Each provider serves the inference routes of its own service type only, as a real one does:
``chatbot`` the chat completions, ``text-to-image`` the (async) image generations,
``image-editing`` the (async) image edits, ``speech-to-text`` the transcriptions. Every HTTP
request that reaches the server is counted in ``ProviderHandle.requests_received`` (billed ones
in ``requests_served``), so a test can assert that nothing was sent.

Balance rule (the TS SDK's rule, PROTOCOL.md 2.6): a request is served only if
``account.balance - account.pendingRefund >= unsettled fees + pending job fees + this request's
fee + 1 OG`` (``MIN_LOCKED_BALANCE``). The fee of the request is exact (the model runs before the
check). 402 was chosen over the older Go broker's 400. A refused request is never billed. The
check and the booking of the fee happen with no ``await`` in between, so concurrent requests can
never together pass a balance that covers only some of them.

Async image jobs: a submission is checked by the balance rule and its fee is *reserved* at once
(owed from then on, so concurrent submissions cannot overspend); the job is billed that reserved
fee when it completes, and the reservation is released (nothing billed) when it fails.
A completed job's result is verifiable like a synchronous response: the ``GET
/v1/async/jobs/{id}`` answer that delivers it carries a ``ZG-Res-Key: <chat id>`` header and the
same id as ``chatId`` in its JSON (``{"jobId", "status": "completed", "createdAt", "updatedAt",
"chatId", "data"}``); that body is built once and sent byte-for-byte identically on every poll,
and ``GET /v1/proxy/signature/<chat id>`` signs ``sha256hex(submit request body) + ":" +
sha256hex(completed poll response body)``. Pending/processing/failed answers carry no chat id.

Account reads are cached per user and revalidated against the latest block hash (shared by
requests arriving within 5 ms of each other), so any mined transaction (a revocation, a top-up,
a snapshot revert) is seen by the next request; settlement also drops the settled users' entries.

Billing and settlement: fees follow PROTOCOL.md 4.6 (chat ``prompt*input + completion*output``,
images ``n*input``, transcription per token by default (``input_tokens*input +
output_tokens*output``; usage ``{"type": "tokens", ...}``) or, with
``transcription_billing="duration"``, per billable second). Unsettled fees are kept in
memory; every ``settle_interval`` seconds (2 s by default; ``None`` for on demand only) and on
:meth:`ProviderHandle.settle_now`, each user's fees are signed as an EIP-712 ``TEESettlement``
(nonce = ``account.nonce + 1``), checked with ``previewSettlementResults`` and sent with
``settleFeesWithTEE`` by the provider. PARTIAL: the amount taken is dropped and the remainder
stays owed (one open record, retried next round). Rejected users keep their fees for the next
round, except a missing sub-account (``ACCOUNT_NOT_FOUND``): written off. A settlement sent whose
outcome is unknown (no receipt, transport failure) stays in doubt with its nonce and transaction
hash, still owed and not re-signed; the next round reads the account's nonce: if it reached the
in-doubt nonce the settlement landed (fees dropped; a PARTIAL remainder is read from the
transaction's ``TEESettlementResult`` event), otherwise the fees are settled again. So a
settlement is never charged twice.
"""

from __future__ import annotations

from ._billing import FeeBook, SettlementResult, sign_settlement
from ._core import MIN_LOCKED_BALANCE, AuthFailure, ProviderConfig, ProviderCore
from ._faults import ProviderFaults
from ._server import DEFAULT_PROVIDERS, ProviderHandle, start_default_providers, start_provider, tee_key_for

__all__ = [
    "DEFAULT_PROVIDERS",
    "MIN_LOCKED_BALANCE",
    "AuthFailure",
    "FeeBook",
    "ProviderConfig",
    "ProviderCore",
    "ProviderFaults",
    "ProviderHandle",
    "SettlementResult",
    "sign_settlement",
    "start_default_providers",
    "start_provider",
    "tee_key_for",
]
