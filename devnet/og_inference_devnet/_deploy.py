"""Deploy LedgerManager and InferenceServing on a fresh anvil chain, replaying the 0G order.

The order (deployer nonces 0-9) makes the two proxies land at the addresses both official
SDKs use for their built-in ``hardhat`` network. Each implementation disables its
initializers in the constructor, so ``initialize`` runs on an EIP-1167 minimal proxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from eth_utils import to_checksum_address

from og_inference_async.abi import ContractABI

from ._artifacts import ContractArtifact
from ._errors import DevnetError
from ._rpc import RpcClient

__all__ = [
    "HARDHAT_INFERENCE",
    "HARDHAT_LEDGER",
    "MAX_LOCK_TIME",
    "MIN_LOCK_TIME",
    "SERVICE_FULL_NAME",
    "Deployment",
    "deploy",
    "minimal_proxy_initcode",
    "wait_receipt",
]

#: LedgerManager proxy address (deployer nonce 2), as in the SDKs' ``hardhat`` network.
HARDHAT_LEDGER = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
#: InferenceServing proxy address (deployer nonce 6), as in the SDKs' ``hardhat`` network.
HARDHAT_INFERENCE = "0x0165878A594ca255338adfa4d48449f69242Eb8F"
#: The inference service's name in the ledger's registry.
SERVICE_FULL_NAME = "inference-v1.0"
#: Bounds the InferenceServing contract enforces on its lock time (1 hour, 7 days).
MIN_LOCK_TIME = 3600
MAX_LOCK_TIME = 604800

_SERVICE_TYPE = "inference"
_SERVICE_VERSION = "v1.0"
_SERVICE_DESCRIPTION = "inference serving service v1.0"
_RECEIPT_TIMEOUT = 30.0

# EIP-1167: 10 bytes of creation code that return the 45-byte runtime, which delegates
# every call to the implementation address embedded in it.
_PROXY_CREATION_PREFIX = bytes.fromhex("3d602d80600a3d3981f3")
_PROXY_RUNTIME_HEAD = bytes.fromhex("363d3d373d3d3d363d73")
_PROXY_RUNTIME_TAIL = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")


@dataclass(frozen=True)
class Deployment:
    """Where the contracts landed.

    Attributes:
        ledger: LedgerManager proxy (checksummed).
        inference: InferenceServing proxy (checksummed).
        ledger_impl: LedgerManager implementation.
        inference_impl: InferenceServing implementation.
        lock_time: the InferenceServing lock time in seconds.
    """

    ledger: str
    inference: str
    ledger_impl: str
    inference_impl: str
    lock_time: int


def minimal_proxy_initcode(implementation: str) -> bytes:
    """Return the 55-byte EIP-1167 creation code of a minimal proxy for ``implementation``."""
    impl = bytes.fromhex(implementation[2:] if implementation.startswith("0x") else implementation)
    if len(impl) != 20:
        raise DevnetError(f"implementation address must be 20 bytes, got {len(impl)}")
    return _PROXY_CREATION_PREFIX + _PROXY_RUNTIME_HEAD + impl + _PROXY_RUNTIME_TAIL


async def wait_receipt(rpc: RpcClient, tx_hash: str) -> dict[str, Any]:
    """Poll for a transaction's receipt and return it; raise if it reverted.

    Raises:
        DevnetError: no receipt within 30 seconds (is automine off?), or status 0.
    """
    delay = 0.001
    try:
        with anyio.fail_after(_RECEIPT_TIMEOUT):
            while True:
                receipt = await rpc.call("eth_getTransactionReceipt", [tx_hash])
                if receipt is not None:
                    break
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.05)
    except TimeoutError as exc:
        raise DevnetError(
            f"no receipt for {tx_hash} after {_RECEIPT_TIMEOUT} s",
            hint="if automine was switched off, mine a block with devnet.mine()",
        ) from exc
    if not isinstance(receipt, dict):
        raise DevnetError(f"malformed receipt for {tx_hash}")
    if int(str(receipt.get("status", "0x0")), 16) != 1:
        raise DevnetError(f"transaction {tx_hash} reverted", data=receipt)
    return receipt


async def _send(rpc: RpcClient, sender: str, to: str | None, data: bytes, what: str) -> dict[str, Any]:
    tx: dict[str, Any] = {"from": sender, "data": "0x" + data.hex()}
    if to is not None:
        tx["to"] = to
    try:
        tx_hash = await rpc.call("eth_sendTransaction", [tx])
        return await wait_receipt(rpc, tx_hash)
    except DevnetError as exc:
        message = f"deployment step failed ({what}): {exc.message}"
        raise DevnetError(message, code=exc.code, data=exc.data) from exc


async def deploy(
    rpc: RpcClient, contracts: Mapping[str, ContractArtifact], owner: str, lock_time: int
) -> Deployment:
    """Deploy both contracts from ``owner`` (must be an unlocked account with nonce 0).

    Raises:
        DevnetError: the owner has sent transactions already, a step reverted, or the result
            is not where the hardhat defaults expect it.
    """
    ledger_c = contracts["LedgerManager"]
    inference_c = contracts["InferenceServing"]
    ledger_abi = ContractABI("LedgerManager", ledger_c.abi)
    inference_abi = ContractABI("InferenceServing", inference_c.abi)
    nonce = int(await rpc.call("eth_getTransactionCount", [owner, "latest"]), 16)
    if nonce != 0:
        raise DevnetError(f"the deployer {owner} has nonce {nonce}; the deployment needs a fresh chain")

    async def create(initcode: bytes, what: str) -> str:
        receipt = await _send(rpc, owner, None, initcode, what)
        return str(to_checksum_address(receipt["contractAddress"]))

    ledger_impl = await create(ledger_c.bytecode, "LedgerManager implementation")  # nonce 0
    inference_impl = await create(inference_c.bytecode, "InferenceServing implementation")  # 1
    ledger = await create(minimal_proxy_initcode(ledger_impl), "LedgerManager proxy")  # 2
    init_ledger = ledger_abi.fn("initialize").encode(owner)
    await _send(rpc, owner, ledger, init_ledger, "LedgerManager.initialize")  # 3
    await _send(rpc, owner, owner, b"", "filler transfer")  # 4: only to move the nonce
    await _send(rpc, owner, owner, b"", "filler transfer")  # 5
    inference = await create(minimal_proxy_initcode(inference_impl), "InferenceServing proxy")  # 6
    await _send(
        rpc,
        owner,
        inference,
        inference_abi.fn("initialize").encode(lock_time, ledger, owner),
        "InferenceServing.initialize",
    )
    await _send(
        rpc,
        owner,
        ledger,
        ledger_abi.fn("registerService").encode(
            _SERVICE_TYPE, _SERVICE_VERSION, inference, _SERVICE_DESCRIPTION
        ),
        "LedgerManager.registerService",
    )
    await _send(
        rpc,
        owner,
        ledger,
        ledger_abi.fn("setRecommendedService").encode(_SERVICE_TYPE, _SERVICE_VERSION),
        "LedgerManager.setRecommendedService",
    )
    if (ledger, inference) != (HARDHAT_LEDGER, HARDHAT_INFERENCE):
        raise DevnetError(f"contracts landed at {ledger} / {inference}, not at the hardhat defaults")

    get_info, get_lock = ledger_abi.fn("getServiceInfo"), inference_abi.fn("lockTime")
    info_call = {"to": ledger, "data": "0x" + get_info.encode(inference).hex()}
    lock_call = {"to": inference, "data": "0x" + get_lock.encode().hex()}
    info_raw, lock_raw = await rpc.batch(
        [("eth_call", [info_call, "latest"]), ("eth_call", [lock_call, "latest"])]
    )
    (service_info,) = get_info.decode_raw(bytes.fromhex(info_raw[2:]))
    (on_chain_lock,) = get_lock.decode_raw(bytes.fromhex(lock_raw[2:]))
    if service_info[4] != SERVICE_FULL_NAME or on_chain_lock != lock_time:
        raise DevnetError(
            f"deployment check failed: fullName {service_info[4]!r}, "
            f"lockTime {on_chain_lock} (wanted {lock_time})"
        )
    return Deployment(
        ledger=ledger,
        inference=inference,
        ledger_impl=ledger_impl,
        inference_impl=inference_impl,
        lock_time=lock_time,
    )
