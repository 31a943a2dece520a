"""What the money-moving services share: per-provider locks, fresh reads, and the top-up transactions.

Concurrency rules kept here:

* Every operation that moves money into (or acknowledges) one provider's sub-account holds that
  provider's lock (:meth:`AccountKeeper.lock`), so ``ensure_ready``,
  ``acknowledge_provider_signer`` and auto-funding never send two top-ups for the same
  shortfall. Ledger creation holds a wallet-wide lock. Both locks also take the coordinator's
  lease (``AsyncBroker(coordinator=)``), so several processes sharing the wallet through Redis
  move the money once: the holder reads fresh state inside, the others find it done.
* Transactions are sent inside shielded scopes: a cancelled caller (or a stopped loop) never
  abandons a transaction between nonce allocation and its receipt.
* A top-up whose outcome is unknown is remembered; the next plan for that provider resolves it
  first and never sends the amount twice.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import anyio

from .._exceptions import LedgerNotExistsError, TransactionOutcomeUnknownError
from .._runtime import Wallet
from ..types import Account, Ledger, Service, TxReceipt
from .auth import AuthManager
from .discovery import ServiceDirectory

if TYPE_CHECKING:
    from .._chain import ChainReader
    from ..ledger import LedgerAPI

__all__ = ["AccountKeeper"]

log = logging.getLogger(__name__)

#: Seconds a cross-process lease on a money move lasts if its holder crashed (it is released at once
#: otherwise); a move runs its transaction within the transaction policy's bounds, well inside it.
LEASE_TTL = 120.0
#: Seconds a process waits for another process's money move before ``CoordinatorError``.
LEASE_WAIT = 180.0


class AccountKeeper:
    """Sub-account state as the funding services plan with it, and the writes they send.

    Args:
        contracts: the chain's contracts.
        wallet: the user's wallet.
        ledger: the ledger namespace (its writes check first and drop stale caches).
        auth: the session cache (dropped after every write that changes an account).
        directory: the providers' services.
    """

    def __init__(
        self,
        contracts: ChainReader,
        wallet: Wallet,
        ledger: LedgerAPI,
        auth: AuthManager,
        directory: ServiceDirectory,
    ) -> None:
        self.contracts = contracts
        self.wallet = wallet
        self.ledger = ledger
        self.auth = auth
        self._directory = directory
        self._locks: dict[str, anyio.Lock] = {}
        self._wallet_lock: anyio.Lock | None = None
        self._in_doubt: dict[str, TransactionOutcomeUnknownError] = {}

    # -- locks -----------------------------------------------------------------------------------

    def lock(self, provider: str) -> AbstractAsyncContextManager[None]:
        """The lock every money move into ``provider``'s sub-account holds (with the coordinator's lease).

        Raises:
            CoordinatorError: the coordinator's lease could not be taken (nothing was sent).
        """
        lock = self._locks.get(provider)
        if lock is None:
            lock = self._locks[provider] = anyio.Lock()
        return self._held(lock, f"sub-account:{provider.lower()}")

    def ledger_lock(self) -> AbstractAsyncContextManager[None]:
        """The wallet-wide lock of ledger creation (with the coordinator's lease).

        Raises:
            CoordinatorError: the coordinator's lease could not be taken (nothing was sent).
        """
        if self._wallet_lock is None:
            self._wallet_lock = anyio.Lock()
        return self._held(self._wallet_lock, "ledger")

    @contextlib.asynccontextmanager
    async def _held(self, lock: anyio.Lock, what: str) -> AsyncIterator[None]:
        """``lock`` in this process, then the coordinator's lease on ``what`` across processes.

        The holder reads fresh chain state inside, so a process that waited finds the work done.
        The lease expires after :data:`LEASE_TTL` if its holder crashed.
        """
        account = self.wallet.account
        owner = account.address.lower() if account is not None else "read-only"
        async with lock, self.wallet.coordinator.lease(f"{owner}:{what}", ttl=LEASE_TTL, wait=LEASE_WAIT):
            yield

    # -- reads -----------------------------------------------------------------------------------

    async def service(self, provider: str) -> Service:
        """The provider's service, read fresh.

        Raises:
            ServiceNotFoundError: no service for that provider.
        """
        return await self._directory.get(provider)

    async def account(self, provider: str, block: int | None = None) -> Account | None:
        """The sub-account with ``provider`` at ``block`` (default latest), ``None`` when absent."""
        return await self.contracts.account_at(self.wallet.address, provider, block)

    async def fresh_account(self, provider: str) -> Account | None:
        """The sub-account as the chain has it now; every top-up plan starts here.

        A top-up whose outcome was unknown is resolved first: if it was mined (or the node never
        had it, so its nonce will be reused and it can never land) the plan goes ahead on fresh
        state; while the node still holds it pending, planning stops with the same error, so the
        amount is never sent twice.

        Raises:
            TransactionOutcomeUnknownError: an earlier top-up to ``provider`` is still pending.
        """
        await self._resolve_in_doubt(provider)
        return await self.account(provider)

    async def _resolve_in_doubt(self, provider: str) -> None:
        pending = self._in_doubt.get(provider)
        if pending is None:
            return
        mined, known = await self.contracts.transaction_status(pending.tx_hash)
        if mined or not known:
            log.info("earlier top-up %s to %s resolved (mined: %s)", pending.tx_hash, provider, mined)
            del self._in_doubt[provider]
            return
        raise TransactionOutcomeUnknownError(
            f"an earlier top-up to {provider} ({pending.tx_hash}) is still pending; not sending another",
            tx_hash=pending.tx_hash,
            nonce=pending.nonce,
        )

    async def fresh_ledger(self) -> Ledger | None:
        """The wallet's ledger now, ``None`` when it has none."""
        return await self.contracts.get_ledger_or_none(self.wallet.address)

    def tee_warning(self, service: Service) -> str | None:
        """A warning (also logged) when 0G has not acknowledged the provider's TEE signer."""
        if service.tee_signer_acknowledged:
            return None
        text = (
            f"0G has not acknowledged the TEE signer of provider {service.provider}: it cannot settle "
            "fees, and discovery hides it by default"
        )
        log.warning(text)
        return text

    def no_ledger(self, hint: str) -> LedgerNotExistsError:
        """The error of a wallet without a ledger."""
        user = self.wallet.address
        return LedgerNotExistsError(f"{user} has no ledger", error_args={"user": user}, hint=hint)

    # -- writes ----------------------------------------------------------------------------------

    async def transfer(self, provider: str, amount: int) -> TxReceipt:
        """Move ``amount`` from the ledger into ``provider``'s sub-account (shielded).

        An unknown outcome is remembered and resolved before the next plan for ``provider``.
        """
        with anyio.CancelScope(shield=True):
            try:
                receipt = await self.ledger.transfer_fund(provider, amount)
            except TransactionOutcomeUnknownError as exc:
                self._in_doubt[provider] = exc
                raise
        return receipt

    async def acknowledge(self, provider: str) -> TxReceipt:
        """Acknowledge ``provider``'s TEE signer for this wallet (shielded)."""
        sender = self.wallet.require_sender()
        with anyio.CancelScope(shield=True):
            try:
                receipt = await self.contracts.acknowledge_tee_signer(sender, provider, True)
            finally:
                self.auth.forget(provider)  # whatever the outcome: the cached "unacknowledged" is stale
        return receipt
