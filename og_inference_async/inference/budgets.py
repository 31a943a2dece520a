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
"""

from __future__ import annotations

import logging
from contextvars import ContextVar, Token
from types import TracebackType

from .._exceptions import (
    BudgetExceededError,
    ConfigError,
    InsufficientBalanceError,
    NotAcknowledgedError,
    ProviderError,
    ServiceNotFoundError,
    TransportFailure,
)
from .._units import Amount, format_og, to_wei
from .._validate import check_int, check_optional_str

__all__ = ["DEFAULT_MAX_TOKENS", "Budget", "BudgetBook", "Hold", "may_have_billed"]

log = logging.getLogger(__name__)

#: The output cap the SDK gives a chat made under a budget without ``max_tokens`` (lowered to
#: what the budget can still pay for).
DEFAULT_MAX_TOKENS = 1024

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

    Raises:
        InvalidAmountError: a bad ``limit``.
        ConfigError: a bad ``tag`` or ``default_max_tokens``, or a parent of another broker.
    """

    def __init__(
        self,
        limit: Amount | None,
        *,
        tag: str | None = None,
        parent: Budget | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        owner: BudgetBook | None = None,
    ) -> None:
        check_optional_str("tag", tag)
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
                for counted in chain:
                    counted.refusals += 1
                assert level.limit is not None
                raise BudgetExceededError(
                    f"{what} could cost up to {amount} wei, more than the {left} wei left of budget "
                    f"{level.tag or 'untagged'} (limit {level.limit} wei); nothing was sent",
                    required=amount,
                    remaining=left,
                    limit=level.limit,
                    tag=level.tag,
                    hint="raise the budget, or lower max_tokens / n for this request",
                )
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


class Hold:
    """A reservation held in a chain of budgets until the request's fee is known.

    Exactly one of :meth:`settle`, :meth:`release` or :meth:`keep` takes effect; later calls
    do nothing.
    """

    __slots__ = ("_chain", "_tag", "amount", "closed")

    def __init__(self, chain: list[Budget], amount: int, tag: str | None) -> None:
        self._chain = chain
        self._tag = tag
        self.amount = amount
        self.closed = False

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


class BudgetBook:
    """The budgets of one broker: creates them and finds the one a request runs under."""

    def budget(
        self, limit: Amount | None, *, tag: str | None = None, default_max_tokens: int = DEFAULT_MAX_TOKENS
    ) -> Budget:
        """A new budget, nested in the current budget of this broker when there is one."""
        return Budget(
            limit, tag=tag, parent=self.current(), default_max_tokens=default_max_tokens, owner=self
        )

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
