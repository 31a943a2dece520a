"""JSON-RPC on top of a web3 async provider: raw requests, batches, bounded retries for reads.

The web3 contract layer is bypassed on purpose: calldata is pre-encoded (see ``_abi``) and sent
through the provider, which costs about what a raw ``eth_call`` round trip costs. The broker's
own provider is :class:`~og_inference_async._chain._provider.PooledHTTPProvider` (lock-free, on
the shared HTTP pool); a borrowed ``AsyncWeb3`` is driven through ``make_request``.

Bounds: every attempt is cut at ``RetryPolicy.attempt_timeout`` (or less, when the caller's or
the retry budget's time is shorter); reads are retried on transient failures (transport errors,
timeouts, HTTP 429/5xx, rate-limit codes) with jittered backoff, honouring a ``Retry-After``,
within ``RetryPolicy.attempts`` and ``RetryPolicy.max_delay``. Every foreign exception and every
malformed answer is translated here into :class:`~og_inference_async.RPCError` naming the method
(or a decoded :class:`~og_inference_async.ContractRevertError` for reverts).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from web3 import AsyncWeb3

from .._config import RetryPolicy
from .._exceptions import ContractRevertError, OGError, RPCError
from .._redact import redact
from ._abi import decode_revert
from ._fallback import FallbackProvider, HealthTuning
from ._provider import RATE_LIMIT_CODES, TRANSIENT_WORDS, DirectProvider, PooledHTTPProvider, Poster

__all__ = ["RpcClient", "as_int", "as_hex_bytes"]

log = logging.getLogger(__name__)

#: A retry is not started when less than this much of the budget is left (seconds).
_MIN_ATTEMPT = 0.05


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RPCError) and exc.retryable


def _classify_exception(exc: Exception, method: str) -> RPCError:
    """Translate a transport-level exception from a foreign provider stack."""
    name = type(exc).__name__
    status = getattr(exc, "status", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return RPCError(
            f"{method}: RPC HTTP error {status} ({name})",
            retryable=status == 429 or status >= 500,
            method=method,
        )
    return RPCError(f"{method}: RPC transport error ({name})", retryable=True, method=method)


def _error_from_response(err: Any, method: str) -> RPCError | ContractRevertError:
    if not isinstance(err, dict):
        return RPCError(f"{method}: malformed JSON-RPC error object", method=method)
    code = err.get("code")
    message = str(err.get("message", ""))
    data = err.get("data")
    lowered = message.lower()
    if "revert" in lowered or code == 3:
        revert_data = (
            data if isinstance(data, str) else (data or {}).get("data") if isinstance(data, dict) else None
        )
        return decode_revert(revert_data, context=method)
    retryable = code in RATE_LIMIT_CODES or any(w in lowered for w in TRANSIENT_WORDS)
    return RPCError(
        f"{method}: {redact(message[:300])}",
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        data=redact(data) if isinstance(data, str) else data,
        retryable=retryable,
        method=method,
    )


def as_int(value: Any, method: str) -> int:
    """A JSON-RPC quantity (``"0x1a"``) as an int.

    Raises:
        RPCError: the node answered something else (``null``, a number, junk).
    """
    if isinstance(value, str) and value.startswith(("0x", "0X")) and 2 < len(value) <= 66:
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise RPCError(f"{method}: the node answered {_shape(value)} where a hex quantity belongs", method=method)


def as_hex_bytes(value: Any, method: str) -> bytes:
    """JSON-RPC data (``"0x..."``) as bytes.

    Raises:
        RPCError: the node answered something else.
    """
    if isinstance(value, str):
        text = value[2:] if value.startswith(("0x", "0X")) else value
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    raise RPCError(f"{method}: the node answered {_shape(value)} where hex data belongs", method=method)


def _shape(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return f"a {type(value).__name__}"


class RpcClient:
    """A small JSON-RPC client on top of an :class:`AsyncWeb3` provider.

    Args:
        w3: the AsyncWeb3 instance; its provider is used for raw requests.
        owned: whether :meth:`aclose` should disconnect the provider (``False`` for borrowed ones).
        retry: bounded retry policy for idempotent reads.
    """

    def __init__(self, w3: AsyncWeb3[Any], *, owned: bool, retry: RetryPolicy | None = None) -> None:
        self.w3 = w3
        self._owned = owned
        self.retry = retry or RetryPolicy()
        self.request_count = 0
        #: requests by JSON-RPC method (a batch counts as ``"batch"``), for ``broker.stats()``
        self.calls: Counter[str] = Counter()
        provider = w3.provider
        self._pooled: DirectProvider | None = provider if isinstance(provider, DirectProvider) else None
        #: the endpoints with their health, when the provider has several (``rpc_urls``)
        self.endpoints: FallbackProvider | None = provider if isinstance(provider, FallbackProvider) else None

    @classmethod
    def on_pool(cls, rpc_url: str, post: Poster, *, retry: RetryPolicy | None = None) -> RpcClient:
        """Build a client whose requests go through ``post`` (the broker's shared HTTP pool)."""
        policy = retry or RetryPolicy()
        provider = PooledHTTPProvider(rpc_url, post, timeout=policy.attempt_timeout)
        return cls(AsyncWeb3(provider), owned=True, retry=policy)

    @classmethod
    def on_endpoints(
        cls,
        endpoints: Sequence[tuple[str, Poster]],
        *,
        retry: RetryPolicy | None = None,
        tuning: HealthTuning | None = None,
    ) -> RpcClient:
        """Build a client over several endpoints (``(url, post)`` pairs) with health and read failover."""
        policy = retry or RetryPolicy()
        provider = FallbackProvider(endpoints, timeout=policy.attempt_timeout, tuning=tuning)
        return cls(AsyncWeb3(provider), owned=True, retry=policy)

    def _at(self, endpoint: int | None) -> FallbackProvider | None:
        """The fallback provider when a request names an ``endpoint`` (checked), else ``None``."""
        if endpoint is None:
            return None
        if self.endpoints is None or not 0 <= endpoint < len(self.endpoints.urls):
            raise RPCError(f"no RPC endpoint {endpoint} on this client")
        return self.endpoints

    async def aclose(self) -> None:
        """Disconnect the provider if this client owns it."""
        if self._owned:
            try:
                await self.w3.provider.disconnect()
            except Exception:  # closing must not fail
                log.debug("error while disconnecting the RPC provider", exc_info=True)

    # -- one attempt -----------------------------------------------------------------------------

    async def _raw(self, method: str, params: list[Any], timeout: float, endpoint: int | None = None) -> Any:
        """One request, cut at ``timeout`` seconds; foreign exceptions translated."""
        self.request_count += 1
        self.calls[method] += 1
        pinned = self._at(endpoint)
        with anyio.move_on_after(timeout) as scope:
            try:
                if pinned is not None:
                    return await pinned.request(method, params, timeout=timeout, endpoint=endpoint)
                if self._pooled is not None:
                    return await self._pooled.request(method, params, timeout=timeout)
                return await self.w3.provider.make_request(method, params)
            except OGError:
                raise
            except Exception as exc:  # a foreign provider stack: translate everything
                raise _classify_exception(exc, method) from None
        assert scope.cancelled_caught
        raise RPCError(f"{method}: no answer within {timeout:g} s", retryable=True, method=method)

    async def _once(
        self, method: str, params: Sequence[Any], timeout: float, endpoint: int | None = None
    ) -> Any:
        response = await self._raw(method, list(params), timeout, endpoint)
        if not isinstance(response, dict):
            raise RPCError(f"{method}: malformed JSON-RPC response", retryable=True, method=method)
        if response.get("error"):
            raise _error_from_response(response["error"], method)
        if "result" not in response:
            raise RPCError(f"{method}: JSON-RPC response without a result", retryable=True, method=method)
        return response["result"]

    async def _batch_once(
        self, calls: Sequence[tuple[str, Sequence[Any]]], timeout: float, endpoint: int | None = None
    ) -> list[Any | RPCError | ContractRevertError]:
        self.request_count += 1
        self.calls["batch"] += 1
        items = [(m, list(p)) for m, p in calls]
        responses: Any = None
        pinned = self._at(endpoint)
        with anyio.move_on_after(timeout):
            try:
                if pinned is not None:
                    responses = await pinned.request_batch(items, timeout=timeout, endpoint=endpoint)
                elif self._pooled is not None:
                    responses = await self._pooled.request_batch(items, timeout=timeout)
                else:
                    responses = await self.w3.provider.make_batch_request(items)
            except OGError:
                raise
            except Exception as exc:
                raise _classify_exception(exc, "batch") from None
        if responses is None:
            raise RPCError(f"batch: no answer within {timeout:g} s", retryable=True, method="batch")
        if not isinstance(responses, list) or len(responses) != len(calls):
            err = responses.get("error") if isinstance(responses, dict) else None
            if isinstance(err, dict):
                raise _error_from_response(err, "batch")
            raise RPCError("batch: malformed JSON-RPC batch response", retryable=True, method="batch")
        out: list[Any | RPCError | ContractRevertError] = []
        for (method, _), resp in zip(calls, responses):
            if not isinstance(resp, dict):
                out.append(RPCError(f"{method}: malformed item in a batch response", method=method))
            elif resp.get("error"):
                out.append(_error_from_response(resp["error"], method))
            else:
                out.append(resp.get("result"))
        for item in out:
            if isinstance(item, RPCError) and item.retryable:
                raise item  # a rate-limited or transient item: the whole (read-only) batch goes again
        return out

    # -- retries ---------------------------------------------------------------------------------

    def _retrying(self, deadline: float) -> AsyncRetrying:
        policy = self.retry
        backoff = wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            delay = backoff(state)
            asked = getattr(exc, "retry_after", None)
            if isinstance(asked, (int, float)) and asked > delay:
                delay = float(asked)
            return max(0.0, min(delay, deadline - time.monotonic() - _MIN_ATTEMPT))

        return AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | _OutOfTime(deadline),
            wait=wait,
            retry=retry_if_exception(_is_retryable),
            sleep=anyio.sleep,
            reraise=True,
            before_sleep=_log_retry,
        )

    def _attempt_timeout(self, deadline: float, timeout: float | None) -> float:
        left = deadline - time.monotonic()
        cap = self.retry.attempt_timeout if timeout is None else min(timeout, self.retry.attempt_timeout)
        return max(_MIN_ATTEMPT, min(cap, left))

    async def request(
        self,
        method: str,
        params: Sequence[Any] = (),
        *,
        retry: bool = True,
        timeout: float | None = None,
        endpoint: int | None = None,
    ) -> Any:
        """Send one JSON-RPC request and return its ``result``.

        Args:
            method: the JSON-RPC method.
            params: its parameters.
            retry: retry transient failures (only for idempotent reads; never for sends).
            timeout: the most one attempt may take (seconds; default ``RetryPolicy.attempt_timeout``).
            endpoint: with several endpoints (:attr:`endpoints`), send to this one only (by index).

        Raises:
            RPCError: transport failure, timeout, malformed answer, or JSON-RPC error.
            ContractRevertError: the call reverted (decoded).
        """
        deadline = time.monotonic() + self.retry.max_delay
        if not retry:
            return await self._once(method, params, self._attempt_timeout(deadline, timeout), endpoint)
        # The first attempt runs outside tenacity (its machinery costs about 18 us a request); a
        # retryable failure is replayed as tenacity's first attempt, so waits, stops and logging
        # are exactly those of a loop that had run from the start.
        try:
            return await self._once(method, params, self._attempt_timeout(deadline, timeout), endpoint)
        except RPCError as exc:
            if not exc.retryable:
                raise
            replay: list[RPCError] = [exc]
        async for attempt in self._retrying(deadline):
            with attempt:
                if replay:
                    raise replay.pop()
                return await self._once(method, params, self._attempt_timeout(deadline, timeout), endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    async def batch(
        self,
        calls: Sequence[tuple[str, Sequence[Any]]],
        *,
        timeout: float | None = None,
        retry: bool = True,
        endpoint: int | None = None,
    ) -> list[Any | RPCError | ContractRevertError]:
        """Send read requests as one JSON-RPC batch; each item is a result or the (not raised) error.

        The whole batch is retried on transport failures (unless ``retry`` is false: one attempt,
        for callers that poll within a deadline of their own). ``endpoint`` sends it to that
        endpoint only (with several endpoints).
        """
        if not calls:
            return []
        deadline = time.monotonic() + self.retry.max_delay
        if not retry:
            return await self._batch_once(calls, self._attempt_timeout(deadline, timeout), endpoint)
        try:  # first attempt outside tenacity, a retryable failure replayed into it (see request)
            return await self._batch_once(calls, self._attempt_timeout(deadline, timeout), endpoint)
        except RPCError as exc:
            if not exc.retryable:
                raise
            replay: list[RPCError] = [exc]
        async for attempt in self._retrying(deadline):
            with attempt:
                if replay:
                    raise replay.pop()
                return await self._batch_once(calls, self._attempt_timeout(deadline, timeout), endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- typed helpers ---------------------------------------------------------------------------

    async def request_int(self, method: str, params: Sequence[Any] = (), **kwargs: Any) -> int:
        """:meth:`request` for a quantity result (``eth_blockNumber``, ``eth_getBalance``, ...)."""
        return as_int(await self.request(method, params, **kwargs), method)

    async def eth_call(
        self, to: str, data: bytes, *, sender: str | None = None, block: str = "latest"
    ) -> bytes:
        """``eth_call`` with pre-encoded calldata; returns the raw return bytes."""
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender is not None:
            tx["from"] = sender
        result = await self.request("eth_call", [tx, block])
        return as_hex_bytes(result, "eth_call")

    async def chain_id(self) -> int:
        """The chain id the node reports."""
        return await self.request_int("eth_chainId", [])


class _OutOfTime(stop_base):
    """Stop when less than one minimal attempt fits before the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.deadline - time.monotonic() < _MIN_ATTEMPT


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.info("retrying RPC read after transient failure (attempt %d): %s", state.attempt_number, exc)
