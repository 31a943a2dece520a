"""Start and stop the native anvil binary on 127.0.0.1.

anvil is started directly (never through npm's node wrapper, whose death orphans the real
process) on a free port, polled with ``eth_chainId`` until it answers, and stopped by PID on
exit: SIGTERM, then SIGKILL after a short grace, in a shielded scope so cancellation cannot
leave it running. On Linux it is also started under ``setpriv --pdeathsig TERM`` when that
tool exists, so it dies with the Python process even after a SIGKILL.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
import anyio.abc
import httpx

from ._errors import DevnetError
from ._rpc import RpcClient

__all__ = ["AnvilNode", "run_anvil"]

HOST = "127.0.0.1"
_STOP_GRACE = 3.0
_POLL_INTERVAL = 0.005


@dataclass(frozen=True)
class AnvilNode:
    """A running anvil process.

    Attributes:
        pid: the process id of the anvil binary.
        port: the TCP port it listens on (on 127.0.0.1).
        rpc_url: its JSON-RPC endpoint.
        rpc: a JSON-RPC client for it.
        process: the anyio process handle.
    """

    pid: int
    port: int
    rpc_url: str
    rpc: RpcClient
    process: anyio.abc.Process


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _command(
    binary: Path, port: int, chain_id: int, accounts: int, balance: int, extra: Sequence[str]
) -> list[str]:
    cmd = [
        str(binary),
        "--host",
        HOST,
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--accounts",
        str(accounts),
        "--balance",
        str(balance),
        "--silent",
        *extra,
    ]
    if sys.platform.startswith("linux"):
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            # setpriv sets the parent-death signal and then execs anvil in place (same PID)
            cmd = [setpriv, "--pdeathsig", "TERM", "--", *cmd]
    return cmd


async def _stop(process: anyio.abc.Process, grace: float = _STOP_GRACE) -> None:
    """Terminate, then kill after ``grace`` seconds; always waits for the exit. Shielded."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            try:
                process.terminate()
            except ProcessLookupError:
                pass
            with anyio.move_on_after(grace):
                await process.wait()
            if process.returncode is None:
                try:
                    process.kill()
                except ProcessLookupError:
                    pass
                await process.wait()
        await process.aclose()


def _read_tail(handle: IO[bytes], limit: int = 2000) -> str:
    handle.seek(0)
    return handle.read().decode(errors="replace").strip()[-limit:]


async def _wait_ready(process: anyio.abc.Process, rpc: RpcClient, chain_id: int) -> bool:
    """Poll ``eth_chainId`` until it answers. False if the process exited first."""
    while process.returncode is None:
        try:
            answer = await rpc.call("eth_chainId")
        except DevnetError:
            await anyio.sleep(_POLL_INTERVAL)
            continue
        if int(answer, 16) != chain_id:
            raise DevnetError(f"the node at {rpc.url} reports chain id {int(answer, 16)}, not {chain_id}")
        return True
    return False


@asynccontextmanager
async def run_anvil(
    binary: Path,
    http: httpx.AsyncClient,
    *,
    chain_id: int = 31337,
    accounts: int = 30,
    balance_eth: int = 1_000_000,
    extra_args: Sequence[str] = (),
    start_timeout: float = 20.0,
    attempts: int = 5,
) -> AsyncIterator[AnvilNode]:
    """Run anvil on a free port of 127.0.0.1 until the block exits.

    JSON-RPC goes through ``http``. A port taken between choosing and binding it is retried on
    another port, up to ``attempts`` times.

    Raises:
        DevnetError: the binary could not run, exited early, or did not answer in time.
    """
    node: AnvilNode | None = None
    for _ in range(attempts):
        port = _free_port()
        log = await anyio.to_thread.run_sync(tempfile.TemporaryFile)
        try:
            try:
                process = await anyio.open_process(
                    _command(binary, port, chain_id, accounts, balance_eth, extra_args),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            except OSError as exc:
                raise DevnetError(
                    f"cannot run anvil at {binary}: {exc}",
                    hint="run `python -m og_inference_devnet install` to (re)install it",
                ) from exc
            rpc = RpcClient(f"http://{HOST}:{port}", http)
            try:
                with anyio.fail_after(start_timeout):
                    ready = await _wait_ready(process, rpc, chain_id)
            except TimeoutError as exc:
                await _stop(process)
                raise DevnetError(f"anvil did not answer on {rpc.url} within {start_timeout} s") from exc
            except BaseException:
                await _stop(process)
                raise
            if ready:
                node = AnvilNode(pid=process.pid, port=port, rpc_url=rpc.url, rpc=rpc, process=process)
                break
            await _stop(process)
            output = await anyio.to_thread.run_sync(_read_tail, log)
        finally:
            await anyio.to_thread.run_sync(log.close)
        if "address already in use" not in output.lower():
            code = process.returncode
            raise DevnetError(f"anvil exited with code {code} at start: {output or '(no output)'}")
    if node is None:
        raise DevnetError(f"anvil could not bind a free port on {HOST} after {attempts} attempts")
    try:
        yield node
    finally:
        await _stop(node.process)
