"""A minimal JSON-RPC client over ``httpx.AsyncClient`` for driving the local anvil node.

The devnet deliberately does not use the SDK's own chain layer: it talks raw JSON-RPC
(single calls and batches) and encodes calldata with eth-abi.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, cast

import httpx
from eth_abi import decode, encode
from eth_utils.abi import collapse_if_tuple, function_abi_to_4byte_selector

from ._errors import DevnetError

__all__ = ["RpcClient", "abi_call_data", "abi_decode_output", "abi_function"]


class RpcClient:
    """Send JSON-RPC requests to one endpoint; error responses raise :class:`DevnetError`."""

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self._http = http
        self._ids = itertools.count(1)

    async def _post(self, payload: Any) -> Any:
        try:
            response = await self._http.post(self.url, json=payload)
        except httpx.HTTPError as exc:
            raise DevnetError(f"JSON-RPC request to {self.url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise DevnetError(f"JSON-RPC request to {self.url} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise DevnetError(f"JSON-RPC response from {self.url} is not JSON") from exc

    @staticmethod
    def _result(method: str, reply: Any) -> Any:
        if not isinstance(reply, dict):
            raise DevnetError(f"{method}: malformed JSON-RPC reply")
        error = reply.get("error")
        if error is not None:
            if isinstance(error, dict):
                raise DevnetError(
                    f"{method}: {error.get('message', 'error')}",
                    code=error.get("code"),
                    data=error.get("data"),
                )
            raise DevnetError(f"{method}: {error}")
        if "result" not in reply:
            raise DevnetError(f"{method}: JSON-RPC reply has no result")
        return reply["result"]

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Send one request and return its ``result``.

        Raises:
            DevnetError: transport failure or a JSON-RPC error response (code and data attached).
        """
        reply = await self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        return self._result(method, reply)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Send several requests in one JSON-RPC batch and return their results in order.

        Raises:
            DevnetError: transport failure, or the first error response in the batch.
        """
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
            for i, (m, p) in zip(ids, calls, strict=True)
        ]
        replies = await self._post(payload)
        if not isinstance(replies, list):
            # a node may answer a whole batch with one error object
            raise DevnetError(f"JSON-RPC batch failed: {self._result('batch', replies)!r}")
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        return [self._result(m, by_id.get(i)) for i, (m, _) in zip(ids, calls, strict=True)]


def abi_function(abi: Sequence[dict[str, Any]], name: str) -> tuple[bytes, list[str], list[str]]:
    """Find a function in an ABI.

    Returns:
        ``(selector, input types, output types)``, tuple types collapsed to ``(a,b)`` form.

    Raises:
        DevnetError: the name is missing or overloaded.
    """
    found = [e for e in abi if e.get("type") == "function" and e.get("name") == name]
    if len(found) != 1:
        raise DevnetError(f"ABI has {len(found)} functions named {name!r}, expected exactly one")
    entry = found[0]
    selector = bytes(function_abi_to_4byte_selector(cast(Any, entry)))
    inputs = [str(collapse_if_tuple(dict(p))) for p in entry.get("inputs", [])]
    outputs = [str(collapse_if_tuple(dict(p))) for p in entry.get("outputs", [])]
    return selector, inputs, outputs


def abi_call_data(abi: Sequence[dict[str, Any]], name: str, *args: Any) -> bytes:
    """Encode a call to function ``name`` (selector + ABI-encoded arguments)."""
    selector, inputs, _ = abi_function(abi, name)
    return selector + bytes(encode(inputs, list(args)))


def abi_decode_output(abi: Sequence[dict[str, Any]], name: str, data: str | bytes) -> tuple[Any, ...]:
    """Decode the return data of function ``name`` (hex string or bytes) into a tuple."""
    raw = bytes.fromhex(data[2:] if data.startswith("0x") else data) if isinstance(data, str) else data
    _, _, outputs = abi_function(abi, name)
    return tuple(decode(outputs, raw))
