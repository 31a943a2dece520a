"""Shared pytest fixtures: the anyio backend and one devnet per test session.

- ``anyio_backend`` (session): ``"asyncio"``. The event loops run in asyncio debug mode
  (``PYTHONASYNCIODEBUG=1``, set here unless already set; Python >= 3.11), which reports callbacks that block
  the loop for over 100 ms.
- ``devnet`` (session): a :class:`~og_inference_async.devnet.Devnet`, started the first time a
  test asks for it and stopped at the end of the session.
- ``devnet_snapshot`` (function): the same devnet, snapshotted before the test and reverted
  after it, so each test starts from the freshly deployed chain. Tests marked
  ``@pytest.mark.integration`` that use ``devnet`` (directly or through another fixture) get it
  automatically, set up before their other function-scoped fixtures.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator

import pytest

from og_inference_async.devnet import Devnet, start_devnet
from og_inference_async.devnet.provider import ProviderHandle, start_default_providers

# Python 3.10's debug-mode reprs of futures recurse without bound on some callback chains and
# crash the interpreter; the debug checks run on 3.11 and newer.
DEBUG_LOOP = sys.version_info >= (3, 11)
if DEBUG_LOOP:
    os.environ.setdefault("PYTHONASYNCIODEBUG", "1")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Run every anyio test (and async fixture) on asyncio, sharing one loop per session."""
    return "asyncio"


@pytest.fixture(scope="session")
async def devnet() -> AsyncIterator[Devnet]:
    """One devnet (anvil + the 0G contracts at the hardhat addresses) for the whole session."""
    async with start_devnet() as dn:
        yield dn


@pytest.fixture
async def devnet_snapshot(devnet: Devnet) -> AsyncIterator[Devnet]:
    """The session devnet, reverted to its state before the test when the test ends.

    anvil consumes a snapshot id when reverting, so every test takes its own snapshot.
    """
    snapshot_id = await devnet.snapshot()
    try:
        yield devnet
    finally:
        await devnet.revert(snapshot_id)


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


@pytest.fixture
async def providers(devnet_snapshot: Devnet) -> AsyncIterator[list[ProviderHandle]]:
    """The four default providers (chatbot, text-to-image, image-editing, speech-to-text) for one test.

    They register inside the test's snapshot, settle only on ``settle_now()`` and stop after the test.
    """
    handles = await start_default_providers(devnet_snapshot, devnet_snapshot.task_group, settle_interval=None)
    try:
        yield handles
    finally:
        for handle in handles:
            await handle.aclose()


@pytest.fixture
def chatbot(providers: list[ProviderHandle]) -> ProviderHandle:
    """The default chatbot provider of :func:`providers`."""
    return providers[0]
