"""The chain layer: the only package that imports web3.

``_abi`` (ABIs, selectors, revert decoding), ``_provider`` / ``_fallback`` (web3 providers on the
shared HTTP pool: one endpoint, or several with health and failover), ``_rpc`` (JSON-RPC with
bounded retries), ``_nonce`` (the per-account nonce allocator), ``_outcomes`` (what send answers
and receipts prove), ``_tx`` (gas, signing, delivery, receipts), ``_resolve`` (cancellation by
replacement, the ``broker.transactions`` resolution API) and ``_contracts`` (typed contract calls).

Importing the package is light: its names load from their submodules on first access, so the
coordination layer can use ``_nonce`` (no web3) before a broker opens.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._abi import decode_revert, inference_abi, ledger_abi
    from ._contracts import ChainReader
    from ._rpc import RpcClient
    from ._tx import NonceAllocator, TxSender, get_nonce_allocator, reset_nonce_allocators

_LAZY = {
    "ChainReader": "._contracts",
    "NonceAllocator": "._tx",
    "RpcClient": "._rpc",
    "TxSender": "._tx",
    "decode_revert": "._abi",
    "get_nonce_allocator": "._tx",
    "inference_abi": "._abi",
    "ledger_abi": "._abi",
    "reset_nonce_allocators": "._tx",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
