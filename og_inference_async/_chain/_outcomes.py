"""What the node's answers prove: the outcome of one ``eth_sendRawTransaction``, and receipts.

Only an error that proves a refusal (nonce too low, insufficient funds, underpriced, invalid)
means "not sent"; anything else, a transport failure included, means "maybe sent" (``AMBIGUOUS``).
"""

from __future__ import annotations

import logging
from typing import Any

from .._exceptions import ContractRevertError, RPCError
from ..types import ChainEvent
from ._abi import inference_abi, ledger_abi
from ._rpc import as_int

__all__ = [
    "AMBIGUOUS",
    "FILLER_GAS",
    "FUNDS",
    "KNOWN",
    "MAX_SLEEP",
    "NONCE_USED",
    "REFUSED",
    "TAKEN",
    "classify_send_error",
    "events_from_logs",
    "parse_receipt",
]

log = logging.getLogger(__name__)

# Outcomes of one eth_sendRawTransaction.
KNOWN = "known"  # the node has these bytes (accepted now, or already)
NONCE_USED = "nonce_used"  # "nonce too low": the nonce is consumed on chain
TAKEN = "taken"  # another transaction holds the nonce in the pool (replacement underpriced)
FUNDS = "funds"  # the wallet cannot pay value plus gas
REFUSED = "refused"  # any other definite refusal
AMBIGUOUS = "ambiguous"  # no proof either way: the node may have them

_KNOWN_WORDS = ("already known", "already imported", "known transaction", "already in the pool")
_REFUSAL_WORDS = (
    "intrinsic gas too low",
    "exceeds block gas limit",
    "gas limit reached",
    "invalid sender",
    "invalid signature",
    "invalid transaction",
    "transaction underpriced",
    "less than block base fee",
    "fee cap",
    "tip above",
    "oversized data",
    "invalid chain",
    "chain id",
    "gas too low",
    "exceeds the configured cap",
)
#: Gas of a 0-value self-transfer (nonce-gap fillers and cancelling replacements).
FILLER_GAS = 21000
#: Longest sleep between two polls or sends.
MAX_SLEEP = 1.0


def classify_send_error(exc: RPCError | ContractRevertError) -> str:
    """What an error answer to ``eth_sendRawTransaction`` proves (one of the outcome names)."""
    if isinstance(exc, ContractRevertError):
        return REFUSED
    if exc.code is None and exc.retryable:
        return AMBIGUOUS  # transport, timeout, HTTP 429/5xx: no answer from the node itself
    text = exc.message.lower()
    if any(w in text for w in _KNOWN_WORDS):
        return KNOWN
    if "nonce too low" in text or "nonce is too low" in text or "nonce has already been used" in text:
        return NONCE_USED
    if "replacement transaction underpriced" in text or "replacement fee too low" in text:
        return TAKEN
    if "insufficient funds" in text:
        return FUNDS
    if any(w in text for w in _REFUSAL_WORDS):
        return REFUSED
    return AMBIGUOUS


def events_from_logs(logs: Any) -> tuple[ChainEvent, ...]:
    out: list[ChainEvent] = []
    if not isinstance(logs, list):
        return ()
    abis = (ledger_abi(), inference_abi())
    for entry in logs:
        for abi in abis:
            try:
                ev = abi.decode_log(entry)
            except Exception:  # a malformed log from the node: skip it, keep the receipt
                log.debug("undecodable log entry skipped")
                break
            if ev is not None:
                out.append(ChainEvent(name=ev.name, address=ev.address, args=ev.args, log_index=ev.log_index))
                break
    return tuple(out)


def parse_receipt(value: Any) -> tuple[int, int, int, Any] | None:
    """``(status, block, gas used, logs)`` of a well-formed receipt; ``None`` for anything else."""
    if not isinstance(value, dict):
        return None
    try:
        block = as_int(value.get("blockNumber"), "eth_getTransactionReceipt")
        gas = as_int(value.get("gasUsed"), "eth_getTransactionReceipt")
        status = as_int(value.get("status", "0x1"), "eth_getTransactionReceipt")
    except RPCError:
        log.warning("the node answered a malformed receipt; polling on")
        return None
    return status, block, gas, value.get("logs", [])
