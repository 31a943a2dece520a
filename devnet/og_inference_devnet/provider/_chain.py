"""Chain access for the devnet provider: contract reads, locally signed transactions, settlement events.

The provider deliberately does not use the SDK's chain layer: it is the ground truth the SDK is tested
against, so it talks to the node through the devnet's own JSON-RPC client, encodes calls with the public
:mod:`og_inference_async.abi` codec and signs its transactions locally with ``eth_account``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from eth_account import Account
from eth_utils import to_checksum_address

from og_inference_async import ContractRevertError, TransactionOutcomeUnknownError
from og_inference_async.abi import Function, decode_revert, inference_abi

from .._errors import DevnetError
from .._rpc import RpcClient

__all__ = [
    "AccountState",
    "ProviderChain",
    "ServiceState",
    "inference_function",
    "settlement_outcomes",
]


def inference_function(name: str) -> Function:
    """Return an InferenceServing function by name (from the SDK's ABI)."""
    return inference_abi().fn(name)


@dataclass(frozen=True)
class AccountState:
    """The fields of an on-chain ``Account`` (user, this provider) that the provider checks."""

    user: str
    nonce: int
    balance: int
    pending_refund: int
    acknowledged: bool
    generation: int
    revoked_bitmap: int

    @property
    def locked(self) -> int:
        """Spendable sub-account funds: ``balance - pendingRefund`` (never negative)."""
        return max(self.balance - self.pending_refund, 0)

    def is_revoked(self, token_id: int) -> bool:
        """Whether persistent token id ``token_id`` is revoked in the bitmap."""
        return bool((self.revoked_bitmap >> token_id) & 1)


@dataclass(frozen=True)
class ServiceState:
    """The on-chain ``Service`` struct of a provider."""

    provider: str
    service_type: str
    url: str
    input_price: int
    output_price: int
    model: str
    verifiability: str
    additional_info: str
    tee_signer: str
    tee_signer_acknowledged: bool


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


class ProviderChain:
    """Access to the InferenceServing contract for one provider account.

    Args:
        rpc_url: the node's HTTP JSON-RPC URL.
        chain_id: the chain id (used when signing transactions).
        inference: the InferenceServing proxy address.
        http: a shared ``httpx.AsyncClient`` (not closed here).
    """

    def __init__(self, rpc_url: str, chain_id: int, inference: str, http: httpx.AsyncClient) -> None:
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.inference = to_checksum_address(inference)
        self._client = RpcClient(rpc_url, http)
        self._send_locks: dict[str, anyio.Lock] = {}

    # -- transport ---------------------------------------------------------------------------
    async def rpc(self, method: str, params: list[Any]) -> Any:
        """Send one JSON-RPC request and return its ``result``.

        Raises:
            DevnetError: transport failure or a JSON-RPC error (``data`` holds revert data if any).
        """
        return await self._client.call(method, params)

    # -- calls -------------------------------------------------------------------------------
    def _call_params(self, data: bytes, from_: str | None, block: str) -> list[Any]:
        tx: dict[str, Any] = {"to": self.inference, "data": _hex(data)}
        if from_ is not None:
            tx["from"] = from_
        return [tx, block]

    @staticmethod
    def _revert_from(err: DevnetError, what: str) -> ContractRevertError | None:
        data = err.data
        if isinstance(data, dict):
            data = data.get("data")
        if not isinstance(data, str) or not data.startswith("0x"):
            return None
        return decode_revert(data, context=what)

    def _decode_call(self, fn: Function, result: Any) -> tuple[Any, ...]:
        if isinstance(result, DevnetError):
            revert = self._revert_from(result, fn.name)
            if revert is not None:
                raise revert from result
            raise result
        return fn.decode_raw(bytes.fromhex(str(result)[2:]))

    async def call(self, fn: Function, *args: Any, from_: str | None = None) -> tuple[Any, ...]:
        """``eth_call`` an InferenceServing function and decode its outputs.

        Raises:
            ContractRevertError: the call reverted (``error_name`` set when decodable).
            DevnetError: any other failure.
        """
        result = await self._client.outcomes(
            [("eth_call", self._call_params(fn.encode(*args), from_, "latest"))]
        )
        return self._decode_call(fn, result[0])

    async def head_and_account(self, user: str, provider: str) -> tuple[str, AccountState | None]:
        """Read the latest block hash and the (user, provider) account in one batch.

        Returns:
            ``(block_hash, account)``; ``account`` is ``None`` when it does not exist.
        """
        fn = inference_function("getAccount")
        head, result = await self._client.outcomes(
            [
                ("eth_getBlockByNumber", ["latest", False]),
                ("eth_call", self._call_params(fn.encode(user, provider), None, "latest")),
            ]
        )
        if isinstance(head, DevnetError):
            raise head
        try:
            (acc,) = self._decode_call(fn, result)
        except ContractRevertError as exc:
            if exc.error_name == "AccountNotExists":
                return str(head["hash"]), None
            raise
        return str(head["hash"]), _account_state(acc)

    async def head(self) -> str:
        """Return the hash of the latest block."""
        block = await self.rpc("eth_getBlockByNumber", ["latest", False])
        return str(block["hash"])

    async def get_account(self, user: str, provider: str) -> AccountState | None:
        """Return the (user, provider) account, or ``None`` if it does not exist."""
        try:
            (acc,) = await self.call(inference_function("getAccount"), user, provider)
        except ContractRevertError as exc:
            if exc.error_name == "AccountNotExists":
                return None
            raise
        return _account_state(acc)

    async def get_service(self, provider: str) -> ServiceState:
        """Return the provider's on-chain service struct."""
        (svc,) = await self.call(inference_function("getService"), provider)
        return ServiceState(
            provider=to_checksum_address(svc[0]),
            service_type=svc[1],
            url=svc[2],
            input_price=int(svc[3]),
            output_price=int(svc[4]),
            model=svc[6],
            verifiability=svc[7],
            additional_info=svc[8],
            tee_signer=to_checksum_address(svc[9]),
            tee_signer_acknowledged=bool(svc[10]),
        )

    # -- transactions ------------------------------------------------------------------------
    async def send(
        self,
        private_key: str,
        data: bytes,
        *,
        value: int = 0,
        gas: int | None = None,
        on_sent: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Sign a legacy transaction to the inference contract locally, send it and wait for its receipt.

        Transactions of one sender are serialised (nonce read as ``pending`` under a lock).

        Args:
            private_key: the sender's key (a devnet account).
            data: calldata.
            value: wei to send.
            gas: gas limit; estimated (+20 %) when ``None``.
            on_sent: called with the transaction hash just before ``eth_sendRawTransaction``:
                from then on a failure leaves the outcome unknown (the node may have it).

        Returns:
            The receipt (a JSON-RPC receipt object with ``status == "0x1"``).

        Raises:
            ContractRevertError: gas estimation or the mined transaction reverted.
            DevnetError: the node refused or failed.
        """
        account = Account.from_key(private_key)
        sender = account.address
        lock = self._send_locks.setdefault(sender, anyio.Lock())
        tx_call = {"from": sender, "to": self.inference, "data": _hex(data), "value": hex(value)}
        async with lock:
            calls: list[tuple[str, list[Any]]] = [
                ("eth_getTransactionCount", [sender, "pending"]),
                ("eth_gasPrice", []),
            ]
            if gas is None:
                calls.append(("eth_estimateGas", [tx_call]))
            results = await self._client.outcomes(calls)
            for item in results:
                if isinstance(item, DevnetError):
                    revert = self._revert_from(item, "transaction (gas estimation)")
                    if revert is not None:
                        raise revert from item
                    raise item
            nonce = int(results[0], 16)
            gas_price = int(results[1], 16)
            if gas is None:
                gas = int(int(results[2], 16) * 12 // 10) + 10_000
            signed = account.sign_transaction(
                {
                    "to": self.inference,
                    "data": data,
                    "value": value,
                    "gas": gas,
                    "gasPrice": gas_price,
                    "nonce": nonce,
                    "chainId": self.chain_id,
                }
            )
            if on_sent is not None:
                on_sent(_hex(bytes(signed.hash)))
            tx_hash = await self.rpc("eth_sendRawTransaction", [_hex(bytes(signed.raw_transaction))])
        receipt = await self.wait_receipt(str(tx_hash))
        if receipt.get("status") != "0x1":
            raise ContractRevertError("provider transaction reverted", tx_hash=str(tx_hash))
        return receipt

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """The receipt of a transaction, or ``None`` when it is not (or no longer) known."""
        found = await self.rpc("eth_getTransactionReceipt", [tx_hash])
        return dict(found) if found else None

    async def wait_receipt(self, tx_hash: str) -> dict[str, Any]:
        """Poll for a transaction receipt, for at most 30 s (anvil automines: usually immediate).

        Raises:
            TransactionOutcomeUnknownError: no receipt came.
        """
        delay = 0.002
        with anyio.move_on_after(30.0):
            while True:
                receipt = await self.rpc("eth_getTransactionReceipt", [tx_hash])
                if receipt:
                    return dict(receipt)
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.1)
        # e.g. the chain was reverted to a snapshot between sending and mining
        raise TransactionOutcomeUnknownError("no receipt after 30 s", tx_hash=tx_hash)


def settlement_outcomes(receipt: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """``TEESettlementResult`` events of a receipt: lower-case user -> (status, unsettled amount)."""
    outcome: dict[str, tuple[int, int]] = {}
    for log in receipt.get("logs", []):
        event = inference_abi().decode_log(log)
        if event is not None and event.name == "TEESettlementResult":
            outcome[event.args["user"].lower()] = (
                int(event.args["status"]),
                int(event.args["unsettledAmount"]),
            )
    return outcome


def _account_state(acc: tuple[Any, ...]) -> AccountState:
    return AccountState(
        user=to_checksum_address(acc[0]),
        nonce=int(acc[2]),
        balance=int(acc[3]),
        pending_refund=int(acc[4]),
        acknowledged=bool(acc[7]),
        generation=int(acc[9]),
        revoked_bitmap=int(acc[10]),
    )
