"""Shared pytest fixtures: the anyio backend and one devnet per test session.

The devnet fixtures reuse the og-inference-devnet pytest plugin (``og_inference_devnet.pytest_plugin``,
loaded through its ``pytest11`` entry point) under this suite's shorter names:

- ``anyio_backend`` (session): ``"asyncio"``. The event loops run in asyncio debug mode
  (``PYTHONASYNCIODEBUG=1``, set here unless already set; Python >= 3.11), which reports callbacks that block
  the loop for over 100 ms.
- ``devnet`` (session): the plugin's ``og_devnet``, a :class:`~og_inference_devnet.Devnet` started the
  first time a test asks for it and stopped at the end of the session.
- ``devnet_snapshot`` (function): the plugin's ``og_devnet_snapshot``: the same devnet, snapshotted before
  the test and reverted after it, so each test starts from the freshly deployed chain.
- ``providers`` / ``chatbot`` (function): the plugin's ``og_providers`` (the four default providers), and
  the chatbot among them.

- ``redis_url`` (session): a real ``redis-server`` on 127.0.0.1 for the coordination tests
  (``tests/redis_server.py``); they skip without the binary, except under CI, where they fail.

Integration-only fixtures (the automatic snapshot, the fault proxies) live in
``tests/integration/conftest.py``.
"""

from __future__ import annotations

import os
import sys

import pytest

from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle

from .redis_server import redis_url  # noqa: F401  (a session fixture: a real Redis server)

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
def devnet(og_devnet: Devnet) -> Devnet:
    """One devnet (anvil + the 0G contracts at the hardhat addresses) for the whole session."""
    return og_devnet


@pytest.fixture
def devnet_snapshot(og_devnet_snapshot: Devnet) -> Devnet:
    """The session devnet, reverted to its state before the test when the test ends."""
    return og_devnet_snapshot


@pytest.fixture
def providers(og_providers: list[ProviderHandle]) -> list[ProviderHandle]:
    """The four default providers (chatbot, text-to-image, image-editing, speech-to-text) for one test.

    They register inside the test's snapshot, settle only on ``settle_now()`` and stop after the test.
    """
    return og_providers


@pytest.fixture
def chatbot(providers: list[ProviderHandle]) -> ProviderHandle:
    """The default chatbot provider of :func:`providers`."""
    return providers[0]
