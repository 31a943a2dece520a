"""Single-flight: concurrent callers for the same key share one in-flight operation.

:class:`Flight` is the one implementation of a shared operation: the leader runs it and records
its outcome; waiters get the leader's result or the same exception. If the leader is
cancelled, its waiters wake up and one of them becomes the new leader, so nobody waits forever;
a flight marked :attr:`~Flight.stale` (its result must not be used) sends its waiters back to
start over too. :class:`SingleFlight` keys flights by an argument; the session-token cache keeps
one flight per cache entry. Nothing is cached after a flight lands: caching is the caller's
business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio

__all__ = ["Flight", "SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Flight(Generic[V]):
    """One operation in progress: the leader :meth:`run`\\ s it, waiters :meth:`wait` for it.

    The owner sets :attr:`done` once its own bookkeeping is over (after :meth:`run` returned or
    raised), which wakes the waiters.

    Attributes:
        abandoned: the leader stopped without an outcome (cancelled): a waiter must take over.
        stale: the owner decided the outcome must not be used: its waiters start over.
    """

    __slots__ = ("abandoned", "done", "error", "result", "stale")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: V | None = None
        self.error: Exception | None = None
        self.abandoned = False
        self.stale = False

    async def run(self, fn: Callable[[], Awaitable[V]]) -> None:
        """Run ``fn`` as the leader and record its result or its exception (not raised here).

        Raises:
            BaseException: a cancellation (or another non-``Exception``), after marking the
                flight abandoned.
        """
        try:
            self.result = await fn()
        except Exception as exc:
            self.error = exc
        except BaseException:
            self.abandoned = True
            raise

    def outcome(self) -> V:
        """The leader's result.

        Raises:
            Exception: the leader's exception.
        """
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]

    async def wait(self) -> tuple[bool, V | None]:
        """Wait for the leader: ``(True, result)``, or ``(False, None)`` when the caller must start over.

        Raises:
            Exception: the leader's exception.
        """
        await self.done.wait()
        if self.abandoned or self.stale:
            return False, None
        return True, self.outcome()


class SingleFlight(Generic[K, V]):
    """Run at most one ``fn`` per key at a time; share its outcome with concurrent callers."""

    def __init__(self) -> None:
        self._flights: dict[K, Flight[V]] = {}
        self.leads = 0
        self.joins = 0

    def in_flight(self, key: K) -> bool:
        """Whether an operation for ``key`` is running."""
        return key in self._flights

    async def run(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        """Run ``fn`` as the leader for ``key``, or wait for the running leader's outcome.

        Raises:
            Exception: whatever the leader's ``fn`` raised (cancellation of the leader is not
                propagated to waiters: one of them retries).
        """
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, fn)
            self.joins += 1
            landed, result = await flight.wait()
            if landed:
                return result  # type: ignore[return-value]

    async def _lead(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        flight: Flight[V] = Flight()
        self._flights[key] = flight
        self.leads += 1
        try:
            await flight.run(fn)
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()
        return flight.outcome()
