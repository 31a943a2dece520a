"""Fees, the in-memory book of unsettled fees, and the EIP-712 ``TEESettlement`` signature.

Fee rules (PROTOCOL.md 4.6, the same counters the TS SDK's extractors use):

- chatbot: ``prompt_tokens * inputPrice + completion_tokens * outputPrice``;
- text-to-image / image-editing: ``n * inputPrice``;
- speech-to-text, duration mode: ``max(round_half_up(seconds), 1) * inputPrice`` (0 for 0 s);
  token mode: ``input_tokens * inputPrice + output_tokens * outputPrice``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from eth_account import Account
from eth_utils import keccak, to_checksum_address

__all__ = [
    "SETTLEMENT_STATUS",
    "FeeBook",
    "FeeRecord",
    "InDoubt",
    "SettlementResult",
    "billable_seconds",
    "chat_fee",
    "image_fee",
    "request_hash",
    "requests_hash",
    "sign_settlement",
    "transcription_fee",
]

#: ``SettlementStatus`` enum of the contract, by value.
SETTLEMENT_STATUS: dict[int, str] = {
    0: "SUCCESS",
    1: "PARTIAL",
    2: "PROVIDER_MISMATCH",
    3: "NO_TEE_SIGNER",
    4: "INVALID_NONCE",
    5: "INVALID_SIGNATURE",
}

_SETTLEMENT_TYPES: dict[str, Any] = {
    "TEESettlement": [
        {"name": "requestsHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "provider", "type": "address"},
        {"name": "user", "type": "address"},
        {"name": "totalFee", "type": "uint256"},
    ]
}


def chat_fee(prompt_tokens: int, completion_tokens: int, input_price: int, output_price: int) -> int:
    """Fee of a chat completion in wei."""
    return prompt_tokens * input_price + completion_tokens * output_price


def image_fee(n: int, input_price: int) -> int:
    """Fee of ``n`` generated or edited images in wei."""
    return n * input_price


def billable_seconds(seconds: float | Decimal) -> int:
    """Billable seconds of audio: rounded half up, at least 1 for any positive duration, else 0."""
    dec = Decimal(str(seconds))
    if dec <= 0:
        return 0
    return max(int(dec.quantize(Decimal(1), rounding=ROUND_HALF_UP)), 1)


def transcription_fee(usage: dict[str, Any], input_price: int, output_price: int) -> int:
    """Fee of a transcription from its ``usage`` object (duration or token mode, PROTOCOL 4.6)."""
    kind = usage.get("type")
    seconds = usage.get("seconds", 0) or 0
    if kind == "duration" or (kind != "tokens" and float(seconds) > 0):
        return billable_seconds(seconds) * input_price
    return int(usage.get("input_tokens", 0)) * input_price + int(usage.get("output_tokens", 0)) * output_price


def request_hash(request_id: str, body: bytes) -> bytes:
    """The 32-byte hash recorded for one billed request: ``keccak256(id || sha256(body))``."""
    return bytes(keccak(request_id.encode() + hashlib.sha256(body).digest()))


def requests_hash(hashes: Iterable[bytes]) -> bytes:
    """The settlement's ``requestsHash``: keccak256 over the concatenated request hashes."""
    return bytes(keccak(b"".join(hashes)))


def sign_settlement(
    tee_key: bytes | str,
    *,
    chain_id: int,
    contract: str,
    requests_hash: bytes,
    nonce: int,
    provider: str,
    user: str,
    total_fee: int,
) -> bytes:
    """Sign an EIP-712 ``TEESettlement`` with the TEE key (PROTOCOL.md 2.8).

    Args:
        tee_key: the TEE signer's private key.
        chain_id: the chain id of the domain.
        contract: the InferenceServing proxy address (``verifyingContract``).
        requests_hash: 32 bytes.
        nonce: settlement nonce (must be above the account's).
        provider: provider address.
        user: user address.
        total_fee: fee in wei.

    Returns:
        The 65-byte ``r || s || v`` signature.
    """
    signed = Account.sign_typed_data(
        tee_key,
        {
            "name": "0G Inference Serving",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(contract),
        },
        _SETTLEMENT_TYPES,
        {
            "requestsHash": requests_hash,
            "nonce": nonce,
            "provider": to_checksum_address(provider),
            "user": to_checksum_address(user),
            "totalFee": total_fee,
        },
    )
    return bytes(signed.signature)


@dataclass(frozen=True)
class FeeRecord:
    """One billed request (or a carried-over remainder of a partial settlement)."""

    request_id: str
    fee: int
    hash: bytes


@dataclass(frozen=True)
class SettlementResult:
    """What happened to one user's fees in a settlement round.

    Attributes:
        user: the user address (checksummed).
        status: the contract's status name (``"SUCCESS"``, ``"PARTIAL"``, ``"NO_TEE_SIGNER"``,
            ``"INVALID_NONCE"``, ``"INVALID_SIGNATURE"``, ``"PROVIDER_MISMATCH"``), or
            ``"ACCOUNT_NOT_FOUND"`` when the sub-account no longer exists (fees written off).
        total_fee: the fee that was asked for, in wei.
        settled: the amount actually taken from the sub-account, in wei.
        unsettled: what is still owed after this round (kept in the book), in wei.
        nonce: the settlement nonce used.
        requests: how many billed requests the fee covered.
        tx_hash: the settlement transaction, when one was sent for this user.
    """

    user: str
    status: str
    total_fee: int
    settled: int
    unsettled: int
    nonce: int
    requests: int
    tx_hash: str | None = None


@dataclass(frozen=True)
class InDoubt:
    """A settlement that was sent but whose outcome is unknown (the receipt never came).

    Attributes:
        records: the fee records it covered (kept in flight, still owed, until resolved).
        total_fee: the fee it asked for, in wei.
        nonce: the settlement nonce it used: the account's nonce reaching it means it landed.
        tx_hash: the ``settleFeesWithTEE`` transaction hash (its receipt tells a PARTIAL amount).
    """

    records: list[FeeRecord]
    total_fee: int
    nonce: int
    tx_hash: str


@dataclass
class FeeBook:
    """Unsettled fees per user, kept in memory, plus the fees reserved by pending async jobs.

    A settlement round ``take``s the open records of a user (they stay counted as unsettled while
    in flight), then either ``drop``s them (settled), ``restore``s them (not settled), replaces
    them with one carry-over record of the remainder (partial), or marks them ``in_doubt`` (the
    transaction was sent but its outcome is unknown; resolved by the next round).

    An accepted async job ``reserve``s its fee: the reservation counts in :meth:`owed` (the
    balance rule) but not in :meth:`unsettled` until the job completes and ``complete`` turns it
    into a billed record (or ``release`` drops it when the job fails).
    """

    _open: dict[str, list[FeeRecord]] = field(default_factory=dict)
    _in_flight: dict[str, list[FeeRecord]] = field(default_factory=dict)
    _in_doubt: dict[str, InDoubt] = field(default_factory=dict)
    # open + in-flight total per user, kept up to date so the per-request check is O(1)
    _owed: dict[str, int] = field(default_factory=dict)
    # job id -> fee of accepted, not yet completed async jobs, per user
    _reserved: dict[str, dict[str, int]] = field(default_factory=dict)
    _reserved_total: dict[str, int] = field(default_factory=dict)
    total_billed: int = 0

    @staticmethod
    def _key(user: str) -> str:
        return user.lower()

    def _adjust(self, key: str, delta: int) -> None:
        owed = self._owed.get(key, 0) + delta
        if owed:
            self._owed[key] = owed
        else:
            self._owed.pop(key, None)

    def add(self, user: str, record: FeeRecord) -> None:
        """Record a billed request."""
        key = self._key(user)
        self._open.setdefault(key, []).append(record)
        self._adjust(key, record.fee)
        self.total_billed += record.fee

    def cancel(self, user: str, request_id: str) -> bool:
        """Remove an open record (a response that was never delivered). Returns whether it existed."""
        key = self._key(user)
        records = self._open.get(key, [])
        for i in range(len(records) - 1, -1, -1):
            rec = records[i]
            if rec.request_id == request_id:
                del records[i]
                self._adjust(key, -rec.fee)
                self.total_billed -= rec.fee
                return True
        return False

    def records(self, user: str) -> list[FeeRecord]:
        """The billed, unsettled records of ``user`` (open ones, then those in flight), as a new list."""
        key = self._key(user)
        return [*self._open.get(key, []), *self._in_flight.get(key, [])]

    def unsettled(self, user: str) -> int:
        """Fees billed to ``user`` and not yet settled on chain (open, in flight or in doubt)."""
        return self._owed.get(self._key(user), 0)

    def pending(self, user: str) -> int:
        """Fees reserved by ``user``'s accepted async jobs that have not completed yet."""
        return self._reserved_total.get(self._key(user), 0)

    def owed(self, user: str) -> int:
        """What the balance rule counts as owed: :meth:`unsettled` plus :meth:`pending`."""
        key = self._key(user)
        return self._owed.get(key, 0) + self._reserved_total.get(key, 0)

    # -- async job reservations -------------------------------------------------------------------
    def reserve(self, user: str, job_id: str, fee: int) -> None:
        """Reserve the fee of an accepted async job (owed from now on, billed at completion)."""
        key = self._key(user)
        self._reserved.setdefault(key, {})[job_id] = fee
        self._reserved_total[key] = self._reserved_total.get(key, 0) + fee

    def release(self, user: str, job_id: str) -> int | None:
        """Drop a job's reservation; returns its fee, or ``None`` when there was none."""
        key = self._key(user)
        jobs = self._reserved.get(key)
        if jobs is None or job_id not in jobs:
            return None
        fee = jobs.pop(job_id)
        if not jobs:
            del self._reserved[key]
        total = self._reserved_total.get(key, 0) - fee
        if total:
            self._reserved_total[key] = total
        else:
            self._reserved_total.pop(key, None)
        return fee

    def complete(self, user: str, job_id: str, record: FeeRecord) -> bool:
        """Turn a job's reservation into the billed ``record`` (whose fee is the reserved fee).

        Returns:
            ``False`` (nothing billed) when the job had no reservation, e.g. after a reset.
        """
        if self.release(user, job_id) is None:
            return False
        self.add(user, record)
        return True

    # -- settlement rounds --------------------------------------------------------------------------
    def users(self) -> list[str]:
        """Lower-case addresses of users with open records."""
        return [u for u, recs in self._open.items() if recs]

    def take(self, user: str) -> list[FeeRecord]:
        """Move a user's open records to in flight and return them."""
        key = self._key(user)
        records = self._open.pop(key, [])
        if records:
            self._in_flight.setdefault(key, []).extend(records)
        return records

    def _remove_in_flight(self, key: str, records: list[FeeRecord]) -> None:
        ids = {id(r) for r in records}
        remaining = [r for r in self._in_flight.get(key, []) if id(r) not in ids]
        if remaining:
            self._in_flight[key] = remaining
        else:
            self._in_flight.pop(key, None)

    def drop(self, user: str, records: list[FeeRecord], *, carry_over: int = 0) -> None:
        """Forget settled in-flight records; keep ``carry_over`` wei as one open record."""
        key = self._key(user)
        self._remove_in_flight(key, records)
        self._adjust(key, carry_over - sum(r.fee for r in records))
        if carry_over > 0:
            h = requests_hash(r.hash for r in records)
            self._open.setdefault(key, []).insert(0, FeeRecord("carry-over", carry_over, h))

    def restore(self, user: str, records: list[FeeRecord]) -> None:
        """Put in-flight records back as open (the round did not settle them)."""
        key = self._key(user)
        self._remove_in_flight(key, records)
        self._open.setdefault(key, [])[:0] = records

    def mark_in_doubt(self, user: str, doubt: InDoubt) -> None:
        """Keep in-flight records whose settlement was sent with an unknown outcome (still owed)."""
        self._in_doubt[self._key(user)] = doubt

    def in_doubt(self) -> dict[str, InDoubt]:
        """Settlements in doubt, by lower-case user address."""
        return dict(self._in_doubt)

    def resolve(self, user: str) -> InDoubt | None:
        """Forget a user's in-doubt mark (the caller then drops or restores its records)."""
        return self._in_doubt.pop(self._key(user), None)
