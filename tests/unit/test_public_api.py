"""The public surface: docstrings everywhere, no foreign exception escaping the RPC boundary."""

from __future__ import annotations

import inspect

import pytest

import og_inference_async as og_mod
from og_inference_async import AsyncBroker, RetryPolicy, RPCError
from og_inference_async.inference import InferenceAPI, _Delegate
from og_inference_async.ledger import LedgerAPI


def _public_members(cls: type) -> list[str]:
    names = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(value) or isinstance(value, (property, staticmethod, classmethod, _Delegate)):
            names.append(name)
    return names


def _undocumented_members(cls: type) -> list[str]:
    missing = []
    for member in _public_members(cls):
        value = vars(cls)[member]
        target = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if not (getattr(target, "__doc__", None) or "").strip():
            missing.append(f"{cls.__name__}.{member}")
    return missing


def _service_classes() -> list[type]:
    import dataclasses
    import typing

    from og_inference_async.inference import InferenceServices

    hints = typing.get_type_hints(InferenceServices)
    return [hints[f.name] for f in dataclasses.fields(InferenceServices)]


def test_every_public_name_and_method_has_a_docstring() -> None:
    """Every exported class/function, and every public method of the namespaces, is documented."""
    missing = []
    for name in og_mod.__all__:
        obj = getattr(og_mod, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
            missing.append(name)
    classes: list[type] = [AsyncBroker, InferenceAPI, LedgerAPI, *InferenceAPI.__mro__[1:-1]]
    for cls in classes:
        missing.extend(_undocumented_members(cls))
    assert missing == []


def test_every_service_and_its_methods_are_documented() -> None:
    """The services behind broker.inference, and the transport, document every public method."""
    from og_inference_async._transport import ProviderTransport
    from og_inference_async.inference import InferenceServices
    from og_inference_async.inference.requests import RequestCore

    missing = []
    for cls in [*_service_classes(), RequestCore, ProviderTransport, InferenceServices]:
        if not (cls.__doc__ or "").strip():
            missing.append(cls.__name__)
        missing.extend(_undocumented_members(cls))
    assert missing == []


def test_the_facade_delegates_to_service_methods_of_the_same_name() -> None:
    """InferenceAPI's delegations call service methods of the same name and show their docstrings."""
    services = _service_classes()
    delegates = {n: v for n, v in vars(InferenceAPI).items() if isinstance(v, _Delegate)}
    differ = []
    for name, delegate in delegates.items():
        method = delegate.__wrapped__
        if method.__qualname__.split(".")[0] not in {c.__name__ for c in services}:
            differ.append(f"{name}: not a service method")
        elif delegate.__doc__ != method.__doc__ or name != method.__name__:
            differ.append(name)
    assert len(delegates) >= 30 and differ == []


@pytest.mark.anyio
async def test_unreachable_rpc_is_a_typed_error() -> None:
    """A dead RPC endpoint surfaces as RPCError (retried, bounded), never as an aiohttp/web3 exception."""
    broker = AsyncBroker(
        network="hardhat", rpc_url="http://127.0.0.1:9", retry=RetryPolicy.no_wait(attempts=2)
    )
    with pytest.raises(RPCError) as info:
        async with broker:
            pass
    assert info.value.retryable
    assert broker.state == "closed"


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (400, False)])
async def test_rpc_http_status_is_classified(status: int, retryable: bool) -> None:
    """HTTP errors from the RPC become RPCError; 429 and 5xx are retried (bounded), 4xx is not."""
    import anyio
    from anyio.abc import SocketStream

    hits = 0

    async def answer(stream: SocketStream) -> None:
        nonlocal hits
        async with stream:
            await stream.receive()
            hits += 1
            reason = {429: "Too Many Requests", 503: "Service Unavailable", 400: "Bad Request"}[status]
            await stream.send(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode()
            )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, answer)
        broker = AsyncBroker(
            network="hardhat", rpc_url=f"http://127.0.0.1:{port}", retry=RetryPolicy.no_wait(attempts=3)
        )
        with pytest.raises(RPCError) as info:
            async with broker:
                pass
        tg.cancel_scope.cancel()
    assert info.value.retryable is retryable
    assert hits == (3 if retryable else 1)
