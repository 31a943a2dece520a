"""The sync facade's mechanics without a chain: generated views, failed opens, the closed state."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import pytest
from anyio.from_thread import start_blocking_portal

from og_inference_async import BrokerStateError, RetryPolicy, RPCError
from og_inference_async.sync import BlockingView, Broker


def _dead_broker() -> Broker:
    return Broker(network="hardhat", rpc_url="http://127.0.0.1:9", retry=RetryPolicy.no_wait(attempts=2))


def _portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "og-inference-sync"]


def test_building_starts_nothing() -> None:
    """Building a sync broker starts no thread and does no I/O; reads of the async broker work."""
    broker = _dead_broker()
    assert _portal_threads() == []
    assert broker.state == "unopened"
    assert broker.async_broker.network.chain_id == broker.network.chain_id
    broker.close()


def test_a_failed_open_leaves_nothing_running() -> None:
    """An open that fails raises the typed error and stops the background loop."""
    broker = _dead_broker()
    with pytest.raises(RPCError):
        broker.open()
    assert _portal_threads() == []
    broker.close()


def test_a_closed_broker_stays_closed() -> None:
    """After close() every call raises BrokerStateError; close() is idempotent."""
    broker = _dead_broker()
    broker.close()
    broker.close()
    with pytest.raises(BrokerStateError):
        broker.ledger.get_ledger()
    with pytest.raises(BrokerStateError):
        broker.open()


class _Namespace:
    """An async namespace stand-in."""

    def __init__(self) -> None:
        self.policy = "background"

    async def add(self, a: int, b: int = 0) -> int:
        """Add two numbers in the loop."""
        return a + b

    async def count(self, n: int) -> AsyncIterator[int]:
        """Count to n."""
        for i in range(n):
            yield i

    def where(self) -> str:
        """The thread it runs in."""
        return threading.current_thread().name


def test_views_are_generated_from_the_async_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A view's methods keep the async names and docstrings, block, run in the loop, and iterate."""
    broker = _dead_broker()
    with start_blocking_portal(name="og-inference-test") as portal:
        monkeypatch.setattr(Broker, "_running", lambda self: portal)
        view = BlockingView(broker, _Namespace)
        assert view.add.__name__ == "add" and view.add.__doc__ == "Add two numbers in the loop."
        assert view.add(2, b=3) == 5
        assert list(view.count(3)) == [0, 1, 2]
        assert view.where() == "og-inference-test"
        assert view.policy == "background"
        assert "add" in dir(view) and "count" in dir(view)
    monkeypatch.undo()
    broker.close()
