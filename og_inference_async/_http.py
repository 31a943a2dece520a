"""The only module that imports httpx: the shared client and the boundary that translates its errors."""

from __future__ import annotations

import httpx

from ._exceptions import ProviderConnectionError

__all__ = ["DEFAULT_LIMITS", "DEFAULT_TIMEOUT", "make_http_client", "translate_transport_error"]

#: Separate connect and read timeouts (seconds); a read timeout is an idle timeout in httpx.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=30.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=128, keepalive_expiry=30.0)


def make_http_client() -> httpx.AsyncClient:
    """Build the broker-owned shared :class:`httpx.AsyncClient` (no I/O until first use)."""
    return httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, limits=DEFAULT_LIMITS, follow_redirects=False)


def translate_transport_error(
    exc: httpx.HTTPError, *, provider: str | None, what: str
) -> ProviderConnectionError:
    """Map an httpx transport error (connect, read timeout, protocol) to our typed error."""
    kind = type(exc).__name__
    return ProviderConnectionError(f"{what}: {kind} talking to the provider", provider=provider)
