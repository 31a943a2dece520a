"""What an open broker hands to its services besides the contracts and the transport.

:class:`Wallet` is the signing identity (absent parts on a read-only broker, which then refuses
writes with :class:`~og_inference_async.ConfigError`); :class:`Background` is the broker's task
group, which refuses new work once the broker has closed.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._exceptions import BrokerStateError, ConfigError
from .coordination import Coordinator, InProcessCoordinator

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from eth_account.signers.local import LocalAccount

    from ._chain import TxSender

__all__ = ["Background", "Wallet"]


@dataclass(frozen=True)
class Wallet:
    """The broker's wallet as the services see it.

    Attributes:
        account: the signing account, ``None`` on a read-only broker.
        sender: the transaction sender, ``None`` on a read-only broker.
        coordinator: what every broker signing for this wallet agrees through (money moves
            into one sub-account, ledger creation); default: this process only.
    """

    account: LocalAccount | None = None
    sender: TxSender | None = None
    coordinator: Coordinator = field(default_factory=InProcessCoordinator)

    @property
    def address(self) -> str:
        """The wallet address.

        Raises:
            ConfigError: the broker is read-only.
        """
        return self._account("this broker is read-only (no private_key)").address

    @property
    def signer(self) -> LocalAccount:
        """The account that signs session tokens and API keys.

        Raises:
            ConfigError: the broker is read-only.
        """
        return self._account("session tokens need a wallet; this broker is read-only")

    def _account(self, refusal: str) -> LocalAccount:
        if self.account is None:
            raise ConfigError(refusal)
        return self.account

    def require_sender(self) -> TxSender:
        """The transaction sender; call it before any check that would need a transaction.

        Raises:
            ConfigError: the broker is read-only.
        """
        if self.sender is None:
            raise ConfigError("this broker is read-only (no private_key); transactions need a wallet")
        return self.sender


class Background:
    """The broker's task group as the services see it: work started here stops when the broker closes.

    Args:
        group: the task group.
        is_open: whether new work may start (default: always); the broker passes its state.
    """

    def __init__(self, group: TaskGroup, is_open: Callable[[], bool] = lambda: True) -> None:
        self._group = group
        self._is_open = is_open

    def _check(self) -> TaskGroup:
        if not self._is_open():
            raise BrokerStateError("the broker is closed; no background work can start")
        return self._group

    def start_soon(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: object = None
    ) -> None:
        """Start ``fn(*args)`` in the background.

        Raises:
            BrokerStateError: the broker has closed.
        """
        self._check().start_soon(fn, *args, name=name)

    async def start(
        self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: object = None
    ) -> Any:
        """Start ``fn(*args)`` and wait until it reports started (``task_status.started()``).

        Raises:
            BrokerStateError: the broker has closed.
        """
        return await self._check().start(fn, *args, name=name)
