"""A scriptable in-memory JSON-RPC node standing in for web3's async provider in unit tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[[list[Any]], Any]


class FakeProvider:
    """Answers ``make_request`` / ``make_batch_request`` from per-method handlers.

    A handler returns a result, or raises; returning ``{"__error__": {...}}`` yields a JSON-RPC error.
    """

    def __init__(self, handlers: dict[str, Handler] | None = None) -> None:
        self.handlers: dict[str, Handler] = {"eth_chainId": lambda p: hex(31337)}
        self.handlers.update(handlers or {})
        self.calls: list[tuple[str, list[Any]]] = []
        self.disconnected = 0

    def _answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.calls.append((method, params))
        handler = self.handlers.get(method)
        if handler is None:
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": f"no fake for {method}"}}
        result = handler(params)
        if isinstance(result, dict) and "__error__" in result:
            return {"jsonrpc": "2.0", "id": 1, "error": result["__error__"]}
        return {"jsonrpc": "2.0", "id": 1, "result": result}

    async def make_request(self, method: str, params: list[Any]) -> dict[str, Any]:
        return self._answer(method, params)

    async def make_batch_request(self, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        return [self._answer(m, p) for m, p in calls]

    async def disconnect(self) -> None:
        self.disconnected += 1

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


class FakeWeb3:
    """Just enough of AsyncWeb3 for the chain layer: a ``provider`` attribute."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
