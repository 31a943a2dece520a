"""The provider's HTTP surface: a Starlette app of the route modules (:mod:`.routes`) over the core."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._core import ProviderCore
from .routes import RouteContext, all_routes
from .routes._context import install_log_filter, json_response

__all__ = ["build_app"]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return json_response({"error": {"code": code, "message": str(getattr(exc, "detail", "error"))}}, status)


def build_app(core: ProviderCore) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Build the ASGI app of one devnet provider.

    Args:
        core: the provider's state and rules.

    Returns:
        The ASGI app (it counts every HTTP request it receives in ``core.requests_received``).
    """
    install_log_filter()
    app = Starlette(routes=all_routes(RouteContext(core)), exception_handlers={HTTPException: _http_error})

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            core.requests_received += 1
        await app(scope, receive, send)

    return counted
