"""Units, networks and the public export list."""

from __future__ import annotations

from decimal import Decimal

import pytest

import og_inference_async as og_mod
from og_inference_async import (
    ConfigError,
    InvalidAddressError,
    InvalidAmountError,
    Network,
    format_og,
    get_network,
    og,
    to_wei,
)


def test_og_parses_decimal_strings_exactly() -> None:
    """OG strings and Decimals convert to exact wei."""
    assert og("1.5") == 1_500_000_000_000_000_000
    assert og(Decimal("0.1")) == 100_000_000_000_000_000
    assert og("0.000000000000000001") == 1
    assert og(3) == 3 * 10**18


@pytest.mark.parametrize("bad", [0.1, True, "abc", "-1", "1e-19", "NaN", "Infinity", None])
def test_og_refuses_floats_and_garbage(bad: object) -> None:
    """Floats, bools, garbage, negatives and sub-wei precision are typed errors."""
    with pytest.raises(InvalidAmountError):
        og(bad)  # type: ignore[arg-type]


def test_to_wei_takes_int_as_wei_and_text_as_og() -> None:
    """int is wei; str/Decimal is OG; floats are refused."""
    assert to_wei(5) == 5
    assert to_wei("2") == 2 * 10**18
    with pytest.raises(InvalidAmountError):
        to_wei(1.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidAmountError):
        to_wei(-1)


def test_format_og_round_trips() -> None:
    """format_og prints plain decimals without trailing zeros."""
    assert format_og(og("1.5")) == "1.5"
    assert format_og(3 * 10**18) == "3"
    assert format_og(1) == "0.000000000000000001"


def test_networks_resolve_by_name_and_chain_id() -> None:
    """Known networks resolve by name or chain id; unknown ones are refused, not defaulted."""
    assert get_network("mainnet").chain_id == 16661
    assert get_network(16602).name == "testnet"
    assert get_network("hardhat").inference == "0x0165878A594ca255338adfa4d48449f69242Eb8F"
    with pytest.raises(ConfigError):
        get_network(1)
    with pytest.raises(ConfigError):
        get_network("nope")


def test_custom_network_checks_addresses() -> None:
    """A custom Network checksums its addresses and refuses bad ones."""
    net = Network(name="x", chain_id=7, rpc_url=None, ledger="0x" + "ab" * 20, inference="0x" + "cd" * 20)
    assert net.ledger == "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    with pytest.raises(InvalidAddressError):
        Network(name="x", chain_id=7, rpc_url=None, ledger="0x12", inference="0x" + "cd" * 20)


def test_config_errors_are_value_errors() -> None:
    """Config errors can be caught as ValueError too."""
    assert issubclass(InvalidAmountError, ValueError)
    assert issubclass(og_mod.OGError, Exception)


def test_exported_members_are_sorted_and_exist() -> None:
    """__all__ is sorted and every name in it exists."""
    names = og_mod.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(og_mod, name), name


def test_og_is_exact_for_large_amounts() -> None:
    """Amounts beyond 28 significant digits are converted exactly, not rounded."""
    assert og("99999999999.999999999999999999") == 99_999_999_999_999_999_999_999_999_999
    assert og("123456789012345678901234567890.000000000000000001") == (
        123456789012345678901234567890 * 10**18 + 1
    )
