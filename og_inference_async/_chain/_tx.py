"""Transactions: one nonce allocator per (event loop, chain, account), gas and fee policy, receipts.

Rules this module keeps:

* Nonces are allocated under a lock from a counter seeded with ``eth_getTransactionCount(pending)``;
  a nonce whose transaction the node never accepted is given back; "nonce too low" resyncs.
* Gas comes from ``eth_estimateGas`` plus a margin, capped. A revert during estimation is raised
  (decoded) before anything is signed or sent.
* Once ``eth_sendRawTransaction`` may have reached the node, the transaction is never re-signed
  or resent. If no receipt arrives within the bounds, :class:`TransactionOutcomeUnknownError`
  carries the hash.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import anyio.lowlevel
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from .._config import TxPolicy
from .._exceptions import (
    ConfigError,
    ContractRevertError,
    InsufficientBalanceError,
    RPCError,
    TransactionOutcomeUnknownError,
)
from .._singleflight import SingleFlight
from ..types import ChainEvent, TxReceipt
from ._abi import decode_revert, inference_abi, ledger_abi
from ._rpc import RpcClient

__all__ = ["NonceAllocator", "TxSender", "get_nonce_allocator", "reset_nonce_allocators"]

log = logging.getLogger("og_inference_async.chain")


class NonceAllocator:
    """Hands out consecutive nonces for one account on one chain to every coroutine of the process.

    The counter is guarded by a thread lock that is never held across an await, so one allocator
    serves any number of coroutines, tasks and event loops. It is seeded from the node's
    ``pending`` transaction count (one read per event loop, single-flight).

    Args:
        chain_id: the chain.
        address: the account.
    """

    def __init__(self, chain_id: int, address: str) -> None:
        self.chain_id = chain_id
        self.address = address
        self._next: int | None = None
        self._returned: set[int] = set()
        self._lock = threading.Lock()
        self._seeds: dict[object, SingleFlight[str, int]] = {}
        self.allocated = 0

    def __repr__(self) -> str:
        return f"NonceAllocator(chain_id={self.chain_id}, address={self.address}, next={self._next})"

    async def allocate(self, rpc: RpcClient) -> int:
        """Reserve the next nonce (seeding from the node's pending count when needed)."""
        while True:
            with self._lock:
                if self._next is not None:
                    if self._returned:
                        nonce = min(self._returned)
                        self._returned.discard(nonce)
                    else:
                        nonce = self._next
                        self._next += 1
                    self.allocated += 1
                    return nonce
            flights = self._seeds.setdefault(anyio.lowlevel.current_token(), SingleFlight())
            count = await flights.run("seed", lambda: self._read_pending(rpc))
            with self._lock:
                if self._next is None:
                    self._next = count
                    self._returned.clear()

    async def _read_pending(self, rpc: RpcClient) -> int:
        return int(await rpc.request("eth_getTransactionCount", [self.address, "pending"]), 16)

    def release(self, nonce: int) -> None:
        """Give back a nonce whose transaction the node never accepted."""
        with self._lock:
            if self._next is None:
                return
            if nonce == self._next - 1:
                self._next -= 1
                while self._next - 1 in self._returned:
                    self._next -= 1
                    self._returned.discard(self._next)
            elif nonce < self._next:
                self._returned.add(nonce)

    def resync(self) -> None:
        """Forget the counter; the next allocation reseeds from the node."""
        with self._lock:
            self._next = None
            self._returned.clear()


_ALLOCATORS: dict[tuple[int, str], NonceAllocator] = {}
_ALLOCATORS_LOCK = threading.Lock()


def get_nonce_allocator(chain_id: int, address: str) -> NonceAllocator:
    """The process-wide allocator for ``(chain_id, address)``."""
    key = (chain_id, address.lower())
    with _ALLOCATORS_LOCK:
        alloc = _ALLOCATORS.get(key)
        if alloc is None:
            alloc = NonceAllocator(chain_id=chain_id, address=address)
            _ALLOCATORS[key] = alloc
        return alloc


def reset_nonce_allocators(chain_id: int | None = None) -> None:
    """Make every allocator (of ``chain_id``, or all) reseed from the node on next use.

    Call it after rewinding a chain (``evm_revert``): the counters would otherwise run ahead of
    the node and transactions would queue behind a nonce gap. The devnet's ``revert`` calls it.
    """
    with _ALLOCATORS_LOCK:
        allocators = [a for (cid, _), a in _ALLOCATORS.items() if chain_id is None or cid == chain_id]
    for alloc in allocators:
        alloc.resync()


def _events_from_logs(logs: list[dict[str, Any]]) -> tuple[ChainEvent, ...]:
    out: list[ChainEvent] = []
    abis = (ledger_abi(), inference_abi())
    for entry in logs:
        for abi in abis:
            ev = abi.decode_log(entry)
            if ev is not None:
                out.append(ChainEvent(name=ev.name, address=ev.address, args=ev.args, log_index=ev.log_index))
                break
    return tuple(out)


def _is_nonce_too_low(err: RPCError) -> bool:
    text = err.message.lower()
    return "nonce too low" in text or "nonce is too low" in text or "already used" in text


class TxSender:
    """Signs locally and sends transactions for one account, sharing its nonce allocator.

    Args:
        rpc: the JSON-RPC client.
        account: the local signer (its key never leaves this object).
        chain_id: the chain id (checked when the broker opened).
        policy: gas, fee and receipt policy.
    """

    def __init__(self, rpc: RpcClient, account: LocalAccount, chain_id: int, policy: TxPolicy) -> None:
        self._rpc = rpc
        self._account = account
        self.address: str = account.address
        self.chain_id = chain_id
        self.policy = policy
        self.nonces = get_nonce_allocator(chain_id, account.address)

    def __repr__(self) -> str:
        return f"TxSender(address={self.address}, chain_id={self.chain_id})"

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
        results = dict(zip([c[0] for c in calls], await self._rpc.batch(calls))) if calls else {}
        for method, value in results.items():
            if isinstance(value, ContractRevertError):
                err = decode_revert(value.data, context=context)
                raise err
            if isinstance(value, RPCError) and method == "eth_estimateGas":
                text = value.message.lower()
                if "insufficient funds" in text:
                    raise InsufficientBalanceError(
                        f"{context}: the wallet cannot pay for value plus gas",
                        hint="fund the wallet with native 0G",
                    )
                raise value
            if isinstance(value, RPCError) and method != "eth_maxPriorityFeePerGas":
                raise value
        out: dict[str, Any] = {}
        if gas is None:
            estimate = int(str(results["eth_estimateGas"]), 16)
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
            int(block["baseFeePerGas"], 16)
            if isinstance(block, dict) and block.get("baseFeePerGas")
            else None
        )
        use_1559 = mode == "eip1559" or (mode == "auto" and base_fee is not None)
        if use_1559:
            tip_raw = results.get("eth_maxPriorityFeePerGas")
            tip = (
                fees.priority_fee
                if fees.priority_fee is not None
                else (int(tip_raw, 16) if isinstance(tip_raw, str) else 10**9)
            )
            max_fee = 2 * (base_fee or 0) + tip
            if fees.max_gas_price is not None and max_fee > fees.max_gas_price:
                max_fee = fees.max_gas_price
                tip = min(tip, max_fee)
            out["maxFeePerGas"] = max_fee
            out["maxPriorityFeePerGas"] = tip
            out["type"] = 2
        else:
            price = fees.gas_price if fees.gas_price is not None else int(str(results["eth_gasPrice"]), 16)
            if fees.max_gas_price is not None and price > fees.max_gas_price:
                raise RPCError(
                    f"{context}: gas price {price} is above the configured maximum {fees.max_gas_price}"
                )
            out["gasPrice"] = price
        return out

    async def send(
        self,
        to: str,
        data: bytes,
        *,
        value: int = 0,
        gas: int | None = None,
        context: str = "transaction",
    ) -> TxReceipt:
        """Estimate, sign, send and wait for one transaction.

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
            TransactionOutcomeUnknownError: sent, but no receipt within the bounds.
            RPCError: the node refused the transaction or could not be reached before sending.
        """
        base: dict[str, Any] = {
            "from": self.address,
            "to": to,
            "data": "0x" + data.hex(),
            "value": hex(value),
        }
        fee_fields = await self._fees_and_gas(base, gas, context)
        for _ in range(3):
            # Shielded: a cancellation between taking a nonce and handing the transaction to the
            # node would leak the nonce (a gap that stalls every later transaction).
            with anyio.CancelScope(shield=True):
                submitted = await self._submit(to, data, value, fee_fields, context)
            if submitted is not None:
                tx_hash, nonce = submitted
                return await self._wait_receipt(tx_hash, nonce, context, base)
        raise RPCError(f"{context}: the node kept reporting 'nonce too low'")

    async def _submit(
        self, to: str, data: bytes, value: int, fee_fields: dict[str, Any], context: str
    ) -> tuple[str, int] | None:
        """Take a nonce, sign and hand the transaction to the node.

        Returns:
            ``(tx_hash, nonce)`` once the node may hold it, or ``None`` after "nonce too low"
            (resynced; the caller tries again with a fresh nonce).
        """
        nonce = await self.nonces.allocate(self._rpc)
        tx = {"to": to, "data": data, "value": value, "nonce": nonce, "chainId": self.chain_id, **fee_fields}
        signed = self._account.sign_transaction(tx)
        raw: bytes = bytes(signed.raw_transaction)
        tx_hash = "0x" + keccak(raw).hex()
        try:
            await self._rpc.request("eth_sendRawTransaction", ["0x" + raw.hex()], retry=False)
        except RPCError as exc:
            if exc.code is None and exc.retryable:
                # Transport failure: the node may or may not have the transaction. Never resend.
                log.warning("send of %s (%s) hit a transport error; waiting for it by hash", context, tx_hash)
                return tx_hash, nonce
            text = exc.message.lower()
            if "already known" in text or "known transaction" in text:
                return tx_hash, nonce
            if _is_nonce_too_low(exc):
                log.info("nonce %d too low for %s; resyncing from the node", nonce, self.address)
                self.nonces.resync()
                return None
            self.nonces.release(nonce)
            if "insufficient funds" in text:
                raise InsufficientBalanceError(
                    f"{context}: the wallet cannot pay for value plus gas", hint="fund the wallet"
                ) from None
            raise
        except ContractRevertError:
            self.nonces.release(nonce)
            raise
        except BaseException:
            self.nonces.release(nonce)
            raise
        return tx_hash, nonce

    async def _wait_receipt(self, tx_hash: str, nonce: int, context: str, call: dict[str, Any]) -> TxReceipt:
        policy = self.policy

        async def poll() -> dict[str, Any] | None:
            try:
                result = await self._rpc.request("eth_getTransactionReceipt", [tx_hash], retry=False)
            except RPCError:
                return None
            return result if isinstance(result, dict) else None

        receipt: dict[str, Any] | None = None
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(policy.receipt_attempts) | stop_after_delay(policy.receipt_timeout),
                wait=wait_exponential(multiplier=policy.receipt_poll_interval, max=1.0),
                retry=retry_if_result(lambda r: r is None),
                sleep=anyio.sleep,
            ):
                with attempt:
                    receipt = await poll()
                if not attempt.retry_state.outcome or not attempt.retry_state.outcome.failed:
                    attempt.retry_state.set_result(receipt)
        except RetryError:
            receipt = None
        if receipt is None:
            # Reseed from the node's pending count: if the node never got this transaction its
            # nonce is reused by the next one (so at most one of them can ever be mined), instead
            # of leaving a gap that would stall every later transaction of this wallet.
            self.nonces.resync()
            raise TransactionOutcomeUnknownError(
                f"{context}: no receipt for {tx_hash} after {policy.receipt_timeout:g} s; "
                "it was not resent and may still be mined",
                tx_hash=tx_hash,
                nonce=nonce,
            )
        status = int(receipt.get("status", "0x1"), 16)
        block_number = int(receipt["blockNumber"], 16)
        if status != 1:
            # Replay the call on the parent state to learn the reason; never resend.
            data = None
            try:
                await self._rpc.request("eth_call", [call, hex(max(block_number - 1, 0))])
            except ContractRevertError as exc:
                data = exc.data
            except RPCError:
                data = None
            raise decode_revert(data, tx_hash=tx_hash, context=context)
        return TxReceipt(
            tx_hash=tx_hash,
            block_number=block_number,
            gas_used=int(receipt["gasUsed"], 16),
            status=status,
            events=_events_from_logs(receipt.get("logs", [])),
        )
