"""ABIs as package data: pre-computed selectors, calldata encoding, result, error and event decoding.

Everything here is plain sync code (no I/O). Encoders and decoders are built once per function
so the hot path is one ``eth_abi.encode`` call plus a dict lookup; this is what keeps a read
close to the raw ``eth_call`` round trip (web3's contract layer costs 5-7 ms a call).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_utils import event_abi_to_log_topic, function_signature_to_4byte_selector, to_checksum_address

from .._exceptions import REVERT_ERRORS, ContractRevertError, InsufficientBalanceError, RPCError

__all__ = [
    "ContractABI",
    "DecodedEvent",
    "Function",
    "decode_revert",
    "inference_abi",
    "ledger_abi",
]


def _type_str(param: dict[str, Any]) -> str:
    """Canonical ABI type of one parameter (tuples expanded)."""
    t: str = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_type_str(c) for c in param["components"])
        return f"({inner}){t[len('tuple') :]}"
    return t


#: EIP-55 checksumming costs about 13 us (a keccak); the same few addresses come back on every read.
_checksum: Callable[[str], str] = lru_cache(maxsize=4096)(to_checksum_address)


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def _same(value: Any) -> Any:
    return value


def _normaliser(param: dict[str, Any]) -> Callable[[Any], Any]:
    """A function turning eth-abi output for ``param`` into plain Python (built once per parameter)."""
    t: str = param["type"]
    if t.endswith("]"):
        item = _normaliser({**param, "type": t[: t.rindex("[")]})
        return lambda value: [item(v) for v in value]
    if t == "tuple":
        fields = tuple((c["name"], _normaliser(c)) for c in param["components"])
        return lambda value: {name: norm(v) for v, (name, norm) in zip(value, fields)}
    if t == "address":
        return _checksum
    if t.startswith("bytes"):
        return _hex
    return _same


@lru_cache(maxsize=4096)
def _encode_addresses(selector: bytes, types: tuple[str, ...], args: tuple[str, ...]) -> bytes:
    """Calldata of a function taking only addresses (eth-abi's encoding costs about 12 us)."""
    return selector + abi_encode(types, args)


def _normalise(value: Any, param: dict[str, Any]) -> Any:
    """Turn eth-abi output into plain Python: checksummed addresses, ``0x`` hex bytes, nested lists."""
    return _normaliser(param)(value)


@dataclass(frozen=True)
class Function:
    """One ABI function: its selector and (de)coders."""

    name: str
    signature: str
    selector: bytes
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]
    payable: bool
    view: bool
    _normalisers: tuple[Callable[[Any], Any], ...] = field(init=False, repr=False, compare=False)
    _addresses_only: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_normalisers", tuple(_normaliser(p) for p in self.outputs))
        addresses_only = bool(self.input_types) and all(t == "address" for t in self.input_types)
        object.__setattr__(self, "_addresses_only", addresses_only)

    def encode(self, *args: Any) -> bytes:
        """Calldata: selector followed by the ABI-encoded arguments."""
        if self._addresses_only and all(type(a) is str for a in args):
            # str keys compare exactly (no 1 == True collisions); a refused input is never cached
            return _encode_addresses(self.selector, self.input_types, args)
        return self.selector + abi_encode(self.input_types, args)

    def decode(self, data: bytes) -> list[Any]:
        """Decode return data into a list of normalised values (one per output).

        Raises:
            RPCError: the data does not decode (empty or malformed: a wrong address or node).
        """
        raw = self.decode_raw(data)
        return [norm(v) for v, norm in zip(raw, self._normalisers)]

    def decode_raw(self, data: bytes) -> tuple[Any, ...]:
        """Decode return data as eth-abi gives it (tuples stay positional tuples).

        Raises:
            RPCError: the data does not decode.
        """
        try:
            return tuple(abi_decode(self.output_types, data))
        except (DecodingError, ValueError, TypeError) as exc:
            raise RPCError(
                f"{self.name}: the node returned {len(data)} bytes that do not decode "
                f"({type(exc).__name__}); is the contract address right?"
            ) from exc


@dataclass(frozen=True)
class DecodedEvent:
    """A decoded log entry."""

    name: str
    address: str
    args: dict[str, Any]
    log_index: int


@dataclass(frozen=True)
class _ErrorSpec:
    name: str
    types: tuple[str, ...]
    params: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class _EventSpec:
    name: str
    abi: dict[str, Any]


class ContractABI:
    """A contract's ABI with functions by name, errors by selector and events by topic."""

    def __init__(self, name: str, abi: list[dict[str, Any]]) -> None:
        self.name = name
        self.abi = abi
        self.functions: dict[str, Function] = {}
        self.errors: dict[bytes, _ErrorSpec] = {}
        self.events: dict[bytes, _EventSpec] = {}
        for item in abi:
            kind = item.get("type")
            if kind == "function":
                types = tuple(_type_str(p) for p in item["inputs"])
                sig = f"{item['name']}({','.join(types)})"
                fn = Function(
                    name=item["name"],
                    signature=sig,
                    selector=function_signature_to_4byte_selector(sig),
                    inputs=tuple(item["inputs"]),
                    outputs=tuple(item.get("outputs", [])),
                    input_types=types,
                    output_types=tuple(_type_str(p) for p in item.get("outputs", [])),
                    payable=item.get("stateMutability") == "payable",
                    view=item.get("stateMutability") in ("view", "pure"),
                )
                # Overloads are not used by these contracts; keep the first and index by signature too.
                self.functions.setdefault(fn.name, fn)
                self.functions[sig] = fn
            elif kind == "error":
                types = tuple(_type_str(p) for p in item["inputs"])
                sig = f"{item['name']}({','.join(types)})"
                self.errors[function_signature_to_4byte_selector(sig)] = _ErrorSpec(
                    item["name"], types, tuple(item["inputs"])
                )
            elif kind == "event":
                topic = event_abi_to_log_topic(item)  # type: ignore[arg-type]
                self.events[topic] = _EventSpec(item["name"], item)

    def fn(self, name: str) -> Function:
        """The function called ``name`` (or with that exact signature)."""
        return self.functions[name]

    def decode_log(self, log: dict[str, Any]) -> DecodedEvent | None:
        """Decode one log entry of this contract; ``None`` when the topic is not one of its events."""
        topics = [_to_bytes(t) for t in log.get("topics", [])]
        if not topics:
            return None
        spec = self.events.get(topics[0])
        if spec is None:
            return None
        indexed = [p for p in spec.abi["inputs"] if p.get("indexed")]
        plain = [p for p in spec.abi["inputs"] if not p.get("indexed")]
        args: dict[str, Any] = {}
        try:
            for p, topic in zip(indexed, topics[1:]):
                t = _type_str(p)
                if t in ("string", "bytes") or t.endswith("]") or t.startswith("("):
                    args[p["name"]] = "0x" + topic.hex()  # hashed
                else:
                    args[p["name"]] = _normalise(abi_decode([t], topic)[0], p)
            values = abi_decode([_type_str(p) for p in plain], _to_bytes(log.get("data", "0x")))
            for p, v in zip(plain, values):
                args[p["name"]] = _normalise(v, p)
        except (DecodingError, ValueError):
            return None
        return DecodedEvent(
            name=spec.name,
            address=_checksum(log["address"]),
            args=args,
            log_index=_to_int(log.get("logIndex", 0)),
        )


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def _to_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(str(value), 16)


@cache
def _load(name: str) -> ContractABI:
    text = resources.files("og_inference_async._chain").joinpath(f"abi/{name}.json").read_text("utf-8")
    return ContractABI(name, json.loads(text))


def ledger_abi() -> ContractABI:
    """The LedgerManager ABI (from the official TS SDK 0.9.0 typechain factories)."""
    return _load("LedgerManager")


def inference_abi() -> ContractABI:
    """The InferenceServing ABI (from the official TS SDK 0.9.0 typechain factories)."""
    return _load("InferenceServing")


_ERROR_STRING = function_signature_to_4byte_selector("Error(string)")
_PANIC = function_signature_to_4byte_selector("Panic(uint256)")
_PANIC_REASONS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "bad storage byte array",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to uninitialised function",
}


def _fmt_arg(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10**15:
        from .._units import format_og

        return f"{value} wei ({format_og(value)} OG)"
    return str(value)


def decode_revert(
    data: str | bytes | None, *, tx_hash: str | None = None, context: str = ""
) -> ContractRevertError:
    """Decode revert data into the matching typed :class:`ContractRevertError` subclass.

    Args:
        data: the revert data (``0x`` hex or bytes), or ``None`` when the node gave none.
        tx_hash: the transaction hash when a sent transaction reverted.
        context: a short description of the call (``"LedgerManager.transferFund"``) for the message.

    Returns:
        The exception (not raised), with ``error_name``, ``error_args`` and ``selector`` set.
    """
    where = f"{context} reverted" if context else "reverted"
    raw = b""
    if data is not None:
        try:
            raw = _to_bytes(data)
        except ValueError:
            raw = b""
    hexdata = "0x" + raw.hex() if raw else None
    if len(raw) < 4:
        return ContractRevertError(
            f"{where} without reason data", data=hexdata, tx_hash=tx_hash, error_name=None
        )
    selector, body = raw[:4], raw[4:]
    sel_hex = "0x" + selector.hex()
    try:
        if selector == _ERROR_STRING:
            (reason,) = abi_decode(["string"], body)
            cls = REVERT_ERRORS["Error"]
            return cls(
                f"{where}: {reason}",
                error_name="Error",
                error_args={"reason": reason},
                selector=sel_hex,
                data=hexdata,
                tx_hash=tx_hash,
            )
        if selector == _PANIC:
            (code,) = abi_decode(["uint256"], body)
            cls = REVERT_ERRORS["Panic"]
            text = _PANIC_REASONS.get(code, "panic")
            return cls(
                f"{where}: Panic(0x{code:02x}: {text})",
                error_name="Panic",
                error_args={"code": code},
                selector=sel_hex,
                data=hexdata,
                tx_hash=tx_hash,
            )
        for abi in (ledger_abi(), inference_abi()):
            spec = abi.errors.get(selector)
            if spec is None:
                continue
            values = abi_decode(list(spec.types), body)
            args = {
                (p.get("name") or f"arg{i}"): _normalise(v, p)
                for i, (v, p) in enumerate(zip(values, spec.params))
            }
            cls = REVERT_ERRORS.get(spec.name, ContractRevertError)
            shown = ", ".join(f"{k}={_fmt_arg(v)}" for k, v in args.items())
            err = cls(
                f"{where}: {spec.name}({shown})",
                error_name=spec.name,
                error_args=args,
                selector=sel_hex,
                data=hexdata,
                tx_hash=tx_hash,
            )
            if isinstance(err, InsufficientBalanceError):
                err.required = args.get("required", args.get("needed"))
                err.available = args.get("available")
            return err
    except (DecodingError, ValueError):
        pass
    return ContractRevertError(
        f"{where} with unknown error {sel_hex}", selector=sel_hex, data=hexdata, tx_hash=tx_hash
    )
