"""The devnet's own exception type."""

from __future__ import annotations

from typing import Any

from og_inference_async import OGError

__all__ = ["DevnetError"]


class DevnetError(OGError):
    """The local devnet could not be set up, started or driven.

    Raised for a missing ``node``/``npm``, a failed ``npm install``, a downloaded contract
    bytecode whose sha256 does not match the pinned value, an ``anvil`` that does not start,
    a failed deployment, a JSON-RPC error response and a reverted dev transaction. The
    message says what went wrong and, in ``hint``, what to do about it.

    Attributes:
        code: the JSON-RPC error code, when the node answered with an error.
        data: the JSON-RPC error data (often the revert data as ``0x`` hex), when there was one.
    """

    def __init__(
        self, message: str, *, hint: str | None = None, code: int | None = None, data: Any = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.data = data
