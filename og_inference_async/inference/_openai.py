"""The OpenAI SDK adapter: an ``openai.AsyncOpenAI`` on the broker's shared httpx client.

Imported lazily (``openai`` is an optional dependency). ``AsyncOpenAI.close()`` (and leaving
``async with client:``) closes the ``http_client`` it was given (``await self._client.aclose()``,
checked in the installed openai), which would close the broker's shared pool under every other
request. The subclass built here overrides ``close`` to leave the pool alone, and supplies the
session ``httpx.Auth`` through openai's ``custom_auth`` hook, which its request loop passes to
``http_client.send(auth=...)`` (a per-client subclass, so ``with_options()`` copies keep it).

``max_retries`` defaults to 0 here (openai's own default is 2): openai resends a request after a
timeout, a connection error, 408/409/429 and any 5xx, which for a billed inference POST can bill
the same prompt twice. Callers who accept that pass ``max_retries`` themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

import openai

if TYPE_CHECKING:
    import httpx

__all__ = ["build_openai_client"]

#: Sent as ``api_key`` in session mode; the session auth replaces the header on every request.
_SESSION_PLACEHOLDER = "og-session-token"


class _BrokerPoolAsyncOpenAI(openai.AsyncOpenAI):
    """AsyncOpenAI that never closes the broker's shared pool and may carry a session auth."""

    _og_auth: ClassVar[Any] = None

    @property
    def custom_auth(self) -> Any:
        """The session ``httpx.Auth`` (``None`` in API-key mode)."""
        return type(self)._og_auth

    async def close(self) -> None:
        """Do nothing: the HTTP pool belongs to the broker, which closes it on ``aclose``."""


def build_openai_client(
    *,
    base_url: str,
    http_client: httpx.AsyncClient,
    auth: httpx.Auth | None,
    api_key: str | None,
    **kwargs: Any,
) -> openai.AsyncOpenAI:
    """Build the client.

    Args:
        base_url: ``<service url>/v1/proxy``.
        http_client: the broker's shared client.
        auth: the session auth, or ``None`` with ``api_key``.
        api_key: an ``app-sk-...`` key, or ``None`` in session mode.
        **kwargs: more ``AsyncOpenAI`` arguments; ``max_retries`` defaults to 0 (not openai's 2).
    """
    kwargs.setdefault("max_retries", 0)
    cls = cast(
        "type[_BrokerPoolAsyncOpenAI]",
        type("OGAsyncOpenAI", (_BrokerPoolAsyncOpenAI,), {"_og_auth": auth, "__module__": __name__}),
    )
    client: openai.AsyncOpenAI = cls(
        api_key=api_key if api_key is not None else _SESSION_PLACEHOLDER,
        base_url=base_url,
        http_client=cast(Any, http_client),
        **kwargs,
    )
    return client
