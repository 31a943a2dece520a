"""``python -m og_inference_async.cli``: the ``og-inference`` command line."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
