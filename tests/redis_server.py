"""A real Redis server for the coordination tests, started on 127.0.0.1 for the session.

``redis_url`` (session) starts ``redis-server`` (Debian's package; ``.ci/run`` installs it) on a free
port without persistence and stops it at the end. Without the binary the tests that need it skip
with the reason, except under CI (``CI`` set), where they fail: CI never skips them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

#: Seconds the server gets to accept connections (a hang detector).
START_BOUND = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0`` of a Redis server started for this session."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (apt-get install redis-server); CI installs it"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests: {reason}")
        pytest.skip(reason)
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_BOUND
        while not _answers_ping(port):
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer on port {port}")
            try:  # waits a moment for the server, stopping early if it exited
                proc.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"redis-server exited with status {proc.returncode}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
