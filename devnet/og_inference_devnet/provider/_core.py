"""The provider's state and rules, independent of HTTP: auth, balance checks, billing, settlement.

The Starlette routes (``routes/``) only parse requests and shape responses; every decision a real
0G provider makes about a request (is the token valid, is the account funded, what does it cost,
what is signed, what is settled) lives here.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from og_inference_async import ContractRevertError, OGError, TokenDecodeError, TokenVerificationError
from og_inference_async.tokens import (
    EPHEMERAL_TOKEN_ID,
    MAX_EPHEMERAL_LIFETIME_MS,
    DecodedToken,
    decode_token,
    personal_sign_text,
    recover_token_signer,
    verify_token,
)

from .._checks import MAX_UINT256, need_int, need_seconds, need_text
from .._errors import DevnetError
from ._billing import (
    SETTLEMENT_STATUS,
    FeeBook,
    FeeRecord,
    InDoubt,
    SettlementResult,
    request_hash,
    requests_hash,
    sign_settlement,
)
from ._chain import AccountState, ProviderChain, ServiceState, inference_function, settlement_outcomes
from ._faults import ProviderFaults

__all__ = [
    "MIN_LOCKED_BALANCE",
    "AuthContext",
    "AuthFailure",
    "ProviderConfig",
    "ProviderCore",
]

logger = logging.getLogger("og_inference_devnet.provider")

#: The provider keeps this much above unsettled fees + the request's fee (TS ``MIN_LOCKED_BALANCE``).
MIN_LOCKED_BALANCE = 10**18

#: Most settlements the contract accepts in one ``settleFeesWithTEE`` call.
MAX_SETTLEMENTS_PER_TX = 50

T = TypeVar("T")


@dataclass
class ProviderConfig:
    """Behaviour settings of one devnet provider.

    Attributes:
        service_type: ``"chatbot"``, ``"text-to-image"``, ``"image-editing"`` or ``"speech-to-text"``.
        model: the model name registered on chain and served by ``/v1/models``.
        input_price: wei per input unit (token, image, or for speech-to-text an input (audio)
            token in token mode and a second of audio in duration mode).
        output_price: wei per output token.
        additional_info: extra keys merged into the on-chain ``additionalInfo`` JSON
            (``{"ProviderType": "decentralized", ...}`` is always present).
        settle_interval: seconds between automatic settlement rounds; ``None`` turns them off.
        min_locked_balance: the buffer of the balance rule (default 1 OG).
        clock_skew_ms: tolerance for token timestamps in the future and for expiry.
        max_ephemeral_ms: longest lifetime accepted for an ephemeral (255) token.
        head_join_window: seconds within which concurrent requests share one chain-head read
            (the account cache is validated against the latest block hash).
        async_job_seconds: how long an async image job takes.
        async_retry_after: ``Retry-After`` seconds sent while an async job is not finished.
        transcription_billing: how speech-to-text is billed: ``"tokens"`` (default; usage
            ``{"type": "tokens", "input_tokens", "output_tokens", "total_tokens"}``, fee
            ``input_tokens * input_price + output_tokens * output_price``) or ``"duration"``
            (usage ``{"type": "duration", "seconds"}``, fee ``billable seconds * input_price``).
        signature_store_size: how many response signatures are kept.

    Raises:
        ConfigError: a field of the wrong type or out of range.
    """

    service_type: str
    model: str
    input_price: int
    output_price: int
    additional_info: dict[str, Any] = field(default_factory=dict)
    settle_interval: float | None = 2.0
    min_locked_balance: int = MIN_LOCKED_BALANCE
    clock_skew_ms: int = 0
    max_ephemeral_ms: int = MAX_EPHEMERAL_LIFETIME_MS
    head_join_window: float = 0.005
    async_job_seconds: float = 0.2
    async_retry_after: int = 1
    transcription_billing: str = "tokens"
    signature_store_size: int = 100_000

    def __post_init__(self) -> None:
        need_text("service_type", self.service_type)
        need_text("model", self.model)
        for name in ("input_price", "output_price", "min_locked_balance"):
            need_int(name, getattr(self, name), 0, MAX_UINT256)
        if self.settle_interval is not None:
            need_seconds("settle_interval", self.settle_interval)
        need_int("clock_skew_ms", self.clock_skew_ms, 0)
        need_int("max_ephemeral_ms", self.max_ephemeral_ms, 1)
        need_seconds("head_join_window", self.head_join_window, zero_ok=True)
        need_seconds("async_job_seconds", self.async_job_seconds, zero_ok=True)
        need_int("async_retry_after", self.async_retry_after, 0)
        need_int("signature_store_size", self.signature_store_size, 1)


class AuthFailure(Exception):
    """A request refused by the provider: an HTTP status, a machine code and a message.

    Attributes:
        status: HTTP status code.
        code: machine-readable error code (see the package docstring).
        message: human-readable explanation (never contains the token).
        extra: additional JSON fields placed inside ``error`` (e.g. ``required``/``available``).
        headers: extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON error body ``{"error": {"code", "message", ...}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


@dataclass(frozen=True)
class AuthContext:
    """An authenticated request: who sent it and the account state it was checked against."""

    user: str
    token: DecodedToken
    account: AccountState


class _HeadWatcher:
    """The latest block hash, read on demand by one background loop.

    A caller gets a hash whose read *started* no earlier than ``window`` seconds before the caller
    asked, so a block mined before a request arrived is always seen. At most one read is in flight
    at a time, and reads happen only while requests are waiting: under load one ``eth_getBlockByNumber``
    serves every request that arrived while it was running.
    """

    def __init__(self, fetch: Callable[[], Awaitable[str]], window: float) -> None:
        self._fetch = fetch
        self.window = window
        self._value = ""
        self._error: BaseException | None = None
        self._started = float("-inf")
        self._wanted = anyio.Event()
        self._published = anyio.Event()
        self.running = False

    async def get(self) -> str:
        """Return a fresh enough head hash.

        Raises:
            OGError: the read failed.
        """
        arrived = time.monotonic()
        while self._started < arrived - self.window:
            if not self.running:
                return await self._fetch()
            self._wanted.set()
            await self._published.wait()
        if self._error is not None:
            raise self._error
        return self._value

    async def run(self) -> None:
        """The background loop (runs until cancelled)."""
        self.running = True
        try:
            while True:
                await self._wanted.wait()
                self._wanted = anyio.Event()
                started = time.monotonic()
                try:
                    self._value, self._error = await self._fetch(), None
                except OGError as exc:
                    self._error = exc
                except Exception as exc:  # a malformed node answer must not kill the loop
                    self._error = DevnetError(f"cannot read the chain head: {type(exc).__name__}")
                self._started = started
                published, self._published = self._published, anyio.Event()
                published.set()
        finally:
            self.running = False
            self._published.set()


class _Flight(Generic[T]):
    """One in-flight read that concurrent callers may share."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.done = anyio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


class _Coalescer(Generic[T]):
    """Share reads among callers that arrive within ``window`` seconds of a read's start."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._flights: dict[str, _Flight[T]] = {}

    async def get(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        arrived = time.monotonic()
        flight = self._flights.get(key)
        if flight is None or flight.started < arrived - self.window:
            flight = _Flight()
            self._flights[key] = flight
            try:
                flight.value = await fetch()
            except BaseException as exc:
                flight.error = exc
                raise
            finally:
                flight.done.set()
                if self._flights.get(key) is flight:
                    del self._flights[key]
            return flight.value
        await flight.done.wait()
        if flight.error is not None:
            # the leader failed (or was cancelled): read on our own
            return await fetch()
        return flight.value  # type: ignore[return-value]


@dataclass
class _CachedAccount:
    head: str
    account: AccountState | None


@dataclass
class AsyncJob:
    """An async image job (``/v1/async/...``)."""

    job_id: str
    user: str
    status: str
    created_at: int
    updated_at: int
    data: Any = None
    error: str | None = None
    fee: int = 0
    chat_id: str | None = None
    #: the exact bytes of the ``completed`` poll answer (signed; sent unchanged on every poll)
    result_body: bytes | None = None


class ProviderCore:
    """Everything a devnet provider knows and decides, shared by its HTTP routes.

    Args:
        private_key: the provider account's key (pays gas, receives fees).
        tee_key: the TEE signer's key (signs responses and settlements).
        chain: chain access for this provider.
        config: behaviour settings.
        faults: fault knobs.
    """

    def __init__(
        self,
        *,
        private_key: str,
        tee_key: str,
        chain: ProviderChain,
        config: ProviderConfig,
        faults: ProviderFaults,
    ) -> None:
        self._key = private_key
        self.account: LocalAccount = Account.from_key(private_key)
        self.address: str = self.account.address
        self.tee: LocalAccount = Account.from_key(tee_key)
        self.tee_address: str = self.tee.address
        # a key that is NOT the TEE signer, for the wrong_signature fault
        self._impostor: LocalAccount = Account.from_key(bytes(32 * [0x42]))
        self.chain = chain
        self.config = config
        self.faults = faults
        self.book = FeeBook()
        self.url = ""
        self.service: ServiceState | None = None
        self._accounts: dict[str, _CachedAccount] = {}
        self.head_watcher = _HeadWatcher(chain.head, config.head_join_window)
        self._account_reads: _Coalescer[tuple[str, AccountState | None]] = _Coalescer(config.head_join_window)
        self._verified: OrderedDict[str, DecodedToken] = OrderedDict()
        self._signatures: OrderedDict[str, str] = OrderedDict()
        self.jobs: dict[str, AsyncJob] = {}
        #: where async jobs run; set by the server
        self.task_group: TaskGroup | None = None
        self._settle_lock = anyio.Lock()
        #: requests billed (synchronous answers and completed async jobs)
        self.requests_served = 0
        #: every HTTP request that reached the server (any route, any answer), for tests that
        #: assert that nothing was sent
        self.requests_received = 0

    # -- prices -----------------------------------------------------------------------------
    @property
    def input_price(self) -> int:
        """The on-chain input price (the configured one before registration)."""
        return self.service.input_price if self.service else self.config.input_price

    @property
    def output_price(self) -> int:
        """The on-chain output price (the configured one before registration)."""
        return self.service.output_price if self.service else self.config.output_price

    # -- chain state ------------------------------------------------------------------------
    def invalidate(self, user: str | None = None) -> None:
        """Forget cached account reads (of one user, or all)."""
        if user is None:
            self._accounts.clear()
        else:
            self._accounts.pop(user.lower(), None)

    async def get_account(self, user: str) -> AccountState | None:
        """The (user, this provider) account, cached while the chain head is unchanged."""
        key = user.lower()
        cached = self._accounts.get(key)
        if cached is not None:
            head = await self.head_watcher.get()
            if head == cached.head:
                return cached.account
        head, account = await self._account_reads.get(
            key, lambda: self.chain.head_and_account(to_checksum_address(user), self.address)
        )
        if len(self._accounts) > 10_000:
            self._accounts.clear()
        self._accounts[key] = _CachedAccount(head, account)
        return account

    # -- authentication ---------------------------------------------------------------------
    def _decode(self, header: str | None) -> DecodedToken:
        if not header or not header.strip().lower().startswith("bearer "):
            raise AuthFailure(401, "missing_token", "Authorization: Bearer app-sk-... header is required")
        cached = self._verified.get(header)
        if cached is not None:
            self._verified.move_to_end(header)
            return cached
        try:
            decoded = decode_token(header)
        except TokenDecodeError as exc:
            raise AuthFailure(401, "malformed_token", f"malformed token: {exc.message}") from None
        now = int(time.time() * 1000)
        try:
            verify_token(
                decoded,
                expected_provider=self.address,
                now_ms=now,
                max_ephemeral_ms=self.config.max_ephemeral_ms,
                skew_ms=self.config.clock_skew_ms,
            )
        except TokenVerificationError as exc:
            raise self._classify(decoded, exc, now) from None
        self._verified[header] = decoded
        if len(self._verified) > 10_000:
            self._verified.popitem(last=False)
        return decoded

    def _classify(self, decoded: DecodedToken, exc: TokenVerificationError, now: int) -> AuthFailure:
        claims = decoded.claims
        try:
            signer = recover_token_signer(decoded)
        except TokenVerificationError:
            signer = None
        if signer != claims.address:
            return AuthFailure(401, "invalid_signature", "token signature does not recover to its address")
        if claims.provider.lower() != self.address.lower():
            return AuthFailure(
                403, "wrong_provider", f"token is for provider {claims.provider}, this is {self.address}"
            )
        if claims.token_id == EPHEMERAL_TOKEN_ID and (
            claims.expires_at == 0
            or claims.expires_at - claims.timestamp > self.config.max_ephemeral_ms
            or claims.expires_at <= claims.timestamp
        ):
            return AuthFailure(
                401,
                "invalid_token_lifetime",
                "ephemeral tokens (tokenId 255) must expire, at most 24 h after they were issued",
            )
        if claims.timestamp > now + self.config.clock_skew_ms:
            return AuthFailure(401, "token_not_yet_valid", "token timestamp is in the future")
        if claims.expires_at != 0 and claims.expires_at + self.config.clock_skew_ms <= now:
            return AuthFailure(401, "token_expired", f"token expired at {claims.expires_at} (now {now})")
        return AuthFailure(401, "invalid_token", exc.message)

    async def authenticate(self, header: str | None) -> AuthContext:
        """Check a request's Authorization header against the token rules and the chain.

        Returns:
            The authenticated context (user, token, account state).

        Raises:
            AuthFailure: 401/403/404 with the precise code (see the package docstring);
                503 ``chain_unavailable`` when the node cannot be read.
        """
        decoded = self._decode(header)
        claims = decoded.claims
        now = int(time.time() * 1000)
        if claims.expires_at != 0 and claims.expires_at + self.config.clock_skew_ms <= now:
            # a cached token can expire while cached
            self._verified.pop(header or "", None)
            raise AuthFailure(401, "token_expired", f"token expired at {claims.expires_at} (now {now})")
        try:
            account = await self.get_account(claims.address)
        except OGError as exc:
            raise AuthFailure(503, "chain_unavailable", f"cannot read the chain: {exc.message}") from None
        if account is None:
            raise AuthFailure(
                404,
                "account_not_found",
                f"no sub-account for user {claims.address} at provider {self.address}; transfer funds first",
            )
        if claims.generation != account.generation:
            raise AuthFailure(
                401,
                "generation_mismatch",
                f"token generation {claims.generation} != on-chain generation {account.generation}"
                " (all tokens were revoked)",
            )
        if claims.token_id != EPHEMERAL_TOKEN_ID and account.is_revoked(claims.token_id):
            raise AuthFailure(401, "token_revoked", f"API key id {claims.token_id} is revoked")
        if not account.acknowledged:
            raise AuthFailure(
                403, "not_acknowledged", "the user has not acknowledged this provider's TEE signer"
            )
        return AuthContext(claims.address, decoded, account)

    # -- billing ----------------------------------------------------------------------------
    def check_balance(self, auth: AuthContext, fee: int) -> None:
        """Apply the balance rule ``balance - pendingRefund >= owed + fee + 1 OG``.

        ``owed`` is the unsettled fees plus the fees of the user's pending async jobs.

        Raises:
            AuthFailure: 402 ``insufficient_balance`` with ``required``/``available`` (wei strings).
        """
        unsettled = self.book.unsettled(auth.user)
        pending = self.book.pending(auth.user)
        required = unsettled + pending + fee + self.config.min_locked_balance
        available = auth.account.locked
        if available < required:
            raise AuthFailure(
                402,
                "insufficient_balance",
                "sub-account balance is too low: it must cover unsettled fees + pending async jobs + "
                f"this request + {self.config.min_locked_balance} wei reserve",
                extra={
                    "required": str(required),
                    "available": str(available),
                    "unsettled": str(unsettled),
                    "pending": str(pending),
                    "fee": str(fee),
                },
            )

    def charge(self, auth: AuthContext, request_id: str, fee: int, body: bytes) -> None:
        """Check the balance rule and record the fee, atomically (no await in between).

        Raises:
            AuthFailure: 402 when the balance rule fails (nothing is billed).
        """
        self.check_balance(auth, fee)
        self.book.add(auth.user, FeeRecord(request_id, fee, request_hash(request_id, body)))
        self.requests_served += 1

    def reserve_job(self, auth: AuthContext, job_id: str, fee: int) -> None:
        """Check the balance rule and reserve an async job's fee, atomically (no await in between).

        The reservation counts as owed for every later request until the job completes
        (:meth:`complete_job` bills it) or fails (:meth:`fail_job` releases it).

        Raises:
            AuthFailure: 402 when the balance rule fails (nothing is reserved).
        """
        self.check_balance(auth, fee)
        self.book.reserve(auth.user, job_id, fee)

    def complete_job(self, job: AsyncJob, request_id: str, body: bytes) -> bool:
        """Bill a completed async job at the fee reserved when it was accepted.

        Returns:
            Whether it was billed (``False`` when the reservation is gone, e.g. after a reset).
        """
        record = FeeRecord(request_id, job.fee, request_hash(request_id, body))
        if not self.book.complete(job.user, job.job_id, record):
            return False
        self.requests_served += 1
        return True

    def fail_job(self, job: AsyncJob) -> None:
        """Release the reservation of a failed async job (never billed)."""
        self.book.release(job.user, job.job_id)

    # -- response signatures ----------------------------------------------------------------
    def store_signature(self, chat_id: str, text: str) -> None:
        """Remember the signed text of a response (``sha256(req):sha256(resp)``)."""
        self._signatures[chat_id] = text
        if len(self._signatures) > self.config.signature_store_size:
            self._signatures.popitem(last=False)

    def signature_for(self, chat_id: str) -> dict[str, str] | None:
        """The signature record of a chat id (bare uuid or ``chatcmpl-<uuid>``), or ``None``."""
        key = chat_id.removeprefix("chatcmpl-")
        text = self._signatures.get(key)
        if text is None:
            return None
        signer = self._impostor if self.faults.wrong_signature else self.tee
        return {
            "text": text,
            "signature": personal_sign_text(text, signer),
            "signing_address": self.tee_address,
            "signing_algo": "ecdsa",
        }

    # -- settlement -------------------------------------------------------------------------
    async def settle_now(self) -> list[SettlementResult]:
        """Settle every user's unsettled fees on chain now (one round).

        Rules: each user's open fees are signed as one EIP-712 ``TEESettlement`` with nonce
        ``account.nonce + 1``; ``previewSettlementResults`` is consulted first and users it
        rejects are not sent; the rest go in ``settleFeesWithTEE`` batches of 50. SUCCESS drops the
        fees; PARTIAL drops what was taken and keeps the remainder owed as one open record (retried
        next round, and counted by the balance rule); a rejected user keeps the fees for the next
        round, except when the sub-account no longer exists (``ACCOUNT_NOT_FOUND``): those fees
        are written off.

        A settlement whose transaction was sent but whose outcome is unknown (the receipt wait
        or the transport failed) stays *in doubt*: its fees stay owed and are not signed again.
        The next round first reads the account's settlement nonce: when it reached the in-doubt
        nonce the settlement landed (its fees are dropped, a PARTIAL remainder read from the
        transaction's ``TEESettlementResult`` event stays owed) and it is reported in that
        round's results; otherwise the fees are put back and settled again (a settlement that
        never landed leaves the nonce where it was, so at most one of the two can land).

        Returns:
            One result per user that had unsettled fees (plus one per resolved in-doubt settlement).

        Raises:
            OGError: the node failed; fees taken for this round are put back first, except those
                of a settlement that may have been sent, which stay in doubt.
        """
        async with self._settle_lock:
            results = await self._resolve_in_doubt()
            users = self.book.users()
            for start in range(0, len(users), MAX_SETTLEMENTS_PER_TX):
                results.extend(await self._settle_batch(users[start : start + MAX_SETTLEMENTS_PER_TX]))
            return results

    async def _resolve_in_doubt(self) -> list[SettlementResult]:
        """Decide what happened to the settlements left in doubt by an earlier round."""
        results: list[SettlementResult] = []
        for user, doubt in self.book.in_doubt().items():
            account = await self.chain.get_account(to_checksum_address(user), self.address)
            count = len(doubt.records)
            if account is None:
                self.book.resolve(user)
                self.book.drop(user, doubt.records)
                results.append(
                    SettlementResult(
                        to_checksum_address(user), "ACCOUNT_NOT_FOUND", doubt.total_fee, 0, 0, 0, count
                    )
                )
                continue
            if account.nonce < doubt.nonce:
                # never landed: this round signs the fees again (with the same nonce, if nothing moved it)
                self.book.resolve(user)
                self.book.restore(user, doubt.records)
                continue
            receipt = await self.chain.receipt(doubt.tx_hash)
            status, unsettled = 0, 0
            if receipt is not None and receipt.get("status") == "0x1":
                status, unsettled = settlement_outcomes(receipt).get(user, (0, 0))
            else:
                # the nonce moved, so it landed; without its receipt the PARTIAL remainder is unknown
                logger.warning(
                    "devnet provider %s: settlement %s landed but has no receipt; assuming SUCCESS",
                    self.address,
                    doubt.tx_hash,
                )
            name = SETTLEMENT_STATUS.get(status, str(status))
            self.book.resolve(user)
            if name in ("SUCCESS", "PARTIAL"):
                self.book.drop(user, doubt.records, carry_over=unsettled)
                settled = doubt.total_fee - unsettled
            else:
                self.book.restore(user, doubt.records)
                settled, unsettled = 0, doubt.total_fee
            self.invalidate(user)
            results.append(
                SettlementResult(
                    to_checksum_address(user),
                    name,
                    doubt.total_fee,
                    settled,
                    unsettled,
                    doubt.nonce,
                    count,
                    doubt.tx_hash,
                )
            )
        return results

    async def _settle_batch(self, users: list[str]) -> list[SettlementResult]:
        taken = {u: self.book.take(u) for u in users}
        taken = {u: recs for u, recs in taken.items() if recs}
        results: list[SettlementResult] = []
        items: dict[str, tuple[Any, ...]] = {}
        meta: dict[str, tuple[int, int]] = {}
        sent: list[str] = []
        try:
            accounts = {u: await self.chain.get_account(to_checksum_address(u), self.address) for u in taken}
            for user, records in taken.items():
                account = accounts[user]
                total = sum(r.fee for r in records)
                if account is None:
                    self.book.drop(user, records)
                    results.append(
                        SettlementResult(
                            to_checksum_address(user), "ACCOUNT_NOT_FOUND", total, 0, 0, 0, len(records)
                        )
                    )
                    continue
                nonce = account.nonce + 1
                rh = requests_hash(r.hash for r in records)
                sig = sign_settlement(
                    bytes(self.tee.key),
                    chain_id=self.chain.chain_id,
                    contract=self.chain.inference,
                    requests_hash=rh,
                    nonce=nonce,
                    provider=self.address,
                    user=account.user,
                    total_fee=total,
                )
                items[user] = (account.user, self.address, total, rh, nonce, sig)
                meta[user] = (total, nonce)
            if items:
                (failed, reasons, _partial, _amounts) = await self.chain.call(
                    inference_function("previewSettlementResults"), list(items.values()), from_=self.address
                )
                for failed_user, reason in zip(failed, reasons):
                    user = failed_user.lower()
                    if user in items:
                        del items[user]
                        total, nonce = meta[user]
                        self.book.restore(user, taken[user])
                        results.append(
                            SettlementResult(
                                to_checksum_address(user),
                                SETTLEMENT_STATUS.get(int(reason), str(reason)),
                                total,
                                0,
                                total,
                                nonce,
                                len(taken[user]),
                            )
                        )
            if items:
                receipt = await self.chain.send(
                    self._key,
                    inference_function("settleFeesWithTEE").encode(list(items.values())),
                    on_sent=sent.append,
                )
                tx_hash = str(receipt["transactionHash"])
                outcome = settlement_outcomes(receipt)
                for user in list(items):
                    total, nonce = meta[user]
                    status, unsettled = outcome.get(user, (5, total))
                    name = SETTLEMENT_STATUS.get(status, str(status))
                    if name in ("SUCCESS", "PARTIAL"):
                        self.book.drop(user, taken[user], carry_over=unsettled)
                        settled = total - unsettled
                    else:
                        self.book.restore(user, taken[user])
                        settled, unsettled = 0, total
                    self.invalidate(user)
                    results.append(
                        SettlementResult(
                            to_checksum_address(user),
                            name,
                            total,
                            settled,
                            unsettled,
                            nonce,
                            len(taken[user]),
                            tx_hash,
                        )
                    )
                    del items[user]
        except BaseException as exc:
            # a reverted transaction changed nothing; any other failure after sending is in doubt
            in_doubt = bool(sent) and not isinstance(exc, ContractRevertError)
            done = {r.user.lower() for r in results}
            for user, records in taken.items():
                if user in done:
                    continue
                if in_doubt and user in items:
                    total, nonce = meta[user]
                    self.book.mark_in_doubt(user, InDoubt(records, total, nonce, sent[-1]))
                else:
                    self.book.restore(user, records)
            raise
        return results

    async def settle_forever(self, interval: float) -> None:
        """Run :meth:`settle_now` every ``interval`` seconds; failures are logged, not raised."""
        while True:
            await anyio.sleep(interval)
            if not self.book.users() and not self.book.in_doubt():
                continue
            try:
                results = await self.settle_now()
            except Exception as exc:  # a background loop must survive anything (e.g. a snapshot revert)
                logger.warning("devnet provider %s: settlement failed: %s", self.address, type(exc).__name__)
                continue
            for r in results:
                if r.status != "SUCCESS":
                    logger.info("devnet provider %s: settlement of %s: %s", self.address, r.user, r.status)
