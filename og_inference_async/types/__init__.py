"""Public data models: frozen pydantic models with named fields, never raw tuples.

All amounts are ``int`` wei. On-chain timestamps are seconds; token timestamps are milliseconds.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import computed_field

from .._units import format_og
from ._base import Frozen, Wei

__all__ = [
    "Account",
    "ChainEvent",
    "Ledger",
    "ProviderBalance",
    "Refund",
    "RpcEndpointHealth",
    "Service",
    "ServiceInfo",
    "TxReceipt",
    "TxRecord",
    "TxState",
]


class Ledger(Frozen):
    """A user's main account in the LedgerManager.

    Attributes:
        user: the owner address.
        total: all funds in the ledger, including what sits in provider sub-accounts (wei).
        available: funds not yet moved to any provider (wei).
        additional_info: free-form text stored with the ledger.
    """

    user: str
    total: Wei
    available: Wei
    additional_info: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def locked(self) -> Wei:
        """Funds sitting in provider sub-accounts: ``total - available`` (wei)."""
        return self.total - self.available

    def __str__(self) -> str:
        return (
            f"Ledger(total={format_og(self.total)} OG, available={format_og(self.available)} OG, "
            f"locked={format_og(self.locked)} OG)"
        )


class Refund(Frozen):
    """A pending refund in a provider sub-account (``created_at`` in seconds)."""

    index: int
    amount: Wei
    created_at: int
    processed: bool


class Account(Frozen):
    """A user's sub-account with one provider in InferenceServing.

    Attributes:
        nonce: the last settled TEE settlement nonce (not a request nonce).
        balance: wei held for this provider, including pending refunds.
        pending_refund: wei requested back and waiting for the lock time.
        refunds: the active refunds only (stale slots dropped).
        acknowledged: whether the user acknowledged the provider's TEE signer.
        generation: the session-token generation (bumped by ``revokeAllTokens``).
        revoked_bitmap: bit ``i`` set = API key id ``i`` revoked in this generation.
    """

    user: str
    provider: str
    nonce: int
    balance: Wei
    pending_refund: Wei
    refunds: tuple[Refund, ...]
    additional_info: str
    acknowledged: bool
    generation: int
    revoked_bitmap: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def spendable(self) -> Wei:
        """``balance - pending_refund``: what the provider can still bill (wei)."""
        return self.balance - self.pending_refund


class ProviderBalance(Frozen):
    """A provider the user has a sub-account with, and what sits there (wei)."""

    provider: str
    balance: Wei
    pending_refund: Wei


class Service(Frozen):
    """A provider's service registered in InferenceServing.

    Prices are wei per unit: per token for chatbots, per image for image services, per
    second or per output token for speech-to-text.
    """

    provider: str
    service_type: str
    url: str
    input_price: Wei
    output_price: Wei
    updated_at: int
    model: str
    verifiability: str
    additional_info: str
    tee_signer_address: str
    tee_signer_acknowledged: bool

    @computed_field  # type: ignore[prop-decorator]
    @property
    def endpoint(self) -> str:
        """The OpenAI-compatible base URL: ``url`` without trailing slashes plus ``/v1/proxy``."""
        return self.url.rstrip("/") + "/v1/proxy"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_verifiable(self) -> bool:
        """Whether responses carry TEE signatures (``TeeML``, ``OpML`` or ``ZKML``)."""
        return self.verifiability in ("TeeML", "OpML", "ZKML")


class ServiceInfo(Frozen):
    """A service contract registered in the LedgerManager (e.g. ``inference-v1.0``)."""

    service_address: str
    service_contract: str
    service_type: str
    version: str
    full_name: str
    description: str
    is_recommended: bool
    registered_at: int


class ChainEvent(Frozen):
    """A decoded event from a transaction receipt."""

    name: str
    address: str
    args: dict[str, Any]
    log_index: int


class TxReceipt(Frozen):
    """The receipt of a successful transaction sent by the SDK.

    Attributes:
        tx_hash: ``0x`` hash.
        block_number: the block it was mined in.
        gas_used: gas consumed.
        events: decoded events of the 0G contracts, in log order.
    """

    tx_hash: str
    block_number: int
    gas_used: int
    status: int
    events: tuple[ChainEvent, ...] = ()

    def events_named(self, name: str) -> list[ChainEvent]:
        """The events called ``name``."""
        return [e for e in self.events if e.name == name]


class TxState(str, enum.Enum):
    """Where a transaction sent by the SDK stands.

    Open states: ``signed`` (not yet handed to the node), ``pending`` (the node has it, or may
    have it), ``dropped`` (the node does not know it and its nonce is still free: re-sending the
    same bytes may still execute it), ``unknown`` (the bounds ran out while it might be mined).

    Final states: ``mined`` / ``reverted`` (in a block, status 1 / 0); ``refused`` (the node
    refused the bytes); ``discarded`` (signed, never handed to the node); ``cancelled`` (its nonce
    went to the SDK's 0-value self-transfer); ``replaced`` (its nonce went to another
    transaction). All final states but the first two mean it did not and never will execute.
    """

    SIGNED = "signed"
    PENDING = "pending"
    DROPPED = "dropped"
    UNKNOWN = "unknown"
    MINED = "mined"
    REVERTED = "reverted"
    REFUSED = "refused"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"
    REPLACED = "replaced"

    @property
    def is_final(self) -> bool:
        """Whether the outcome is settled for good (not signed, pending, dropped or unknown)."""
        return self not in (TxState.SIGNED, TxState.PENDING, TxState.DROPPED, TxState.UNKNOWN)

    @property
    def executed(self) -> bool | None:
        """``True`` when mined (even reverted), ``False`` when it never will be, ``None`` while open."""
        if self in (TxState.MINED, TxState.REVERTED):
            return True
        return False if self.is_final else None


class TxRecord(Frozen):
    """A snapshot of one transaction the SDK signed (``broker.transactions``).

    Attributes:
        tx_hash: its hash.
        nonce: its nonce.
        context: what it was for (``"LedgerManager.depositFund"``, ``"cancel of 0x.."``).
        to: the recipient.
        value: wei sent with it.
        state: see :class:`TxState`.
        created_at: when it was signed (unix seconds).
        replacement_hash: the cancelling replacement, when one was sent.
        receipt: the receipt once mined.
        caller_gave_up: the caller was cancelled after the transaction may have reached the node;
            the broker finished it in the background.
    """

    tx_hash: str
    nonce: int
    context: str
    to: str
    value: Wei
    state: TxState
    created_at: float
    replacement_hash: str | None = None
    receipt: TxReceipt | None = None
    caller_gave_up: bool = False


class RpcEndpointHealth(Frozen):
    """The health of one JSON-RPC endpoint of a broker built with ``rpc_urls`` (``broker.rpc_health()``).

    Attributes:
        url: the endpoint, as shown in messages (credentials, query and long path segments redacted).
        score: 0..1, higher is healthier: the recent success ratio times a latency factor; reads go
            to the usable endpoint with the best score.
        cooling_down: the endpoint is resting after a failure or a rate limit (reads skip it).
        cooldown_left: seconds of cooldown left (0 when usable).
        requests: requests sent to it (a batch counts once).
        failures: requests that got no usable answer (transport error, timeout, HTTP error, a
            transient JSON-RPC error), rate limits included.
        rate_limited: rate limits among ``failures`` (HTTP 429, JSON-RPC -32005 and the like).
        consecutive_failures: failures since its last good answer.
        latency: average seconds of its good answers (exponentially weighted), ``None`` before one.
        last_error: the last failure, in short (never a secret).
    """

    url: str
    score: float
    cooling_down: bool
    cooldown_left: float
    requests: int
    failures: int
    rate_limited: int
    consecutive_failures: int
    latency: float | None
    last_error: str | None = None
