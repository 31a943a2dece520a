"""Typed reads and writes of the LedgerManager and InferenceServing contracts.

Reads return the public pydantic models; writes go through :class:`TxSender`. Constants that
never change (minimums, the resolved service name) are cached after the first read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._exceptions import ContractRevertError, RPCError
from .._singleflight import SingleFlight
from ..types import Account, Ledger, ProviderBalance, Refund, Service, ServiceInfo, TxReceipt
from ._abi import ContractABI, Function, inference_abi, ledger_abi
from ._rpc import RpcClient, as_hex_bytes
from ._tx import TxSender

__all__ = ["ChainReader", "account_from_tuple", "service_from_tuple"]


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
        """``getService(provider)``; raises ``ServiceNotExistError`` when absent."""
        (t,) = await self.call(self.inference_address, self.I.fn("getService"), provider)
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

    # -- writes --------------------------------------------------------------------------------

    async def send_ledger(self, tx: TxSender, fn_name: str, *args: Any, value: int = 0) -> TxReceipt:
        """Send a LedgerManager transaction."""
        fn = self.L.fn(fn_name)
        return await tx.send(
            self.ledger_address, fn.encode(*args), value=value, context=f"LedgerManager.{fn_name}"
        )

    async def send_inference(self, tx: TxSender, fn_name: str, *args: Any, value: int = 0) -> TxReceipt:
        """Send an InferenceServing transaction."""
        fn = self.I.fn(fn_name)
        return await tx.send(
            self.inference_address, fn.encode(*args), value=value, context=f"InferenceServing.{fn_name}"
        )
