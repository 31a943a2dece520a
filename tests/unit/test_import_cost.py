"""``import og_inference_async`` stays light: the heavy dependencies load on first use of a name needing them.

Each check runs in a fresh interpreter (this test process has imported everything already) and
asserts on which modules are loaded, never on time; ``benchmarks/bench_import.py`` has the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import og_inference_async
from og_inference_async import _config

HEAVY = (
    "web3",
    "eth_account",
    "eth_abi",
    "eth_utils",
    "httpx",
    "aiohttp",
    "pydantic",
    "coincurve",
    "tenacity",
)
ROOT = Path(__file__).resolve().parents[2]


def _loaded_after(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter: the heavy modules then loaded, and the ``out`` it set."""
    script = f"""
import json, sys
out = None
{code}
print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules], "out": out}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def test_importing_the_package_loads_no_heavy_dependency() -> None:
    """web3, eth_account, httpx, aiohttp (and the rest of the heavy set) stay out of sys.modules."""
    assert _loaded_after("import og_inference_async")["heavy"] == []


def test_units_errors_and_networks_work_without_the_heavy_dependencies() -> None:
    """``og``, the error tree and the built-in networks are usable straight after the import."""
    loaded = _loaded_after(
        "import og_inference_async as o\n"
        "err = o.InsufficientBalanceError('short', required=2, available=1)\n"
        "out = [o.og('1'), isinstance(err, o.OGError), o.format_og(o.og('1.5')),"
        " o.get_network('testnet').ledger, o.RetryPolicy().attempts > 0]"
    )
    assert loaded["heavy"] == []
    assert loaded["out"] == [10**18, True, "1.5", _config.TESTNET.ledger, True]


def test_async_broker_and_the_models_resolve_on_first_access() -> None:
    """Touching ``AsyncBroker`` imports it, not the chain and HTTP layers; a model name loads pydantic."""
    broker = _loaded_after(
        "import og_inference_async as o\n"
        "from og_inference_async import AsyncBroker\n"
        "out = [AsyncBroker.__name__, o.AsyncBroker is AsyncBroker, 'AsyncBroker' in vars(o)]"
    )
    assert broker["out"] == ["AsyncBroker", True, True]
    assert not {"web3", "httpx", "aiohttp"} & set(broker["heavy"])
    model = _loaded_after("import og_inference_async as o\nout = o.Ledger.__name__")
    assert model["out"] == "Ledger"
    assert "web3" not in model["heavy"] and "httpx" not in model["heavy"]


CHAIN_AND_HTTP = {"web3", "httpx", "aiohttp"}
KEY = "0x" + "11" * 32


def test_constructing_a_broker_loads_neither_web3_nor_httpx_nor_aiohttp() -> None:
    """``AsyncBroker(...)`` checks its arguments (and loads a key) without the chain and HTTP layers."""
    read_only = _loaded_after(
        "import og_inference_async as o\n"
        "b = o.AsyncBroker(network='testnet')\n"
        "out = [b.state, b.is_read_only]"
    )
    assert read_only["out"] == ["unopened", True]
    assert not (CHAIN_AND_HTTP | {"eth_account"}) & set(read_only["heavy"])  # no key, no signing
    wallet = _loaded_after(
        f"import og_inference_async as o\nb = o.AsyncBroker({KEY!r}, network='testnet')\nout = b.address"
    )
    assert isinstance(wallet["out"], str) and wallet["out"].startswith("0x")
    assert not CHAIN_AND_HTTP & set(wallet["heavy"])
    assert "eth_account" in wallet["heavy"]  # deriving the address is what a key needs


def test_opening_a_broker_loads_the_chain_and_http_layers() -> None:
    """``open()`` imports web3, httpx and aiohttp (here against an unreachable RPC: it fails typed)."""
    loaded = _loaded_after(
        "import anyio, og_inference_async as o\n"
        "b = o.AsyncBroker(network='testnet', rpc_url='http://127.0.0.1:9',"
        " retry=o.RetryPolicy(attempts=1))\n"
        "async def main():\n"
        "    try:\n"
        "        await b.open()\n"
        "    except o.OGError as exc:\n"
        "        return type(exc).__name__\n"
        "    finally:\n"
        "        await b.aclose()\n"
        "out = anyio.run(main)"
    )
    assert loaded["out"] == "RPCError"
    assert CHAIN_AND_HTTP <= set(loaded["heavy"])


def test_the_chain_and_inference_packages_export_their_names_lazily() -> None:
    """``_chain`` and ``inference`` serve each name of their tables from its submodule."""
    from importlib import import_module

    for package in ("og_inference_async._chain", "og_inference_async.inference"):
        module = import_module(package)
        for name, submodule in module._LAZY.items():
            assert getattr(module, name) is getattr(import_module(submodule, package), name), name
            assert name in dir(module)
        assert not hasattr(module, "NoSuchThing")


def test_unknown_names_raise_attribute_error() -> None:
    """A name the package does not export is an AttributeError (so ``hasattr`` works)."""
    assert not hasattr(og_inference_async, "NoSuchThing")
    assert "AsyncBroker" in dir(og_inference_async)


def test_every_lazy_name_resolves_to_the_object_its_submodule_defines() -> None:
    """Each entry of the name table imports and is the same object as in its submodule."""
    from importlib import import_module

    for name, module in og_inference_async._LAZY.items():
        assert getattr(og_inference_async, name) is getattr(
            import_module(module, "og_inference_async"), name
        ), name


def test_the_name_table_and_all_are_generated_from_the_imports() -> None:
    """``scripts/gen_init_all.py --check`` finds ``_LAZY`` and ``__all__`` up to date."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_init_all.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_built_in_network_addresses_are_already_checksummed() -> None:
    """The addresses ``checksum`` takes as written are exactly the built-in ones, each in EIP-55 form."""
    from eth_utils import to_checksum_address

    built_in = {a for n in _config.NETWORKS.values() for a in (n.ledger, n.inference)}
    assert built_in == _config._BUILTIN_ADDRESSES
    for address in _config._BUILTIN_ADDRESSES:
        assert to_checksum_address(address) == address
