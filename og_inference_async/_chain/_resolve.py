"""Transactions in doubt: cancellation by replacement, and the resolution API of ``broker.transactions``.

A transaction without a receipt in time is cancelled by a 0-value self-transfer at the same nonce
with bumped fees (up to three rounds), so its outcome becomes definite: the original's receipt,
or :class:`TransactionNotExecutedError` once the replacement is mined. The same machinery serves
``broker.transactions.status / resolve / cancel`` (see :mod:`og_inference_async.transactions`).
Delivery itself (signing, sending the identical bytes, waiting for receipts) is the sender's.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import ConfigError, ContractRevertError, RPCError, TransactionNotExecutedError
from ..types import TxReceipt, TxRecord, TxState
from ._nonce import Tracked
from ._outcomes import AMBIGUOUS, FILLER_GAS, KNOWN, MAX_SLEEP, NONCE_USED, TAKEN, parse_receipt

if TYPE_CHECKING:
    from ._tx import TxSender

__all__ = ["TxResolver"]

log = logging.getLogger(__name__)


def _bumped(fees: dict[str, int], percent: int, floor: int) -> dict[str, Any]:
    """Replacement fees: ``fees`` raised by ``percent`` (plus 1 wei), at least ``floor``; 21,000 gas."""

    def up(v: int) -> int:
        return v * (100 + percent) // 100 + 1

    if "gasPrice" in fees:
        return {"gasPrice": max(up(fees["gasPrice"]), floor), "gas": FILLER_GAS}
    tip = up(fees.get("maxPriorityFeePerGas", 0))
    max_fee = max(up(fees.get("maxFeePerGas", 0)), floor + tip)
    return {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip, "type": 2, "gas": FILLER_GAS}


class TxResolver:
    """Cancels and resolves the transactions of one :class:`TxSender` (its records, its nonces).

    Args:
        sender: the sender whose transactions these are.
    """

    def __init__(self, sender: TxSender) -> None:
        self._sender = sender

    def __repr__(self) -> str:
        return f"TxResolver(address={self._sender.address})"

    # -- cancellation by replacement -------------------------------------------------------------

    async def cancel_by_replacement(
        self, record: Tracked, *, raise_if_cancelled: bool, timeout: float | None = None
    ) -> TxReceipt | None:
        """Replace ``record`` by a 0-value self-transfer at its nonce and wait for one of them.

        Returns:
            The original's receipt when it was mined after all; ``None`` when the replacement
            won and ``raise_if_cancelled`` is false.

        Raises:
            TransactionNotExecutedError: the replacement won (when ``raise_if_cancelled``).
            TransactionOutcomeUnknownError: neither was mined within the bound.
        """
        sender = self._sender
        deadline = time.monotonic() + (sender.policy.cancel_timeout if timeout is None else timeout)
        floor = await self._floor_price(deadline)
        replacement: Tracked | None = None
        for round_ in range(1, 4):
            fields = _bumped(record.fees, sender.policy.replacement_bump_percent * round_, floor)
            candidate = sender.sign_at(
                record.nonce, sender.address, b"", 0, fields, f"cancel of {record.tx_hash}", owns_nonce=False
            )
            outcome = await sender.broadcast(
                candidate,
                until=min(deadline, time.monotonic() + sender.policy.send_timeout),
                raise_refusal=False,
            )
            if outcome == NONCE_USED:
                sender.nonces.finish(candidate, TxState.REPLACED)
                found, known = await sender.lookup(record, deadline)
                if found is None and known:  # the nonce is used, maybe by the original: look on
                    found = await sender.wait_receipt(record, deadline)
                    if found is None:
                        return sender.outcome_unknown(record)
                if found is not None and found != NONCE_USED:
                    return await sender.conclude(record, found)
                return sender.lost_nonce(record)
            if outcome in (KNOWN, AMBIGUOUS):
                replacement = candidate
                record.replacement_hash = candidate.tx_hash
                break
            sender.nonces.finish(candidate, TxState.REFUSED)
            if outcome != TAKEN:
                break
        if replacement is None:
            return sender.outcome_unknown(record)
        log.warning(
            "%s (%s) timed out; cancelling it with %s", record.context, record.tx_hash, replacement.tx_hash
        )
        interval = sender.policy.receipt_poll_interval
        next_send = time.monotonic() + sender.policy.rebroadcast_interval
        while (left := deadline - time.monotonic()) > 0:
            try:
                mine, theirs = await sender.rpc.batch(
                    [
                        ("eth_getTransactionReceipt", [record.tx_hash]),
                        ("eth_getTransactionReceipt", [replacement.tx_hash]),
                    ],
                    timeout=max(0.05, min(sender.rpc.retry.attempt_timeout, left)),
                    retry=False,
                )
            except (RPCError, ContractRevertError):
                mine = theirs = None
            if isinstance(mine, dict) and parse_receipt(mine) is not None:
                return await sender.conclude(record, mine)
            if isinstance(theirs, dict) and parse_receipt(theirs) is not None:
                await sender.conclude(replacement, theirs)
                sender.nonces.finish(record, TxState.CANCELLED)
                if raise_if_cancelled:
                    raise TransactionNotExecutedError(
                        f"{record.context}: {record.tx_hash} timed out and was cancelled by "
                        f"{replacement.tx_hash}; nothing was executed",
                        tx_hash=record.tx_hash,
                        nonce=record.nonce,
                        reason="cancelled",
                        replacement_hash=replacement.tx_hash,
                    )
                return None
            if time.monotonic() >= next_send:
                outcome, _ = await sender.send_once(
                    replacement, max(0.05, min(sender.rpc.retry.attempt_timeout, left))
                )
                next_send = time.monotonic() + sender.policy.rebroadcast_interval
            await anyio.sleep(max(0.0, min(interval, deadline - time.monotonic())))
            interval = min(interval * 2, MAX_SLEEP)
        replacement.owned = False
        replacement.state = TxState.PENDING
        return sender.outcome_unknown(record)

    async def _floor_price(self, deadline: float) -> int:
        """The node's gas price (0 when it cannot be asked in time): the replacement's fee floor."""
        sender = self._sender
        try:
            return await sender.rpc.request_int(
                "eth_gasPrice", [], retry=False, timeout=sender.attempt_timeout(deadline)
            )
        except (RPCError, ContractRevertError):
            return 0

    # -- resolution API (broker.transactions) ----------------------------------------------------

    def record(self, tx_hash: str) -> Tracked:
        """The record of a transaction this process signed for this account.

        Raises:
            ConfigError: unknown hash (not signed here, or forgotten).
        """
        sender = self._sender
        found = sender.nonces.get(tx_hash) if isinstance(tx_hash, str) else None
        if found is None:
            raise ConfigError(f"{tx_hash!r} is not a transaction this process signed for {sender.address}")
        return found

    async def status(self, tx_hash: str) -> TxState:
        """Ask the node where ``tx_hash`` stands (see :meth:`TransactionsAPI.status`)."""
        sender = self._sender
        receipt, known = await sender.rpc.batch(
            [("eth_getTransactionReceipt", [tx_hash]), ("eth_getTransactionByHash", [tx_hash])]
        )
        parsed = parse_receipt(receipt)
        if parsed is not None:
            return TxState.MINED if parsed[0] == 1 else TxState.REVERTED
        if isinstance(known, dict):
            return TxState.PENDING
        record = sender.nonces.get(tx_hash)
        nonce = record.nonce if record is not None else None
        if nonce is None:
            return TxState.UNKNOWN
        latest = await sender.rpc.request_int("eth_getTransactionCount", [sender.address, "latest"])
        if latest > nonce:
            assert record is not None
            return TxState.CANCELLED if record.state is TxState.CANCELLED else TxState.REPLACED
        return TxState.DROPPED

    async def resolve(self, tx_hash: str, timeout: float | None = None) -> TxRecord:
        """Re-send the identical bytes and wait (bounded) for a definite outcome."""
        sender = self._sender
        record = self.record(tx_hash)
        if record.state.is_final:
            return record.snapshot()
        was_owned, record.owned = record.owned, True
        try:
            start = time.monotonic()
            limit = sender.policy.receipt_timeout if timeout is None else timeout
            outcome = await sender.broadcast(
                record, until=start + min(limit, sender.policy.send_timeout), raise_refusal=False
            )
            if outcome in (NONCE_USED, TAKEN):
                found, known = await sender.lookup(record, start + limit)
                if found is not None:
                    await self._conclude_quietly(record, found)
                    return record.snapshot()
                if not known:
                    sender.nonces.finish(
                        record, TxState.CANCELLED if record.replacement_hash else TxState.REPLACED
                    )
                    return record.snapshot()
                # the node may hold it, or could not be asked: wait for the receipt (bounded)
            raw = await sender.wait_receipt(record, start + limit)
            if raw == NONCE_USED:
                sender.nonces.finish(
                    record, TxState.CANCELLED if record.replacement_hash else TxState.REPLACED
                )
            elif raw is not None:
                await self._conclude_quietly(record, raw)
            else:
                sender.outcome_unknown(record)
            return record.snapshot()
        finally:
            record.owned = was_owned

    async def cancel(self, tx_hash: str, timeout: float | None = None) -> TxRecord:
        """Replace ``tx_hash`` with a 0-value self-transfer at its nonce; wait for either to land."""
        record = self.record(tx_hash)
        if record.state.is_final:
            return record.snapshot()
        was_owned, record.owned = record.owned, True
        try:
            try:
                await self.cancel_by_replacement(record, raise_if_cancelled=False, timeout=timeout)
            except (ContractRevertError, TransactionNotExecutedError):
                pass  # the record holds the outcome
            return record.snapshot()
        finally:
            record.owned = was_owned

    async def _conclude_quietly(self, record: Tracked, raw: dict[str, Any]) -> None:
        try:
            await self._sender.conclude(record, raw)
        except ContractRevertError:
            pass  # recorded as reverted
