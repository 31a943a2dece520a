"""The :class:`Devnet` handle and :func:`start_devnet`."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import httpx

from og_inference_async import ConfigError, Network, reset_nonce_allocators

from ._anvil import run_anvil
from ._artifacts import DevnetArtifacts, ensure_artifacts
from ._deploy import MAX_LOCK_TIME, MIN_LOCK_TIME, SERVICE_FULL_NAME, deploy, wait_receipt
from ._errors import DevnetError
from ._rpc import RpcClient

__all__ = ["CHAIN_ID", "DEV_MNEMONIC", "DevAccount", "Devnet", "start_devnet"]

#: Chain id of the devnet (the Hardhat/anvil default, which the SDKs' ``hardhat`` network expects).
CHAIN_ID = 31337
#: The public test mnemonic anvil derives its dev accounts from. Never use it for real funds.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


@dataclass(frozen=True)
class DevAccount:
    """A funded, unlocked dev account of the devnet.

    The keys come from the public test mnemonic: anyone can spend from these addresses on any
    real chain. The key is left out of ``repr``.

    Attributes:
        address: checksummed address.
        private_key: ``0x``-prefixed hex private key.
    """

    address: str
    private_key: str = field(repr=False)


@functools.lru_cache(maxsize=4)
def _derive_accounts(count: int) -> tuple[DevAccount, ...]:
    from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
    from eth_keys.datatypes import PrivateKey

    seed = seed_from_mnemonic(DEV_MNEMONIC, "")
    out = []
    for i in range(count):
        key = key_from_seed(seed, f"m/44'/60'/0'/0/{i}")
        address = PrivateKey(key).public_key.to_checksum_address()
        out.append(DevAccount(address=str(address), private_key="0x" + bytes(key).hex()))
    return tuple(out)


def _provider_info(provider: Any) -> Any:
    info = getattr(provider, "info", None)
    if callable(info):
        return info()
    if dataclasses.is_dataclass(provider) and not isinstance(provider, type):
        return dataclasses.asdict(provider)
    if isinstance(provider, dict):
        return provider
    return str(provider)


class Devnet:
    """A running local 0G chain: anvil with LedgerManager and InferenceServing deployed.

    Get one from :func:`start_devnet`; it is usable only inside that ``async with`` block.
    The contracts sit at the addresses the official SDKs use for their ``hardhat`` network,
    so they work against it with no addresses passed.

    Attributes:
        rpc_url: the JSON-RPC endpoint (``http://127.0.0.1:<port>``).
        chain_id: 31337.
        ledger: LedgerManager proxy address (checksummed).
        inference: InferenceServing proxy address (checksummed).
        lock_time: the InferenceServing refund lock time in seconds.
        service_name: the inference service's full name in the ledger (``"inference-v1.0"``).
        accounts: the funded dev accounts; ``accounts[0]`` deployed and owns the contracts.
        providers: the local providers started with ``with_providers=True`` (else empty).
        task_group: a task group living as long as the devnet, for background services such
            as the local providers; it is cancelled on exit before anvil stops.
        artifacts: the verified npm artifacts (ABIs, bytecode, anvil path, ``node_modules``).
        anvil_pid: the process id of the anvil binary.
    """

    def __init__(
        self,
        *,
        rpc: RpcClient,
        ledger: str,
        inference: str,
        lock_time: int,
        accounts: Sequence[DevAccount],
        artifacts: DevnetArtifacts,
        task_group: anyio.abc.TaskGroup,
        anvil_pid: int,
    ) -> None:
        self._rpc = rpc
        self._closed = False
        self._send_locks: dict[str, anyio.Lock] = {}
        self.rpc_url: str = rpc.url
        self.chain_id: int = CHAIN_ID
        self.ledger = ledger
        self.inference = inference
        self.lock_time = lock_time
        self.service_name = SERVICE_FULL_NAME
        self.accounts: list[DevAccount] = list(accounts)
        self.providers: list[Any] = []
        self.task_group = task_group
        self.artifacts = artifacts
        self.anvil_pid = anvil_pid

    def __repr__(self) -> str:
        state = "stopped" if self._closed else "running"
        return f"<Devnet {state} rpc_url={self.rpc_url!r} ledger={self.ledger} inference={self.inference}>"

    def _close(self) -> None:
        self._closed = True

    @property
    def owner(self) -> DevAccount:
        """The deployer and owner of both contracts (``accounts[0]``)."""
        return self.accounts[0]

    @property
    def network(self) -> Network:
        """The devnet as a :class:`~og_inference_async.Network` named ``"devnet"`` (for ``AsyncBroker``)."""
        return Network(
            name="devnet",
            chain_id=self.chain_id,
            rpc_url=self.rpc_url,
            ledger=self.ledger,
            inference=self.inference,
        )

    def abi(self, contract: str) -> list[dict[str, Any]]:
        """Return the ABI of ``"LedgerManager"`` or ``"InferenceServing"``."""
        return self.artifacts.contracts[contract].abi

    def info(self) -> dict[str, Any]:
        """Return the devnet's facts as a JSON-able dict.

        Keys: ``rpc_url``, ``chain_id``, ``contracts`` (``ledger``, ``inference``), ``accounts``
        (``address``, ``private_key``; public test keys) and ``providers`` (each provider's
        ``info()`` when it has one).
        """
        return {
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "contracts": {"ledger": self.ledger, "inference": self.inference},
            "accounts": [{"address": a.address, "private_key": a.private_key} for a in self.accounts],
            "providers": [_provider_info(p) for p in self.providers],
        }

    async def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Send a raw JSON-RPC request to anvil and return its ``result``.

        Raises:
            DevnetError: the devnet is stopped, the request failed, or the node answered with an
                error (``code`` and ``data`` attached).
        """
        if self._closed:
            raise DevnetError("the devnet is stopped")
        return await self._rpc.call(method, params)

    async def snapshot(self) -> str:
        """Snapshot the chain state (``evm_snapshot``) and return the snapshot id."""
        return str(await self.rpc("evm_snapshot"))

    async def revert(self, snapshot_id: str) -> None:
        """Return the chain to a snapshot (``evm_revert``).

        anvil consumes the id: a snapshot can be reverted to once. Take a new snapshot after
        reverting if you need to go back again. Account nonces go back too, so the SDK's
        nonce counters for this chain are told to reseed from the node
        (:func:`og_inference_async.reset_nonce_allocators`). anvil keeps its transaction pool
        across a revert; the pool is emptied (``anvil_dropAllTransactions``), so a transaction
        left queued behind a nonce gap cannot execute in a later test at a nonce reused there.

        Raises:
            DevnetError: the id is unknown or was already used.
        """
        reverted = await self.rpc("evm_revert", [snapshot_id])
        await self.rpc("anvil_dropAllTransactions", [])
        reset_nonce_allocators(self.chain_id)
        if not reverted:
            raise DevnetError(f"cannot revert to snapshot {snapshot_id}: unknown or already used")

    async def increase_time(self, seconds: int, *, mine: bool = True) -> None:
        """Move the chain clock forward.

        Args:
            seconds: how far (``evm_increaseTime``).
            mine: also mine a block so reads (``eth_call`` on ``latest``) see the new time.
        """
        if seconds < 0:
            raise ConfigError("seconds must not be negative")
        await self.rpc("evm_increaseTime", [int(seconds)])
        if mine:
            await self.mine()

    async def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` blocks (``anvil_mine``)."""
        if blocks < 1:
            raise ConfigError("blocks must be at least 1")
        await self.rpc("anvil_mine", [hex(blocks)])

    async def block_timestamp(self) -> int:
        """Return the timestamp of the latest block."""
        block = await self.rpc("eth_getBlockByNumber", ["latest", False])
        return int(block["timestamp"], 16)

    async def set_balance(self, address: str, wei: int) -> None:
        """Set an address's native balance (``anvil_setBalance``)."""
        if wei < 0:
            raise ConfigError("balance must not be negative")
        await self.rpc("anvil_setBalance", [address, hex(wei)])

    async def get_balance(self, address: str) -> int:
        """Return an address's native balance in wei."""
        return int(await self.rpc("eth_getBalance", [address, "latest"]), 16)

    async def send_as(
        self, address: str, to: str | None, data: bytes = b"", value: int = 0
    ) -> dict[str, Any]:
        """Send a transaction from an unlocked dev account and wait for its receipt.

        anvil fills in gas, fees and nonce (``eth_sendTransaction``); no key is needed.
        Concurrent calls for the same sender are submitted one at a time (anvil would give
        them the same nonce) and then mined and awaited concurrently.

        Args:
            address: the sender, one of :attr:`accounts`.
            to: the recipient; ``None`` creates a contract from ``data``.
            data: calldata (or init code).
            value: wei to send.

        Returns:
            The receipt as anvil returns it (hex-string fields).

        Raises:
            DevnetError: the transaction reverted (gas estimation fails first; ``data`` then
                holds the revert data), or no receipt came.
        """
        if value < 0:
            raise ConfigError("value must not be negative")
        tx: dict[str, Any] = {"from": address, "data": "0x" + bytes(data).hex(), "value": hex(value)}
        if to is not None:
            tx["to"] = to
        lock = self._send_locks.setdefault(address.lower(), anyio.Lock())
        async with lock:
            tx_hash = await self.rpc("eth_sendTransaction", [tx])
        return await wait_receipt(self._rpc, str(tx_hash))

    async def wait_receipt(self, tx_hash: str) -> dict[str, Any]:
        """Wait for a transaction's receipt and return it.

        anvil mines a sent transaction at once but answers ``eth_sendRawTransaction`` first: a
        receipt read right after a send (or after a proxy dropped the answer) may not exist yet.

        Raises:
            DevnetError: the transaction reverted, or no receipt came within 30 seconds.
        """
        if self._closed:
            raise DevnetError("the devnet is stopped")
        return await wait_receipt(self._rpc, tx_hash)

    async def call(self, to: str, data: bytes, *, sender: str | None = None) -> bytes:
        """``eth_call`` on the latest block; returns the raw return data.

        Raises:
            DevnetError: the call reverted (``data`` holds the revert data).
        """
        tx: dict[str, Any] = {"to": to, "data": "0x" + bytes(data).hex()}
        if sender is not None:
            tx["from"] = sender
        out = str(await self.rpc("eth_call", [tx, "latest"]))
        return bytes.fromhex(out[2:])


def provider_starter() -> Any:
    """Return ``og_inference_devnet.provider.start_default_providers``, imported lazily.

    Raises:
        DevnetError: the provider subpackage (starlette, uvicorn) cannot be imported.
    """
    name = f"{__package__}.provider"
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise DevnetError(
            f"the local providers need {name}, which cannot be imported: {exc}",
            hint="reinstall the devnet with its dependencies: pip install og-inference-devnet",
        ) from exc
    starter = getattr(module, "start_default_providers", None)
    if not callable(starter):
        raise DevnetError(f"{name} has no start_default_providers()")
    return starter


async def _start_providers(devnet: Devnet, task_group: anyio.abc.TaskGroup) -> list[Any]:
    return list(await provider_starter()(devnet, task_group))


def _unwrap_single(group: BaseException, body_error: BaseException | None) -> BaseException | None:
    """The body's own exception when a task group wrapped only it in an exception group."""
    inner = getattr(group, "exceptions", None)
    if body_error is not None and isinstance(inner, tuple) and len(inner) == 1 and inner[0] is body_error:
        return body_error
    return None


@asynccontextmanager
async def start_devnet(
    lock_time: int = 86400,
    with_providers: bool = False,
    *,
    accounts: int = 30,
    balance_eth: int = 1_000_000,
    cache_dir: str | os.PathLike[str] | None = None,
    anvil_args: Sequence[str] = (),
) -> AsyncIterator[Devnet]:
    """Start a local 0G chain for the duration of an ``async with`` block.

    Installs the pinned npm artifacts on first use (see :func:`ensure_artifacts`), starts
    anvil on a free port of 127.0.0.1 (chain id 31337), deploys LedgerManager and
    InferenceServing in the 0G order so they land at the SDKs' ``hardhat`` addresses
    (``0x9fE4…a6e0`` and ``0x0165…Eb8F``), registers the inference service as
    ``inference-v1.0`` and stops anvil on exit, also on error or cancellation.

    Example::

        async with start_devnet() as dn:
            snap = await dn.snapshot()
            await dn.send_as(dn.accounts[1].address, dn.accounts[2].address, value=10**18)
            await dn.revert(snap)

    Args:
        lock_time: InferenceServing refund lock time in seconds, within [3600, 604800].
        with_providers: also start the default local providers
            (``og_inference_devnet.provider.start_default_providers``) in the devnet's
            task group; they end up in :attr:`Devnet.providers`.
        accounts: number of funded dev accounts.
        balance_eth: starting balance of each dev account, in whole ETH/OG.
        cache_dir: artifact cache folder (default :func:`default_cache_dir`).
        anvil_args: extra command-line arguments for anvil.

    Yields:
        The running :class:`Devnet`.

    Raises:
        ConfigError: ``lock_time`` or ``accounts`` out of range.
        DevnetError: the artifacts, anvil or the deployment failed.
    """
    if (
        isinstance(lock_time, bool)
        or not isinstance(lock_time, int)
        or not MIN_LOCK_TIME <= lock_time <= MAX_LOCK_TIME
    ):
        raise ConfigError(
            f"lock_time must be an int within [{MIN_LOCK_TIME}, {MAX_LOCK_TIME}], got {lock_time!r}"
        )
    if not 1 <= accounts <= 1000:
        raise ConfigError(f"accounts must be within [1, 1000], got {accounts}")

    artifacts = await ensure_artifacts(cache_dir)
    dev_accounts = await anyio.to_thread.run_sync(_derive_accounts, accounts)  # cached after the first call

    limits = httpx.Limits(max_connections=32, max_keepalive_connections=8)
    timeout = httpx.Timeout(60.0, connect=5.0)
    # trust_env=False: a proxy from the environment must never sit between us and 127.0.0.1
    async with httpx.AsyncClient(trust_env=False, timeout=timeout, limits=limits) as http:
        async with run_anvil(
            artifacts.anvil,
            http,
            chain_id=CHAIN_ID,
            accounts=accounts,
            balance_eth=balance_eth,
            extra_args=anvil_args,
        ) as node:
            served = [str(a).lower() for a in await node.rpc.call("eth_accounts")]
            if served[: len(dev_accounts)] != [a.address.lower() for a in dev_accounts]:
                raise DevnetError("anvil's dev accounts differ from the ones derived from the test mnemonic")
            deployment = await deploy(node.rpc, artifacts.contracts, dev_accounts[0].address, lock_time)
            reset_nonce_allocators(CHAIN_ID)  # a fresh chain: counters left by an earlier devnet are stale
            body_error: BaseException | None = None
            try:
                async with anyio.create_task_group() as tg:
                    devnet = Devnet(
                        rpc=node.rpc,
                        ledger=deployment.ledger,
                        inference=deployment.inference,
                        lock_time=deployment.lock_time,
                        accounts=dev_accounts,
                        artifacts=artifacts,
                        task_group=tg,
                        anvil_pid=node.pid,
                    )
                    try:
                        if with_providers:
                            devnet.providers = await _start_providers(devnet, tg)
                        yield devnet
                    except BaseException as exc:
                        body_error = exc
                        raise
                    finally:
                        devnet._close()
                        tg.cancel_scope.cancel()
            except BaseException as group:
                # A task group wraps even the body's own exception in an exception group:
                # hand the caller back its exception when nothing else failed.
                own = _unwrap_single(group, body_error)
                if own is None:
                    raise
                context = own.__context__
                try:
                    raise own  # noqa: B904 - re-raising the caller's exception as it was
                finally:
                    own.__context__ = context
