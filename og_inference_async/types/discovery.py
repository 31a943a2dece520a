"""Public models of discovery: service metadata, provider model catalogues, services with health."""

from __future__ import annotations

from typing import Any

from pydantic import computed_field

from . import Service
from ._base import Frozen

__all__ = ["ProviderModels", "ServiceDetail", "ServiceHealth", "ServiceMetadata"]


class ServiceMetadata(Frozen):
    """Where to send OpenAI-compatible requests for a provider.

    Attributes:
        endpoint: the service URL plus ``/v1/proxy`` (use it as an OpenAI ``base_url``).
        model: the model to ask for (the override given, else the service's default).
        provider: the provider address.
        service_type: ``chatbot``, ``text-to-image``, ``image-editing`` or ``speech-to-text``.
    """

    endpoint: str
    model: str
    provider: str
    service_type: str


class ProviderModels(Frozen):
    """A provider's model catalogue from ``GET <url>/v1/models``.

    Attributes:
        provider: the provider address.
        url: the service URL.
        default_model: the model registered on chain.
        multi_model: whether the provider declares several models (``additionalInfo.MultiModel``).
        models: the catalogue entries as the provider returned them (each has at least ``id``).
    """

    provider: str
    url: str
    default_model: str
    multi_model: bool
    models: tuple[dict[str, Any], ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ids(self) -> list[str]:
        """The model ids."""
        return [str(m.get("id")) for m in self.models]


class ServiceHealth(Frozen):
    """Health of a service from the network's status API.

    Attributes:
        status: ``healthy``, ``warning``, ``critical`` or ``unknown``.
        uptime: uptime percentage as reported.
        avg_response_time: average response time as reported (0 when absent).
        last_check: when the status API last checked it.
    """

    status: str
    uptime: float | None = None
    avg_response_time: float = 0.0
    last_check: str | None = None


class ServiceDetail(Frozen):
    """A service and what the status API knows of it (``None`` where it knows nothing or is unreachable)."""

    service: Service
    health: ServiceHealth | None = None
    model_info: dict[str, Any] | None = None
