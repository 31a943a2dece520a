"""Fakes for unit tests: an in-memory JSON-RPC node, fake contracts, and services wired on fakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


class FakeContracts:
    """The chain's contracts as the request services read them: services by provider."""

    def __init__(self, services: dict[str, Any] | None = None) -> None:
        self.services: dict[str, Any] = dict(services or {})

    async def get_service(self, provider: str) -> Any:
        from og_inference_async import ServiceNotExistError

        if provider not in self.services:
            raise ServiceNotExistError("no service", error_args={"provider": provider})
        return self.services[provider]


def wire_inference(
    broker: Any,
    *,
    contracts: Any,
    auth: Any,
    ledger: Any = None,
    wallet: Any = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[Any, Any]:
    """The inference facade and services wired on fakes, in an open broker's task group and HTTP pool.

    Returns:
        ``(facade, services)``.
    """
    import time

    import anyio

    from og_inference_async._runtime import Background, Wallet
    from og_inference_async._transport import ProviderTransport
    from og_inference_async.inference import InferenceAPI, InferenceServices, RequestPolicies

    policies = RequestPolicies()
    transport = ProviderTransport(
        broker.http,
        auth=auth,
        settings=policies,
        sleep=sleep or anyio.sleep,
        clock=clock or time.monotonic,
    )
    services = InferenceServices.build(
        contracts=contracts,
        wallet=wallet or Wallet(),
        auth=auth,
        ledger=ledger,
        transport=transport,
        policies=policies,
        background=Background(broker.task_group, lambda: broker.state == "opened"),
    )
    return InferenceAPI(lambda: services, policies), services
