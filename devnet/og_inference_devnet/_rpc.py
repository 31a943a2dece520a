"""The devnet's one JSON-RPC client (``httpx.AsyncClient``), used by the chain helpers and the providers.

The devnet deliberately does not use the SDK's chain layer: it is the ground truth the SDK is tested
against, so it talks to the node with plain JSON-RPC and encodes calldata with the public
:mod:`og_inference_async.abi` codec. Every failure is a :class:`DevnetError` carrying the node's
``code`` and ``data`` (the revert data of a reverted call).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import httpx

from ._errors import DevnetError

__all__ = ["RpcClient"]

Call = tuple[str, Sequence[Any]]


def _outcome(method: str, reply: Any) -> Any:
    """The ``result`` of one reply, or a :class:`DevnetError` (returned, not raised) for an error reply."""
    if not isinstance(reply, dict):
        return DevnetError(f"{method}: no (or a malformed) JSON-RPC reply")
    error = reply.get("error")
    if error is None:
        if "result" not in reply:
            return DevnetError(f"{method}: JSON-RPC reply has no result")
        return reply["result"]
    if isinstance(error, dict):
        return DevnetError(
            f"{method}: {error.get('message', 'error')}", code=error.get("code"), data=error.get("data")
        )
    return DevnetError(f"{method}: {error}")


class RpcClient:
    """JSON-RPC requests to one endpoint: single calls and batches.

    Args:
        url: the node's HTTP JSON-RPC URL.
        http: a shared client (not closed here).
    """

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

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Send one request and return its ``result``.

        Raises:
            DevnetError: transport failure or an error reply (``code`` and ``data`` attached).
        """
        reply = await self._post(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        )
        result = _outcome(method, reply)
        if isinstance(result, DevnetError):
            raise result
        return result

    async def outcomes(self, calls: Sequence[Call]) -> list[Any]:
        """Send several requests in one batch; return each ``result`` or, for a failed call, its error.

        Returns:
            One entry per call, in order: the result, or a :class:`DevnetError` instance.

        Raises:
            DevnetError: the HTTP request failed, or the node refused the whole batch.
        """
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
            for i, (m, p) in zip(ids, calls, strict=True)
        ]
        replies = await self._post(payload)
        if not isinstance(replies, list):  # a node may answer a whole batch with one error object
            raise DevnetError(f"JSON-RPC batch refused: {_outcome('batch', replies)}")
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        return [_outcome(m, by_id.get(i)) for i, (m, _) in zip(ids, calls, strict=True)]

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Send several requests in one batch and return their results in order.

        Raises:
            DevnetError: transport failure, or the first failed call of the batch.
        """
        results = await self.outcomes(calls)
        for result in results:
            if isinstance(result, DevnetError):
                raise result
        return results
