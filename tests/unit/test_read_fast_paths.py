"""The read fast paths behave like the plain ones: first RPC attempt outside the retry loop,
cached address-only calldata and checksums."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_abi.exceptions import EncodingError
from eth_utils import function_signature_to_4byte_selector as sel
from eth_utils import to_checksum_address

from og_inference_async import AccountNotExistsError, RPCError
from og_inference_async._chain import RpcClient, inference_abi
from og_inference_async._config import RetryPolicy

from .fakes import FakeProvider, FakeWeb3

pytestmark = pytest.mark.anyio

USER = "0x" + "ab" * 20
PROVIDER = "0x" + "cd" * 20
RATE_LIMITED = {"__error__": {"code": -32005, "message": "rate limit exceeded"}}


def _rpc(node: FakeProvider, attempts: int = 3) -> RpcClient:
    return RpcClient(FakeWeb3(node), owned=False, retry=RetryPolicy.no_wait(attempts=attempts))  # type: ignore[arg-type]


def _flaky(failures: int, result: Any) -> Any:
    left = [failures]

    def handler(params: list[Any]) -> Any:
        if left[0]:
            left[0] -= 1
            return RATE_LIMITED
        return result

    return handler


async def test_a_transient_first_failure_is_retried() -> None:
    """A retryable failure of the first attempt leads to a second attempt and its result."""
    node = FakeProvider({"eth_chainId": _flaky(1, "0x7a69")})
    assert await _rpc(node).chain_id() == 31337
    assert node.count("eth_chainId") == 2


async def test_the_first_attempt_counts_toward_the_bound() -> None:
    """With one attempt allowed, a retryable failure is raised at once; with three, after three."""
    node = FakeProvider({"eth_chainId": _flaky(5, "0x1")})
    with pytest.raises(RPCError) as info:
        await _rpc(node, attempts=1).chain_id()
    assert info.value.retryable
    assert node.count("eth_chainId") == 1
    with pytest.raises(RPCError):
        await _rpc(node, attempts=3).chain_id()
    assert node.count("eth_chainId") == 4


async def test_a_permanent_error_is_not_retried() -> None:
    """A non-retryable JSON-RPC error is raised after one request."""
    node = FakeProvider(
        {"eth_chainId": lambda p: {"__error__": {"code": -32601, "message": "no such method"}}}
    )
    with pytest.raises(RPCError) as info:
        await _rpc(node).chain_id()
    assert not info.value.retryable
    assert node.count("eth_chainId") == 1


async def test_a_revert_is_raised_once_and_typed() -> None:
    """A revert is decoded and raised after one request."""
    revert = (
        "0x"
        + (sel("AccountNotExists(address,address)") + encode(["address", "address"], [USER, PROVIDER])).hex()
    )
    error = {"__error__": {"code": 3, "message": "execution reverted", "data": revert}}
    node = FakeProvider({"eth_call": lambda p: error})
    with pytest.raises(AccountNotExistsError):
        await _rpc(node).eth_call(PROVIDER, inference_abi().fn("getAccount").encode(USER, PROVIDER))
    assert node.count("eth_call") == 1


async def test_a_batch_is_retried_after_a_transport_failure() -> None:
    """A batch whose first attempt fails on the wire is sent again and its results returned."""
    left = [1]

    def chain_id(params: list[Any]) -> Any:
        if left[0]:
            left[0] -= 1
            raise ConnectionError("reset")
        return "0x1"

    node = FakeProvider({"eth_chainId": chain_id})
    assert await _rpc(node).batch([("eth_chainId", [])]) == ["0x1"]


def test_address_only_calldata_matches_eth_abi() -> None:
    """Cached calldata is byte-identical to eth-abi's, for lower-case and checksummed inputs alike."""
    fn = inference_abi().fn("getAccount")
    expected = fn.selector + encode(["address", "address"], [USER, PROVIDER])
    for _ in range(2):
        assert fn.encode(USER, PROVIDER) == expected
        assert fn.encode(to_checksum_address(USER), to_checksum_address(PROVIDER)) == expected


@pytest.mark.parametrize(
    "args",
    [("0x1234", PROVIDER), (USER,), (USER, PROVIDER, USER), ("0x" + "zz" * 20, PROVIDER)],
    ids=["short", "too-few", "too-many", "not-hex"],
)
def test_address_only_calldata_refuses_bad_input_every_time(args: tuple[str, ...]) -> None:
    """A refused input is refused again on the next call (errors are never cached)."""
    fn = inference_abi().fn("getAccount")
    for _ in range(2):
        with pytest.raises((EncodingError, TypeError, ValueError)):
            fn.encode(*args)


def test_decoded_addresses_are_checksummed() -> None:
    """Addresses in decoded outputs come back in EIP-55 form (through the checksum cache), every time."""
    owner = inference_abi().fn("owner")
    for _ in range(2):
        assert owner.decode(encode(["address"], [USER])) == [to_checksum_address(USER)]
    assert inference_abi().fn("accountExists").decode(encode(["bool"], [True])) == [True]
