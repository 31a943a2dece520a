"""Chain reads the funding methods need beyond ``ChainReader``: block time, reads at a block, settled fees."""

from __future__ import annotations

from typing import Any

from .._chain import ChainReader
from .._chain._contracts import account_from_tuple
from .._exceptions import AccountNotExistsError
from ..types import Account

__all__ = ["account_at", "block_number", "chain_time", "settled_fees"]


async def chain_time(chain: ChainReader) -> int:
    """The latest block's timestamp (the chain's clock, which a devnet may move forward)."""
    block = await chain.rpc.request("eth_getBlockByNumber", ["latest", False])
    return int(block["timestamp"], 16)


async def block_number(chain: ChainReader) -> int:
    """The latest block number."""
    return int(await chain.rpc.request("eth_blockNumber", []), 16)


async def account_at(
    chain: ChainReader, user: str, provider: str, block: int | None = None
) -> Account | None:
    """``getAccount(user, provider)`` at ``block`` (default latest); ``None`` when there is none."""
    fn = chain.I.fn("getAccount")
    try:
        data = await chain.rpc.eth_call(
            chain.inference_address,
            fn.encode(user, provider),
            block=hex(block) if block is not None else "latest",
        )
    except AccountNotExistsError:
        return None
    (t,) = fn.decode(data)
    return account_from_tuple(t)


def _topic(address: str) -> str:
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")


async def settled_fees(
    chain: ChainReader, user: str, provider: str, from_block: int
) -> tuple[int, tuple[str, ...]]:
    """Fees ``provider`` settled for ``user`` since ``from_block``: ``(total wei, tx hashes)``.

    Settlement makes the ledger emit ``FundSpent(user, inferenceContract, fee)`` inside the
    provider's ``settleFeesWithTEE`` transaction; the events of transactions sent by other
    providers are left out.

    Raises:
        RPCError: the node could not serve the logs or transactions.
    """
    topic0 = next(("0x" + t.hex() for t, spec in chain.L.events.items() if spec.name == "FundSpent"), None)
    if topic0 is None:  # pragma: no cover - the ABI ships with the package
        return 0, ()
    logs: list[dict[str, Any]] = await chain.rpc.request(
        "eth_getLogs",
        [
            {
                "address": chain.ledger_address,
                "fromBlock": hex(from_block),
                "toBlock": "latest",
                "topics": [topic0, _topic(user), _topic(chain.inference_address)],
            }
        ],
    )
    by_tx: dict[str, int] = {}
    for entry in logs or []:
        event = chain.L.decode_log(entry)
        if event is None or event.name != "FundSpent":
            continue
        tx_hash = str(entry["transactionHash"])
        by_tx[tx_hash] = by_tx.get(tx_hash, 0) + int(event.args["amount"])
    if not by_tx:
        return 0, ()
    hashes = list(by_tx)
    txs = await chain.rpc.batch([("eth_getTransactionByHash", [h]) for h in hashes])
    total = 0
    found: list[str] = []
    for tx_hash, tx in zip(hashes, txs):
        if isinstance(tx, Exception):
            raise tx
        if isinstance(tx, dict) and str(tx.get("from", "")).lower() == provider.lower():
            total += by_tx[tx_hash]
            found.append(tx_hash)
    return total, tuple(found)
