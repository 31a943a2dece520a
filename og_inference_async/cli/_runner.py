"""Where a command gets its broker: network and RPC, the key (never echoed), and error reporting.

Every command runs one coroutine on a broker of its own with :func:`anyio.run`. An
:class:`~og_inference_async.OGError` is printed as its message and hint on stderr (no traceback)
and ends the process with exit code 1.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
import typer

from .. import AsyncBroker, ConfigError, OGError, og
from ._render import report_error, warn

__all__ = ["KEY_ENV", "Settings", "parse_amount", "run"]

T = TypeVar("T")

#: The environment variable holding the wallet's private key (hex).
KEY_ENV = "OG_PRIVATE_KEY"

_NO_KEY_HINT = f"set {KEY_ENV}, or pass --key-file PATH (a file holding the hex key)"


@dataclass(frozen=True)
class Settings:
    """The global options: where to connect and where the key comes from.

    Attributes:
        network: ``mainnet``, ``testnet``, ``hardhat`` or a chain id.
        rpc_url: overrides the network's RPC endpoint.
        key_file: a file holding the hex private key.
        key_argument: a key given on the command line (accepted with a warning).
    """

    network: str
    rpc_url: str | None
    key_file: Path | None
    key_argument: str | None

    def __repr__(self) -> str:  # the key stays out of any repr
        return f"Settings(network={self.network!r}, rpc_url={self.rpc_url!r}, key_file={self.key_file!r})"

    def private_key(self) -> str | None:
        """The key from ``--private-key``, ``--key-file`` or ``OG_PRIVATE_KEY``, in that order.

        Raises:
            ConfigError: the key file cannot be read or is empty.
        """
        if self.key_argument:
            return self.key_argument
        if self.key_file is not None:
            return _read_key_file(self.key_file)
        return os.environ.get(KEY_ENV) or None

    def broker(self, *, wallet: bool) -> AsyncBroker:
        """A broker for one command (read-only when ``wallet`` is false and no key is set).

        Raises:
            ConfigError: ``wallet`` is true and no key is set, or the key or network is bad.
        """
        key = self.private_key()
        if key is None and wallet:
            raise ConfigError("this command needs the wallet's private key", hint=_NO_KEY_HINT)
        network: str | int = int(self.network) if self.network.isdigit() else self.network
        return AsyncBroker(key, network=network, rpc_url=self.rpc_url)


def _read_key_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the key file {path}: {exc.strerror or type(exc).__name__}", hint=_NO_KEY_HINT
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"the key file {path} is not text (expected a hex private key)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn(f"the key file {path} can be read by other users; chmod 600 it")
    key = text.strip()
    if not key:
        raise ConfigError(f"the key file {path} is empty", hint=_NO_KEY_HINT)
    return key


def run(settings: Settings, job: Callable[[AsyncBroker], Awaitable[T]], *, wallet: bool = True) -> T:
    """Open a broker, run ``job`` on it, close it; turn SDK errors into a message and exit code 1.

    Args:
        settings: the global options.
        job: the command's work.
        wallet: whether the command needs the private key (else it runs read-only without one).

    Raises:
        typer.Exit: code 1 after an SDK error, 130 after Ctrl+C.
    """

    async def main() -> T:
        async with settings.broker(wallet=wallet) as broker:
            return await job(broker)

    try:
        return anyio.run(main)
    except OGError as exc:
        report_error(exc)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def parse_amount(text: str) -> int:
    """An amount of OG from the command line, in wei; a bad one is reported like any SDK error.

    Raises:
        typer.Exit: code 1 when ``text`` is not a valid amount of OG.
    """
    try:
        return og(text)
    except OGError as exc:
        report_error(exc)
        raise typer.Exit(1) from None
