"""pytest fixtures for your own test suite: a devnet, its providers, and brokers on it.

pytest loads this plugin on its own once og-inference-devnet is installed (a ``pytest11`` entry point,
as anyio's plugin is). It is opt-in: nothing starts until a test asks for one of its fixtures, and every
name starts with ``og_`` so none shadows a fixture of yours (``-p no:og_inference_devnet`` turns it off).

The fixtures are async and run under anyio's pytest plugin (installed with anyio): the tests using them
are ``async def`` tests marked ``pytest.mark.anyio``. The devnet lives for the whole session, so your
``conftest.py`` needs a session-scoped ``anyio_backend`` returning ``"asyncio"``::

    @pytest.fixture(scope="session")
    def anyio_backend() -> str:
        return "asyncio"

Fixtures:

- ``og_devnet`` (session): a running :class:`~og_inference_devnet.Devnet` (anvil with LedgerManager and
  InferenceServing at the SDKs' ``hardhat`` addresses, 30 funded dev accounts), started the first time
  a test asks for it and stopped at the end of the session. Its arguments come from
  ``og_devnet_options``.
- ``og_devnet_options`` (session): keyword arguments for :func:`~og_inference_devnet.start_devnet`;
  ``{}`` unless your ``conftest.py`` overrides it (for example ``{"lock_time": 3600}``).
- ``og_devnet_snapshot`` (function): the same devnet, snapshotted before the test and reverted after it,
  so each test starts from the chain as the session left it and changes nothing for the next test.
- ``og_providers`` (function): the four default providers (chatbot, text-to-image, image-editing,
  speech-to-text, in that order; :class:`~og_inference_devnet.provider.ProviderHandle`), registered on
  chain inside the test's snapshot, settling only on ``await handle.settle_now()``, stopped after the
  test.
- ``og_broker_factory`` (function): ``broker = await og_broker_factory(account=None, **options)`` opens an
  :class:`~og_inference_async.AsyncBroker` on the devnet inside the test's snapshot and closes it after
  the test. ``account`` is a dev account index or a private key; by default each call takes the next
  dev account from 1 up (account 0 owns the contracts, 20 and above serve the providers). ``options``
  go to ``AsyncBroker`` (``tx_policy=...``, ``retry=...``).

A test of your own::

    import pytest

    pytestmark = pytest.mark.anyio

    async def test_chat(og_providers, og_broker_factory):
        chatbot = og_providers[0]
        broker = await og_broker_factory()
        await broker.inference.ensure_ready(chatbot.address, create_ledger=True)
        result = await broker.inference.chat(chatbot.address, [{"role": "user", "content": "hi"}])
        assert result.content == "Echo: hi"
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported lazily: the plugin loads in every pytest run of an environment that has it
    from og_inference_async import AsyncBroker

    from ._devnet import Devnet
    from .provider import ProviderHandle

__all__ = [
    "BrokerFactory",
    "og_broker_factory",
    "og_devnet",
    "og_devnet_options",
    "og_devnet_snapshot",
    "og_providers",
]

log = logging.getLogger("og_inference_devnet")

#: ``await og_broker_factory(account=None, **options)``: an open broker on the devnet.
BrokerFactory = Callable[..., Awaitable["AsyncBroker"]]

# dev accounts handed out by og_broker_factory by default: 1..19 (0 owns the contracts, 20+ are providers')
_FIRST_USER, _LAST_USER = 1, 19


@pytest.fixture(scope="session")
def og_devnet_options() -> dict[str, Any]:
    """Keyword arguments for ``start_devnet`` (override in your ``conftest.py``); ``{}`` by default."""
    return {}


@pytest.fixture(scope="session")
async def og_devnet(og_devnet_options: dict[str, Any]) -> AsyncIterator[Devnet]:
    """One running devnet for the whole session (started on first use)."""
    from ._devnet import start_devnet

    async with start_devnet(**og_devnet_options) as devnet:
        yield devnet


@pytest.fixture
async def og_devnet_snapshot(og_devnet: Devnet, request: pytest.FixtureRequest) -> AsyncIterator[Devnet]:
    """The session devnet, returned to its state before the test when the test ends.

    anvil consumes a snapshot id when reverting, so every test takes its own snapshot.
    """
    snapshot_id = await og_devnet.snapshot()
    try:
        yield og_devnet
    finally:
        pool = await og_devnet.rpc("txpool_status", [])
        left = sum(int(pool.get(k, "0x0"), 16) for k in ("pending", "queued"))
        if left:
            log.warning(
                "%s left %d transaction(s) in the pool; the revert drops them", request.node.nodeid, left
            )
        await og_devnet.revert(snapshot_id)


@pytest.fixture
async def og_providers(og_devnet_snapshot: Devnet) -> AsyncIterator[list[ProviderHandle]]:
    """The four default providers for one test, settling on ``settle_now()`` only, stopped after it."""
    from .provider import start_default_providers

    handles = await start_default_providers(
        og_devnet_snapshot, og_devnet_snapshot.task_group, settle_interval=None
    )
    try:
        yield handles
    finally:
        for handle in handles:
            await handle.aclose()


@pytest.fixture
async def og_broker_factory(og_devnet_snapshot: Devnet) -> AsyncIterator[BrokerFactory]:
    """A factory of open brokers on the devnet, each closed after the test (see the module docstring)."""
    from og_inference_async import AsyncBroker, ConfigError

    handed_out = iter(range(_FIRST_USER, _LAST_USER + 1))

    def key_of(account: int | str | None) -> str:
        if isinstance(account, str):
            return account
        index = next(handed_out, None) if account is None else account
        if index is None:
            raise ConfigError(f"og_broker_factory hands out dev accounts {_FIRST_USER}..{_LAST_USER} only")
        return og_devnet_snapshot.accounts[index].private_key

    async with AsyncExitStack() as stack:

        async def make(account: int | str | None = None, **options: Any) -> AsyncBroker:
            broker = AsyncBroker(key_of(account), network=og_devnet_snapshot.network, **options)
            return await stack.enter_async_context(broker)

        yield make
