"""One nonce allocator per (chain, account) for the whole process, and the record of every
transaction signed with it.

The counter is guarded by a thread lock that is never held across an await, so one allocator
serves any number of coroutines, tasks, brokers and event loops, and a cancellation can never
leave it held. It is seeded from the node's ``pending`` transaction count (single-flight per
event loop), never below a nonce this process still has in flight.

Every signed transaction is tracked (:class:`Tracked`) from signing until its outcome is final:
the signed bytes are kept so that the SAME transaction can be handed to the node again, never a
different one for the same intent.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio.lowlevel

from .._singleflight import SingleFlight
from ..types import TxReceipt, TxRecord, TxState

log = logging.getLogger(__name__)

__all__ = [
    "NonceAllocator",
    "SharedNonceAllocator",
    "SharedNonceCounter",
    "Tracked",
    "get_nonce_allocator",
    "reset_nonce_allocators",
]

#: How many finished records an allocator keeps for ``broker.transactions.recent()``.
HISTORY = 1000


@dataclass(eq=False)
class Tracked:
    """A transaction this process signed, with its exact bytes (never shown in ``repr``).

    Attributes:
        tx_hash: keccak of ``raw``.
        nonce: its nonce.
        raw: the signed bytes.
        context: a label (``"LedgerManager.depositFund"``).
        to: recipient.
        value: wei sent.
        fees: the fee fields it was signed with (``gasPrice`` or the EIP-1559 pair).
        state: see :class:`~og_inference_async.types.TxState`.
        maybe_sent: the bytes may have reached the node (a send was attempted).
        call: the call as a JSON-RPC object (replayed on a revert to learn its reason).
    """

    tx_hash: str
    nonce: int
    raw: bytes = field(repr=False)
    context: str
    to: str
    value: int
    fees: dict[str, int]
    call: dict[str, Any] = field(repr=False, default_factory=dict)
    state: TxState = TxState.SIGNED
    maybe_sent: bool = False
    created_at: float = field(default_factory=time.time)
    replacement_hash: str | None = None
    receipt: TxReceipt | None = None
    caller_gave_up: bool = False
    owned: bool = True  # a coroutine is driving it (the caller, or a background resolver)
    endpoint: int | None = None  # the RPC endpoint its sends are pinned to (with several endpoints)

    @property
    def raw_hex(self) -> str:
        """The signed bytes as ``0x`` hex, as ``eth_sendRawTransaction`` takes them."""
        return "0x" + self.raw.hex()

    def snapshot(self) -> TxRecord:
        """The public, immutable view."""
        return TxRecord(
            tx_hash=self.tx_hash,
            nonce=self.nonce,
            context=self.context,
            to=self.to,
            value=self.value,
            state=self.state,
            created_at=self.created_at,
            replacement_hash=self.replacement_hash,
            receipt=self.receipt,
            caller_gave_up=self.caller_gave_up,
        )


class NonceAllocator:
    """Hands out consecutive nonces for one account on one chain to every coroutine of the process.

    Args:
        chain_id: the chain.
        address: the account.
    """

    #: whether nonces come from a counter other processes share (given-back ones must be flushed to it)
    shared = False

    def __init__(self, chain_id: int, address: str) -> None:
        self.chain_id = chain_id
        self.address = address
        self._next: int | None = None
        self._returned: set[int] = set()
        self._lock = threading.Lock()
        self._seeds: dict[object, SingleFlight[str, int]] = {}
        self._records: dict[str, Tracked] = {}
        self._history: collections.deque[Tracked] = collections.deque(maxlen=HISTORY)
        self.allocated = 0

    def __repr__(self) -> str:
        return f"NonceAllocator(chain_id={self.chain_id}, address={self.address}, next={self._next})"

    # -- allocation ------------------------------------------------------------------------------

    def try_take(self) -> int | None:
        """The next nonce, or ``None`` when the counter must be seeded first (no await: never leaks)."""
        with self._lock:
            if self._next is None:
                return None
            if self._returned:
                nonce = min(self._returned)
                self._returned.discard(nonce)
            else:
                nonce = self._next
                self._next += 1
            self.allocated += 1
            return nonce

    async def seed(self, read_pending: Callable[[], Awaitable[int]]) -> None:
        """Seed the counter from the node (single-flight per event loop) unless it is seeded."""
        if self._next is not None:
            return
        flights = self._seeds.setdefault(anyio.lowlevel.current_token(), SingleFlight())
        count = await flights.run("seed", read_pending)
        with self._lock:
            if self._next is None:
                inflight = [r.nonce for r in self._records.values() if not r.state.is_final]
                self._next = max([count, *(n + 1 for n in inflight)])
                self._returned.clear()
                log.debug("nonce counter seeded at %d (node pending count %d)", self._next, count)

    async def allocate(self, read_pending: Callable[[], Awaitable[int]]) -> int:
        """Reserve the next nonce, seeding from the node when needed."""
        while True:
            nonce = self.try_take()
            if nonce is not None:
                return nonce
            await self.seed(read_pending)

    def release(self, nonce: int) -> None:
        """Give back a nonce whose transaction the node definitely does not hold."""
        with self._lock:
            if self._next is None:
                return
            if nonce == self._next - 1:
                self._next -= 1
                while self._next - 1 in self._returned:
                    self._next -= 1
                    self._returned.discard(self._next)
            elif nonce < self._next:
                self._returned.add(nonce)

    async def claim_gaps(self, nonce: int, floor: int) -> list[int]:
        """Nonces in ``[floor, nonce)`` nobody will send any more (to be filled); here the given-back ones."""
        with self._lock:
            taken = sorted(n for n in self._returned if floor <= n < nonce)
            self._returned.difference_update(taken)
            self.allocated += len(taken)
            return taken

    async def flush(self) -> None:
        """Hand given-back nonces to where other processes can use them (nothing to do in process)."""

    def resync(self) -> None:
        """Forget the counter; the next allocation reseeds from the node."""
        log.debug("nonce counter forgotten; the next nonce is read from the node again")
        with self._lock:
            self._next = None
            self._returned.clear()

    # -- records ---------------------------------------------------------------------------------

    def track(self, record: Tracked) -> None:
        """Start tracking a freshly signed transaction."""
        with self._lock:
            self._records[record.tx_hash] = record
            self._history.append(record)

    def finish(self, record: Tracked, state: TxState) -> None:
        """Record a final (or ``unknown``) state; final records leave the in-flight set."""
        with self._lock:
            record.state = state
            if state.is_final:
                self._records.pop(record.tx_hash, None)

    def get(self, tx_hash: str) -> Tracked | None:
        """The record of ``tx_hash`` (in flight or in the recent history)."""
        key = tx_hash.lower()
        with self._lock:
            found = self._records.get(key)
            if found is not None:
                return found
            return next((r for r in reversed(self._history) if r.tx_hash == key), None)

    def open_records(self) -> list[Tracked]:
        """Records whose outcome is not final yet, by nonce."""
        with self._lock:
            return sorted(self._records.values(), key=lambda r: r.nonce)

    def by_nonce(self, nonce: int) -> list[Tracked]:
        """Open records at ``nonce`` (the original and any cancelling replacement)."""
        with self._lock:
            return [r for r in self._records.values() if r.nonce == nonce]

    def recent(self, limit: int) -> list[Tracked]:
        """The newest ``limit`` records, newest first."""
        with self._lock:
            return list(reversed(self._history))[:limit]


class SharedNonceCounter(Protocol):
    """The counter of an account's next nonce kept outside the process (one per chain and account).

    Every operation is atomic where the counter lives. Errors reaching it raise
    :class:`~og_inference_async.CoordinatorError`, always before anything is signed.
    """

    async def take(self, read_pending: Callable[[], Awaitable[int]]) -> tuple[int, int]:
        """``(nonce, generation)``: the lowest given-back nonce, else the next one (seeding the
        counter from the node when it has none)."""
        ...

    async def give_back(self, nonces: list[int]) -> None:
        """Make nonces this process took and will not send available to every process again."""
        ...

    async def reseed(self, pending: int) -> int:
        """Raise the counter to at least ``pending`` and start a new generation (returned)."""
        ...

    async def claim_expired(self, nonce: int, floor: int) -> list[int]:
        """Nonces in ``[floor, nonce)`` nobody will send: given back, or taken by a worker whose
        lease on them ran out (it crashed). Each is claimed by one caller only."""
        ...


class SharedNonceAllocator(NonceAllocator):
    """A :class:`NonceAllocator` whose counter is shared by every process using one wallet.

    Every nonce comes from ``counter`` (one atomic step there, nothing local held across the
    await). A nonce given back (its transaction definitely not held by the node) goes back to
    the counter, never stays here: the next take by any process uses it first, or a process
    whose transaction waits behind it fills it. So no process keeps a gap to itself, and no
    nonce is handed to two processes.

    Args:
        chain_id: the chain.
        address: the account.
        counter: the shared counter.
    """

    shared = True

    def __init__(self, chain_id: int, address: str, counter: SharedNonceCounter) -> None:
        super().__init__(chain_id, address)
        self._counter = counter
        self._stale = False
        self._outbox: list[int] = []
        self.generation: int | None = None

    def __repr__(self) -> str:
        return f"SharedNonceAllocator(chain_id={self.chain_id}, address={self.address})"

    def try_take(self) -> int | None:
        """Always ``None``: every nonce comes from the shared counter."""
        return None

    async def seed(self, read_pending: Callable[[], Awaitable[int]]) -> None:
        """Nothing to seed locally: the shared counter seeds itself on first use."""

    async def allocate(self, read_pending: Callable[[], Awaitable[int]]) -> int:
        """The shared counter's lowest given-back nonce, else its next one (reseeded first after a
        resync).

        Raises:
            CoordinatorError: the counter cannot be reached; nothing was signed.
        """
        await self.flush()
        with self._lock:
            stale, self._stale = self._stale, False
        if stale:
            try:
                generation = await self._counter.reseed(await read_pending())
            except BaseException:
                with self._lock:
                    self._stale = True
                raise
            log.debug("shared nonce counter reseeded from the node; generation %d", generation)
            self.generation = generation
        nonce, self.generation = await self._counter.take(read_pending)
        with self._lock:
            self.allocated += 1
        return nonce

    def release(self, nonce: int) -> None:
        """Queue ``nonce`` to go back to the shared counter (on the next :meth:`flush`)."""
        with self._lock:
            self._outbox.append(nonce)

    async def flush(self) -> None:
        """Give the queued nonces back to the shared counter (best effort, finished even when cancelled).

        One attempt only: a nonce whose give-back failed stays leased to this process until the
        lease runs out, then a waiting process claims it. Trying again could hand out a nonce that
        was given back and taken by another process meanwhile.
        """
        with self._lock:
            nonces, self._outbox = self._outbox, []
        if not nonces:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._counter.give_back(nonces)
            except Exception as exc:  # the counter is unreachable: the leases free them later
                log.warning(
                    "could not give nonces %s back to the shared counter (%s); their leases free them",
                    nonces,
                    type(exc).__name__,
                )

    async def claim_gaps(self, nonce: int, floor: int) -> list[int]:
        """Nonces in ``[floor, nonce)`` nobody will send (given back, or their lease ran out); best effort."""
        await self.flush()
        try:
            claimed = await self._counter.claim_expired(nonce, floor)
        except Exception:  # the counter is unreachable: nothing to claim now
            return []
        with self._lock:
            self.allocated += len(claimed)
        return sorted(claimed)

    def resync(self) -> None:
        """Reseed the shared counter from the node (``max(pending, counter)``) before the next nonce."""
        with self._lock:
            self._stale = True


_ALLOCATORS: dict[tuple[int, str], NonceAllocator] = {}
_ALLOCATORS_LOCK = threading.Lock()


def get_nonce_allocator(chain_id: int, address: str) -> NonceAllocator:
    """The process-wide allocator for ``(chain_id, address)``."""
    key = (chain_id, address.lower())
    with _ALLOCATORS_LOCK:
        alloc = _ALLOCATORS.get(key)
        if alloc is None:
            alloc = NonceAllocator(chain_id=chain_id, address=address)
            _ALLOCATORS[key] = alloc
        return alloc


def reset_nonce_allocators(chain_id: int | None = None) -> None:
    """Make every allocator (of ``chain_id``, or all) reseed from the node on next use.

    Call it after rewinding a chain (``evm_revert``): the counters would otherwise run ahead of
    the node and transactions would queue behind a nonce gap. The devnet's ``revert`` calls it.
    Records of transactions the rewind erased are dropped too.
    """
    with _ALLOCATORS_LOCK:
        allocators = [a for (cid, _), a in _ALLOCATORS.items() if chain_id is None or cid == chain_id]
    for alloc in allocators:
        with alloc._lock:
            alloc._records.clear()
        alloc.resync()
