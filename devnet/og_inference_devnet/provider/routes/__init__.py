"""The provider's HTTP routes, one module per area, over a shared :class:`~._context.RouteContext`.

- :mod:`.chat`: ``POST /v1/proxy/chat/completions`` (JSON and SSE);
- :mod:`.images`: ``POST /v1/proxy/images/generations`` and ``/v1/proxy/images/edits`` (multipart);
- :mod:`.audio`: ``POST /v1/proxy/audio/transcriptions`` (multipart; JSON, text or SSE);
- :mod:`.jobs`: ``POST /v1/async/images/{generations,edits}`` (202) and ``GET /v1/async/jobs/{id}``;
- :mod:`.meta`: signatures, quote, attestation report, models, unsettled fees, and the ``403`` for a
  POST outside ``/v1/proxy``.

Each module parses requests and shapes responses only; every decision (auth, balance, fees, signatures,
settlement) is the core's (``provider/_core.py``).
"""

from __future__ import annotations

from starlette.routing import Route

from . import audio, chat, images, jobs, meta
from ._context import RouteContext

__all__ = ["RouteContext", "all_routes"]


def all_routes(ctx: RouteContext) -> list[Route]:
    """Every route of a provider, the catch-all refusal last."""
    return [*chat.routes(ctx), *images.routes(ctx), *audio.routes(ctx), *jobs.routes(ctx), *meta.routes(ctx)]
