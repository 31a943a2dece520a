"""Transactions: fees and gas, signing, delivery and receipts (cancellation and resolution: ``_resolve``).

Rules this module keeps:

* Nonces come from one allocator per (chain, account) for the whole process (``_nonce``); taking
  one never awaits, so a cancellation never leaks it. Signing failures give it back.
* Gas comes from ``eth_estimateGas`` plus a margin, capped. A revert during estimation is raised
  (decoded) before anything is signed or sent.
* Only a JSON-RPC error that proves a refusal (nonce too low, insufficient funds, underpriced,
  invalid) counts as "not sent". Any other failure of ``eth_sendRawTransaction`` (5xx, 429, a
  reset, a timeout, an unexpected error) means "maybe sent": the IDENTICAL signed bytes are handed
  to the node again with backoff until it knows them or refuses them. Same bytes, same hash, same
  nonce: they execute at most once.
* While no receipt has come, the identical bytes are re-sent now and then (a node that lost
  them gets them back), and nonces this process gave back below ours are filled with 0-value
  self-transfers, so a transaction is never held hostage by a gap.
* Every wait is bounded: no RPC request outlives ``receipt_timeout``. When it runs out, the
  transaction is cancelled by a 0-value self-transfer at the same nonce with bumped fees, so the
  outcome becomes definite: its receipt (it won), or :class:`TransactionNotExecutedError` (the
  replacement won). Only when neither lands in ``cancel_timeout`` is the caller told
  :class:`TransactionOutcomeUnknownError`, with the hash; it stays listed in
  ``broker.transactions`` until resolved. A different transaction for the same intent is signed
  only when the first can never execute (its nonce went to another transaction).
* With several RPC endpoints (``rpc_urls``) each transaction is pinned to one endpoint: its
  re-sends go there while it is usable, and are moved to another only after the others were
  asked by hash and nonce (the rule is written out in ``_fallback``).
* A caller cancelled after the bytes may have reached the node does not abandon them: the
  broker's task group finishes the transaction in the background and records its outcome
  (``broker.transactions.recent()``), logged with its hash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import anyio
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt, wait_exponential
from tenacity.stop import stop_base

from .._config import TxPolicy
from .._exceptions import (
    ConfigError,
    ContractRevertError,
    InsufficientBalanceError,
    OGError,
    RPCError,
    TransactionNotExecutedError,
    TransactionOutcomeUnknownError,
)
from .._observe import Observer
from .._units import format_og
from ..types import TxReceipt, TxState
from ._abi import decode_revert
from ._nonce import NonceAllocator, Tracked, get_nonce_allocator, reset_nonce_allocators
from ._outcomes import (
    AMBIGUOUS,
    FILLER_GAS,
    FUNDS,
    KNOWN,
    MAX_SLEEP,
    NONCE_USED,
    REFUSED,
    TAKEN,
    classify_send_error,
    events_from_logs,
    parse_receipt,
)
from ._resolve import TxResolver
from ._rpc import RpcClient, as_int

__all__ = ["NonceAllocator", "TxSender", "get_nonce_allocator", "reset_nonce_allocators"]

log = logging.getLogger(__name__)

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], object]


class _Deadline(stop_base):
    """Stop a tenacity loop once the monotonic ``deadline`` has passed."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() >= self.deadline


class TxSender:
    """Signs locally and sends transactions for one account, sharing its nonce allocator.

    Args:
        rpc: the JSON-RPC client.
        account: the local signer (its key never leaves this object).
        chain_id: the chain id (checked when the broker opened).
        policy: gas, fee, receipt and resolution policy.
        spawn: starts a coroutine in the broker's task group (finishes transactions whose caller
            was cancelled); ``None`` leaves them listed as in doubt.
        nonces: the allocator (a coordinator's, shared by several processes); default: the
            process-wide one of ``(chain_id, account)``.
    """

    def __init__(
        self,
        rpc: RpcClient,
        account: LocalAccount,
        chain_id: int,
        policy: TxPolicy,
        spawn: Spawn | None = None,
        nonces: NonceAllocator | None = None,
    ) -> None:
        self.rpc = rpc
        self._account = account
        self.address: str = account.address
        self.chain_id = chain_id
        self.policy = policy
        self.spawn = spawn
        #: the broker's observer (``on_transaction``, counters); ``None``: not observed
        self.observer: Observer | None = None
        self.nonces = nonces if nonces is not None else get_nonce_allocator(chain_id, account.address)
        #: cancellation by replacement and the ``broker.transactions`` resolution API
        self.resolver = TxResolver(self)

    def __repr__(self) -> str:
        return f"TxSender(address={self.address}, chain_id={self.chain_id})"

    # -- fees and gas ----------------------------------------------------------------------------

    async def _fees_and_gas(self, tx: dict[str, Any], gas: int | None, context: str) -> dict[str, Any]:
        fees = self.policy.fees
        calls: list[tuple[str, list[Any]]] = []
        if gas is None:
            calls.append(("eth_estimateGas", [tx]))
        mode = fees.mode
        if mode in ("legacy", "auto") and fees.gas_price is None:
            calls.append(("eth_gasPrice", []))
        if mode in ("eip1559", "auto"):
            calls.append(("eth_getBlockByNumber", ["latest", False]))
            if fees.priority_fee is None:
                calls.append(("eth_maxPriorityFeePerGas", []))
        results = dict(zip([c[0] for c in calls], await self.rpc.batch(calls))) if calls else {}
        for method, value in results.items():
            if isinstance(value, ContractRevertError):
                raise decode_revert(value.data, context=context)
            if isinstance(value, RPCError) and method == "eth_estimateGas":
                if "insufficient funds" in value.message.lower():
                    raise InsufficientBalanceError(
                        f"{context}: the wallet cannot pay for value plus gas",
                        hint="fund the wallet with native 0G",
                    )
                raise value
            if isinstance(value, RPCError) and method != "eth_maxPriorityFeePerGas":
                raise value
        out: dict[str, Any] = {}
        if gas is None:
            estimate = as_int(results["eth_estimateGas"], "eth_estimateGas")
            if estimate > self.policy.gas_cap:
                raise ConfigError(
                    f"{context}: the node estimates {estimate} gas, above the configured cap "
                    f"{self.policy.gas_cap}; nothing was sent",
                    hint="raise TxPolicy.gas_cap",
                )
            gas = min(estimate * (100 + self.policy.gas_margin_percent) // 100, self.policy.gas_cap)
        out["gas"] = gas
        block = results.get("eth_getBlockByNumber")
        base_fee = (
            as_int(block["baseFeePerGas"], "eth_getBlockByNumber")
            if isinstance(block, dict) and block.get("baseFeePerGas")
            else None
        )
        use_1559 = mode == "eip1559" or (mode == "auto" and base_fee is not None)
        if use_1559:
            tip_raw = results.get("eth_maxPriorityFeePerGas")
            tip = (
                fees.priority_fee
                if fees.priority_fee is not None
                else (as_int(tip_raw, "eth_maxPriorityFeePerGas") if isinstance(tip_raw, str) else 10**9)
            )
            max_fee = 2 * (base_fee or 0) + tip
            if fees.max_gas_price is not None and max_fee > fees.max_gas_price:
                max_fee = fees.max_gas_price
                tip = min(tip, max_fee)
            out["maxFeePerGas"] = max_fee
            out["maxPriorityFeePerGas"] = tip
            out["type"] = 2
        else:
            price = (
                fees.gas_price
                if fees.gas_price is not None
                else as_int(results["eth_gasPrice"], "eth_gasPrice")
            )
            if fees.max_gas_price is not None and price > fees.max_gas_price:
                raise RPCError(
                    f"{context}: gas price {price} is above the configured maximum {fees.max_gas_price}"
                )
            out["gasPrice"] = price
        return out

    # -- signing ---------------------------------------------------------------------------------

    async def _read_pending(self) -> int:
        return await self.rpc.request_int("eth_getTransactionCount", [self.address, "pending"])

    def sign_at(
        self,
        nonce: int,
        to: str,
        data: bytes,
        value: int,
        fields: dict[str, Any],
        context: str,
        *,
        owns_nonce: bool = True,
    ) -> Tracked:
        """Sign at ``nonce`` and start tracking; gives the nonce back if signing fails (when it owns it)."""
        tx = {"to": to, "data": data, "value": value, "nonce": nonce, "chainId": self.chain_id, **fields}
        try:
            raw = bytes(self._account.sign_transaction(tx).raw_transaction)
        except Exception as exc:  # eth-account boundary: a field it cannot serialise
            if owns_nonce:
                self._give_back(nonce)
            raise ConfigError(
                f"{context}: the transaction could not be signed ({type(exc).__name__}); nothing was sent",
                hint="check TxPolicy / FeePolicy values",
            ) from None
        except BaseException:
            if owns_nonce:
                self._give_back(nonce)
            raise
        record = Tracked(
            tx_hash="0x" + keccak(raw).hex(),
            nonce=nonce,
            raw=raw,
            context=context,
            to=to,
            value=value,
            fees={
                k: v for k, v in fields.items() if k in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas")
            },
            call={"from": self.address, "to": to, "data": "0x" + data.hex(), "value": hex(value)},
        )
        self.nonces.track(record)
        return record

    # -- sending ---------------------------------------------------------------------------------

    async def send(
        self,
        to: str,
        data: bytes,
        *,
        value: int = 0,
        gas: int | None = None,
        context: str = "transaction",
    ) -> TxReceipt:
        """Estimate, sign, deliver and wait for one transaction, within the policy's bounds.

        Args:
            to: the contract address.
            data: calldata.
            value: wei to send with it.
            gas: a fixed gas limit (skips estimation).
            context: a short label for messages (``"LedgerManager.addLedger"``).

        Returns:
            The receipt with decoded events.

        Raises:
            ContractRevertError: the estimate or the mined transaction reverted (decoded).
            InsufficientBalanceError: the wallet cannot pay value plus gas.
            TransactionNotExecutedError: no receipt came in time and the cancelling replacement
                won: nothing was executed.
            TransactionOutcomeUnknownError: neither the transaction nor its cancellation was
                mined within the bounds (see ``broker.transactions``).
            RPCError: the node refused the transaction, or could not be reached before sending.
        """
        call: dict[str, Any] = {
            "from": self.address,
            "to": to,
            "data": "0x" + data.hex(),
            "value": hex(value),
        }
        fields = await self._fees_and_gas(call, gas, context)
        for _ in range(3):
            nonce = await self.nonces.allocate(self._read_pending)
            record = self.sign_at(nonce, to, data, value, fields, context)
            receipt = await self._drive(record)
            if receipt is not None:
                log.info(
                    "%s mined: %s, value %s OG, gas %d, block %d",
                    context,
                    receipt.tx_hash,
                    format_og(value),
                    receipt.gas_used,
                    receipt.block_number,
                )
                if self.observer is not None:
                    self.observer.transaction(
                        context, receipt.tx_hash, value, receipt.block_number, receipt.gas_used
                    )
                return receipt
            # The nonce went to another transaction: this one can never execute; sign afresh.
            log.info("nonce %d of %s was used elsewhere; %s is signed again", nonce, self.address, context)
            self.nonces.resync()
        raise RPCError(f"{context}: the node kept reporting that the nonce was already used")

    async def _drive(self, record: Tracked) -> TxReceipt | None:
        """Deliver and settle ``record``; ``None`` when its nonce went to a foreign transaction."""
        try:
            start = time.monotonic()
            outcome = await self.broadcast(record, until=start + self.policy.send_timeout)
            if outcome in (NONCE_USED, TAKEN):
                self.nonces.finish(record, TxState.REPLACED)
                return None
            return await self._settle(record, start, cancel=self.policy.cancel_on_timeout, resign=True)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled (or interrupted) mid-flight
                self._abandon(record)
            raise

    def _give_back(self, nonce: int) -> None:
        """Give back a nonce without awaiting (cancelled or failing); a shared counter hears of it
        from a background task, else on this process's next allocation or gap claim."""
        self.nonces.release(nonce)
        if self.nonces.shared and self.spawn is not None:
            try:
                self.spawn(self.nonces.flush)
            except RuntimeError:  # the broker is closing: the next allocation (or the lease) frees it
                log.debug("nonce %d given back; its hand-back to the shared counter is deferred", nonce)

    def _abandon(self, record: Tracked) -> None:
        """The caller went away: never leave the nonce held, never lose a maybe-sent transaction."""
        if record.state.is_final:
            return
        if not record.maybe_sent:
            self._give_back(record.nonce)
            self.nonces.finish(record, TxState.DISCARDED)
            return
        record.caller_gave_up = True
        record.owned = False
        log.warning(
            "caller cancelled after %s (%s, nonce %d) may have reached the node; %s",
            record.context,
            record.tx_hash,
            record.nonce,
            "finishing it in the background" if self.spawn else "it is listed in broker.transactions",
        )
        if self.spawn is not None:
            self.spawn(partial(self._finish_in_background, record))

    async def _finish_in_background(self, record: Tracked) -> None:
        record.owned = True
        try:
            receipt = await self._settle(record, time.monotonic(), cancel=self.policy.cancel_on_timeout)
            assert receipt is not None  # without ``resign`` it returns a receipt or raises
            log.info(
                "%s (%s) finished in the background: mined in block %d",
                record.context,
                record.tx_hash,
                receipt.block_number,
            )
        except OGError as exc:
            log.warning(
                "%s (%s) finished in the background: %s", record.context, record.tx_hash, type(exc).__name__
            )
        finally:
            record.owned = False

    async def send_once(
        self, record: Tracked, timeout: float
    ) -> tuple[str, RPCError | ContractRevertError | None]:
        """Hand the identical bytes to the node once (to the transaction's pinned endpoint, if several).

        With several endpoints and the pin cooling down, the other endpoints are asked first
        (:meth:`_repin`); their answer may settle the outcome without a send.
        """
        endpoint = None
        if self.rpc.endpoints is not None:
            endpoint, settled = await self._repin(record, timeout)
            if settled is not None:
                return settled, None
        record.maybe_sent = True
        try:
            await self.rpc.request(
                "eth_sendRawTransaction", [record.raw_hex], retry=False, timeout=timeout, endpoint=endpoint
            )
        except (RPCError, ContractRevertError) as exc:
            return classify_send_error(exc), exc
        return KNOWN, None

    async def _repin(self, record: Tracked, timeout: float) -> tuple[int | None, str | None]:
        """``(endpoint to send to, None)``, or ``(None, outcome)`` when asking the others settled it.

        The first send pins the best endpoint; re-sends keep the pin while it is usable. A pin
        cooling down is left only after the other endpoints were asked for the hash and the
        account's ``latest`` nonce: ``KNOWN`` if one has it, ``NONCE_USED`` if none has it and the
        nonce is spent, ``AMBIGUOUS`` if none could answer; else the best other endpoint is pinned.
        """
        endpoints = self.rpc.endpoints
        assert endpoints is not None
        health = endpoints.health
        pin = record.endpoint
        if pin is None or not record.maybe_sent:
            record.endpoint = health.best()
            return record.endpoint, None
        if health.is_usable(pin) or len(health) == 1:
            return pin, None
        deadline = time.monotonic() + timeout
        answered = False
        for other in [i for i in range(len(health)) if i != pin]:
            try:
                found, count = await self.rpc.batch(
                    [
                        ("eth_getTransactionByHash", [record.tx_hash]),
                        ("eth_getTransactionCount", [self.address, "latest"]),
                    ],
                    timeout=self.attempt_timeout(deadline),
                    retry=False,
                    endpoint=other,
                )
            except (RPCError, ContractRevertError):
                continue
            if isinstance(found, dict):
                log.info("%s (%s): another RPC endpoint has it; not re-sent", record.context, record.tx_hash)
                return None, KNOWN
            try:
                latest = as_int(count, "eth_getTransactionCount")
            except RPCError:
                continue  # an error item or junk: this endpoint proves nothing
            if isinstance(found, Exception):
                continue
            answered = True
            if latest > record.nonce:
                return None, NONCE_USED
        if not answered:
            return None, AMBIGUOUS
        record.endpoint = health.best(exclude=pin)
        log.info(
            "%s (%s): its RPC endpoint is cooling down and no other has it; re-sent through endpoint %s",
            record.context,
            record.tx_hash,
            record.endpoint,
        )
        return record.endpoint, None

    def attempt_timeout(self, deadline: float | None) -> float:
        """One attempt's timeout, cut so that it does not outlive ``deadline``."""
        cap = self.rpc.retry.attempt_timeout
        return cap if deadline is None else max(0.05, min(cap, deadline - time.monotonic()))

    async def lookup(self, record: Tracked, deadline: float | None = None) -> tuple[Any, bool]:
        """``(receipt or None, whether the node may hold the transaction)``, in one bounded attempt.

        A lookup that fails (or answers junk) proves nothing: it counts as "may hold it", so that
        no caller concludes "not executed" from a node it could not ask.
        """
        try:
            receipt, known = await self.rpc.batch(
                [
                    ("eth_getTransactionReceipt", [record.tx_hash]),
                    ("eth_getTransactionByHash", [record.tx_hash]),
                ],
                timeout=self.attempt_timeout(deadline),
                retry=False,
            )
        except (RPCError, ContractRevertError):
            return None, True
        found = receipt if parse_receipt(receipt) is not None else None
        unanswered = isinstance(receipt, Exception) or isinstance(known, Exception)
        return found, found is not None or isinstance(known, dict) or unanswered

    async def broadcast(self, record: Tracked, *, until: float, raise_refusal: bool = True) -> str:
        """Deliver the identical bytes until the node knows them or refuses them (or ``until``).

        Returns:
            ``KNOWN``, ``NONCE_USED``, ``TAKEN``, ``AMBIGUOUS`` (time ran out), or ``REFUSED`` /
            ``FUNDS`` when ``raise_refusal`` is false.

        Raises:
            InsufficientBalanceError, RPCError: a definite refusal (nonce given back).
        """
        delay = 0.05
        tried = False
        while True:
            left = until - time.monotonic()
            outcome, error = await self.send_once(
                record, max(0.05, min(self.rpc.retry.attempt_timeout, left))
            )
            if outcome == KNOWN:
                record.state = TxState.PENDING
                return KNOWN
            if outcome != AMBIGUOUS:
                if tried:
                    # An earlier attempt may have got through: believe the chain, not the answer.
                    _, known = await self.lookup(record)
                    if known:
                        record.state = TxState.PENDING
                        return KNOWN
                if outcome in (FUNDS, REFUSED):
                    if not raise_refusal:
                        return outcome
                    self.nonces.release(record.nonce)
                    self.nonces.finish(record, TxState.REFUSED)
                    await self.nonces.flush()
                    if outcome == FUNDS:
                        raise InsufficientBalanceError(
                            f"{record.context}: the wallet cannot pay for value plus gas",
                            hint="fund the wallet",
                        )
                    assert error is not None
                    if isinstance(error, ContractRevertError):
                        raise error
                    raise RPCError(
                        f"{record.context}: the node refused the transaction: {error.message}",
                        code=error.code,
                        method="eth_sendRawTransaction",
                    )
                return outcome
            tried = True
            record.state = TxState.PENDING
            found, _ = await self.lookup(record, until)
            if found is not None:
                return KNOWN  # the answer was lost but the node took (and mined) the bytes
            if time.monotonic() + delay >= until:
                log.warning(
                    "%s (%s): no definite answer to the send yet; waiting by hash",
                    record.context,
                    record.tx_hash,
                )
                return AMBIGUOUS
            await anyio.sleep(delay)
            delay = min(delay * 2, MAX_SLEEP)

    # -- waiting ---------------------------------------------------------------------------------

    async def _poll(self, tx_hash: str, timeout: float) -> Any:
        try:
            return await self.rpc.request(
                "eth_getTransactionReceipt", [tx_hash], retry=False, timeout=timeout
            )
        except (RPCError, ContractRevertError):
            return None

    async def wait_receipt(self, record: Tracked, deadline: float) -> Any:
        """Poll for the receipt until ``deadline``, re-sending the identical bytes now and then.

        The polling is a tenacity loop bounded in attempts (``receipt_attempts``) and time (the
        deadline); each poll is cut at what is left of it.

        Returns:
            The raw receipt, ``NONCE_USED`` when the nonce went to another transaction, or
            ``None`` when the time ran out.
        """
        policy = self.policy
        now = started = time.monotonic()
        timers = {
            "send": now + policy.rebroadcast_interval,
            "gap": policy.rebroadcast_interval,
            "heal": now + policy.gap_heal_after,
        }
        backoff = wait_exponential(multiplier=policy.receipt_poll_interval, max=MAX_SLEEP)
        observer = self.observer if self.observer is not None and self.observer.watching_progress else None
        polls = [0]

        def wait(state: RetryCallState) -> float:
            return max(0.0, min(backoff(state), deadline - time.monotonic()))

        async def attempt() -> Any:
            left = deadline - time.monotonic()
            receipt = await self._poll(record.tx_hash, min(self.rpc.retry.attempt_timeout, left))
            if parse_receipt(receipt) is not None:
                return receipt
            now = time.monotonic()
            if observer is not None:
                polls[0] += 1
                observer.progress("receipt", "tx_hash", record.tx_hash, now - started, polls[0])
            if now >= timers["send"] and now < deadline:
                outcome, _ = await self.send_once(
                    record, max(0.05, min(self.rpc.retry.attempt_timeout, deadline - now))
                )
                if outcome == NONCE_USED:
                    found, known = await self.lookup(record, deadline)
                    if found is not None:
                        return found
                    if not known:
                        return NONCE_USED
                    # the node may hold it (or could not be asked): poll on within the bound
                timers["gap"] *= 2
                timers["send"] = time.monotonic() + timers["gap"]
            now = time.monotonic()
            if now >= timers["heal"] and now < deadline:
                spent = await self._heal_gaps(record, deadline)
                if spent is not None:
                    return spent
                timers["heal"] = time.monotonic() + policy.gap_heal_after
            return None

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.receipt_attempts) | _Deadline(deadline),
            wait=wait,
            retry=retry_if_result(lambda r: r is None),
            sleep=anyio.sleep,
            retry_error_callback=lambda state: None,
        )
        return await retrying(attempt)

    async def _count(self, block: str, deadline: float) -> int:
        """The account's transaction count at ``block`` (one attempt, cut at the deadline)."""
        return await self.rpc.request_int(
            "eth_getTransactionCount",
            [self.address, block],
            retry=False,
            timeout=self.attempt_timeout(deadline),
        )

    async def _spent_elsewhere(self, record: Tracked, deadline: float) -> Any:
        """``NONCE_USED`` when a mined block used ``record``'s nonce for another transaction, its
        receipt when it was ``record`` after all, ``None`` when the node cannot tell (yet).

        One endpoint answers, about one block it already has: the account's count at that block,
        and ``record``'s receipt. A node holding that block holds the receipts of its
        transactions, so a count above the nonce with no receipt is proof that ``record`` can
        never be mined, even when the node still keeps it in its pool (anvil does).
        """
        timeout = self.attempt_timeout(deadline)
        try:
            head = await self.rpc.request_int(
                "eth_blockNumber", [], retry=False, timeout=timeout, endpoint=record.endpoint
            )
            count, receipt = await self.rpc.batch(
                [
                    ("eth_getTransactionCount", [self.address, hex(head)]),
                    ("eth_getTransactionReceipt", [record.tx_hash]),
                ],
                retry=False,
                timeout=self.attempt_timeout(deadline),
                endpoint=record.endpoint,
            )
        except (RPCError, ContractRevertError):
            return None
        if parse_receipt(receipt) is not None:
            return receipt
        if receipt is not None or isinstance(count, Exception):
            return None  # junk or an error: no proof either way
        try:
            spent = as_int(count, "eth_getTransactionCount") > record.nonce
        except RPCError:
            return None
        if spent:
            log.info(
                "nonce %d of %s was used by another transaction; %s (%s) can never be mined",
                record.nonce,
                self.address,
                record.context,
                record.tx_hash,
            )
        return NONCE_USED if spent else None

    async def _heal_gaps(self, record: Tracked, deadline: float) -> Any:
        """Re-send abandoned transactions below ``record`` and fill the nonces nobody will send.

        Only nonces at or above the node's ``pending`` count are filled: below it the node holds a
        transaction at every nonce (with several processes, one sent by another may be waiting
        there), and a filler must not replace a transaction the node is about to mine. A transaction
        queued behind another gap is not counted; when a filler takes its nonce (its taker's lease
        ran out), its sender proves it dead (:meth:`_spent_elsewhere`) and signs the call again.

        Returns:
            What :meth:`_spent_elsewhere` found when the chain is past ``record``'s nonce, else
            ``None``.
        """
        try:
            latest = await self._count("latest", deadline)
            if latest > record.nonce:
                return await self._spent_elsewhere(record, deadline)
            if latest == record.nonce:
                return None
            pending = await self._count("pending", deadline)
        except (RPCError, ContractRevertError):
            return None
        for other in self.nonces.open_records():
            if latest <= other.nonce < record.nonce and not other.owned and other.maybe_sent:
                await self.send_once(other, self.attempt_timeout(deadline))
        if pending > record.nonce:
            return None  # no gap below this transaction: the node holds every nonce before it
        for nonce in await self.nonces.claim_gaps(record.nonce, max(latest, pending)):
            filler = self.sign_at(
                nonce,
                self.address,
                b"",
                0,
                {**record.fees, "gas": FILLER_GAS},
                f"nonce gap filler before {record.tx_hash}",
            )
            filler.owned = False
            log.info("filling nonce gap %d of %s with %s", nonce, self.address, filler.tx_hash)
            outcome, _ = await self.send_once(filler, self.attempt_timeout(deadline))
            if outcome in (FUNDS, REFUSED):
                self.nonces.release(nonce)
                self.nonces.finish(filler, TxState.REFUSED)
                await self.nonces.flush()
            elif outcome in (NONCE_USED, TAKEN):
                self.nonces.finish(filler, TxState.REPLACED)
            else:
                filler.state = TxState.PENDING
                if self.spawn is not None:
                    self.spawn(partial(self._finish_in_background, filler))

    async def _settle(
        self, record: Tracked, start: float, *, cancel: bool, resign: bool = False
    ) -> TxReceipt | None:
        """Wait for the receipt; on time-out cancel (if asked) so the outcome becomes definite.

        With ``resign``, a nonce that went to another transaction while waiting (``record`` can
        never be mined, and no cancellation of ours was involved) returns ``None``: the caller
        may sign the same call afresh.
        """
        raw = await self.wait_receipt(record, start + self.policy.receipt_timeout)
        if raw == NONCE_USED:
            if resign and record.replacement_hash is None:
                self.nonces.finish(record, TxState.REPLACED)
                return None
            return self.lost_nonce(record)
        if raw is not None:
            return await self.conclude(record, raw)
        if not cancel:
            return self.outcome_unknown(record)
        receipt = await self.resolver.cancel_by_replacement(record, raise_if_cancelled=True)
        assert receipt is not None  # a won cancellation raised
        return receipt

    def lost_nonce(self, record: Tracked) -> TxReceipt:
        """Record that ``record``'s nonce went to another transaction, and raise it.

        Raises:
            TransactionNotExecutedError: always (``replaced``, or ``cancelled`` by its replacement).
        """
        state = TxState.CANCELLED if record.replacement_hash else TxState.REPLACED
        self.nonces.finish(record, state)
        raise TransactionNotExecutedError(
            f"{record.context}: {record.tx_hash} was not executed: its nonce {record.nonce} was used by "
            + ("its cancelling replacement" if record.replacement_hash else "another transaction"),
            tx_hash=record.tx_hash,
            nonce=record.nonce,
            reason=state.value,
            replacement_hash=record.replacement_hash,
        )

    def outcome_unknown(self, record: Tracked) -> TxReceipt:
        """Record that the bounds ran out with no definite outcome, and raise it.

        Raises:
            TransactionOutcomeUnknownError: always, with the hash (``broker.transactions`` lists it).
        """
        self.nonces.finish(record, TxState.UNKNOWN)
        record.owned = False  # later transactions re-send it if it holds them back
        raise TransactionOutcomeUnknownError(
            f"{record.context}: no receipt for {record.tx_hash} within the bounds; it may still be "
            "mined (see broker.transactions)",
            tx_hash=record.tx_hash,
            nonce=record.nonce,
            replacement_hash=record.replacement_hash,
        )

    async def conclude(self, record: Tracked, raw: dict[str, Any]) -> TxReceipt:
        """Finish ``record`` from its well-formed receipt (other records at its nonce were replaced).

        Raises:
            ContractRevertError: the transaction reverted (decoded by replaying it as a call).
        """
        parsed = parse_receipt(raw)
        assert parsed is not None
        status, block, gas_used, logs = parsed
        receipt = TxReceipt(
            tx_hash=record.tx_hash,
            block_number=block,
            gas_used=gas_used,
            status=status,
            events=events_from_logs(logs),
        )
        record.receipt = receipt
        for other in self.nonces.by_nonce(record.nonce):
            if other is not record:
                self.nonces.finish(other, TxState.REPLACED)
        if status != 1:
            self.nonces.finish(record, TxState.REVERTED)
            data = None
            try:
                await self.rpc.request("eth_call", [record.call, hex(max(block - 1, 0))])
            except ContractRevertError as exc:
                data = exc.data
            except RPCError:
                data = None
            raise decode_revert(data, tx_hash=record.tx_hash, context=record.context)
        self.nonces.finish(record, TxState.MINED)
        return receipt
