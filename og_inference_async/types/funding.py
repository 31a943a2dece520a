"""Public models of onboarding and money over time (``broker.inference`` funding methods).

All amounts are ``int`` wei; on-chain times are Unix seconds of the chain's clock (block
timestamps); ``*_at`` fields of auto-funding statistics are the local wall clock (Unix seconds).
"""

from __future__ import annotations

from typing import Literal

from pydantic import computed_field

from .._units import format_og
from ._base import Frozen, Wei

__all__ = [
    "AckResult",
    "AckStatus",
    "AutoFundingStats",
    "FeeSource",
    "ProviderRefundResult",
    "ReadyAction",
    "ReadyActionKind",
    "ReadyReport",
    "RefundCompletion",
    "RefundStatus",
    "SettlementReport",
    "TopUpEvent",
    "TopUpReason",
]


#: What :meth:`acknowledge_provider_signer` did.
AckStatus = Literal["acknowledged", "already_acknowledged", "created_account"]

#: One step :meth:`ensure_ready` took.
ReadyActionKind = Literal["created_ledger", "created_account", "topped_up", "acknowledged"]

#: Where an unsettled-fee figure came from: the provider's endpoint or the local fee counter.
FeeSource = Literal["provider", "local"]

#: Why auto-funding topped up: a periodic check, or a request the provider refused for balance.
TopUpReason = Literal["check", "refusal"]


class AckResult(Frozen):
    """The outcome of ``acknowledge_provider_signer``.

    Attributes:
        provider: the provider address.
        status: ``"created_account"`` (the sub-account was opened by a transfer, which
            acknowledges on chain), ``"acknowledged"`` (an ``acknowledgeTEESigner`` transaction was
            sent) or ``"already_acknowledged"`` (nothing was sent).
        tx_hashes: the transactions sent, in order (empty when nothing was sent).
        amount: wei moved from the ledger into the new sub-account (0 unless created).
        tee_signer_acknowledged: whether 0G (the contract owner) acknowledged the provider's TEE
            signer. When ``False`` the provider cannot settle; see ``warnings``.
        warnings: human-readable warnings (also logged).
    """

    provider: str
    status: AckStatus
    tx_hashes: tuple[str, ...] = ()
    amount: Wei = 0
    tee_signer_acknowledged: bool = True
    warnings: tuple[str, ...] = ()


class ReadyAction(Frozen):
    """One transaction ``ensure_ready`` sent.

    Attributes:
        kind: ``"created_ledger"``, ``"created_account"``, ``"topped_up"`` or ``"acknowledged"``.
        amount: wei moved by it (0 for an acknowledgement).
        tx_hash: the transaction hash.
    """

    kind: ReadyActionKind
    amount: Wei
    tx_hash: str


class ReadyReport(Frozen):
    """What ``ensure_ready`` did and the balances it left.

    Attributes:
        provider: the provider address.
        actions: the transactions sent, in order (empty when everything was already in place).
        ledger_total: the ledger's total balance afterwards (wei).
        ledger_available: the ledger's available balance afterwards (wei).
        balance: the sub-account's balance afterwards (wei).
        pending_refund: the sub-account's pending refunds afterwards (wei).
        acknowledged: the sub-account's acknowledgement afterwards.
        tee_signer_acknowledged: whether 0G acknowledged the provider's TEE signer.
        warnings: human-readable warnings (also logged).
    """

    provider: str
    actions: tuple[ReadyAction, ...] = ()
    ledger_total: Wei
    ledger_available: Wei
    balance: Wei
    pending_refund: Wei
    acknowledged: bool
    tee_signer_acknowledged: bool = True
    warnings: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def spendable(self) -> Wei:
        """``balance - pending_refund`` afterwards: what the provider can still bill (wei)."""
        return self.balance - self.pending_refund

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tx_hashes(self) -> tuple[str, ...]:
        """The hashes of the transactions sent, in order."""
        return tuple(a.tx_hash for a in self.actions)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changed(self) -> bool:
        """Whether any transaction was sent."""
        return bool(self.actions)

    def __str__(self) -> str:
        done = ", ".join(f"{a.kind}({format_og(a.amount)} OG)" for a in self.actions) or "nothing to do"
        return (
            f"ReadyReport({self.provider}: {done}; spendable={format_og(self.spendable)} OG, "
            f"ledger available={format_og(self.ledger_available)} OG)"
        )


class TopUpEvent(Frozen):
    """A top-up made by auto-funding (passed to ``on_top_up``).

    Attributes:
        provider: the provider address.
        amount: wei transferred from the ledger.
        deficit: ``unsettled_fee + buffer - spendable_before`` (wei); ``amount`` is at least this.
        unsettled_fee: the unsettled fee the decision used (wei).
        fee_source: ``"provider"`` (its ``unsettledfee`` endpoint) or ``"local"`` (the local counter).
        spendable_before: the sub-account's spendable balance before the top-up (wei).
        tx_hash: the ``transferFund`` transaction.
        reason: ``"check"`` (a periodic check) or ``"refusal"`` (a request was refused for
            balance; the top-up was shared by every waiting caller, who then retried once).
        spend_rate: the observed spend rate the top-up was sized with (wei per second).
    """

    provider: str
    amount: Wei
    deficit: Wei
    unsettled_fee: Wei
    fee_source: FeeSource
    spendable_before: Wei
    tx_hash: str
    reason: TopUpReason = "check"
    spend_rate: Wei = 0


class AutoFundingStats(Frozen):
    """A snapshot of one provider's auto-funding loop.

    Attributes:
        provider: the provider address.
        running: whether the loop is running now.
        interval: seconds between checks.
        buffer: wei kept above the unsettled fee.
        min_transfer: the smallest top-up in wei.
        started_at: when the loop started (wall clock).
        checks: checks run (successful or not).
        top_ups: top-ups sent.
        topped_up_total: wei transferred by all top-ups.
        errors: checks that failed.
        consecutive_errors: failed checks since the last successful one.
        callback_errors: exceptions raised by ``on_error`` / ``on_top_up`` (logged, not propagated).
        fee_fallbacks: checks where the provider's endpoint failed and the local counter was used.
        last_check_at: when the last check ended (wall clock), if any.
        last_top_up_at: when the last top-up landed (wall clock), if any.
        last_error: ``"<ErrorType>: <message>"`` of the last failed check, if any.
        last_unsettled_fee: the unsettled fee seen by the last successful check (wei).
        last_fee_source: where that figure came from.
        last_spendable: the spendable balance seen by the last successful check (wei).
        refills: top-ups made because a request was refused for balance (included in ``top_ups``).
        cap_hits: top-ups refused by ``max_total`` / ``max_per_hour`` (included in ``errors``).
        spend_rate: the spend rate seen by the last check (local fee book, wei per second).
        effective_buffer: the margin the last check kept: ``buffer``, or more when the spend
            rate needs it (wei).
        max_total: the cap on wei moved to this provider by auto-funding, if any.
        max_per_hour: the cap on wei moved in any hour, if any.
    """

    provider: str
    running: bool
    interval: float
    buffer: Wei
    min_transfer: Wei
    started_at: float
    checks: int = 0
    top_ups: int = 0
    topped_up_total: Wei = 0
    errors: int = 0
    consecutive_errors: int = 0
    callback_errors: int = 0
    fee_fallbacks: int = 0
    last_check_at: float | None = None
    last_top_up_at: float | None = None
    last_error: str | None = None
    last_unsettled_fee: Wei | None = None
    last_fee_source: FeeSource | None = None
    last_spendable: Wei | None = None
    refills: int = 0
    cap_hits: int = 0
    spend_rate: Wei = 0
    effective_buffer: Wei = 0
    max_total: Wei | None = None
    max_per_hour: Wei | None = None


class SettlementReport(Frozen):
    """A settlement that landed while ``wait_settled`` watched.

    Attributes:
        provider: the provider address.
        nonce_before: the account's settlement nonce when the wait began.
        nonce_after: the settlement nonce when the settlement was seen.
        balance_before: the sub-account balance when the wait began (wei).
        balance_after: the sub-account balance when the settlement was seen (wei).
        fee_settled: the fees the provider took for this user in the settlement transactions
            found (from the ledger's ``FundSpent`` events); when the node cannot serve logs, the
            drop of the balance instead.
        tx_hashes: the settlement transactions found (empty when logs were not available).
        waited: seconds spent waiting.
    """

    provider: str
    nonce_before: int
    nonce_after: int
    balance_before: Wei
    balance_after: Wei
    fee_settled: Wei
    tx_hashes: tuple[str, ...] = ()
    waited: float = 0.0


class RefundStatus(Frozen):
    """A pending refund in a provider sub-account, judged by the chain's clock.

    Attributes:
        provider: the provider address.
        index: the refund's index in the account.
        amount: wei waiting to return to the ledger.
        requested_at: when it was requested (block timestamp, seconds).
        unlocks_at: ``requested_at + lockTime`` (seconds).
        is_unlocked: whether the latest block's timestamp reached ``unlocks_at``; if so the next
            retrieval (``complete_refunds``) collects it.
        remaining: seconds until it unlocks by the chain's clock (0 when unlocked).
    """

    provider: str
    index: int
    amount: Wei
    requested_at: int
    unlocks_at: int
    is_unlocked: bool
    remaining: int


class ProviderRefundResult(Frozen):
    """What ``complete_refunds`` did with one provider.

    Attributes:
        provider: the provider address.
        returned: wei of matured refunds paid back to the ledger.
        newly_requested: wei of the sub-account's remaining spendable balance that the same
            ``retrieveFund`` call put into a new refund (the contract always does both).
    """

    provider: str
    returned: Wei
    newly_requested: Wei


class RefundCompletion(Frozen):
    """The outcome of ``complete_refunds``.

    Attributes:
        providers: one entry per provider that had unlocked refunds.
        returned: wei that came back to the ledger's available balance.
        ledger_available_before: the ledger's available balance before (wei).
        ledger_available_after: the ledger's available balance after (wei).
        tx_hashes: the ``retrieveFund`` transactions (one per batch of 20 providers).
    """

    providers: tuple[ProviderRefundResult, ...] = ()
    returned: Wei = 0
    ledger_available_before: Wei = 0
    ledger_available_after: Wei = 0
    tx_hashes: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def newly_requested(self) -> Wei:
        """Wei put into new refunds by the same calls (see :class:`ProviderRefundResult`)."""
        return sum(p.newly_requested for p in self.providers)
