"""ABI package data: selectors match the protocol reference; reverts decode to typed errors."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector as sel

from og_inference_async import (
    REVERT_ERRORS,
    AccountNotExistsError,
    ContractRevertError,
    InsufficientAvailableBalanceError,
    InsufficientBalanceError,
    MinimumDepositRequiredError,
    ServiceNotFoundError,
)
from og_inference_async._chain import decode_revert, inference_abi, ledger_abi

# From PROTOCOL.md section 2.9 (taken from the TS SDK 0.9.0 ABIs, matching the contracts).
LEDGER_ERRORS = {
    "AdditionalInfoTooLong": "0x69e0a42c",
    "AlreadyInitialized": "0x0dc149f0",
    "CallerNotRegisteredService": "0x1b8815cf",
    "CallFailed": "0x3204506f",
    "DirectDepositsDisabled": "0x0f3342be",
    "InsufficientAvailableBalance": "0xadb9e043",
    "InsufficientBalance": "0x897f6c58",
    "InvalidServiceAddress": "0xc9b70e7a",
    "InvalidServiceType": "0x6753c722",
    "LedgerExists": "0xcde58aa1",
    "LedgerLocked": "0x689e300a",
    "LedgerNotExists": "0x7d2d536b",
    "MinimumDepositRequired": "0x54443ec4",
    "MustWithdrawAllFundsFirst": "0xf6ba0ebf",
    "NoRecommendedService": "0x5beadfcc",
    "ServiceAlreadyRegistered": "0xa6ea5e72",
    "ServiceMustImplementIServing": "0x2c433b7e",
    "ServiceNameExists": "0x15fcdbac",
    "ServiceNotFound": "0xb5365807",
    "ServiceNotRegistered": "0x7a0d2d91",
    "ServiceRegistryLimitReached": "0xf1d44a51",
    "ServiceTypeRequired": "0x8dfa0f6f",
    "TooManyProviders": "0x829e4c32",
    "TooManyProvidersForService": "0xe9499337",
    "TransferFailed": "0x90b8ec18",
    "VersionRequired": "0x742622a8",
    "ZeroAddressNotAllowed": "0x8579befe",
    "ZeroAmountNotAllowed": "0x0f43956a",
}
INFERENCE_ERRORS = {
    "AccountExists": "0xb3c19d64",
    "AccountNotExists": "0x08ca03ac",
    "AdditionalInfoTooLong": "0xef54fd9d",
    "AlreadyInitialized": "0x0dc149f0",
    "BatchSizeTooLarge": "0x01df19f6",
    "CallerNotLedger": "0x52446b87",
    "CannotAddStakeWhenUpdating": "0x96ab6ec5",
    "CannotRevokeWithNonZeroBalance": "0xfaa23877",
    "DirectDepositsDisabled": "0x0f3342be",
    "InsufficientStake": "0x45be0a26",
    "InvalidAddress": "0x8e4c8aa6",
    "InvalidTEESignature": "0x48f72277",
    "LimitTooLarge": "0x062ba4db",
    "LockTimeOutOfRange": "0xa730f674",
    "NoSettlementsProvided": "0x192912c9",
    "ProviderCannotBeUser": "0x99ed87d8",
    "ServiceNotExist": "0x098eda7e",
    "TooManyRefunds": "0x9edd285f",
    "TooManySettlements": "0xf1c82a57",
    "TransferFailed": "0x90b8ec18",
}
FUNCTIONS = {
    ("I", "getAllServices"): "0xa09cfca9",
    ("I", "getService"): "0x15a52302",
    ("I", "getAccount"): "0xfd590847",
    ("I", "acknowledgeTEESigner"): "0x7ff6fc1c",
    ("I", "revokeToken"): "0x1d07cb97",
    ("I", "revokeTokens"): "0x17c30a03",
    ("I", "revokeAllTokens"): "0xcab33d8f",
    ("I", "settleFeesWithTEE"): "0x8be74119",
    ("L", "addLedger"): "0xc5e53f7e",
    ("L", "depositFund"): "0x8d0d8cb6",
    ("L", "refund"): "0x278ecde1",
    ("L", "transferFund"): "0x2ba43b82",
    ("L", "retrieveFund"): "0x31404a19",
    ("L", "getLedger"): "0xf7cd6af9",
    ("L", "getLedgerProviders"): "0xaef42173",
    ("L", "getServiceInfo"): "0xe032f732",
}


def test_error_selectors_match_the_reference() -> None:
    """Every custom error of both ABIs has the selector of the protocol reference."""
    for abi, table in ((ledger_abi(), LEDGER_ERRORS), (inference_abi(), INFERENCE_ERRORS)):
        got = {spec.name: "0x" + s.hex() for s, spec in abi.errors.items()}
        assert got == table


def test_function_selectors_match_the_reference() -> None:
    """Functions the SDK uses have the reference selectors."""
    abis = {"L": ledger_abi(), "I": inference_abi()}
    for (c, name), expected in FUNCTIONS.items():
        assert "0x" + abis[c].fn(name).selector.hex() == expected


def test_every_custom_error_has_a_typed_exception() -> None:
    """Each error name in both ABIs maps to its own ContractRevertError subclass."""
    names = {s.name for s in ledger_abi().errors.values()} | {s.name for s in inference_abi().errors.values()}
    for name in names:
        cls = REVERT_ERRORS[name]
        assert issubclass(cls, ContractRevertError) and cls.error_type == name


@pytest.mark.parametrize(
    ("signature", "types", "args", "cls", "family"),
    [
        (
            "InsufficientAvailableBalance(uint256,uint256)",
            ["uint256", "uint256"],
            [1, 2],
            InsufficientAvailableBalanceError,
            InsufficientBalanceError,
        ),
        (
            "MinimumDepositRequired(uint256,uint256)",
            ["uint256", "uint256"],
            [1, 3 * 10**18],
            MinimumDepositRequiredError,
            ContractRevertError,
        ),
        (
            "AccountNotExists(address,address)",
            ["address", "address"],
            ["0x" + "11" * 20, "0x" + "22" * 20],
            AccountNotExistsError,
            ContractRevertError,
        ),
        (
            "ServiceNotFound(address)",
            ["address"],
            ["0x" + "00" * 20],
            ContractRevertError,
            ServiceNotFoundError,
        ),
    ],
)
def test_reverts_decode_with_names_and_args(
    signature: str, types: list[str], args: list[object], cls: type, family: type
) -> None:
    """Revert data decodes into the matching class, its family, name and arguments."""
    err = decode_revert(sel(signature) + encode(types, args), context="X.f")
    assert isinstance(err, cls) and isinstance(err, family)
    assert err.error_name == signature.split("(")[0]
    assert len(err.error_args) == len(args)


def test_plain_reverts_and_garbage_decode_safely() -> None:
    """Error(string), Panic(uint256), unknown selectors and empty data never crash the decoder."""
    assert (
        decode_revert(
            sel("Error(string)") + encode(["string"], ["Ownable: caller is not the owner"])
        ).error_name
        == "Error"
    )
    assert "overflow" in str(decode_revert(sel("Panic(uint256)") + encode(["uint256"], [0x11])))
    assert decode_revert("0xdeadbeef").error_name is None
    assert decode_revert(None).data is None
    assert decode_revert("0xzz").error_name is None


def test_undecodable_results_are_rpc_errors() -> None:
    """Empty or short return data (a wrong address) is an RPCError, not an eth-abi exception."""
    from og_inference_async import RPCError

    fn = inference_abi().fn("getAccount")
    with pytest.raises(RPCError):
        fn.decode(b"")
    with pytest.raises(RPCError):
        fn.decode_raw(b"\x00" * 7)
