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
    """Touching ``AsyncBroker`` imports it (and what it needs); a model name loads pydantic only."""
    broker = _loaded_after(
        "import og_inference_async as o\n"
        "from og_inference_async import AsyncBroker\n"
        "out = [AsyncBroker.__name__, o.AsyncBroker is AsyncBroker, 'AsyncBroker' in vars(o)]"
    )
    assert broker["out"] == ["AsyncBroker", True, True]
    assert {"web3", "httpx"} <= set(broker["heavy"])
    model = _loaded_after("import og_inference_async as o\nout = o.Ledger.__name__")
    assert model["out"] == "Ledger"
    assert "web3" not in model["heavy"] and "httpx" not in model["heavy"]


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
