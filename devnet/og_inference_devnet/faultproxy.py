"""Fault-injecting proxies for chaos tests: one in front of a JSON-RPC node, one in front of an HTTP service.

:func:`start_rpc_fault_proxy` sits in front of anvil (or any JSON-RPC node on 127.0.0.1) and
:func:`start_http_fault_proxy` in front of a devnet provider. Point a client at the proxy's ``url``
and turn the knobs while it runs::

    async with start_rpc_fault_proxy(dn.rpc_url, seed=7) as rpc:
        rpc.error_rate = 0.2                          # 20 % of requests answer 502/503/500
        rpc.methods = {"eth_sendRawTransaction"}      # ... but only transactions are hit
        broker = AsyncBroker(key, network=dataclasses.replace(dn.network, rpc_url=rpc.url))
        ...
        print(rpc.faults, rpc.dropped_tx_hashes)

Faults are decided per request, before anything is forwarded, from one ``random.Random(seed)``:
each kind whose rate is above 0 draws once, in this order, and the first hit wins:

==========================  ===========================================================================
knob                        what the client sees
==========================  ===========================================================================
``reset_rate``              the connection is reset (TCP RST, no response); nothing is forwarded
``error_rate``              an HTTP status from ``error_statuses`` (default 502, 503, 500) with a
                            plain-text body; nothing is forwarded
``rate_limit_rate``         HTTP 429 (a ``retry_after_fraction`` of them with ``Retry-After:
                            <retry_after>``); for JSON-RPC, a ``json_rate_limit_fraction`` of them is
                            instead HTTP 200 with the error ``-32005 "rate limit exceeded"`` for every
                            call of the request; nothing is forwarded
``slow_rate``               the answer comes ``slow_seconds`` late: with ``slow_forward`` (default) the
                            request is forwarded at once and its answer held back; without it nothing
                            is forwarded and, after the delay, the answer is HTTP 504
``forward_then_drop_rate``  the request is forwarded and fully executed (a transaction is accepted, an
                            inference is billed), then the client gets ``drop_mode`` instead of the
                            answer: ``"error"`` (a ``drop_statuses`` status, default 502, 504, 500:
                            what a gateway says when the upstream may have served; the SDK reads
                            503 as "not served" and may resend) or ``"reset"``
``cut_rate`` (HTTP only)    the response starts normally, then the connection is reset after at most
                            ``cut_after_bytes`` body bytes (never the whole body)
==========================  ===========================================================================

A rate of 0 never fires and draws nothing; a rate of 1 always fires, so tests can be exact.
Faults apply only to the requests the filter selects: for JSON-RPC ``methods`` (``None``: all) minus
``skip_methods`` (a batch is eligible when one of its calls is); for HTTP ``paths`` (path prefixes,
``None``: all) minus ``skip_paths``. :meth:`~RpcFaultProxy.pause` holds every request (eligible or
not) until :meth:`~RpcFaultProxy.resume`, at most ``pause_timeout`` seconds, after which it goes on.

Knobs are plain attributes, checked when set (:class:`~og_inference_async.ConfigError` for a bad
value) and read once per request, so they may be changed at any time, also from another thread;
the random draws are serialised with a lock. Counters: ``requests_seen``, ``forwarded``,
``faults`` (by kind), ``faults_by_target`` (by ``(kind, method or path)``), plus per-proxy extras
(``calls`` and ``dropped_tx_hashes`` for JSON-RPC, ``paths_seen`` for HTTP), ``upstream_errors``;
:meth:`reset_counters` clears them, :meth:`reset_faults` restores every knob's default (all off).

The other knobs, with their defaults: ``error_statuses=(502, 503, 500)``,
``drop_statuses=(502, 504, 500)``, ``retry_after=1`` (whole seconds), ``retry_after_fraction=1.0``,
``slow_seconds=5.0``, ``slow_forward=True``, ``drop_mode="error"``, ``pause_timeout=30.0``,
``upstream_timeout=60.0`` (seconds for one upstream exchange, a streamed body included),
``max_body=64 MiB``; JSON-RPC only: ``json_rate_limit_fraction=0.0``, ``methods=None``,
``skip_methods=()``; HTTP only: ``cut_after_bytes=64``, ``paths=None``, ``skip_paths=()``, and a
throttle that is not a random fault: ``chunk_delay=0.0`` seconds after each relayed body piece of
``chunk_bytes`` bytes at most (0: as they arrive), for the eligible requests.

Both proxies listen on 127.0.0.1 only and connect only to an upstream on 127.0.0.1 (``localhost``
is read as 127.0.0.1). They run on asyncio (aiohttp); the HTTP proxy streams response bodies
through as they arrive (SSE is never buffered), reads request bodies whole (at most ``max_body``
bytes, else 413) and passes bytes through unchanged (no decompression), so TEE signatures over
raw bodies still verify. Every wait is bounded (``upstream_timeout``, ``pause_timeout``,
``slow_seconds``) and the proxy stops with its ``async with`` block or :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from eth_utils import keccak
from multidict import CIMultiDict

from og_inference_async import ConfigError

from ._checks import need_bool, need_int, need_probability, need_seconds
from ._errors import DevnetError

__all__ = [
    "HttpFaultProxy",
    "RpcFaultProxy",
    "start_http_fault_proxy",
    "start_rpc_fault_proxy",
]

_HOST = "127.0.0.1"
_LOCAL_NAMES = ("127.0.0.1", "localhost")
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
# headers that describe one hop, not the message: never copied across the proxy
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_DROP_MODES = ("error", "reset")
#: The JSON-RPC error code of a rate limit (as Infura, Alchemy and others answer).
RPC_RATE_LIMIT_CODE = -32005


def _local_url(url: str, what: str) -> str:
    """Validate an upstream URL: ``http://`` on 127.0.0.1 (``localhost`` rewritten); returns it without a
    trailing slash."""
    if not isinstance(url, str):
        raise ConfigError(f"{what} must be a string URL, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in _LOCAL_NAMES:
        raise ConfigError(f"{what} must be an http:// URL on 127.0.0.1, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{what} has a bad port: {url!r}") from None
    netloc = _HOST if port is None else f"{_HOST}:{port}"
    return urlunsplit(("http", netloc, parts.path.rstrip("/"), parts.query, ""))


def _seconds(name: str, value: Any) -> float:
    return need_seconds(name, value, zero_ok=True)


def _timeout(name: str, value: Any) -> float:
    return need_seconds(name, value)


def _count(name: str, value: Any) -> int:
    return need_int(name, value, 0)


def _positive(name: str, value: Any) -> int:
    return need_int(name, value, 1)


def _statuses(name: str, value: Any) -> tuple[int, ...]:
    items = tuple(value) if isinstance(value, Iterable) and not isinstance(value, (str, bytes)) else None
    if not items or any(isinstance(s, bool) or not isinstance(s, int) or not 500 <= s <= 599 for s in items):
        raise ConfigError(f"{name} must be a non-empty sequence of 5xx statuses, got {value!r}")
    return items


def _drop_mode(name: str, value: Any) -> str:
    if value not in _DROP_MODES:
        raise ConfigError(f"{name} must be one of {_DROP_MODES}, got {value!r}")
    return str(value)


def _names(name: str, value: Any, *, optional: bool) -> frozenset[str] | None:
    if value is None and optional:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        kind = "None or " if optional else ""
        raise ConfigError(f"{name} must be {kind}a collection of strings, got {value!r}")
    items = frozenset(value)
    if any(not isinstance(v, str) for v in items):
        raise ConfigError(f"{name} must hold strings only, got {value!r}")
    return items


def _reset_connection(request: web.BaseRequest) -> None:
    """Close the client's connection at once with a TCP reset (no response, nothing flushed)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # linger on, timeout 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _plain_error(status: int) -> web.Response:
    reason = _REASONS.get(status, "Server Error")
    body = f"<html><body><h1>{status} {reason}</h1>fault proxy</body></html>\n"
    return web.Response(status=status, text=body, content_type="text/html")


async def _read_all(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """A whole body (request or upstream answer), or ``None`` when it is over ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:  # bounded: stops at EOF or past ``limit`` bytes
        chunk = await stream.readany()
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)


class _FaultProxy:
    """What both proxies share: knobs with checks, the seeded draws, counters, pause, the server."""

    #: knob name -> (checker, default); set per subclass
    _KNOBS: ClassVar[dict[str, tuple[Callable[[str, Any], Any], Any]]] = {}
    _KINDS: ClassVar[tuple[str, ...]] = ()
    _what: ClassVar[str] = "fault proxy"

    # declared for mypy; the values live in the instance __dict__ (set through __setattr__)
    reset_rate: float
    error_rate: float
    error_statuses: Sequence[int]
    rate_limit_rate: float
    retry_after_fraction: float
    retry_after: int
    slow_rate: float
    slow_seconds: float
    slow_forward: bool
    forward_then_drop_rate: float
    drop_mode: str
    drop_statuses: Sequence[int]
    pause_timeout: float
    upstream_timeout: float
    max_body: int

    def __init__(self, upstream: str | None, *, seed: int, knobs: dict[str, Any]) -> None:
        unknown = sorted(set(knobs) - set(self._KNOBS))
        if unknown:
            raise ConfigError(
                f"unknown {self._what} knob(s): {', '.join(unknown)} (known: {sorted(self._KNOBS)})"
            )
        need_int("seed", seed)
        for name, (check, default) in self._KNOBS.items():
            setattr(self, name, check(name, knobs.get(name, default)))
        self._upstream = None if upstream is None else _local_url(upstream, "upstream URL")
        self._seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._paused = False
        self._gate: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._runner: web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""
        #: HTTP requests received.
        self.requests_seen = 0
        #: requests passed on to the upstream (forward-then-drop and slow-forwarded ones included).
        self.forwarded = 0
        #: requests the upstream could not be reached for (answered 502, not a fault).
        self.upstream_errors = 0
        #: injected faults by kind (``reset``, ``error``, ``rate_limit``, ..., ``pause``).
        self.faults: Counter[str] = Counter()
        #: injected faults by ``(kind, method)`` (JSON-RPC) or ``(kind, path)`` (HTTP).
        self.faults_by_target: Counter[tuple[str, str]] = Counter()

    def __setattr__(self, name: str, value: Any) -> None:
        spec = type(self)._KNOBS.get(name)
        if spec is not None:
            value = spec[0](name, value)
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        on = {k: getattr(self, k) for k in self._KNOBS if k.endswith("_rate") and getattr(self, k)}
        state = "closed" if self._closed else ("paused" if self._paused else "running")
        return f"<{type(self).__name__} {state} url={self.url!r} upstream={self._upstream!r} faults_on={on}>"

    # -- configuration -------------------------------------------------------------------------

    @property
    def upstream(self) -> str | None:
        """The upstream base URL (settable at run time; ``None`` answers 502 to everything)."""
        return self._upstream

    @upstream.setter
    def upstream(self, url: str | None) -> None:
        self._upstream = None if url is None else _local_url(url, "upstream URL")

    @property
    def seed(self) -> int:
        """The seed the fault RNG started from (see :meth:`reseed`)."""
        return self._seed

    def reseed(self, seed: int) -> None:
        """Restart the fault RNG from ``seed``."""
        need_int("seed", seed)
        with self._lock:
            self._seed = seed
            self._rng = random.Random(seed)

    def reset_faults(self) -> None:
        """Turn every fault off and restore every knob's default (counters are kept; the RNG is reseeded)."""
        for name, (check, default) in self._KNOBS.items():
            setattr(self, name, check(name, default))
        self.reseed(self._seed)

    def reset_counters(self) -> None:
        """Zero every counter and forget the recorded logs."""
        self.requests_seen = 0
        self.forwarded = 0
        self.upstream_errors = 0
        self.faults = Counter()
        self.faults_by_target = Counter()

    # -- pause ---------------------------------------------------------------------------------

    @property
    def is_paused(self) -> bool:
        """Whether requests are being held (see :meth:`pause`)."""
        return self._paused

    def pause(self) -> None:
        """Hold every request from now on until :meth:`resume` (each for at most ``pause_timeout`` s).

        Safe to call from another thread (it then takes effect once the proxy's loop runs).
        """
        self._paused = True
        self._on_loop(self._close_gate)

    def resume(self) -> None:
        """Release the held requests and stop holding new ones."""
        self._paused = False
        self._on_loop(self._open_gate)

    def _close_gate(self) -> None:
        if self._gate is not None and self._paused:
            self._gate.clear()

    def _open_gate(self) -> None:
        if self._gate is not None:
            self._gate.set()

    def _on_loop(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            return  # not started: the gate is created from _paused at start
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(fn)

    async def _hold(self) -> None:
        gate = self._gate
        if not self._paused or gate is None or gate.is_set():
            return
        self.faults["pause"] += 1
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(gate.wait(), self.pause_timeout)

    # -- draws ---------------------------------------------------------------------------------

    def _draw_kind(self) -> str | None:
        """The fault for one eligible request: each kind with a rate above 0 draws, first hit wins."""
        with self._lock:
            for kind in self._KINDS:
                rate = float(getattr(self, kind + "_rate"))
                if rate > 0.0 and self._rng.random() < rate:
                    return kind
        return None

    def _chance(self, fraction: float) -> bool:
        if fraction <= 0.0:
            return False
        if fraction >= 1.0:
            return True
        with self._lock:
            return self._rng.random() < fraction

    def _error_status(self, statuses: Sequence[int]) -> int:
        if len(statuses) == 1:
            return statuses[0]
        with self._lock:
            return self._rng.choice(statuses)

    def _note(self, kind: str, targets: Iterable[str]) -> None:
        self.faults[kind] += 1
        for target in targets:
            self.faults_by_target[(kind, target)] += 1

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.upstream_timeout, connect=min(5.0, self.upstream_timeout))

    def _retry_after_headers(self) -> dict[str, str]:
        if self._chance(self.retry_after_fraction):
            return {"Retry-After": str(self.retry_after)}
        return {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._gate = asyncio.Event()
        if not self._paused:
            self._gate.set()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256),
            auto_decompress=False,
            trust_env=False,
            # send exactly the client's headers: no Accept-Encoding, User-Agent or Content-Type of our own
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((_HOST, 0))
            sock.setblocking(False)
            server = web.Server(self._tracked, access_log=None)
            self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
            await self._runner.setup()
            site = web.SockSite(self._runner, sock)
            await site.start()
        except BaseException as exc:
            sock.close()
            await self.aclose()
            if isinstance(exc, OSError):
                raise DevnetError(f"the {self._what} could not listen on {_HOST}: {exc}") from exc
            raise
        self.url = f"http://{_HOST}:{sock.getsockname()[1]}"

    async def aclose(self) -> None:
        """Stop listening, drop held and in-flight requests, and close the upstream pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._paused = False
        if self._gate is not None:
            self._gate.set()
        for task in list(self._tasks):
            task.cancel()
        runner, self._runner = self._runner, None
        session, self._session = self._session, None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            if session is not None:
                await session.close()

    async def _tracked(self, request: web.BaseRequest) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            self.requests_seen += 1
            return await self._handle(request)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raise NotImplementedError


def _common_knobs() -> dict[str, tuple[Callable[[str, Any], Any], Any]]:
    return {
        "reset_rate": (need_probability, 0.0),
        "error_rate": (need_probability, 0.0),
        "error_statuses": (_statuses, (502, 503, 500)),
        "rate_limit_rate": (need_probability, 0.0),
        "retry_after_fraction": (need_probability, 1.0),
        "retry_after": (_count, 1),
        "slow_rate": (need_probability, 0.0),
        "slow_seconds": (_seconds, 5.0),
        "slow_forward": (need_bool, True),
        "forward_then_drop_rate": (need_probability, 0.0),
        "drop_mode": (_drop_mode, "error"),
        "drop_statuses": (_statuses, (502, 504, 500)),
        "pause_timeout": (_seconds, 30.0),
        "upstream_timeout": (_timeout, 60.0),
        "max_body": (_positive, 64 * 1024 * 1024),
    }


# -- JSON-RPC ------------------------------------------------------------------------------------


def _calls(body: bytes) -> list[dict[str, Any]]:
    """The call objects of a JSON-RPC request (one, or a batch); ``[]`` when it is not JSON-RPC."""
    try:
        payload = json.loads(body)
    except ValueError:
        return []
    items = payload if isinstance(payload, list) else [payload]
    return [item for item in items if isinstance(item, dict)]


def _method(call: dict[str, Any]) -> str:
    method = call.get("method")
    return method if isinstance(method, str) else ""


def _raw_tx_hash(raw: Any) -> str | None:
    """The hash (``0x`` hex) of a signed raw transaction given as ``0x`` hex, or ``None`` if malformed."""
    if not isinstance(raw, str):
        return None
    try:
        data = bytes.fromhex(raw.removeprefix("0x"))
    except ValueError:
        return None
    return "0x" + bytes(keccak(data)).hex() if data else None


class RpcFaultProxy(_FaultProxy):
    """A JSON-RPC proxy that injects faults. Get one from :func:`start_rpc_fault_proxy`.

    The module docstring describes the knobs and the order they are drawn in.

    Attributes:
        url: where to send JSON-RPC (``http://127.0.0.1:<port>``).
        methods: apply faults only to requests calling one of these methods (``None``: all).
        skip_methods: never apply faults to requests made only of these methods.
        json_rate_limit_fraction: the fraction of rate limits answered as a JSON-RPC error
            (HTTP 200, code ``-32005``) rather than HTTP 429.
        calls: JSON-RPC calls seen, by method (a batch counts each call).
        dropped_tx_hashes: hashes (``0x`` hex, keccak of the raw bytes) of the
            ``eth_sendRawTransaction`` calls that were forwarded and then dropped, in order.
        (and the knobs and counters listed in the module docstring)
    """

    _KNOBS: ClassVar[dict[str, tuple[Callable[[str, Any], Any], Any]]] = {
        **_common_knobs(),
        "json_rate_limit_fraction": (need_probability, 0.0),
        "methods": (lambda n, v: _names(n, v, optional=True), None),
        "skip_methods": (lambda n, v: _names(n, v, optional=False), frozenset()),
    }
    _KINDS: ClassVar[tuple[str, ...]] = ("reset", "error", "rate_limit", "slow", "forward_then_drop")
    _what: ClassVar[str] = "JSON-RPC fault proxy"

    json_rate_limit_fraction: float
    methods: AbstractSet[str] | None
    skip_methods: AbstractSet[str]

    def __init__(self, upstream: str, *, seed: int, knobs: dict[str, Any]) -> None:
        super().__init__(upstream, seed=seed, knobs=knobs)
        self.calls: Counter[str] = Counter()
        self.dropped_tx_hashes: list[str] = []

    def reset_counters(self) -> None:
        """Zero every counter and forget the dropped transaction hashes."""
        super().reset_counters()
        self.calls = Counter()
        self.dropped_tx_hashes = []

    def _eligible(self, methods: list[str]) -> bool:
        only, skip = self.methods, self.skip_methods
        names = methods or [""]
        return any((only is None or m in only) and m not in skip for m in names)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text="JSON-RPC takes POST\n", headers={"Allow": "POST"})
        body = await _read_all(request.content, self.max_body)
        if body is None:
            return web.Response(status=413, text="request body too large\n")
        calls = _calls(body)
        methods = [_method(c) for c in calls]
        self.calls.update(methods)
        await self._hold()
        kind = self._draw_kind() if self._eligible(methods) else None
        if kind is None:
            return await self._forward(body)
        self._note(kind, methods or [""])
        if kind == "reset":
            _reset_connection(request)
            return web.Response(status=502)  # never written: the connection is gone
        if kind == "error":
            return _plain_error(self._error_status(self.error_statuses))
        if kind == "rate_limit":
            if self._chance(self.json_rate_limit_fraction):
                return self._json_rate_limit(body, calls)
            headers = self._retry_after_headers()
            return web.Response(status=429, text="429 Too Many Requests\n", headers=headers)
        if kind == "slow":
            if not self.slow_forward:
                await asyncio.sleep(self.slow_seconds)
                return _plain_error(504)
            answer = await self._forward(body)
            await asyncio.sleep(self.slow_seconds)
            return answer
        # forward_then_drop
        await self._forward(body)
        for call in calls:
            if _method(call) == "eth_sendRawTransaction":
                params = call.get("params")
                tx_hash = _raw_tx_hash(params[0]) if isinstance(params, list) and params else None
                if tx_hash is not None:
                    self.dropped_tx_hashes.append(tx_hash)
        if self.drop_mode == "reset":
            _reset_connection(request)
            return web.Response(status=502)
        return _plain_error(self._error_status(self.drop_statuses))

    @staticmethod
    def _json_rate_limit(body: bytes, calls: list[dict[str, Any]]) -> web.Response:
        def one(call: dict[str, Any]) -> dict[str, Any]:
            error = {"code": RPC_RATE_LIMIT_CODE, "message": "rate limit exceeded"}
            return {"jsonrpc": "2.0", "id": call.get("id"), "error": error}

        try:
            batch = isinstance(json.loads(body), list)
        except ValueError:
            batch = False
        payload: Any = [one(c) for c in calls] if batch else one(calls[0] if calls else {})
        return web.json_response(payload)

    async def _forward(self, body: bytes) -> web.Response:
        upstream, session = self._upstream, self._session
        if upstream is None or session is None:
            self.upstream_errors += 1
            return _plain_error(502)
        self.forwarded += 1
        try:
            async with session.post(
                upstream,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self._timeout(),
            ) as answer:
                data = await _read_all(answer.content, self.max_body)
                if data is None:
                    self.upstream_errors += 1
                    return _plain_error(502)
                headers = {"Content-Type": answer.headers.get("Content-Type", "application/json")}
                return web.Response(status=answer.status, body=data, headers=headers)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            self.upstream_errors += 1
            return _plain_error(502)


_P = TypeVar("_P", bound=_FaultProxy)


@asynccontextmanager
async def _running(proxy: _P) -> AsyncIterator[_P]:
    """Start ``proxy`` and stop it when the block ends."""
    await proxy._start()
    try:
        yield proxy
    finally:
        await proxy.aclose()


@asynccontextmanager
async def start_rpc_fault_proxy(
    upstream_url: str, *, seed: int = 0, **knobs: Any
) -> AsyncIterator[RpcFaultProxy]:
    """Run a JSON-RPC fault proxy in front of ``upstream_url`` for an ``async with`` block.

    Example::

        async with start_rpc_fault_proxy(dn.rpc_url, forward_then_drop_rate=1.0,
                                         methods={"eth_sendRawTransaction"}) as rpc:
            ...  # every transaction reaches anvil, every sender gets a 502
            assert rpc.dropped_tx_hashes

    Args:
        upstream_url: the node's JSON-RPC URL, on 127.0.0.1 (e.g. ``Devnet.rpc_url``).
        seed: seed of the fault RNG.
        **knobs: initial knob values (see the module docstring and :class:`RpcFaultProxy`);
            all faults are off by default.

    Yields:
        The running :class:`RpcFaultProxy`; it stops when the block ends.

    Raises:
        ConfigError: an unknown knob, a bad value, or an upstream not on 127.0.0.1.
        DevnetError: no port could be bound.
    """
    async with _running(RpcFaultProxy(upstream_url, seed=seed, knobs=knobs)) as proxy:
        yield proxy


# -- HTTP ----------------------------------------------------------------------------------------


def _cut_budget(limit: int, length: int | None) -> int:
    """How many body bytes a cut response relays: at most ``limit``, and never the whole body."""
    if length is None:
        return limit
    return max(0, min(limit, length - 1))


class HttpFaultProxy(_FaultProxy):
    """An HTTP/1.1 reverse proxy that injects faults. Get one from :func:`start_http_fault_proxy`.

    Every method and path is forwarded to ``upstream + path?query`` with the request's headers
    (hop-by-hop ones dropped); the response's status, headers and body come back unchanged and
    streamed. The module docstring describes the knobs and the order they are drawn in.

    Attributes:
        url: the proxy's base URL (``http://127.0.0.1:<port>``); register it as a provider's service
            URL to put the proxy between the SDK and the provider.
        paths: apply faults only to request paths starting with one of these (``None``: all).
        skip_paths: never apply faults to paths starting with one of these.
        cut_rate: the rate of responses cut mid-body (see the module docstring).
        cut_after_bytes: how many body bytes a cut response relays at most.
        chunk_delay: seconds slept after relaying each response body chunk of an eligible request
            (a throttle, not a random fault; 0 by default).
        chunk_bytes: relay eligible response bodies in pieces of at most this many bytes (0: as
            they arrive); with ``chunk_delay`` it makes a stream trickle event by event.
        paths_seen: requests seen, by path.
        (and the knobs and counters listed in the module docstring)
    """

    _KNOBS: ClassVar[dict[str, tuple[Callable[[str, Any], Any], Any]]] = {
        **_common_knobs(),
        "cut_rate": (need_probability, 0.0),
        "cut_after_bytes": (_count, 64),
        "chunk_delay": (_seconds, 0.0),
        "chunk_bytes": (_count, 0),
        "paths": (lambda n, v: _names(n, v, optional=True), None),
        "skip_paths": (lambda n, v: _names(n, v, optional=False), frozenset()),
    }
    _KINDS: ClassVar[tuple[str, ...]] = ("reset", "error", "rate_limit", "slow", "forward_then_drop", "cut")
    _what: ClassVar[str] = "HTTP fault proxy"

    cut_rate: float
    cut_after_bytes: int
    chunk_delay: float
    chunk_bytes: int
    paths: AbstractSet[str] | None
    skip_paths: AbstractSet[str]

    def __init__(self, upstream: str | None, *, seed: int, knobs: dict[str, Any]) -> None:
        super().__init__(upstream, seed=seed, knobs=knobs)
        self.paths_seen: Counter[str] = Counter()

    def reset_counters(self) -> None:
        """Zero every counter."""
        super().reset_counters()
        self.paths_seen = Counter()

    def _eligible(self, path: str) -> bool:
        only = self.paths
        if only is not None and not any(path.startswith(p) for p in only):
            return False
        return not any(path.startswith(p) for p in self.skip_paths)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        self.paths_seen[path] += 1
        body = await _read_all(request.content, self.max_body)
        if body is None:
            return web.Response(status=413, text="request body too large\n")
        await self._hold()
        eligible = self._eligible(path)
        kind = self._draw_kind() if eligible else None
        if kind is not None:
            self._note(kind, [path])
        if kind == "reset":
            _reset_connection(request)
            return web.Response(status=502)
        if kind == "error":
            return _plain_error(self._error_status(self.error_statuses))
        if kind == "rate_limit":
            error = {"error": {"code": "rate_limited", "message": "fault proxy: too many requests"}}
            return web.json_response(error, status=429, headers=self._retry_after_headers())
        if kind == "slow" and not self.slow_forward:
            await asyncio.sleep(self.slow_seconds)
            return _plain_error(504)
        throttle = (self.chunk_delay, self.chunk_bytes) if eligible else (0.0, 0)
        return await self._relay(request, body, kind, throttle=throttle)

    async def _relay(
        self, request: web.BaseRequest, body: bytes, kind: str | None, *, throttle: tuple[float, int]
    ) -> web.StreamResponse:
        upstream, session = self._upstream, self._session
        if upstream is None or session is None:
            self.upstream_errors += 1
            return _plain_error(502)
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP)
        self.forwarded += 1
        try:
            async with session.request(
                request.method,
                upstream + request.path_qs,
                data=body if body or request.method not in ("GET", "HEAD") else None,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(),
            ) as answer:
                if kind == "forward_then_drop":
                    # let the upstream finish (and bill) the whole answer, then drop it
                    await _read_all(answer.content, self.max_body)
                    if self.drop_mode == "reset":
                        _reset_connection(request)
                        return web.Response(status=502)
                    return _plain_error(self._error_status(self.drop_statuses))
                if kind == "slow":
                    await asyncio.sleep(self.slow_seconds)
                return await self._stream_back(request, answer, kind == "cut", throttle)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            self.upstream_errors += 1
            return _plain_error(502)

    async def _stream_back(
        self,
        request: web.BaseRequest,
        answer: aiohttp.ClientResponse,
        cut: bool,
        throttle: tuple[float, int],
    ) -> web.StreamResponse:
        out_headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP]
        response = web.StreamResponse(status=answer.status, reason=answer.reason)
        for key, value in out_headers:
            response.headers.add(key, value)
        length = answer.content_length
        if length is not None:
            response.content_length = length
        budget = _cut_budget(self.cut_after_bytes, length) if cut else None
        relayed = 0
        delay, piece = throttle
        try:
            await response.prepare(request)
            while True:  # bounded: EOF, a cut, max_body or upstream_timeout ends it
                try:
                    chunk = await (answer.content.read(piece) if piece else answer.content.readany())
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    # the upstream broke off mid-body: the client must see a broken body too
                    self.upstream_errors += 1
                    _reset_connection(request)
                    return response
                if not chunk:
                    break
                if budget is not None and relayed + len(chunk) >= budget:
                    if budget > relayed:
                        await response.write(chunk[: budget - relayed])
                    _reset_connection(request)
                    return response
                await response.write(chunk)
                relayed += len(chunk)
                if relayed > self.max_body:
                    _reset_connection(request)  # too long to relay: break it rather than truncate it
                    return response
                if delay > 0:
                    await asyncio.sleep(delay)
            if budget is not None:
                _reset_connection(request)  # the body ended within the budget: still never complete
                return response
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away; closing the upstream response releases the provider
        return response


@asynccontextmanager
async def start_http_fault_proxy(
    upstream_base_url: str | None, *, seed: int = 0, **knobs: Any
) -> AsyncIterator[HttpFaultProxy]:
    """Run an HTTP fault proxy in front of ``upstream_base_url`` for an ``async with`` block.

    Example::

        async with start_http_fault_proxy(chat.url, cut_rate=1.0, cut_after_bytes=200,
                                          paths={"/v1/proxy/chat"}) as proxy:
            ...  # requests to proxy.url + "/v1/proxy/chat/completions" break mid-body

    Args:
        upstream_base_url: the service's base URL on 127.0.0.1 (e.g. ``ProviderHandle.local_url``);
            ``None`` to set it later through :attr:`HttpFaultProxy.upstream` (requests get 502 until then).
        seed: seed of the fault RNG.
        **knobs: initial knob values (see the module docstring and :class:`HttpFaultProxy`); all
            faults are off by default.

    Yields:
        The running :class:`HttpFaultProxy`; it stops when the block ends.

    Raises:
        ConfigError: an unknown knob, a bad value, or an upstream not on 127.0.0.1.
        DevnetError: no port could be bound.
    """
    async with _running(HttpFaultProxy(upstream_base_url, seed=seed, knobs=knobs)) as proxy:
        yield proxy
