"""``broker.inference``: the facade over the inference services, and the services.

Every public method of the facade (:class:`InferenceAPI`, in ``_facade``) keeps the official TS
SDK's name (in snake case) and delegates in one line to the service that does the work (the
services and who builds them are listed in ``_graph``).

Importing the package is light: its names load from their submodules on first access, so the
broker's policies and budgets (``_common``, ``budgets``) load at construction without the services.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._common import RequestPolicies
    from ._facade import InferenceAPI
    from ._facade import _Delegate as _Delegate
    from ._graph import InferenceServices
    from .auth import ApiKeyRegistry, InMemoryApiKeyRegistry

_LAZY = {
    "ApiKeyRegistry": ".auth",
    "InMemoryApiKeyRegistry": ".auth",
    "InferenceAPI": "._facade",
    "InferenceServices": "._graph",
    "RequestPolicies": "._common",
    "_Delegate": "._facade",
}

__all__ = ["ApiKeyRegistry", "InMemoryApiKeyRegistry", "InferenceAPI", "InferenceServices", "RequestPolicies"]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
