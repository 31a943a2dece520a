"""Settlement and refunds: wait for a provider to settle this wallet's fees; list and collect refunds.

Reads are judged by the chain (its clock, its blocks); the refund collection holds no lock of
its own, and its transaction is shielded like every other money move.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import anyio
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

from .._config import checksum
from .._exceptions import AccountNotExistsError, ContractRevertError, RPCError, SettlementTimeoutError
from .._observe import Observer
from .._validate import check_seconds
from ..types import Account
from ..types.funding import (
    ProviderRefundResult,
    RefundCompletion,
    RefundStatus,
    SettlementReport,
)
from ._accounts import AccountKeeper
from ._funding_auto import describe_error

if TYPE_CHECKING:
    from .._chain import ChainReader

__all__ = ["SettlementService"]

log = logging.getLogger(__name__)


class SettlementService:
    """Settlement waits and refunds of one wallet.

    Args:
        contracts: the chain's contracts.
        keeper: the wallet, the ledger namespace and the cache of account reads.
        observer: the broker's ``on_progress`` hook for settlement waits (``None``: not observed).
    """

    def __init__(
        self, contracts: ChainReader, keeper: AccountKeeper, observer: Observer | None = None
    ) -> None:
        self._contracts = contracts
        self._keeper = keeper
        self._observer = observer

    async def wait_settled(
        self,
        provider: str,
        *,
        timeout: float = 120.0,  # noqa: ASYNC109 - a bounded poll; the bound is part of the API
        poll_interval: float = 1.0,
    ) -> SettlementReport:
        """Wait until ``provider`` settles this wallet's fees on chain, and report the change.

        The baseline is read when the call starts: a settlement counts when the account's
        settlement ``nonce`` moves past its value then, or its balance drops below it. So call
        this before the settlement can land (right after your requests, or concurrently with
        whatever triggers it). The chain is polled every ``poll_interval`` seconds, bounded in
        attempts and in time.

        Args:
            provider: the provider address.
            timeout: the most seconds to wait (default 120).
            poll_interval: seconds between reads (default 1).

        Returns:
            Nonce and balance before and after, the fee settled (from the ledger's ``FundSpent``
            events in the provider's settlement transactions; the balance drop when the node
            cannot serve logs) and the settlement transactions.

        Raises:
            SettlementTimeoutError: nothing landed within ``timeout``.
            AccountNotExistsError: there is no sub-account with the provider.
            ConfigError: bad ``timeout`` or ``poll_interval``, or a read-only broker.
        """
        prov = checksum(provider, what="provider")
        limit = check_seconds("timeout", timeout)
        every = check_seconds("poll_interval", poll_interval)
        user = self._keeper.wallet.address
        chain = self._contracts
        start_block = await chain.block_number()
        try:
            before = await chain.account_at(user, prov, start_block)
        except RPCError:  # a load-balanced node may lag behind the block number just read
            before = await chain.account_at(user, prov)
        if before is None:
            raise AccountNotExistsError(
                f"no sub-account with provider {prov}; nothing to settle",
                error_args={"user": user, "provider": prov},
            )
        started = anyio.current_time()

        def landed(account: Account | None) -> bool:
            return account is None or account.nonce > before.nonce or account.balance < before.balance

        after: Account | None = None
        observer = self._observer if self._observer is not None and self._observer.watching_progress else None
        polls = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(max(1, math.ceil(limit / every)) + 1) | stop_after_delay(limit),
                wait=wait_fixed(every),
                retry=retry_if_result(lambda a: not landed(a)),
                sleep=anyio.sleep,
            ):
                with attempt:
                    after = await chain.account_at(user, prov)
                if attempt.retry_state.outcome is not None and not attempt.retry_state.outcome.failed:
                    attempt.retry_state.set_result(after)
                polls += 1
                if observer is not None and not landed(after):
                    observer.progress("settlement", "provider", prov, anyio.current_time() - started, polls)
        except RetryError:
            waited = anyio.current_time() - started
            raise SettlementTimeoutError(
                f"provider {prov} settled nothing for {user} within {waited:.1f} s "
                f"(settlement nonce still {before.nonce})",
                provider=prov,
                nonce=before.nonce,
                waited=waited,
            ) from None
        if after is None:
            raise AccountNotExistsError(
                f"the sub-account with provider {prov} was deleted while waiting",
                error_args={"user": user, "provider": prov},
            )
        try:
            fee, hashes = await chain.settled_fees(user, prov, start_block + 1)
        except (RPCError, ContractRevertError) as exc:
            log.info("could not read settlement logs (%s); reporting the balance drop", describe_error(exc))
            fee, hashes = max(before.balance - after.balance, 0), ()
        return SettlementReport(
            provider=prov,
            nonce_before=before.nonce,
            nonce_after=after.nonce,
            balance_before=before.balance,
            balance_after=after.balance,
            fee_settled=fee,
            tx_hashes=hashes,
            waited=anyio.current_time() - started,
        )

    # -- refunds ---------------------------------------------------------------------------------

    async def get_refunds(self, provider: str | None = None) -> list[RefundStatus]:
        """Pending refunds of this wallet's sub-accounts, judged by the chain's clock.

        A refund unlocks ``lockTime`` seconds (read on chain) after it was requested; the
        chain's clock is the latest block's timestamp, so a devnet that moves time forward is
        followed.

        Args:
            provider: one provider (default: every provider this wallet has a sub-account with).
                A provider without a sub-account has no refunds.

        Returns:
            One entry per active refund, in chain order.
        """
        chain = self._contracts
        user = self._keeper.wallet.address
        if provider is not None:
            account = await chain.account_at(user, checksum(provider, what="provider"))
            accounts = [account] if account is not None else []
        else:
            accounts = []
            offset = 0
            while True:
                page, total = await chain.get_accounts_by_user(user, offset, 50)
                accounts.extend(page)
                offset += len(page)
                if not page or offset >= total:
                    break
        if not any(a.refunds for a in accounts):
            return []
        lock_time = await chain.lock_time()
        now = await chain.chain_time()
        out: list[RefundStatus] = []
        for account in accounts:
            for refund in account.refunds:
                unlocks = refund.created_at + lock_time
                out.append(
                    RefundStatus(
                        provider=account.provider,
                        index=refund.index,
                        amount=refund.amount,
                        requested_at=refund.created_at,
                        unlocks_at=unlocks,
                        is_unlocked=now >= unlocks,
                        remaining=max(unlocks - now, 0),
                    )
                )
        return out

    async def complete_refunds(self, provider: str | None = None) -> RefundCompletion:
        """Collect the unlocked refunds back into the ledger's available balance.

        Runs ``retrieveFund`` (batches of 20) for the providers that have at least one
        unlocked refund; nothing is sent when none has. Note that the contract's
        ``retrieveFund`` also requests a refund of whatever spendable balance remains in each of
        those sub-accounts (reported as ``newly_requested``); stop auto-funding for a provider
        you are withdrawing from.

        Args:
            provider: one provider (default: all of this wallet's providers).

        Returns:
            Per provider what came back and what was newly requested, the ledger's available
            balance before and after, and the transaction hashes.

        Raises:
            LedgerNotExistsError: this wallet has no ledger.
        """
        chain = self._contracts
        user = self._keeper.wallet.address
        self._keeper.wallet.require_sender()  # fail early on a read-only broker
        statuses = await self.get_refunds(provider)
        targets = list(dict.fromkeys(s.provider for s in statuses if s.is_unlocked))
        ledger_before = await self._keeper.fresh_ledger()
        if ledger_before is None:
            raise self._keeper.no_ledger("there is nothing to retrieve without a ledger")
        if not targets:
            return RefundCompletion(
                ledger_available_before=ledger_before.available,
                ledger_available_after=ledger_before.available,
            )
        before = {p: await chain.account_at(user, p) for p in targets}
        with anyio.CancelScope(shield=True):
            receipts = await self._keeper.ledger.retrieve_fund(targets)
        after = {p: await chain.account_at(user, p) for p in targets}
        ledger_after = await self._keeper.fresh_ledger()
        results: list[ProviderRefundResult] = []
        for p in targets:
            b, a = before[p], after[p]
            returned = (b.balance - a.balance) if b is not None and a is not None else 0
            newly = (
                (a.pending_refund - (b.pending_refund - returned)) if b is not None and a is not None else 0
            )
            results.append(
                ProviderRefundResult(provider=p, returned=max(returned, 0), newly_requested=max(newly, 0))
            )
            self._keeper.auth.forget(p)
        available_after = ledger_after.available if ledger_after is not None else 0
        log.info(
            "completed refunds from %d provider(s): %d wei back in the ledger",
            len(targets),
            available_after - ledger_before.available,
        )
        return RefundCompletion(
            providers=tuple(results),
            returned=available_after - ledger_before.available,
            ledger_available_before=ledger_before.available,
            ledger_available_after=available_after,
            tx_hashes=tuple(r.tx_hash for r in receipts),
        )
