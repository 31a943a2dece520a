"""Command line: ``python -m og_inference_devnet {up,install}`` (also the ``og-devnet`` script).

``up`` starts the devnet, prints its facts (``--json``: one JSON object on one line) and runs
until SIGINT or SIGTERM. ``install`` fetches and verifies the npm artifacts and prints the
cache folder.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from og_inference_async import OGError, format_og

from ._artifacts import ensure_artifacts
from ._deploy import MAX_LOCK_TIME, MIN_LOCK_TIME
from ._devnet import Devnet, provider_starter, start_devnet
from ._errors import DevnetError

__all__ = ["main"]

_SHOWN_KEYS = 5


def _provider_lines(p: dict[str, Any]) -> str:
    """One provider in human form: type, model, address, URL, TEE signer and prices in OG."""
    unit = p.get("price_unit", "unit")
    price = f"{format_og(int(p['input_price']))} OG/{unit}"
    if int(p.get("output_price", 0)):
        price += f" in, {format_og(int(p['output_price']))} OG/token out"
    return (
        f"    {p['service_type']:<15} {p['model']}\n"
        f"      address {p['address']}  url {p['url']}\n"
        f"      tee signer {p['tee_signer']}  price {price}"
    )


def _providers_available() -> bool:
    try:
        provider_starter()
    except DevnetError:
        return False
    return True


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _human(dn: Devnet) -> str:
    lines = [
        "0G devnet running (anvil + LedgerManager + InferenceServing)",
        f"  rpc_url    {dn.rpc_url}",
        f"  chain_id   {dn.chain_id}",
        f"  ledger     {dn.ledger}",
        f"  inference  {dn.inference}   (service {dn.service_name}, lock time {dn.lock_time} s)",
        f"  accounts   {len(dn.accounts)} funded dev accounts from the public test mnemonic; the first "
        f"{min(_SHOWN_KEYS, len(dn.accounts))} (#0 owns the contracts):",
    ]
    for i, account in enumerate(dn.accounts[:_SHOWN_KEYS]):
        lines.append(f"    #{i} {account.address}  {account.private_key}")
    info = dn.info()
    if info["providers"]:
        lines.append("  providers")
        lines.extend(_provider_lines(p) for p in info["providers"])
    else:
        lines.append("  providers  none")
    lines.append("Press Ctrl+C to stop.")
    return "\n".join(lines)


async def _up(args: argparse.Namespace) -> int:
    with_providers = _providers_available() if args.providers is None else bool(args.providers)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with start_devnet(lock_time=args.lock_time, with_providers=with_providers) as dn:
            if args.json:
                _print(json.dumps(dn.info(), separators=(",", ":"), default=str))
            else:
                _print(_human(dn))
            async for _ in signals:
                break
    if not args.json:
        _print("devnet stopped")
    return 0


async def _install(args: argparse.Namespace) -> int:
    artifacts = await ensure_artifacts(args.cache_dir)
    _print(str(artifacts.cache_dir))
    return 0


def _lock_time(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if not MIN_LOCK_TIME <= value <= MAX_LOCK_TIME:
        raise argparse.ArgumentTypeError(f"must be within [{MIN_LOCK_TIME}, {MAX_LOCK_TIME}]")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="og-devnet", description="A local 0G chain (anvil + the real contracts)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the devnet and run until Ctrl+C / SIGTERM")
    up.add_argument("--json", action="store_true", help="print the facts as one JSON object on one line")
    up.add_argument(
        "--lock-time", type=_lock_time, default=86400, help="refund lock time in seconds (default 86400)"
    )
    group = up.add_mutually_exclusive_group()
    group.add_argument(
        "--providers",
        dest="providers",
        action="store_true",
        default=None,
        help="start the local providers (default: when the provider subpackage is installed)",
    )
    group.add_argument("--no-providers", dest="providers", action="store_false", help="start no providers")
    install = sub.add_parser("install", help="fetch and verify the npm artifacts, print the cache folder")
    install.add_argument("--cache-dir", default=None, help="install here instead of the default cache folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``og-devnet`` command line.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The process exit code: 0 on success, 1 on a devnet error.
    """
    args = _parser().parse_args(argv)
    handler: Any = _up if args.command == "up" else _install
    try:
        code: int = anyio.run(handler, args)
    except OGError as exc:
        sys.stderr.write(f"og-devnet: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
