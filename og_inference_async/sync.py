"""``og_inference_async.sync``: the broker for code without ``await`` (scripts, notebooks, threads).

The openai SDK's ``OpenAI`` / ``AsyncOpenAI`` idea: :class:`Broker` wraps an
:class:`~og_inference_async.AsyncBroker` and runs it in ONE event loop on a background thread
(anyio's blocking portal), so every call blocks until its result is there::

    from og_inference_async.sync import Broker

    with Broker(PRIVATE_KEY, network="testnet") as broker:
        services = broker.inference.list_service()
        broker.ledger.add_ledger("3")
        print(broker.inference.chat(provider, [{"role": "user", "content": "Hi"}]).content)

The blocking methods are not written out one by one: ``broker.ledger``, ``broker.inference`` and
``broker.transactions`` are views of the async namespaces whose methods are looked up on them and
run through the portal, so they have the same names, arguments, results and errors. Async
iterators (``iter_services()``, ``chat_stream(...)``) become plain iterators; a stream can also be
used as ``with broker.inference.chat_stream(...) as stream: for chunk in stream: ...``.

Calls may come from any thread, also from one whose own event loop is running (Jupyter): the
work runs in the broker's loop, never in the caller's. Calling it from inside the broker's own
loop (a callback of the async broker) is refused with ``RuntimeError``: use the async API there.
The first call opens the broker (the chain-id check); ``close()`` or leaving ``with`` closes it
and stops the thread. A broker left open does not keep the process alive (the thread is a
daemon).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._broker import AsyncBroker
from ._exceptions import BrokerStateError
from .inference import InferenceAPI
from .inference.auth import AuthManager
from .ledger import LedgerAPI
from .transactions import TransactionsAPI
from .types.inference import InferenceResult, VerificationResult

__all__ = ["BlockingView", "Broker", "SyncIterator", "create_broker"]

T = TypeVar("T")

#: The async namespaces whose views block (their attributes that are these are views too).
_NAMESPACES = (InferenceAPI, LedgerAPI, TransactionsAPI, AuthManager)


class Broker:
    """A blocking :class:`~og_inference_async.AsyncBroker`; takes the same arguments.

    Building it does no I/O; the first call (or ``with`` / :meth:`open`) starts the background
    loop and opens the broker. ``broker.ledger``, ``broker.inference`` and ``broker.transactions``
    are blocking views of the async namespaces; other attributes of the async broker
    (``address``, ``network``, ``get_wallet_balance()``, ...) are reached the same way.

    Args:
        *args: :class:`~og_inference_async.AsyncBroker`'s positional arguments (``private_key``).
        **kwargs: its keyword arguments (``network``, ``rpc_url``, ``retry``, ...).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._async = AsyncBroker(*args, **kwargs)
        self._lock = threading.Lock()
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._broker_cm: AbstractContextManager[AsyncBroker] | None = None
        self._portal: BlockingPortal | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<sync.Broker {self._async!r}>"

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def async_broker(self) -> AsyncBroker:
        """The wrapped :class:`~og_inference_async.AsyncBroker` (use it only inside the broker's loop)."""
        return self._async

    def open(self) -> Broker:
        """Start the background loop and open the broker (once; later calls do nothing).

        Raises:
            BrokerStateError: the broker was closed.
            OGError: opening failed (e.g. ``NetworkMismatchError``); nothing is left running.
        """
        self._running()
        return self

    def close(self) -> None:
        """Close the broker and stop its loop and thread. Idempotent; a closed broker stays closed."""
        with self._lock:
            self._closed = True
            broker_cm, self._broker_cm = self._broker_cm, None
            portal_cm, self._portal_cm = self._portal_cm, None
            self._portal = None
        try:
            if broker_cm is not None:
                broker_cm.__exit__(None, None, None)
        finally:
            if portal_cm is not None:
                portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Broker:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _running(self) -> BlockingPortal:
        """The portal of the open broker, starting the loop and opening the broker on first use."""
        portal = self._portal
        if portal is not None:
            return portal
        with self._lock:
            if self._closed:
                raise BrokerStateError("the broker is closed; create a new one")
            if self._portal is None:
                portal_cm = start_blocking_portal(name="og-inference-sync")
                portal = portal_cm.__enter__()
                try:
                    broker_cm = portal.wrap_async_context_manager(self._async)
                    broker_cm.__enter__()
                except BaseException as exc:
                    portal_cm.__exit__(type(exc), exc, exc.__traceback__)
                    raise
                self._portal_cm, self._broker_cm, self._portal = portal_cm, broker_cm, portal
            return self._portal

    # -- the namespaces and the rest of the async broker -----------------------------------------

    @functools.cached_property
    def ledger(self) -> BlockingView:
        """``broker.ledger`` with blocking methods (see ``LedgerAPI``)."""
        return BlockingView(self, lambda: self._async.ledger)

    @functools.cached_property
    def inference(self) -> BlockingView:
        """``broker.inference`` with blocking methods (see ``InferenceAPI``)."""
        return BlockingView(self, lambda: self._async.inference)

    @functools.cached_property
    def transactions(self) -> BlockingView:
        """``broker.transactions`` with blocking methods (see ``TransactionsAPI``)."""
        return BlockingView(self, lambda: self._async.transactions)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _blocking(self, getattr(self._async, name))

    def call(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``function(*args, **kwargs)`` in the broker's loop and return its (awaited) result.

        For what the views do not reach, e.g. ``broker.call(result.verification.wait)``.
        """
        return self._running().call(functools.partial(function, *args, **kwargs))

    def wait_verified(self, result: InferenceResult) -> VerificationResult:
        """Block until ``result``'s verification is settled and return it (``await result.verification``)."""
        outcome: VerificationResult = self.call(result.verification.wait)
        return outcome


def _blocking(broker: Broker, value: Any) -> Any:
    """``value`` as the sync world sees it: callables block, namespaces are views, iterators sync."""
    if isinstance(value, _NAMESPACES):
        return BlockingView(broker, lambda: value)
    if callable(value) and not isinstance(value, type):
        return _blocking_call(broker, value)
    if hasattr(value, "__aiter__"):
        return SyncIterator(broker, value)
    return value


def _blocking_call(broker: Broker, function: Callable[..., Any]) -> Callable[..., Any]:
    """A blocking version of ``function`` (async or not): run in the broker's loop, result adapted."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        result = broker._running().call(functools.partial(function, *args, **kwargs))
        return _blocking(broker, result) if hasattr(result, "__aiter__") else result

    return call


class BlockingView:
    """A blocking view of one async namespace (``broker.ledger``, ``broker.inference``, ...).

    Looking up a method gives a blocking function with the same name, arguments and docstring;
    other attributes are read (and set) in the broker's loop.

    Args:
        broker: the sync broker.
        target: returns the async namespace (the broker is open when it is called).
    """

    def __init__(self, broker: Broker, target: Callable[[], Any]) -> None:
        object.__setattr__(self, "_broker", broker)
        object.__setattr__(self, "_target", target)

    def _namespace(self) -> Any:
        return self._broker._running().call(self._target)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        value = self._broker._running().call(lambda: getattr(self._target(), name))
        return _blocking(self._broker, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            raise AttributeError(f"cannot set {name!r} on a blocking view")
        self._broker._running().call(lambda: setattr(self._target(), name, value))

    def __dir__(self) -> list[str]:
        return sorted(n for n in dir(self._namespace()) if not n.startswith("_"))

    def __repr__(self) -> str:
        return f"<blocking view of {self._target()!r}>"


class SyncIterator(Iterator[Any]):
    """A plain iterator over an async one (``iter_services()``, a chat stream), run in the broker's loop.

    An async context manager (a chat stream) is entered on the first ``next`` when ``with`` did
    not enter it, and left when the iteration ends, fails or :meth:`close` is called. Other
    attributes are those of the async object (``stream.result``, ``stream.content``, ...), with
    blocking methods (``stream.final()``).

    Args:
        broker: the sync broker.
        source: the async iterator.
    """

    def __init__(self, broker: Broker, source: Any) -> None:
        self._broker = broker
        self._source = source
        self._context: AbstractContextManager[Any] | None = None
        self._finished = False

    def __enter__(self) -> SyncIterator:
        if hasattr(self._source, "__aenter__") and self._context is None:
            context = self._broker._running().wrap_async_context_manager(self._source)
            context.__enter__()
            self._context = context
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._leave(exc_type, exc, tb)

    def _leave(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        self._finished = True
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(exc_type, exc, tb)
        elif hasattr(self._source, "aclose") and not hasattr(self._source, "__aenter__"):
            self._broker._running().call(self._source.aclose)

    def __iter__(self) -> SyncIterator:
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        self.__enter__()
        try:
            return self._broker._running().call(self._source.__anext__)
        except StopAsyncIteration:
            self._leave()
            raise StopIteration from None
        except BaseException as exc:
            self._leave(type(exc), exc, exc.__traceback__)
            raise

    def close(self) -> None:
        """Stop early: leave the stream (or close the async generator) now."""
        if not self._finished:
            self._leave()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _blocking(self._broker, getattr(self._source, name))


def create_broker(*args: Any, **kwargs: Any) -> Broker:
    """An open :class:`Broker` (0g-inference-sdk's ``create_broker``); ``close()`` it when done.

    Args:
        *args: :class:`~og_inference_async.AsyncBroker`'s positional arguments (``private_key``).
        **kwargs: its keyword arguments (``network``, ``rpc_url``, ...).
    """
    return Broker(*args, **kwargs).open()
