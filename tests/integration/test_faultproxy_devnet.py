"""The fault proxies on the devnet: a dropped transaction is mined; the SDK through a proxied provider."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from eth_account import Account

from og_inference_async import AsyncBroker, ProviderError, ProviderServerError
from og_inference_async.types.inference import VerificationStatus
from og_inference_devnet import Devnet
from og_inference_devnet.faultproxy import RpcFaultProxy

from .chain_helpers import funded_broker
from .conftest import ProxiedProviderFactory

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HELLO = [{"role": "user", "content": "hello through the proxy"}]


async def test_dropped_transaction_is_mined(devnet: Devnet, rpc_fault_proxy: RpcFaultProxy) -> None:
    """forward-then-drop on eth_sendRawTransaction: anvil mines the tx while the sender gets a 502."""
    sender = devnet.accounts[5]
    nonce = int(await devnet.rpc("eth_getTransactionCount", [sender.address, "pending"]), 16)
    gas_price = int(await devnet.rpc("eth_gasPrice"), 16)
    tx = {
        "to": devnet.accounts[6].address,
        "value": 12345,
        "gas": 21000,
        "gasPrice": gas_price,
        "nonce": nonce,
        "chainId": devnet.chain_id,
    }
    raw = "0x" + bytes(Account.sign_transaction(tx, sender.private_key).raw_transaction).hex()
    rpc_fault_proxy.forward_then_drop_rate = 1.0
    rpc_fault_proxy.drop_statuses = (502,)
    rpc_fault_proxy.methods = {"eth_sendRawTransaction"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw]}
    async with httpx.AsyncClient(trust_env=False) as http:
        chain = await http.post(
            rpc_fault_proxy.url, json={"jsonrpc": "2.0", "id": 0, "method": "eth_chainId"}
        )
        assert int(chain.json()["result"], 16) == devnet.chain_id
        reply = await http.post(rpc_fault_proxy.url, json=body)
    assert reply.status_code == 502
    (tx_hash,) = rpc_fault_proxy.dropped_tx_hashes
    receipt = await devnet.wait_receipt(tx_hash)  # mined, though the sender never heard back
    assert receipt is not None and int(receipt["status"], 16) == 1
    assert rpc_fault_proxy.calls == {"eth_chainId": 1, "eth_sendRawTransaction": 1}
    assert rpc_fault_proxy.faults == {"forward_then_drop": 1}


async def test_broker_reads_through_the_rpc_proxy(devnet: Devnet, rpc_fault_proxy: RpcFaultProxy) -> None:
    """With faults off, a broker pointed at the proxy opens and reads the chain through it."""
    network = dataclasses.replace(devnet.network, rpc_url=rpc_fault_proxy.url)
    async with AsyncBroker(devnet.accounts[7].private_key, network=network) as broker:
        assert not await broker.ledger.has_ledger()
    assert rpc_fault_proxy.forwarded >= 2 and rpc_fault_proxy.calls["eth_chainId"] >= 1
    assert not rpc_fault_proxy.faults


async def test_sdk_through_a_proxied_provider(
    devnet: Devnet, proxied_provider: ProxiedProviderFactory
) -> None:
    """Through the proxy: chat is BOUND; forward-then-drop bills once and raises; a cut stream raises."""
    chat, proxy = await proxied_provider()
    assert chat.url == proxy.url != chat.local_url
    broker = await funded_broker(devnet, 8, chat)
    async with broker:
        result = await broker.inference.chat(chat.address, HELLO, verify="required")
        assert result.content == "Echo: hello through the proxy"
        assert result.verification.result is not None
        assert result.verification.result.status is VerificationStatus.BOUND
        assert proxy.paths_seen["/v1/proxy/chat/completions"] == 1
        fee = result.fee

        proxy.paths = {"/v1/proxy/chat"}
        proxy.forward_then_drop_rate = 1.0
        with pytest.raises(ProviderServerError) as info:
            await broker.inference.chat(chat.address, HELLO, verify="off")
        assert info.value.status_code in proxy.drop_statuses
        # the provider served and billed the dropped chat exactly once; the SDK counted only the first
        assert chat.unsettled_fee(broker.address) == 2 * fee
        assert broker.inference.local_fees(chat.address) == fee

        proxy.reset_faults()
        proxy.cut_rate = 1.0
        proxy.cut_after_bytes = 300
        with pytest.raises(ProviderError):
            async with broker.inference.chat_stream(
                chat.address, [{"role": "user", "content": "a b c d e f g h i j"}], verify="off"
            ) as stream:
                async for _ in stream:
                    pass
        assert stream.result is None and broker.inference.local_fees(chat.address) == fee
        assert proxy.faults == {"forward_then_drop": 1, "cut": 1}
