"""Spend budgets: worst-case reservations before a request is sent, settled to the real fee after.

A :class:`Budget` is plain bookkeeping in wei, with no I/O: ``reserve`` checks the request's
worst-case fee against what is left of the budget AND of every enclosing budget, then holds it
in all of them, in one synchronous step (no ``await`` between the check and the hold), so any
number of concurrent tasks on one event loop can never overspend a budget. The request then
settles its :class:`Hold` to the fee its usage reports (the difference goes back), releases it
when the provider refused before billing, or keeps all of it when the outcome is unknown (the
provider may have billed up to the reserved amount).

``async with broker.budget(limit)`` makes the budget *current* for the requests made inside the
block (a context variable, so tasks started inside inherit it); a ``budget=`` argument of a
request method overrides it. A budget created while another of the same broker is current is
nested in it: its spending counts against both.

A *shared* budget (``broker.budget(limit, shared="name")`` on a broker whose coordinator shares
budgets, e.g. :class:`~og_inference_async.coordination.RedisCoordinator`) is charged by every
process that names it: its reservation is one atomic step on the coordinator's store, over it and
every enclosing shared budget, after the in-process check. Its holds expire after ``hold_ttl``
seconds, so a process that crashed mid-request frees what it held.
"""

from __future__ import annotations

import logging
import secrets
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import (
    BudgetExceededError,
    ConfigError,
    CoordinatorError,
    InsufficientBalanceError,
    NotAcknowledgedError,
    ProviderError,
    ServiceNotFoundError,
    TransportFailure,
)
from .._units import Amount, format_og, to_wei
from .._validate import check_int, check_optional_str, check_seconds

if TYPE_CHECKING:
    from ..coordination import SharedBudgetStore

__all__ = ["DEFAULT_HOLD_TTL", "DEFAULT_MAX_TOKENS", "Budget", "BudgetBook", "Hold", "may_have_billed"]

log = logging.getLogger(__name__)

#: The output cap the SDK gives a chat made under a budget without ``max_tokens`` (lowered to
#: what the budget can still pay for).
DEFAULT_MAX_TOKENS = 1024

#: Seconds a shared budget's hold lasts if its process never settles it (it crashed).
DEFAULT_HOLD_TTL = 600.0

_current: ContextVar[Budget | None] = ContextVar("og_inference_budget", default=None)


def may_have_billed(exc: BaseException) -> bool:
    """Whether the provider may have billed a request that ended with ``exc``.

    Refusals (an error status answered by the provider), bad input, a missing sub-account, and
    transport failures that provably never sent the request were not billed; anything else
    (a connection lost after sending, a cancellation, a malformed 200 answer) may have been.
    """
    if isinstance(exc, TransportFailure):
        return not exc.not_sent
    if isinstance(exc, ProviderError):
        return exc.status_code is None or exc.status_code < 400
    return not isinstance(
        exc,
        (
            ConfigError,
            BudgetExceededError,
            InsufficientBalanceError,
            NotAcknowledgedError,
            ServiceNotFoundError,
        ),
    )


class Budget:
    """A spend limit in wei for the requests made under it (get one with ``broker.budget(...)``).

    Use it as an async context manager (``async with broker.budget(og("5")) as budget:``) to
    make it current for the requests made inside, or pass it as ``budget=`` to a request method.
    Before a request is sent its worst-case fee is reserved here and in every enclosing budget;
    a request that could exceed what is left raises :class:`BudgetExceededError` and is not
    sent. Every figure includes the nested budgets' spending.

    Args:
        limit: the most this budget may spend (wei, or a decimal string of OG such as ``"2"``);
            ``None`` for no limit (a budget that only counts, e.g. per tag).
        tag: a name its spending is totalled under in every enclosing budget (:meth:`spent_by_tag`).
        parent: the enclosing budget (its limit applies too).
        default_max_tokens: the output cap given to a chat that names none (lowered to what
            the budget can still pay for).
        owner: the broker's budget book (a budget applies only to its own broker's requests).
        shared: the name every process charging this budget gives (needs ``store``); the
            attributes ``spent`` / ``reserved`` count this process's requests, :meth:`totals`
            every process's.
        store: the coordinator's store of shared budgets.
        hold_ttl: seconds a shared hold lasts when its process never settles it.

    Raises:
        InvalidAmountError: a bad ``limit``.
        ConfigError: a bad ``tag``, ``shared``, ``hold_ttl`` or ``default_max_tokens``, a parent of
            another broker, or ``shared`` without a store.
    """

    def __init__(
        self,
        limit: Amount | None,
        *,
        tag: str | None = None,
        parent: Budget | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        owner: BudgetBook | None = None,
        shared: str | None = None,
        store: SharedBudgetStore | None = None,
        hold_ttl: float = DEFAULT_HOLD_TTL,
    ) -> None:
        check_optional_str("tag", tag)
        check_optional_str("shared", shared)
        self.hold_ttl = check_seconds("hold_ttl", hold_ttl)
        if shared is not None and (not shared or store is None):
            raise ConfigError(
                "a shared budget needs a non-empty name and a coordinator that shares budgets",
                hint="AsyncBroker(..., coordinator=RedisCoordinator(url))",
            )
        self.shared = shared
        self._store = store if shared is not None else None
        self.default_max_tokens = check_int("default_max_tokens", default_max_tokens, minimum=1)
        if parent is not None and owner is not None and parent.owner is not owner:
            raise ConfigError("a budget can only be nested in a budget of the same broker")
        self.limit: int | None = None if limit is None else to_wei(limit)
        self.tag = tag
        self.parent = parent
        self.owner: BudgetBook | None = (
            owner if owner is not None else (parent.owner if parent is not None else None)
        )
        self.spent = 0
        self.reserved = 0
        self.requests = 0
        self.refusals = 0
        self._by_tag: dict[str, int] = {}
        self._tokens: list[Token[Budget | None]] = []

    def __repr__(self) -> str:
        limit = "unlimited" if self.limit is None else f"{format_og(self.limit)} OG"
        tag = f" tag={self.tag!r}" if self.tag else ""
        tag += f" shared={self.shared!r}" if self.shared else ""
        spent, reserved = format_og(self.spent), format_og(self.reserved)
        return f"<Budget{tag} limit={limit} spent={spent} OG reserved={reserved} OG>"

    @property
    def remaining(self) -> int | None:
        """``limit - spent - reserved`` in wei (``None``: no limit); enclosing budgets may allow less."""
        return None if self.limit is None else self.limit - self.spent - self.reserved

    def available(self) -> int | None:
        """What a new request may reserve: the smallest remainder along the chain (``None``: no limit)."""
        best: int | None = None
        for level in self._chain():
            left = level.remaining
            if left is not None and (best is None or left < best):
                best = left
        return best

    def spent_by_tag(self) -> dict[str, int]:
        """Wei spent under each tag, this budget's own and its nested budgets' (innermost tag wins)."""
        return dict(self._by_tag)

    def child(self, limit: Amount | None, *, tag: str | None = None) -> Budget:
        """A budget nested in this one (its spending counts against both)."""
        return Budget(limit, tag=tag, parent=self, default_max_tokens=self.default_max_tokens)

    async def totals(self) -> tuple[int, int]:
        """``(spent, reserved)`` in wei: of every process for a shared budget, else this one's.

        Raises:
            CoordinatorError: the shared budget's store cannot be reached.
        """
        if self._store is None or self.shared is None:
            return self.spent, self.reserved
        return await self._store.totals(self.shared)

    async def areserve(self, amount: int, *, what: str = "request") -> Hold:
        """:meth:`reserve`, then the same amount in the shared budgets of the chain (one atomic step).

        Raises:
            BudgetExceededError: this process's or the shared figures leave less than ``amount``.
            CoordinatorError: the shared store cannot be reached (nothing is held or sent).
        """
        hold = self.reserve(amount, what=what)
        shared = [level for level in hold._chain if level._store is not None]
        if not shared:
            return hold
        store = shared[0]._store
        assert store is not None
        hold_id = secrets.token_hex(12)
        try:
            with anyio.CancelScope(shield=True):  # a hold made in the store is always known here
                refused = await store.reserve(
                    [(level.shared or "", level.limit) for level in shared], hold_id, amount, self.hold_ttl
                )
        except BaseException:
            hold.release()
            raise
        if refused is not None:
            hold.release()
            index, left = refused
            level = shared[index]
            raise _refuse(hold._chain, level, what, amount, left, f"shared budget {level.shared!r}")
        hold._shared = (store, [level.shared or "" for level in shared], hold_id)
        return hold

    def _chain(self) -> list[Budget]:
        chain: list[Budget] = []
        level: Budget | None = self
        while level is not None:
            chain.append(level)
            level = level.parent
        return chain

    def _label(self) -> str | None:
        level: Budget | None = self
        while level is not None:
            if level.tag:
                return level.tag
            level = level.parent
        return None

    def reserve(self, amount: int, *, what: str = "request") -> Hold:
        """Hold ``amount`` wei here and in every enclosing budget, or refuse.

        The check and the hold are one synchronous step, so concurrent requests never overspend.

        Raises:
            BudgetExceededError: ``amount`` is more than what this budget or an enclosing one has left.
        """
        chain = self._chain()
        for level in chain:
            left = level.remaining
            if left is not None and amount > left:
                raise _refuse(chain, level, what, amount, left, f"budget {level.tag or 'untagged'}")
        for level in chain:
            level.reserved += amount
            level.requests += 1
        return Hold(chain, amount, self._label())

    # -- current budget --------------------------------------------------------------------------

    async def __aenter__(self) -> Budget:
        self._tokens.append(_current.set(self))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _current.reset(self._tokens.pop())


def _refuse(chain: list[Budget], level: Budget, what: str, amount: int, left: int, name: str) -> Exception:
    """Count a refusal along ``chain`` and build its error (``level`` is the budget that has too little)."""
    for counted in chain:
        counted.refusals += 1
    assert level.limit is not None  # only a budget with a limit refuses
    return BudgetExceededError(
        f"{what} could cost up to {amount} wei, more than the {left} wei left of {name} "
        f"(limit {level.limit} wei); nothing was sent",
        required=amount,
        remaining=left,
        limit=level.limit,
        tag=level.tag,
        hint="raise the budget, or lower max_tokens / n for this request",
    )


class Hold:
    """A reservation held in a chain of budgets until the request's fee is known.

    Exactly one of :meth:`settle`, :meth:`release` or :meth:`keep` takes effect; later calls
    do nothing.
    """

    __slots__ = ("_chain", "_shared", "_tag", "amount", "closed")

    def __init__(self, chain: list[Budget], amount: int, tag: str | None) -> None:
        self._chain = chain
        self._tag = tag
        self.amount = amount
        self.closed = False
        self._shared: tuple[SharedBudgetStore, list[str], str] | None = None

    def settle(self, fee: int) -> None:
        """Replace the reservation by the real ``fee`` (the difference becomes available again)."""
        if self.closed:
            return
        self.closed = True
        if fee > self.amount:
            log.warning("a request cost %d wei, more than its worst case of %d wei", fee, self.amount)
        for level in self._chain:
            level.reserved -= self.amount
            level.spent += fee
            if self._tag is not None:
                level._by_tag[self._tag] = level._by_tag.get(self._tag, 0) + fee

    def release(self) -> None:
        """Give the whole reservation back (the provider refused before billing)."""
        self.settle(0)

    def keep(self) -> None:
        """Count the whole reservation as spent (the provider may have billed it)."""
        self.settle(self.amount)

    def end(self, exc: BaseException) -> None:
        """Close after ``exc``: kept when the provider may have billed, else released."""
        if may_have_billed(exc):
            self.keep()
        else:
            self.release()

    async def asettle(self, fee: int) -> None:
        """:meth:`settle`, then the same in the shared budgets (shielded from cancellation).

        A shared store that cannot be reached is logged: the hold then expires there on its own.
        """
        if self.closed:
            return
        self.settle(fee)
        if self._shared is None:
            return
        store, names, hold_id = self._shared
        with anyio.CancelScope(shield=True):
            try:
                await store.settle(names, hold_id, fee)
            except CoordinatorError as exc:
                log.warning("a shared budget hold was not settled (%s); it expires on its own", exc)

    async def akeep(self) -> None:
        """:meth:`keep`, shared budgets included."""
        await self.asettle(self.amount)

    async def aend(self, exc: BaseException) -> None:
        """:meth:`end`, shared budgets included."""
        await self.asettle(self.amount if may_have_billed(exc) else 0)


class BudgetBook:
    """The budgets of one broker: creates them and finds the one a request runs under.

    Args:
        store: the coordinator's store of shared budgets (``None``: only in-process budgets).
    """

    def __init__(self, store: SharedBudgetStore | None = None) -> None:
        self._store = store

    def budget(self, limit: Amount | None, **options: Any) -> Budget:
        """A new budget, nested in the current budget of this broker when there is one.

        ``options`` are :class:`Budget`'s keyword arguments (``tag``, ``default_max_tokens``,
        ``shared``, ``hold_ttl``); a shared budget uses this book's store.
        """
        return Budget(limit, parent=self.current(), owner=self, store=self._store, **options)

    def current(self) -> Budget | None:
        """This broker's budget made current by the innermost ``async with`` (``None`` outside any)."""
        budget = _current.get()
        while budget is not None and budget.owner is not self:
            budget = budget.parent
        return budget

    def pick(self, budget: Budget | None) -> Budget | None:
        """The budget of one call: ``budget=`` when given, else the current one.

        Raises:
            ConfigError: ``budget`` is not a :class:`Budget` of this broker.
        """
        if budget is None:
            return self.current()
        if not isinstance(budget, Budget) or budget.owner is not self:
            raise ConfigError("budget= must be a Budget made by this broker's budget()")
        return budget
