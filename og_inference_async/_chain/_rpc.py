"""JSON-RPC over web3's async HTTP provider: raw requests, batches, bounded retries for reads.

The web3 contract layer is bypassed on purpose: calldata is pre-encoded (see ``_abi``) and sent
with ``provider.make_request``, which costs about what a raw ``eth_call`` round trip costs.
Every foreign exception is translated here into :class:`~og_inference_async.RPCError` (or a
decoded :class:`~og_inference_async.ContractRevertError` for reverts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anyio
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from web3 import AsyncHTTPProvider, AsyncWeb3

from .._config import RetryPolicy
from .._exceptions import ContractRevertError, RPCError
from ._abi import decode_revert

__all__ = ["RpcClient"]

log = logging.getLogger("og_inference_async.chain")

_RATE_LIMIT_CODES = {-32005, -32029, 429}
_TRANSIENT_WORDS = ("rate limit", "too many requests", "timeout", "timed out", "temporarily", "try again")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RPCError) and exc.retryable


def _classify_exception(exc: Exception) -> RPCError:
    """Translate a transport-level exception from the web3 provider stack."""
    name = type(exc).__name__
    status = getattr(exc, "status", None) or getattr(getattr(exc, "response", None), "status_code", None)
    retryable = True
    if isinstance(status, int):
        retryable = status == 429 or status >= 500
        return RPCError(f"RPC HTTP error {status} ({name})", retryable=retryable)
    return RPCError(f"RPC transport error: {name}: {str(exc)[:200]}", retryable=retryable)


def _error_from_response(err: dict[str, Any], method: str) -> RPCError | ContractRevertError:
    code = err.get("code")
    message = str(err.get("message", ""))
    data = err.get("data")
    lowered = message.lower()
    if "revert" in lowered or code == 3:
        revert_data = (
            data if isinstance(data, str) else (data or {}).get("data") if isinstance(data, dict) else None
        )
        return decode_revert(revert_data, context=method)
    retryable = code in _RATE_LIMIT_CODES or any(w in lowered for w in _TRANSIENT_WORDS)
    return RPCError(
        f"{method}: {message[:300]}",
        code=code if isinstance(code, int) else None,
        data=data,
        retryable=retryable,
    )


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

    @classmethod
    def for_url(cls, rpc_url: str, *, retry: RetryPolicy | None = None, timeout: float = 30.0) -> RpcClient:
        """Build an owned client for ``rpc_url`` (no I/O happens until the first request)."""
        provider = AsyncHTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
        )
        return cls(AsyncWeb3(provider), owned=True, retry=retry)

    async def aclose(self) -> None:
        """Disconnect the provider's session if this client owns it."""
        if self._owned:
            try:
                await self.w3.provider.disconnect()
            except Exception:  # closing must not fail
                log.debug("error while disconnecting the RPC provider", exc_info=True)

    async def _once(self, method: str, params: Sequence[Any]) -> Any:
        self.request_count += 1
        try:
            response = await self.w3.provider.make_request(method, list(params))
        except (RPCError, ContractRevertError):
            raise
        except Exception as exc:  # the web3/aiohttp boundary: translate everything
            raise _classify_exception(exc) from exc
        if not isinstance(response, dict):
            raise RPCError(f"{method}: malformed JSON-RPC response")
        if response.get("error"):
            raise _error_from_response(response["error"], method)
        return response.get("result")

    def _retrying(self) -> AsyncRetrying:
        policy = self.retry
        return AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_delay),
            wait=wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff),
            retry=retry_if_exception(_is_retryable),
            sleep=anyio.sleep,
            reraise=True,
            before_sleep=_log_retry,
        )

    async def request(self, method: str, params: Sequence[Any] = (), *, retry: bool = True) -> Any:
        """Send one JSON-RPC request.

        Args:
            method: the JSON-RPC method.
            params: its parameters.
            retry: retry transient failures (only for idempotent reads; never for sends).

        Raises:
            RPCError: transport failure or JSON-RPC error.
            ContractRevertError: the call reverted (decoded).
        """
        if not retry:
            return await self._once(method, params)
        async for attempt in self._retrying():
            with attempt:
                return await self._once(method, params)
        raise AssertionError("unreachable")  # pragma: no cover

    async def batch(
        self, calls: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[Any | RPCError | ContractRevertError]:
        """Send read requests as one JSON-RPC batch; each item is a result or the (not raised) error.

        The whole batch is retried on transport failures.
        """
        if not calls:
            return []
        async for attempt in self._retrying():
            with attempt:
                return await self._batch_once(calls)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _batch_once(
        self, calls: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[Any | RPCError | ContractRevertError]:
        self.request_count += 1
        try:
            responses = await self.w3.provider.make_batch_request([(m, list(p)) for m, p in calls])
        except Exception as exc:
            raise _classify_exception(exc) from exc
        if not isinstance(responses, list):
            err = responses.get("error") if isinstance(responses, dict) else None
            if isinstance(err, dict):
                raise _error_from_response(err, "batch")
            raise RPCError("malformed JSON-RPC batch response")
        out: list[Any | RPCError | ContractRevertError] = []
        for (method, _), resp in zip(calls, responses):
            if resp.get("error"):
                out.append(_error_from_response(resp["error"], method))
            else:
                out.append(resp.get("result"))
        return out

    async def eth_call(
        self, to: str, data: bytes, *, sender: str | None = None, block: str = "latest"
    ) -> bytes:
        """``eth_call`` with pre-encoded calldata; returns the raw return bytes."""
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender is not None:
            tx["from"] = sender
        result = await self.request("eth_call", [tx, block])
        return _hex_to_bytes(result)

    async def chain_id(self) -> int:
        """The chain id the node reports."""
        return int(await self.request("eth_chainId", []), 16)


def _hex_to_bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise RPCError("eth_call returned a non-string result")
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.info("retrying RPC read after transient failure (attempt %d): %s", state.attempt_number, exc)
