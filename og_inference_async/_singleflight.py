"""Single-flight: concurrent callers for the same key share one in-flight operation.

The leader runs the operation; waiters get its result or the same exception. If the leader is
cancelled, waiters wake up and one of them becomes the new leader, so nobody waits forever.
Nothing is cached after the flight lands: caching is the caller's business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import anyio

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Flight(Generic[V]):
    __slots__ = ("done", "error", "result", "abandoned")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: V | None = None
        self.error: BaseException | None = None
        self.abandoned = False


class SingleFlight(Generic[K, V]):
    """Run at most one ``fn`` per key at a time; share its outcome with concurrent callers."""

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}
        self.leads = 0
        self.joins = 0

    def in_flight(self, key: K) -> bool:
        """Whether an operation for ``key`` is running."""
        return key in self._flights

    async def run(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        """Run ``fn`` as the leader for ``key``, or wait for the running leader's outcome.

        Raises:
            BaseException: whatever the leader's ``fn`` raised (cancellation of the leader is not
                propagated to waiters: one of them retries).
        """
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, fn)
            self.joins += 1
            await flight.done.wait()
            if flight.abandoned:
                continue
            if flight.error is not None:
                raise flight.error
            return flight.result  # type: ignore[return-value]

    async def _lead(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        flight: _Flight[V] = _Flight()
        self._flights[key] = flight
        self.leads += 1
        try:
            result = await fn()
        except anyio.get_cancelled_exc_class():
            flight.abandoned = True
            raise
        except BaseException as exc:
            flight.error = exc
            raise
        else:
            flight.result = result
            return result
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()
