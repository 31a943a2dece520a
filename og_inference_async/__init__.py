"""og-inference-async: the async-native Python SDK for the 0G Compute Network inference marketplace.

Start with :class:`AsyncBroker`::

    async with AsyncBroker(private_key, network="testnet") as broker:
        await broker.ledger.add_ledger(og("3"))
"""

from ._broker import AsyncBroker
from ._config import (
    HARDHAT,
    MAINNET,
    NETWORKS,
    TESTNET,
    FeePolicy,
    Network,
    RetryPolicy,
    TxPolicy,
    get_network,
)
from ._exceptions import *  # noqa: F403  (the error tree is part of the public API)
from ._exceptions import __all__ as _error_names
from ._units import WEI_PER_OG, Amount, format_og, og, to_wei
from .types import Account, ChainEvent, Ledger, ProviderBalance, Refund, Service, ServiceInfo, TxReceipt

__version__ = "0.1.0.dev0"

__all__ = sorted(
    [
        "HARDHAT",
        "MAINNET",
        "NETWORKS",
        "TESTNET",
        "WEI_PER_OG",
        "Account",
        "Amount",
        "AsyncBroker",
        "ChainEvent",
        "FeePolicy",
        "Ledger",
        "Network",
        "ProviderBalance",
        "Refund",
        "RetryPolicy",
        "Service",
        "ServiceInfo",
        "TxPolicy",
        "TxReceipt",
        "format_og",
        "get_network",
        "og",
        "to_wei",
        *_error_names,
    ]
)
