"""Coordination of several brokers that share one wallet: in one process, or across processes.

A :class:`Coordinator` provides what must be agreed on by everyone who signs for one wallet:

* the nonce allocator of each (chain, account);
* exclusive leases: one holder at a time for a name (an onboarding, a top-up), with an expiry so a
  crashed holder never blocks the others;
* optionally, a registry of issued API key ids (two processes never issue one id twice);
* optionally, shared spend budgets (:class:`SharedBudgetStore`): reservations made atomically
  against a budget every process charges (``broker.budget(limit, shared="name")``).

:class:`InProcessCoordinator` is the default and keeps the process-wide behaviour (nonces from the
process's allocator, leases that are always granted because the SDK's single-flights already
cover one process). :class:`RedisCoordinator` shares all three between processes (uvicorn or gunicorn
workers, agent hosts) through a Redis server; it needs the ``[redis]`` extra and imports redis-py
only when it is built.

Losing the coordinator raises :class:`~og_inference_async.CoordinatorError` before anything is
signed: it never leads to a second send.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from ._chain._nonce import NonceAllocator, get_nonce_allocator

if TYPE_CHECKING:
    from ._redis import RedisCoordinator
    from .inference.auth import ApiKeyRegistry

__all__ = ["Coordinator", "InProcessCoordinator", "RedisCoordinator", "SharedBudgetStore"]


class SharedBudgetStore(Protocol):
    """Where shared budgets live: each call is one atomic step on the store.

    ``levels`` are ``(name, limit)`` pairs, the innermost budget first (``limit`` ``None``: no limit).
    """

    async def reserve(
        self, levels: list[tuple[str, int | None]], hold_id: str, amount: int, ttl: float
    ) -> tuple[int, int] | None:
        """Hold ``amount`` in every level, or nothing: ``None`` when held, else ``(level index, remaining)``
        of the first level that has less than ``amount`` left. The hold expires after ``ttl`` seconds."""

    async def settle(self, names: list[str], hold_id: str, fee: int) -> None:
        """Replace the hold ``hold_id`` by ``fee`` spent in every level (``fee`` 0: a release)."""

    async def totals(self, name: str) -> tuple[int, int]:
        """``(spent, reserved)`` of one shared budget in wei (expired holds not counted)."""


class Coordinator(abc.ABC):
    """What every broker signing for one wallet must agree on. Pass one as ``AsyncBroker(coordinator=)``."""

    @abc.abstractmethod
    def nonce_allocator(self, chain_id: int, address: str) -> NonceAllocator:
        """The nonce allocator of ``address`` on ``chain_id`` (one object per pair and coordinator)."""

    @abc.abstractmethod
    def lease(
        self, name: str, *, ttl: float = 60.0, wait: float = 120.0
    ) -> AbstractAsyncContextManager[None]:
        """Hold ``name`` exclusively: ``async with coordinator.lease("topup:0xabc"): ...``.

        Args:
            name: what is held (the same string in every process).
            ttl: seconds after which a holder that never released it (it crashed) loses it.
            wait: seconds to wait for the current holder before raising ``CoordinatorError``.
        """

    def api_key_registry(self) -> ApiKeyRegistry | None:
        """The registry of issued API key ids this coordinator shares, if any (default: none).

        The broker uses it when it was not given ``api_key_registry=``.
        """
        return None

    def budget_store(self) -> SharedBudgetStore | None:
        """The store of shared budgets, if this coordinator shares them across processes (default: none)."""
        return None

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise :class:`~og_inference_async.CoordinatorError` when the coordinator cannot be reached."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections."""


class InProcessCoordinator(Coordinator):
    """The default: one process, its process-wide nonce allocators, leases always granted."""

    def __repr__(self) -> str:
        return "InProcessCoordinator()"

    def nonce_allocator(self, chain_id: int, address: str) -> NonceAllocator:
        """The process-wide allocator of ``(chain_id, address)``."""
        return get_nonce_allocator(chain_id, address)

    def lease(
        self, name: str, *, ttl: float = 60.0, wait: float = 120.0
    ) -> AbstractAsyncContextManager[None]:
        """Granted at once: within one process the SDK's single-flights already serialise the work."""
        return _granted()

    async def check(self) -> None:
        """Always reachable."""

    async def aclose(self) -> None:
        """Nothing to release."""


@asynccontextmanager
async def _granted() -> AsyncIterator[None]:
    yield


def __getattr__(name: str) -> object:
    if name == "RedisCoordinator":  # imported on use only: redis-py is an optional extra
        from ._redis import RedisCoordinator

        return RedisCoordinator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
