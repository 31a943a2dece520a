"""Onboarding and money over time: acknowledgement, ensure_ready, auto-funding, settlement, refunds.

(Placeholder: filled in by the onboarding/funding work.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._broker import AsyncBroker
    from ._auth import AuthManager

__all__ = ["FundingMixin"]


class FundingMixin:
    """Acknowledgement, readiness, auto-funding, settlement waits and refunds for :class:`InferenceAPI`."""

    _b: AsyncBroker
    auth: AuthManager

    def _init_funding(self) -> None:
        """Set up this mixin's per-broker state (called from ``InferenceAPI.__init__``)."""
