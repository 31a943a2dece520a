"""The chain layer: the only package that imports web3.

``_abi`` (ABIs, selectors, revert decoding), ``_provider`` / ``_fallback`` (web3 providers on the
shared HTTP pool: one endpoint, or several with health and failover), ``_rpc`` (JSON-RPC with
bounded retries), ``_nonce`` (the per-account nonce allocator), ``_outcomes`` (what send answers
and receipts prove), ``_tx`` (gas, signing, delivery, receipts), ``_resolve`` (cancellation by
replacement, the ``broker.transactions`` resolution API) and ``_contracts`` (typed contract calls).
"""

from ._abi import decode_revert, inference_abi, ledger_abi
from ._contracts import ChainReader
from ._rpc import RpcClient
from ._tx import NonceAllocator, TxSender, get_nonce_allocator, reset_nonce_allocators

__all__ = [
    "ChainReader",
    "NonceAllocator",
    "RpcClient",
    "TxSender",
    "decode_revert",
    "get_nonce_allocator",
    "inference_abi",
    "ledger_abi",
    "reset_nonce_allocators",
]
