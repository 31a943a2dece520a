"""The ``og-inference`` command line, run as a real subprocess against the session devnet.

Each invocation is ``python -m og_inference_async.cli`` with the network, the RPC and the key in the
environment, as a user would set them; state the commands do not test is set up through the SDK in
the test's process. Every run is checked for the key in its output and for tracebacks.
"""

from __future__ import annotations

import json
import os
import pty
import sys
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import pytest

from og_inference_async import AsyncBroker, og
from og_inference_devnet import Devnet
from og_inference_devnet.faultproxy import start_rpc_fault_proxy
from og_inference_devnet.provider import ProviderHandle

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

#: The dev account the CLI runs as (not used by the broker factory's first picks).
USER = 7


@dataclass(frozen=True)
class Run:
    """What one CLI run printed, and its exit code."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.out)


def _env(devnet: Devnet, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONASYNCIODEBUG", "COLUMNS", "OG_KEY_FILE")}
    env.update(OG_NETWORK="hardhat", OG_RPC_URL=devnet.rpc_url)
    env.pop("OG_PRIVATE_KEY", None)
    if key is not None:
        env["OG_PRIVATE_KEY"] = key
    return env


def _check_clean(text: str, key: str) -> None:
    assert key.removeprefix("0x").lower() not in text.lower(), "the private key was printed"
    assert "Traceback" not in text


async def cli(devnet: Devnet, *args: str, wallet: bool = True, check: bool = True) -> Run:
    """Run ``og-inference ARGS`` as the dev account ``USER`` (keyless unless ``wallet``), capturing output."""
    key = devnet.accounts[USER].private_key
    proc = await anyio.run_process(
        [sys.executable, "-m", "og_inference_async.cli", *args],
        env=_env(devnet, key if wallet else None),
        check=False,
    )
    run = Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    _check_clean(run.out + run.err, key)
    if check:
        assert run.code == 0, run.err
    return run


async def _ready(devnet: Devnet, provider: str) -> None:
    """Give the CLI's account a ledger and an acknowledged, funded sub-account with ``provider``."""
    async with AsyncBroker(devnet.accounts[USER].private_key, network=devnet.network) as broker:
        await broker.inference.ensure_ready(provider, create_ledger=True, ledger_amount=og("3"))


async def test_services_json_lists_the_chatbot(devnet: Devnet, chatbot: ProviderHandle) -> None:
    """``services --type chatbot --json`` lists the devnet chatbot with its model and prices in wei."""
    services = (await cli(devnet, "services", "--type", "chatbot", "--json", wallet=False)).json()
    mine = [s for s in services if s["provider"] == chatbot.address]
    assert len(mine) == 1
    assert mine[0]["model"] == chatbot.model
    assert mine[0]["input_price"] == chatbot.input_price
    assert all(s["service_type"] == "chatbot" for s in services)


async def test_ledger_ack_fund_and_accounts(devnet: Devnet, chatbot: ProviderHandle) -> None:
    """create, show, ack, fund and accounts move and report the money in OG, and as wei in JSON."""
    created = await cli(devnet, "ledger", "create", "3")
    assert "Created the ledger with 3 OG" in created.out
    assert "tx 0x" in created.out
    ledger = (await cli(devnet, "ledger", "show", "--json")).json()
    assert ledger["user"] == devnet.accounts[USER].address
    assert ledger["total"] == ledger["available"] == og("3")
    assert ledger["locked"] == 0

    acked = await cli(devnet, "ack", chatbot.address)
    assert "acknowledging the signer" in acked.out
    funded = await cli(devnet, "fund", chatbot.address, "0.5")
    assert f"Transferred 0.5 OG to {chatbot.address}" in funded.out

    (account,) = (await cli(devnet, "accounts", "--json")).json()
    assert account["provider"] == chatbot.address
    assert account["pending_refund"] == 0
    assert account["balance"] == account["spendable"] > og("0.5")


async def test_chat_streams_the_answer_fee_and_verification(devnet: Devnet, chatbot: ProviderHandle) -> None:
    """``chat`` prints the provider's answer, the fee in OG and a bound verification."""
    await _ready(devnet, chatbot.address)
    run = await cli(devnet, "chat", chatbot.address, "hello from the command line")
    assert "hello from the command line" in run.out  # the devnet chatbot echoes the prompt
    fee_line = next(line for line in run.out.splitlines() if line.strip().startswith("fee"))
    assert " OG (" in fee_line and "in," in fee_line
    assert "verification  bound" in run.out


async def test_keys_create_list_revoke(devnet: Devnet, chatbot: ProviderHandle) -> None:
    """An API key is issued and printed once; revoking its id shows up in ``keys list``."""
    await _ready(devnet, chatbot.address)
    created = (await cli(devnet, "keys", "create", chatbot.address, "--expires-in", "3600", "--json")).json()
    assert created["secret"].startswith("app-sk-")
    assert created["expires_at"] - created["created_at"] == 3600 * 1000
    token_id = created["token_id"]

    revoked = await cli(devnet, "keys", "revoke", chatbot.address, str(token_id))
    assert f"Revoked key id(s) {token_id}" in revoked.out
    listed = (await cli(devnet, "keys", "list", chatbot.address, "--json")).json()
    assert listed["revoked_ids"] == [token_id]
    assert listed["generation"] == created["generation"]


async def test_a_bad_amount_exits_with_the_typed_error(devnet: Devnet) -> None:
    """A malformed amount exits 1 with the InvalidAmountError message and hint, and no traceback."""
    run = await cli(devnet, "ledger", "create", "1,5", check=False)
    assert run.code == 1
    assert "not a decimal amount of OG" in run.err
    assert "InvalidAmountError" in run.err
    assert "hint:" in run.err
    assert run.out == ""


async def test_a_key_argument_warns_and_is_never_echoed(devnet: Devnet) -> None:
    """``--private-key`` works but warns on stderr; the key appears in no output (checked by ``cli``)."""
    key = devnet.accounts[USER].private_key
    run = await cli(devnet, "--private-key", key, "ledger", "show", check=False, wallet=False)
    assert "warning: --private-key puts the key in your shell history" in run.err
    assert "LedgerNotExistsError" in run.err  # it did use the key: this account has no ledger yet


def _read_all(fd: int) -> bytes:
    """Read a pseudo-terminal until the child side closes (EIO on Linux)."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def test_a_terminal_sees_the_spinner_while_waiting_for_the_receipt(devnet: Devnet) -> None:
    """On a terminal, ``ledger deposit`` shows a spinner with its message until the receipt lands."""
    async with AsyncBroker(devnet.accounts[USER].private_key, network=devnet.network) as broker:
        await broker.ledger.add_ledger(og("3"))
    key = devnet.accounts[USER].private_key
    env = {**_env(devnet, key), "TERM": "xterm-256color", "COLUMNS": "120"}
    master, child = pty.openpty()
    try:
        proc = await anyio.open_process(
            [sys.executable, "-m", "og_inference_async.cli", "ledger", "deposit", "1"],
            stdin=child,
            stdout=child,
            stderr=child,
            env=env,
        )
        os.close(child)
        child = -1
        async with proc:
            text = (await anyio.to_thread.run_sync(_read_all, master)).decode(errors="replace")
            code = await proc.wait()
    finally:
        os.close(master)
        if child != -1:
            os.close(child)
    _check_clean(text, key)
    assert code == 0, text
    assert "Depositing 1 OG; waiting for the receipt" in text  # the spinner's line
    assert "\x1b[" in text  # drawn with terminal control sequences (and erased when done)
    assert "Deposited 1 OG" in text


async def test_settle_wait_reports_the_settlement_it_waited_for(
    devnet: Devnet, chatbot: ProviderHandle
) -> None:
    """``settle wait --json`` blocks until the provider settles, then reports the fee, balances and tx."""
    await _ready(devnet, chatbot.address)
    await cli(devnet, "chat", chatbot.address, "a billed question")
    key = devnet.accounts[USER].private_key
    async with start_rpc_fault_proxy(
        devnet.rpc_url
    ) as rpc:  # no faults: it shows when the CLI read its baseline
        env = {**_env(devnet, key), "OG_RPC_URL": rpc.url}
        result: dict[str, Any] = {}

        async def wait() -> None:
            result["proc"] = await anyio.run_process(
                [sys.executable, "-m", "og_inference_async.cli", "settle", "wait", chatbot.address, "--json"]
                + ["--timeout", "60", "--poll-interval", "0.1"],
                env=env,
                check=False,
            )

        with anyio.fail_after(90):  # a hang detector
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                while rpc.calls["eth_call"] < 1:  # noqa: ASYNC110 (another process's progress)
                    await anyio.sleep(0.02)  # the baseline (block number, then the account) is read
                assert await chatbot.settle_now()
    proc = result["proc"]
    out, err = proc.stdout.decode(), proc.stderr.decode()
    _check_clean(out + err, key)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["fee_settled"] > 0
    assert report["balance_before"] - report["balance_after"] == report["fee_settled"]
    assert report["nonce_after"] > report["nonce_before"]
    assert len(report["tx_hashes"]) == 1 and report["tx_hashes"][0].startswith("0x")
