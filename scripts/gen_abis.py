"""Regenerate ``og_inference_async/_chain/abi/{LedgerManager,InferenceServing}.json``.

The ABIs come from the pinned, hash-verified npm artifacts (the official TS SDK's typechain
factories; see ``og_inference_devnet.ensure_artifacts``) and are written the way
``JSON.stringify(abi, null, 1) + "\\n"`` writes them, so regenerating is a no-op unless the
pins change.

Usage::

    python scripts/gen_abis.py           # rewrite the files that differ
    python scripts/gen_abis.py --check   # exit 1 if a file differs, write nothing
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from og_inference_devnet import DevnetError, ensure_artifacts  # noqa: E402

ABI_DIR = ROOT / "og_inference_async" / "_chain" / "abi"
NAMES = ("LedgerManager", "InferenceServing")


def render(abi: list[dict[str, object]]) -> str:
    """Serialise an ABI exactly as ``JSON.stringify(abi, null, 1) + "\\n"`` does."""
    return json.dumps(abi, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the ABI files; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    try:
        artifacts = anyio.run(ensure_artifacts)
    except DevnetError as exc:
        print(f"gen_abis: {exc}", file=sys.stderr)
        return 1
    differ = []
    for name in NAMES:
        path = ABI_DIR / f"{name}.json"
        text = render(artifacts.contracts[name].abi)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            print(f"{path.relative_to(ROOT)}: up to date")
            continue
        differ.append(path)
        if args.check:
            print(f"{path.relative_to(ROOT)}: differs from the npm artifacts")
        else:
            path.write_text(text, encoding="utf-8")
            print(f"{path.relative_to(ROOT)}: written")
    return 1 if (args.check and differ) else 0


if __name__ == "__main__":
    sys.exit(main())
