"""og-inference-devnet: a local 0G chain for tests, demos and your own test suites.

A distribution of its own, built on og-inference-async's public API only.

:func:`start_devnet` runs the native ``anvil`` binary on 127.0.0.1 and deploys the real
LedgerManager and InferenceServing contracts (ABI and bytecode fetched from npm on first use
and checked against pinned sha256 hashes; nothing third-party ships with this package). The
contracts land at the addresses the official SDKs use for their ``hardhat`` network.

::

    from og_inference_devnet import start_devnet

    async with start_devnet() as dn:
        print(dn.rpc_url, dn.ledger, dn.inference)
        snap = await dn.snapshot()
        ...
        await dn.revert(snap)   # anvil consumes the id: snapshot again to revert again

For chaos tests, :mod:`og_inference_devnet.faultproxy` puts a fault-injecting proxy in front of
the node (``start_rpc_fault_proxy(dn.rpc_url)``) or of a provider (``start_http_fault_proxy(url)``;
``start_provider(..., advertised_url=proxy.url)`` registers the proxy as the service URL).

In your own pytest suite, the plugin :mod:`og_inference_devnet.pytest_plugin` (loaded by pytest on
its own) gives the fixtures ``og_devnet``, ``og_devnet_snapshot``, ``og_providers`` and
``og_broker_factory``.

Needs Node.js and npm the first time (about 12 s to install into a cache folder outside the
project; see :func:`default_cache_dir`). From a shell: ``og-devnet up`` (or
``python -m og_inference_devnet up``).
"""

from __future__ import annotations

from ._artifacts import (
    BYTECODE_SHA256,
    NPM_PACKAGES,
    ContractArtifact,
    DevnetArtifacts,
    default_cache_dir,
    ensure_artifacts,
    verify_bytecode,
)
from ._deploy import HARDHAT_INFERENCE, HARDHAT_LEDGER, SERVICE_FULL_NAME
from ._devnet import CHAIN_ID, DEV_MNEMONIC, DevAccount, Devnet, start_devnet
from ._errors import DevnetError

__all__ = [
    "BYTECODE_SHA256",
    "CHAIN_ID",
    "DEV_MNEMONIC",
    "HARDHAT_INFERENCE",
    "HARDHAT_LEDGER",
    "NPM_PACKAGES",
    "SERVICE_FULL_NAME",
    "ContractArtifact",
    "DevAccount",
    "Devnet",
    "DevnetArtifacts",
    "DevnetError",
    "default_cache_dir",
    "ensure_artifacts",
    "start_devnet",
    "verify_bytecode",
]
