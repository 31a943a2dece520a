"""Fixtures of the integration tests (on the devnet); the shared ones are in ``tests/conftest.py``.

- ``_integration_devnet_snapshot`` (autouse): tests marked ``@pytest.mark.integration`` that use ``devnet``
  (directly or through another fixture) get ``devnet_snapshot`` automatically, set up before their other
  function-scoped fixtures, so every such test starts from the chain as the session (or its module's
  fixtures) left it and leaves nothing behind.
- ``rpc_fault_proxy`` (function): a :class:`~og_inference_devnet.faultproxy.RpcFaultProxy` in front of the
  devnet's node, faults off.
- ``http_fault_proxy`` (function): a factory, ``await http_fault_proxy(upstream_url, **knobs)``, of HTTP
  fault proxies stopped after the test.
- ``proxied_provider`` (function): a factory, ``handle, proxy = await proxied_provider(...)``, of devnet
  providers registered on chain with a fault proxy's URL, so SDK requests go through it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from og_inference_devnet import Devnet
from og_inference_devnet.faultproxy import (
    HttpFaultProxy,
    RpcFaultProxy,
    start_http_fault_proxy,
    start_rpc_fault_proxy,
)
from og_inference_devnet.provider import DEFAULT_PROVIDERS, ProviderHandle, start_provider

HttpFaultProxyFactory = Callable[..., Awaitable[HttpFaultProxy]]
ProxiedProviderFactory = Callable[..., Awaitable[tuple[ProviderHandle, HttpFaultProxy]]]


@pytest.fixture(autouse=True)
def _integration_devnet_snapshot(request: pytest.FixtureRequest) -> None:
    """Give ``devnet_snapshot`` to integration tests that use the devnet."""
    names = request.fixturenames
    if (
        request.node.get_closest_marker("integration") is not None
        and "devnet" in names
        and "anyio_backend" in names
    ):
        request.getfixturevalue("devnet_snapshot")


# -- fault proxies (the chaos suite) -------------------------------------------------------------------


@pytest.fixture
async def rpc_fault_proxy(devnet: Devnet) -> AsyncIterator[RpcFaultProxy]:
    """A JSON-RPC fault proxy in front of the devnet's node for one test, every fault off.

    Point a broker at it with ``dataclasses.replace(devnet.network, rpc_url=rpc_fault_proxy.url)``
    and turn its knobs (``error_rate``, ``forward_then_drop_rate``, ``methods``, ``pause()``...).
    """
    async with start_rpc_fault_proxy(devnet.rpc_url) as proxy:
        yield proxy


@pytest.fixture
async def http_fault_proxy() -> AsyncIterator[HttpFaultProxyFactory]:
    """A factory of HTTP fault proxies: ``proxy = await http_fault_proxy(upstream_url, seed=0, **knobs)``.

    Every proxy it made stops after the test.
    """
    async with AsyncExitStack() as stack:

        async def make(upstream_base_url: str | None, *, seed: int = 0, **knobs: Any) -> HttpFaultProxy:
            return await stack.enter_async_context(
                start_http_fault_proxy(upstream_base_url, seed=seed, **knobs)
            )

        yield make


@pytest.fixture
async def proxied_provider(devnet_snapshot: Devnet) -> AsyncIterator[ProxiedProviderFactory]:
    """A factory of devnet providers behind an HTTP fault proxy whose URL is their on-chain service URL.

    ``handle, proxy = await proxied_provider(seed=0, proxy_knobs={...}, **start_provider_kwargs)``:
    the provider is started with :func:`start_provider` (default: the default chatbot's model and
    prices, dev account 24, settling on demand only) and registered with ``advertised_url=proxy.url``,
    so every SDK request to it goes through ``proxy`` (faults off unless ``proxy_knobs`` says so);
    ``handle.local_url`` reaches the provider directly. Providers and proxies stop after the test,
    inside its chain snapshot.
    """
    _, model, input_price, output_price, _ = DEFAULT_PROVIDERS[0]
    async with AsyncExitStack() as stack:

        async def make(
            *, seed: int = 0, proxy_knobs: dict[str, Any] | None = None, **provider: Any
        ) -> tuple[ProviderHandle, HttpFaultProxy]:
            proxy = await stack.enter_async_context(
                start_http_fault_proxy(None, seed=seed, **(proxy_knobs or {}))
            )
            settings: dict[str, Any] = {
                "service_type": "chatbot",
                "model": model,
                "input_price": input_price,
                "output_price": output_price,
                "settle_interval": None,
                **provider,
            }
            if "private_key" not in settings:
                settings.setdefault("account_index", 24)
            handle = await start_provider(
                devnet_snapshot, devnet_snapshot.task_group, advertised_url=proxy.url, **settings
            )
            stack.push_async_callback(handle.aclose)
            proxy.upstream = handle.local_url
            return handle, proxy

        yield make
