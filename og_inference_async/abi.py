"""The two 0G contracts' ABIs and a small codec for them: calldata, return data, events, reverts.

The SDK talks to the chain through its own chain layer; this module is for code that needs the raw
encoding: a test double of a provider settling fees, a script reading a contract at a given block,
a decoder for a log or a revert seen elsewhere. Everything here is plain synchronous code (no I/O);
the ABIs ship with the package (from the official TS SDK 0.9.0 typechain factories).

::

    from og_inference_async.abi import decode_revert, inference_abi

    get_account = inference_abi().fn("getAccount")
    calldata = get_account.encode(user, provider)         # selector + arguments
    (account,) = get_account.decode(return_data)          # a dict per struct, checksummed addresses
    error = decode_revert(revert_data)                    # the typed ContractRevertError subclass
    event = inference_abi().decode_log(receipt_log)       # DecodedEvent, or None for a foreign log

:class:`ContractABI` also wraps any other ABI list (``ContractABI("Name", abi)``).
"""

from __future__ import annotations

from ._chain._abi import ContractABI, DecodedEvent, Function, decode_revert, inference_abi, ledger_abi

__all__ = [
    # the two contracts
    "ledger_abi",
    "inference_abi",
    # any ABI, its functions, events and reverts
    "ContractABI",
    "Function",
    "DecodedEvent",
    "decode_revert",
]
