"""Requests to providers (chat, streaming, images, transcription, async jobs) and verification.

(Placeholder: filled in by the requests/verification work.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._broker import AsyncBroker
    from ._auth import AuthManager

__all__ = ["RequestsMixin"]


class RequestsMixin:
    """Provider requests and response verification for :class:`InferenceAPI`."""

    _b: AsyncBroker
    auth: AuthManager

    def _init_requests(self) -> None:
        """Set up this mixin's per-broker state (called from ``InferenceAPI.__init__``)."""
