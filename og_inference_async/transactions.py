"""``broker.transactions``: the transactions this wallet signed, and how to resolve one in doubt.

A transaction is "in doubt" when it may have reached the node and its outcome is not final:
``pending`` (being delivered or awaited), ``dropped`` (the node forgot it; its nonce is free) or
``unknown`` (the SDK's bounds ran out). Resolving never signs a different transaction for the
same intent: :meth:`TransactionsAPI.resolve` hands the node the IDENTICAL signed bytes again
(they execute at most once), and :meth:`TransactionsAPI.cancel` takes the nonce with a 0-value
self-transfer at higher fees, so "unknown" becomes a definite "not executed" (or the original
wins the race and is reported mined).
"""

from __future__ import annotations

from collections.abc import Callable

from ._chain import TxSender
from ._exceptions import ConfigError
from .types import TxRecord, TxState

__all__ = ["TransactionsAPI"]


class TransactionsAPI:
    """Look up and resolve the wallet's transactions (``broker.transactions``).

    Records are kept per (chain, account) for the whole process: two brokers of one wallet see
    the same records. The newest 1,000 are kept after they are final.

    Args:
        sender: returns the broker's transaction sender (raises when closed or read-only).
    """

    def __init__(self, sender: Callable[[], TxSender]) -> None:
        self._sender = sender

    def __repr__(self) -> str:
        return "<TransactionsAPI>"

    def in_doubt(self) -> list[TxRecord]:
        """Transactions that may have reached the node and whose outcome is not final, by nonce."""
        sender = self._sender()
        return [r.snapshot() for r in sender.nonces.open_records() if r.maybe_sent]

    def recent(self, limit: int = 100) -> list[TxRecord]:
        """The newest ``limit`` transactions signed by this wallet in this process, newest first.

        A caller cancelled after its transaction may have reached the node finds it here
        (``caller_gave_up=True``), with the outcome the broker saw it through to.

        Raises:
            ConfigError: ``limit`` is not a positive int.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be a positive int, got {limit!r}")
        return [r.snapshot() for r in self._sender().nonces.recent(limit)]

    def get(self, tx_hash: str) -> TxRecord:
        """The record of ``tx_hash``.

        Raises:
            ConfigError: this process did not sign it for this wallet (or it is long forgotten).
        """
        return self._sender().resolver.record(tx_hash).snapshot()

    async def status(self, tx_hash: str) -> TxState:
        """Where ``tx_hash`` stands on the node now.

        Returns:
            ``mined`` / ``reverted`` (it has a receipt), ``pending`` (the node holds it),
            ``replaced`` / ``cancelled`` (its nonce is used by another transaction: it will never
            execute), ``dropped`` (the node does not know it and its nonce is free: it could still
            execute if the bytes are sent again), or ``unknown`` (not a transaction of this
            process and unknown to the node).

        Raises:
            RPCError: the node could not be asked.
        """
        return await self._sender().resolver.status(_hash(tx_hash))

    async def resolve(self, tx_hash: str, *, timeout: float | None = None) -> TxRecord:
        """Hand the node the identical signed bytes again and wait for a definite outcome.

        Safe at any time: the same bytes have the same hash and nonce, so they execute at most
        once. Waits at most ``timeout`` seconds (default ``TxPolicy.receipt_timeout``).

        Returns:
            The record, in a final state (``mined``, ``reverted``, ``replaced``, ``cancelled``).

        Raises:
            ConfigError: not a transaction this process signed.
            TransactionOutcomeUnknownError: still no outcome within the bound.
        """
        return await self._sender().resolver.resolve(_hash(tx_hash), _timeout(timeout))

    async def cancel(self, tx_hash: str, *, timeout: float | None = None) -> TxRecord:
        """Make ``tx_hash`` definitely not execute: a 0-value self-transfer at its nonce, bumped fees.

        The original may still win the race: the returned record then says ``mined``. Waits at
        most ``timeout`` seconds (default ``TxPolicy.cancel_timeout``).

        Returns:
            The record: ``cancelled`` (it will never execute) or ``mined`` / ``reverted``.

        Raises:
            ConfigError: not a transaction this process signed.
            TransactionOutcomeUnknownError: neither landed within the bound.
        """
        return await self._sender().resolver.cancel(_hash(tx_hash), _timeout(timeout))


def _hash(tx_hash: object) -> str:
    if (
        not isinstance(tx_hash, str)
        or len(tx_hash) != 66
        or not tx_hash.startswith("0x")
        or any(c not in "0123456789abcdefABCDEF" for c in tx_hash[2:])
    ):
        raise ConfigError(f"a transaction hash is 0x and 64 hex digits, got {tx_hash!r}")
    return tx_hash.lower()


def _timeout(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ConfigError(f"timeout must be a positive number of seconds, got {value!r}")
    return float(value)
