"""Typed reads and writes of the LedgerManager and InferenceServing contracts, and the chain
queries the services need (chain time, blocks, accounts at a block, settled fees, transaction
status, wallet balance).

This is the sealed surface of the chain layer: nothing outside ``_chain`` names a Solidity
function, builds JSON-RPC or touches ABI data. Reads return the public pydantic models; writes
go through :class:`TxSender`. Constants that never change (minimums, the resolved service name)
are cached after the first read. "No such service" reverts are ``ServiceNotExistError``, which is
also a :class:`~og_inference_async.ServiceNotFoundError` (one mapping, in the error tree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._exceptions import (
    AccountNotExistsError,
    ContractRevertError,
    LedgerNotExistsError,
    RPCError,
    ServiceNotFoundError,
)
from .._singleflight import SingleFlight
from ..types import Account, Ledger, ProviderBalance, Refund, Service, ServiceInfo, TxReceipt
from ._abi import ContractABI, Function, inference_abi, ledger_abi
from ._rpc import RpcClient, as_hex_bytes, as_int
from ._tx import TxSender

__all__ = ["ChainReader", "TransferState", "account_from_tuple", "service_from_tuple"]


def ledger_from_tuple(t: dict[str, Any]) -> Ledger:
    """Build a :class:`Ledger` from the decoded ABI tuple."""
    return Ledger(
        user=t["user"],
        total=t["totalBalance"],
        available=t["availableBalance"],
        additional_info=t["additionalInfo"],
    )


def account_from_tuple(t: dict[str, Any]) -> Account:
    """Build an :class:`Account` from the decoded ABI tuple (active refunds only)."""
    valid = int(t["validRefundsLength"])
    refunds = tuple(
        Refund(index=r["index"], amount=r["amount"], created_at=r["createdAt"], processed=r["processed"])
        for r in t["refunds"][:valid]
    )
    return Account(
        user=t["user"],
        provider=t["provider"],
        nonce=t["nonce"],
        balance=t["balance"],
        pending_refund=t["pendingRefund"],
        refunds=refunds,
        additional_info=t["additionalInfo"],
        acknowledged=t["acknowledged"],
        generation=t["generation"],
        revoked_bitmap=t["revokedBitmap"],
    )


def service_from_tuple(t: dict[str, Any]) -> Service:
    """Build a :class:`Service` from the decoded ABI tuple."""
    return Service(
        provider=t["provider"],
        service_type=t["serviceType"],
        url=t["url"],
        input_price=t["inputPrice"],
        output_price=t["outputPrice"],
        updated_at=t["updatedAt"],
        model=t["model"],
        verifiability=t["verifiability"],
        additional_info=t["additionalInfo"],
        tee_signer_address=t["teeSignerAddress"],
        tee_signer_acknowledged=t["teeSignerAcknowledged"],
    )


def service_info_from_tuple(t: dict[str, Any]) -> ServiceInfo:
    """Build a :class:`ServiceInfo` from the decoded ABI tuple."""
    return ServiceInfo(
        service_address=t["serviceAddress"],
        service_contract=t["serviceContract"],
        service_type=t["serviceType"],
        version=t["version"],
        full_name=t["fullName"],
        description=t["description"],
        is_recommended=t["isRecommended"],
        registered_at=t["registeredAt"],
    )


class ChainReader:
    """Reads and writes of the two 0G contracts at fixed addresses.

    Args:
        rpc: the JSON-RPC client.
        ledger: LedgerManager proxy address.
        inference: InferenceServing proxy address.
    """

    def __init__(self, rpc: RpcClient, *, ledger: str, inference: str) -> None:
        self.rpc = rpc
        self.ledger_address = ledger
        self.inference_address = inference
        self.L: ContractABI = ledger_abi()
        self.I: ContractABI = inference_abi()
        self._constants: dict[str, int] = {}
        self._service_name: str | None = None
        self._flights: SingleFlight[str, int] = SingleFlight()
        self._name_flight: SingleFlight[str, str] = SingleFlight()

    # -- generic helpers ---------------------------------------------------------------------

    async def call(self, contract: str, fn: Function, *args: Any, sender: str | None = None) -> list[Any]:
        """Call a view function and decode its outputs."""
        data = await self.rpc.eth_call(contract, fn.encode(*args), sender=sender)
        return fn.decode(data)

    async def call_many(self, calls: Sequence[tuple[str, Function, tuple[Any, ...]]]) -> list[Any]:
        """Several view calls in one JSON-RPC batch; each item is the decoded list or the error."""
        batch = [
            ("eth_call", [{"to": to, "data": "0x" + fn.encode(*args).hex()}, "latest"])
            for to, fn, args in calls
        ]
        results = await self.rpc.batch(batch)
        out: list[Any] = []
        for (_, fn, _), res in zip(calls, results):
            if isinstance(res, (RPCError, ContractRevertError)):
                out.append(res)
            else:
                out.append(fn.decode(as_hex_bytes(res, "eth_call")))
        return out

    async def _constant(self, key: str, contract: str, fn_name: str, abi: ContractABI) -> int:
        if key not in self._constants:

            async def read() -> int:
                (value,) = await self.call(contract, abi.fn(fn_name))
                self._constants[key] = int(value)
                return int(value)

            return await self._flights.run(key, read)
        return self._constants[key]

    # -- ledger reads --------------------------------------------------------------------------

    async def min_account_balance(self) -> int:
        """``MIN_ACCOUNT_BALANCE()``: the minimum to create a ledger (wei)."""
        return await self._constant("min_account", self.ledger_address, "MIN_ACCOUNT_BALANCE", self.L)

    async def min_transfer_amount(self) -> int:
        """``MIN_TRANSFER_AMOUNT()``: the minimum first transfer to a provider (wei)."""
        return await self._constant("min_transfer", self.ledger_address, "MIN_TRANSFER_AMOUNT", self.L)

    async def lock_time(self) -> int:
        """``lockTime()`` of InferenceServing, in seconds (read each time: the owner may change it)."""
        (value,) = await self.call(self.inference_address, self.I.fn("lockTime"))
        return int(value)

    async def service_name(self) -> str:
        """The inference service's full name in the ledger (``getServiceInfo(inference).fullName``)."""
        if self._service_name is None:
            return await self._name_flight.run("name", self._read_service_name)
        return self._service_name

    async def _read_service_name(self) -> str:
        if self._service_name is None:
            info = await self.get_service_info(self.inference_address)
            if not info.full_name:
                from .._exceptions import ServiceNotFoundError

                raise ServiceNotFoundError(
                    f"the inference contract {self.inference_address} is not registered in the ledger "
                    f"{self.ledger_address}",
                    identifier=self.inference_address,
                )
            self._service_name = info.full_name
        return self._service_name

    async def get_service_info(self, service: str) -> ServiceInfo:
        """``getServiceInfo(service)``: a zero struct for unknown addresses."""
        (t,) = await self.call(self.ledger_address, self.L.fn("getServiceInfo"), service)
        return service_info_from_tuple(t)

    async def get_ledger(self, user: str) -> Ledger:
        """``getLedger(user)``; raises ``LedgerNotExistsError`` when there is none."""
        (t,) = await self.call(self.ledger_address, self.L.fn("getLedger"), user)
        return ledger_from_tuple(t)

    async def get_ledger_providers(self, user: str) -> list[str]:
        """Providers the user has an inference sub-account with."""
        name = await self.service_name()
        (providers,) = await self.call(self.ledger_address, self.L.fn("getLedgerProviders"), user, name)
        return list(providers)

    # -- inference reads -----------------------------------------------------------------------

    async def get_account(self, user: str, provider: str) -> Account:
        """``getAccount(user, provider)``; raises ``AccountNotExistsError`` when there is none."""
        (t,) = await self.call(self.inference_address, self.I.fn("getAccount"), user, provider)
        return account_from_tuple(t)

    async def account_exists(self, user: str, provider: str) -> bool:
        """``accountExists(user, provider)`` (never reverts)."""
        (v,) = await self.call(self.inference_address, self.I.fn("accountExists"), user, provider)
        return bool(v)

    async def get_service(self, provider: str) -> Service:
        """``getService(provider)``.

        Raises:
            ServiceNotFoundError: no service for ``provider`` (``ServiceNotExistError`` when the
                contract said so; any other revert of this read is mapped here, the one place).
        """
        try:
            (t,) = await self.call(self.inference_address, self.I.fn("getService"), provider)
        except ContractRevertError as exc:
            raise _no_service(provider, exc) from exc
        return service_from_tuple(t)

    async def get_all_services(self, offset: int, limit: int) -> tuple[list[Service], int]:
        """One page of ``getAllServices(offset, limit)`` (limit at most 50) and the total."""
        services, total = await self.call(self.inference_address, self.I.fn("getAllServices"), offset, limit)
        return [service_from_tuple(s) for s in services], int(total)

    async def get_accounts_by_user(self, user: str, offset: int, limit: int) -> tuple[list[Account], int]:
        """One page of the user's sub-accounts and the total."""
        accounts, total = await self.call(
            self.inference_address, self.I.fn("getAccountsByUser"), user, offset, limit
        )
        return [account_from_tuple(a) for a in accounts], int(total)

    async def get_provider_balances(self, user: str) -> list[ProviderBalance]:
        """All of the user's sub-accounts, paged by 50."""
        out: list[ProviderBalance] = []
        offset = 0
        while True:
            accounts, total = await self.get_accounts_by_user(user, offset, 50)
            out.extend(
                ProviderBalance(provider=a.provider, balance=a.balance, pending_refund=a.pending_refund)
                for a in accounts
            )
            offset += len(accounts)
            if not accounts or offset >= total:
                return out

    # -- reads for a transfer -----------------------------------------------------------------

    async def transfer_state(self, user: str, provider: str) -> TransferState:
        """The ledger, the sub-account and the service a transfer to ``provider`` depends on, in one batch.

        Raises:
            ServiceNotExistError: ``provider`` has no service (also a ``ServiceNotFoundError``).
            LedgerNotExistsError: ``user`` has no ledger.
            RPCError: the node could not be read.
        """
        ledger_r, account_r, service_r = await self.call_many(
            [
                (self.ledger_address, self.L.fn("getLedger"), (user,)),
                (self.inference_address, self.I.fn("getAccount"), (user, provider)),
                (self.inference_address, self.I.fn("getService"), (provider,)),
            ]
        )
        if isinstance(service_r, ContractRevertError):
            raise _no_service(provider, service_r) from service_r
        for result in (service_r, ledger_r):
            if isinstance(result, Exception):
                raise result
        if isinstance(account_r, AccountNotExistsError):
            account = None
        elif isinstance(account_r, Exception):
            raise account_r
        else:
            account = account_from_tuple(account_r[0])
        return TransferState(
            ledger=ledger_from_tuple(ledger_r[0]), account=account, service=service_from_tuple(service_r[0])
        )

    async def get_ledger_or_none(self, user: str) -> Ledger | None:
        """``getLedger(user)``, or ``None`` when the user has no ledger."""
        try:
            return await self.get_ledger(user)
        except LedgerNotExistsError:
            return None

    # -- chain queries -------------------------------------------------------------------------

    async def chain_time(self) -> int:
        """The latest block's timestamp (the chain's clock, which a devnet may move forward)."""
        block = await self.rpc.request("eth_getBlockByNumber", ["latest", False])
        if not isinstance(block, dict):
            raise RPCError("eth_getBlockByNumber: the node answered no block", method="eth_getBlockByNumber")
        return as_int(block.get("timestamp"), "eth_getBlockByNumber")

    async def block_number(self) -> int:
        """The latest block number."""
        return await self.rpc.request_int("eth_blockNumber", [])

    async def wallet_balance(self, address: str) -> int:
        """The native balance of ``address`` in wei."""
        return await self.rpc.request_int("eth_getBalance", [address, "latest"])

    async def account_at(self, user: str, provider: str, block: int | None = None) -> Account | None:
        """``getAccount(user, provider)`` at ``block`` (default latest); ``None`` when there is none."""
        fn = self.I.fn("getAccount")
        try:
            data = await self.rpc.eth_call(
                self.inference_address,
                fn.encode(user, provider),
                block=hex(block) if block is not None else "latest",
            )
        except AccountNotExistsError:
            return None
        (t,) = fn.decode(data)
        return account_from_tuple(t)

    async def settled_fees(self, user: str, provider: str, from_block: int) -> tuple[int, tuple[str, ...]]:
        """Fees ``provider`` settled for ``user`` since ``from_block``: ``(total wei, tx hashes)``.

        Settlement makes the ledger emit ``FundSpent(user, inferenceContract, fee)`` inside the
        provider's ``settleFeesWithTEE`` transaction; the events of transactions sent by other
        providers are left out.

        Raises:
            RPCError: the node could not serve the logs or transactions.
        """
        topic0 = next(("0x" + t.hex() for t, spec in self.L.events.items() if spec.name == "FundSpent"), None)
        if topic0 is None:  # pragma: no cover - the ABI ships with the package
            return 0, ()
        logs = await self.rpc.request(
            "eth_getLogs",
            [
                {
                    "address": self.ledger_address,
                    "fromBlock": hex(from_block),
                    "toBlock": "latest",
                    "topics": [topic0, _topic(user), _topic(self.inference_address)],
                }
            ],
        )
        if logs is not None and not isinstance(logs, list):
            raise RPCError("eth_getLogs: the node answered no list", method="eth_getLogs")
        by_tx: dict[str, int] = {}
        for entry in logs or []:
            event = self.L.decode_log(entry) if isinstance(entry, dict) else None
            if event is None or event.name != "FundSpent":
                continue
            tx_hash = str(entry["transactionHash"])
            by_tx[tx_hash] = by_tx.get(tx_hash, 0) + int(event.args["amount"])
        if not by_tx:
            return 0, ()
        hashes = list(by_tx)
        txs = await self.rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes])
        total = 0
        found: list[str] = []
        for tx_hash, tx in zip(hashes, txs):
            if isinstance(tx, Exception):
                raise tx
            if isinstance(tx, dict) and str(tx.get("from", "")).lower() == provider.lower():
                total += by_tx[tx_hash]
                found.append(tx_hash)
        return total, tuple(found)

    async def transaction_status(self, tx_hash: str) -> tuple[bool, bool]:
        """``(mined, known)``: whether ``tx_hash`` has a receipt, and whether the node knows it at all.

        Raises:
            RPCError: the node could not be asked.
        """
        receipt, known = await self.rpc.batch(
            [("eth_getTransactionReceipt", [tx_hash]), ("eth_getTransactionByHash", [tx_hash])]
        )
        for value in (receipt, known):
            if isinstance(value, Exception):
                raise value
        return isinstance(receipt, dict), isinstance(receipt, dict) or isinstance(known, dict)

    # -- LedgerManager writes --------------------------------------------------------------------

    async def _send(
        self, tx: TxSender, contract: str, abi: ContractABI, fn_name: str, *args: Any, value: int = 0
    ) -> TxReceipt:
        label = "LedgerManager" if contract == self.ledger_address else "InferenceServing"
        return await tx.send(
            contract, abi.fn(fn_name).encode(*args), value=value, context=f"{label}.{fn_name}"
        )

    async def add_ledger(self, tx: TxSender, additional_info: str, value: int) -> TxReceipt:
        """``addLedger(additionalInfo)`` with ``value`` wei."""
        return await self._send(tx, self.ledger_address, self.L, "addLedger", additional_info, value=value)

    async def deposit_fund(self, tx: TxSender, value: int) -> TxReceipt:
        """``depositFund()`` with ``value`` wei."""
        return await self._send(tx, self.ledger_address, self.L, "depositFund", value=value)

    async def deposit_fund_for(self, tx: TxSender, recipient: str, value: int) -> TxReceipt:
        """``depositFundFor(recipient)`` with ``value`` wei."""
        return await self._send(tx, self.ledger_address, self.L, "depositFundFor", recipient, value=value)

    async def transfer_fund(self, tx: TxSender, provider: str, amount: int) -> TxReceipt:
        """``transferFund(provider, <inference service name>, amount)`` (the name is read from chain)."""
        name = await self.service_name()
        return await self._send(tx, self.ledger_address, self.L, "transferFund", provider, name, amount)

    async def retrieve_fund(self, tx: TxSender, providers: Sequence[str]) -> TxReceipt:
        """``retrieveFund(providers, <inference service name>)``."""
        name = await self.service_name()
        return await self._send(tx, self.ledger_address, self.L, "retrieveFund", list(providers), name)

    async def refund(self, tx: TxSender, amount: int) -> TxReceipt:
        """``refund(amount)``: from the ledger's available balance back to the wallet."""
        return await self._send(tx, self.ledger_address, self.L, "refund", amount)

    async def delete_ledger(self, tx: TxSender) -> TxReceipt:
        """``deleteLedger()``."""
        return await self._send(tx, self.ledger_address, self.L, "deleteLedger")

    # -- InferenceServing writes -----------------------------------------------------------------

    async def acknowledge_tee_signer(
        self, tx: TxSender, provider: str, acknowledged: bool = True
    ) -> TxReceipt:
        """``acknowledgeTEESigner(provider, acknowledged)``."""
        return await self._send(
            tx, self.inference_address, self.I, "acknowledgeTEESigner", provider, acknowledged
        )

    async def revoke_tokens(self, tx: TxSender, provider: str, token_ids: Sequence[int]) -> TxReceipt:
        """``revokeToken`` for one id, ``revokeTokens`` for several."""
        if len(token_ids) == 1:
            return await self._send(tx, self.inference_address, self.I, "revokeToken", provider, token_ids[0])
        return await self._send(tx, self.inference_address, self.I, "revokeTokens", provider, list(token_ids))

    async def revoke_all_tokens(self, tx: TxSender, provider: str) -> TxReceipt:
        """``revokeAllTokens(provider)``: bumps the generation, every token signed before is void."""
        return await self._send(tx, self.inference_address, self.I, "revokeAllTokens", provider)


class TransferState:
    """What a transfer depends on: the ledger, the sub-account (``None`` if none yet), the service."""

    __slots__ = ("account", "ledger", "service")

    def __init__(self, *, ledger: Ledger, account: Account | None, service: Service) -> None:
        self.ledger = ledger
        self.account = account
        self.service = service


def _no_service(provider: str, exc: ContractRevertError) -> ServiceNotFoundError:
    """The revert of a service read as a :class:`ServiceNotFoundError` (the one mapping)."""
    if isinstance(exc, ServiceNotFoundError):
        return exc
    return ServiceNotFoundError(f"provider {provider} has no service", identifier=provider)


def _topic(address: str) -> str:
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")
