"""The devnet itself: deployment, snapshots, dev helpers, process lifetime, CLI and artifact checks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from eth_abi import decode
from eth_account import Account

import og_inference_async
import og_inference_devnet
from og_inference_async import AsyncBroker, ConfigError, og
from og_inference_async.abi import ContractABI, Function
from og_inference_devnet import (
    BYTECODE_SHA256,
    HARDHAT_INFERENCE,
    HARDHAT_LEDGER,
    DevAccount,
    Devnet,
    DevnetError,
    ensure_artifacts,
    start_devnet,
    verify_bytecode,
)
from og_inference_devnet._artifacts import _parse_artifacts

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SDK_ROOT = Path(og_inference_async.__file__).resolve().parent  # og_inference_async/
DEVNET_ROOT = Path(og_inference_devnet.__file__).resolve().parents[1]  # devnet/, holding og_inference_devnet/


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _fn(dn: Devnet, contract: str, name: str) -> Function:
    """A function of the devnet's own (npm artifact) ABI of ``contract``."""
    return ContractABI(contract, dn.abi(contract)).fn(name)


async def _view(dn: Devnet, contract: str, address: str, name: str, *args: Any) -> tuple[Any, ...]:
    fn = _fn(dn, contract, name)
    return fn.decode_raw(await dn.call(address, fn.encode(*args)))


async def test_contracts_at_hardhat_addresses(devnet: Devnet) -> None:
    """The proxies land at the SDKs' hardhat addresses, with code, owned by account #0."""
    assert (devnet.ledger, devnet.inference) == (HARDHAT_LEDGER, HARDHAT_INFERENCE)
    assert devnet.ledger == "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
    assert devnet.inference == "0x0165878A594ca255338adfa4d48449f69242Eb8F"
    assert devnet.chain_id == 31337 == int(await devnet.rpc("eth_chainId"), 16)
    assert devnet.owner.address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    for address in (devnet.ledger, devnet.inference):
        assert len(await devnet.rpc("eth_getCode", [address, "latest"])) > 2
    (ledger_owner,) = await _view(devnet, "LedgerManager", devnet.ledger, "owner")
    (inference_owner,) = await _view(devnet, "InferenceServing", devnet.inference, "owner")
    assert ledger_owner.lower() == inference_owner.lower() == devnet.owner.address.lower()
    network = devnet.network
    assert (network.name, network.chain_id, network.rpc_url) == ("devnet", 31337, devnet.rpc_url)
    assert (network.ledger, network.inference) == (devnet.ledger, devnet.inference)


async def test_service_full_name_resolves(devnet: Devnet) -> None:
    """getServiceInfo(inference) names the service inference-v1.0, recommended, at the proxy."""
    (info,) = await _view(devnet, "LedgerManager", devnet.ledger, "getServiceInfo", devnet.inference)
    assert info[4] == "inference-v1.0" == devnet.service_name
    assert info[0].lower() == devnet.inference.lower()
    assert info[6] is True  # setRecommendedService ran
    (address,) = await _view(
        devnet, "LedgerManager", devnet.ledger, "getServiceAddressByName", "inference-v1.0"
    )
    assert address.lower() == devnet.inference.lower()


async def test_default_lock_time(devnet: Devnet) -> None:
    """The session devnet uses the default lock time of 86400 s."""
    (lock,) = await _view(devnet, "InferenceServing", devnet.inference, "lockTime")
    assert lock == devnet.lock_time == 86400


async def test_custom_lock_time_and_clean_exit() -> None:
    """A lock time given to start_devnet is on chain, and anvil is gone after a normal exit."""
    async with start_devnet(lock_time=3600, accounts=3) as dn:
        (lock,) = await _view(dn, "InferenceServing", dn.inference, "lockTime")
        assert lock == dn.lock_time == 3600
        assert len(dn.accounts) == 3
        pid = dn.anvil_pid
        assert _pid_alive(pid)
    assert not _pid_alive(pid)
    with pytest.raises(DevnetError):
        await dn.rpc("eth_chainId")


@pytest.mark.parametrize("lock_time", [3599, 604801, 0])
async def test_lock_time_out_of_range_refused(lock_time: int) -> None:
    """A lock time outside [3600, 604800] is a ConfigError before anything starts."""
    with pytest.raises(ConfigError):
        async with start_devnet(lock_time=lock_time):
            pass  # pragma: no cover


async def test_anvil_stopped_after_exception_in_block() -> None:
    """An exception inside the block propagates unchanged and anvil is stopped."""
    pid = 0
    with pytest.raises(KeyError, match="boom"):
        async with start_devnet(accounts=2) as dn:
            pid = dn.anvil_pid
            raise KeyError("boom")
    assert pid and not _pid_alive(pid)


async def test_anvil_stopped_after_cancellation() -> None:
    """Cancelling the block stops anvil too."""
    pids: list[int] = []
    with anyio.move_on_after(5) as scope:
        async with start_devnet(accounts=2) as dn:
            pids.append(dn.anvil_pid)
            scope.cancel()
            await anyio.sleep_forever()  # the cancellation lands here
    assert scope.cancelled_caught
    assert pids and not _pid_alive(pids[0])


async def test_snapshot_revert_restores_state(devnet_snapshot: Devnet) -> None:
    """Reverting a snapshot undoes transfers, balances and time; a used id cannot be reverted again."""
    dn = devnet_snapshot
    sender, receiver = dn.accounts[5].address, dn.accounts[6].address
    before = await dn.get_balance(receiver)
    block_before = int(await dn.rpc("eth_blockNumber"), 16)
    snap = await dn.snapshot()
    receipt = await dn.send_as(sender, receiver, value=10**18)
    assert int(receipt["status"], 16) == 1
    await dn.set_balance(dn.accounts[7].address, 5)
    assert await dn.get_balance(receiver) == before + 10**18
    await dn.revert(snap)
    assert await dn.get_balance(receiver) == before
    assert await dn.get_balance(dn.accounts[7].address) == 10**24
    assert int(await dn.rpc("eth_blockNumber"), 16) == block_before
    with pytest.raises(DevnetError):
        await dn.revert(snap)


async def test_time_and_mining_helpers(devnet: Devnet) -> None:
    """increase_time moves the latest block's clock; mine adds blocks."""
    start_block = int(await devnet.rpc("eth_blockNumber"), 16)
    start_time = await devnet.block_timestamp()
    await devnet.increase_time(7200)
    assert await devnet.block_timestamp() >= start_time + 7200
    await devnet.mine(3)
    assert int(await devnet.rpc("eth_blockNumber"), 16) == start_block + 4


async def test_send_as_revert_raises(devnet: Devnet) -> None:
    """A reverting dev transaction raises DevnetError carrying the revert data."""
    data = _fn(devnet, "LedgerManager", "addLedger").encode("")  # below MIN_ACCOUNT_BALANCE
    with pytest.raises(DevnetError) as info:
        await devnet.send_as(devnet.accounts[3].address, devnet.ledger, data, value=1)
    assert info.value.data is not None
    with pytest.raises(DevnetError):
        await devnet.rpc("no_such_method")


async def test_dev_accounts_match_keys_and_hide_them(devnet: Devnet) -> None:
    """Each dev account's key derives its address; repr and str never show the key."""
    assert len(devnet.accounts) == 30
    for account in devnet.accounts[:3]:
        assert Account.from_key(account.private_key).address == account.address
        assert account.private_key[2:] not in repr(account)
    assert devnet.owner.private_key not in repr(devnet)
    key = "0x" + "11" * 32
    assert key not in repr(DevAccount(address=devnet.owner.address, private_key=key))


async def test_info_is_json(devnet: Devnet) -> None:
    """info() has the documented keys and round-trips through JSON."""
    info = json.loads(json.dumps(devnet.info()))
    assert set(info) == {"rpc_url", "chain_id", "contracts", "accounts", "providers"}
    assert info["contracts"] == {"ledger": devnet.ledger, "inference": devnet.inference}
    assert info["accounts"][0]["address"] == devnet.owner.address
    assert info["providers"] == []


async def test_cli_up_json() -> None:
    """`up --json` prints one JSON line with the facts, serves RPC, and stops cleanly on SIGTERM."""
    cmd = [sys.executable, "-m", "og_inference_devnet", "up", "--json", "--no-providers"]
    search_path = [str(DEVNET_ROOT), str(SDK_ROOT.parent), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in search_path if p)}
    async with await anyio.open_process(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        buffer = b""
        try:
            with anyio.fail_after(60):
                while b"\n" not in buffer:
                    try:
                        buffer += await proc.stdout.receive()
                    except anyio.EndOfStream:
                        errors = b"".join([chunk async for chunk in proc.stderr])
                        pytest.fail(f"og-devnet up exited early: {errors.decode(errors='replace')}")
            line = buffer.split(b"\n", 1)[0]
            facts = json.loads(line)
            assert set(facts) == {"rpc_url", "chain_id", "contracts", "accounts", "providers"}
            assert facts["chain_id"] == 31337
            assert facts["contracts"] == {"ledger": HARDHAT_LEDGER, "inference": HARDHAT_INFERENCE}
            assert facts["accounts"][0]["address"] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
            assert facts["providers"] == []
            async with httpx.AsyncClient(trust_env=False) as http:
                reply = await http.post(
                    facts["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
                )
                assert int(reply.json()["result"], 16) == 31337
        finally:
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                code = await proc.wait()
        assert code == 0
        async with httpx.AsyncClient(trust_env=False) as http:
            with pytest.raises(httpx.ConnectError):
                await http.post(facts["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})


async def test_bytecode_hash_mismatch_refused() -> None:
    """A bytecode whose sha256 is not the pinned one raises DevnetError; so do non-hex and unknown names."""
    with pytest.raises(DevnetError, match="does not match"):
        verify_bytecode("LedgerManager", "0x6080604052")
    with pytest.raises(DevnetError):
        verify_bytecode("InferenceServing", "0xzz")
    with pytest.raises(DevnetError):
        verify_bytecode("Other", "0x00")
    fake = json.dumps({n: {"abi": [], "bytecode": "0x00"} for n in BYTECODE_SHA256})
    with pytest.raises(DevnetError, match="does not match"):
        _parse_artifacts(Path("/nonexistent"), fake)


async def test_real_bytecode_matches_pins(devnet: Devnet) -> None:
    """The cached artifacts verify against the pins, and the hash is over the raw bytes."""
    for name, artifact in devnet.artifacts.contracts.items():
        assert verify_bytecode(name, "0x" + artifact.bytecode.hex()) == artifact.bytecode
    again = await ensure_artifacts(devnet.artifacts.cache_dir)
    assert again.anvil == devnet.artifacts.anvil and again.anvil.is_file()


async def test_missing_npm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without node/npm on PATH, a fresh install raises DevnetError saying to install Node.js."""
    monkeypatch.setattr("og_inference_devnet._artifacts.shutil.which", lambda name: None)
    with pytest.raises(DevnetError, match="Node.js") as info:
        await ensure_artifacts(tmp_path / "cache")
    assert info.value.hint and "install Node.js" in info.value.hint


async def test_abi_files_in_repo_match_artifacts(devnet: Devnet) -> None:
    """The committed ABI JSON equals the npm artifacts' ABI (regenerating is a no-op)."""
    for name in ("LedgerManager", "InferenceServing"):
        path = SDK_ROOT / "_chain" / "abi" / f"{name}.json"
        assert path.read_text() == json.dumps(devnet.abi(name), indent=1, ensure_ascii=False) + "\n"


async def test_inference_initialized_with_ledger(devnet: Devnet) -> None:
    """InferenceServing is initialized on its proxy and points at the ledger proxy."""
    (initialized,) = await _view(devnet, "InferenceServing", devnet.inference, "initialized")
    assert initialized is True
    out = await devnet.call(devnet.inference, _fn(devnet, "InferenceServing", "ledgerAddress").encode())
    (ledger,) = decode(["address"], out)
    assert ledger.lower() == devnet.ledger.lower()


@pytest.mark.parametrize("run", [1, 2])
async def test_auto_snapshot_gives_each_test_a_fresh_chain(devnet: Devnet, run: int) -> None:
    """Integration tests using `devnet` are reverted automatically after each test.

    Both runs check the fresh state, then change it: whichever runs second (in any order, and any test
    after them) would see the change if the automatic snapshot had not reverted it.
    """
    target = devnet.accounts[9].address
    assert await devnet.get_balance(target) == 10**24
    await devnet.set_balance(target, run)
    await devnet.mine()
    assert await devnet.get_balance(target) == run


@pytest.mark.skipif(sys.version_info < (3, 11), reason="debug loop only on Python >= 3.11 (see conftest)")
async def test_event_loop_in_debug_mode() -> None:
    """The test event loop runs in asyncio debug mode."""
    assert asyncio.get_running_loop().get_debug()


async def test_concurrent_send_as_from_one_sender(devnet: Devnet) -> None:
    """Concurrent send_as calls from one dev account all land, with consecutive nonces."""
    sender, receiver = devnet.accounts[4].address, devnet.accounts[5].address
    start = int(await devnet.rpc("eth_getTransactionCount", [sender, "latest"]), 16)
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(devnet.send_as, sender, receiver, b"", 1)
    assert int(await devnet.rpc("eth_getTransactionCount", [sender, "latest"]), 16) == start + 10


async def test_with_providers_fills_providers() -> None:
    """with_providers=True starts the default local providers and lists them in info()."""
    pytest.importorskip("og_inference_devnet.provider")
    async with start_devnet(with_providers=True) as dn:
        assert dn.providers
        info = json.loads(json.dumps(dn.info()))
        assert len(info["providers"]) == len(dn.providers)
        pid = dn.anvil_pid
    assert not _pid_alive(pid)


async def test_revert_reseeds_the_sdk_nonce_counters(devnet: Devnet) -> None:
    """After revert() rewinds a nonce, the SDK sends from that account again at once, with that nonce."""
    sender = devnet.accounts[6]
    async with AsyncBroker(sender.private_key, network=devnet.network) as broker:
        before = int(await devnet.rpc("eth_getTransactionCount", [sender.address, "latest"]), 16)
        snapshot = await devnet.snapshot()
        await broker.ledger.add_ledger(og("3"))
        await devnet.revert(snapshot)
        with anyio.fail_after(30):  # a counter left ahead of the node would queue the next one forever
            await broker.ledger.add_ledger(og("3"))
        assert int(await devnet.rpc("eth_getTransactionCount", [sender.address, "latest"]), 16) == before + 1
        assert (await broker.ledger.get_ledger()).total == og("3")


async def test_revert_empties_the_transaction_pool(devnet: Devnet) -> None:
    """A transaction queued behind a nonce gap does not outlive a revert (anvil keeps its pool otherwise),
    so it can never execute later at a nonce another test reuses."""
    sender = Account.from_key(devnet.accounts[6].private_key)
    snapshot = await devnet.snapshot()
    latest = int(await devnet.rpc("eth_getTransactionCount", [sender.address, "latest"]), 16)
    tx = {"to": sender.address, "value": 0, "gas": 21_000, "gasPrice": 10**10, "nonce": latest + 2}
    raw = sender.sign_transaction({**tx, "chainId": devnet.chain_id}).raw_transaction
    await devnet.rpc("eth_sendRawTransaction", ["0x" + bytes(raw).hex()])
    assert int((await devnet.rpc("txpool_status", []))["queued"], 16) == 1
    await devnet.revert(snapshot)
    assert await devnet.rpc("txpool_status", []) == {"pending": "0x0", "queued": "0x0"}
