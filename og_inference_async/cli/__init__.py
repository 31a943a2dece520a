"""The ``og-inference`` command line: a thin layer over :class:`~og_inference_async.AsyncBroker`.

Installed with the ``cli`` extra (``pip install 'og-inference-async[cli]'``, which brings typer and
rich); run it as ``og-inference`` or ``python -m og_inference_async.cli``. ``import og_inference_async``
never imports this package.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_MISSING = (
    "og-inference: error: the command line needs the 'cli' extra (typer and rich)\n"
    "  install it with: pip install 'og-inference-async[cli]'\n"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``og-inference`` command line.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The process exit code: 0 on success, 1 on an SDK error, 2 on a usage error.
    """
    try:
        from ._app import run_app
    except ImportError as exc:
        if exc.name not in ("typer", "rich", "click"):
            raise
        sys.stderr.write(_MISSING)
        return 1
    return run_app(argv)
