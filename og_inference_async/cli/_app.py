"""The commands of ``og-inference``: each one a few calls on the public async API.

Global options (before the command) choose the network, the RPC and the key::

    og-inference --network hardhat --rpc-url http://127.0.0.1:8545 services

The key comes from ``OG_PRIVATE_KEY`` or ``--key-file`` (``OG_KEY_FILE``); ``--private-key`` is
accepted with a warning, since command lines end up in shell histories and process lists.
Amounts are given and shown in OG; ``--json`` prints JSON (amounts in int wei) for scripts.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import (
    AsyncBroker,
    ChatResult,
    RefundStatus,
    Service,
    ServiceDetail,
    TxReceipt,
    VerificationResult,
    VerificationStatus,
)
from ._render import (
    amount,
    dump,
    emit_json,
    out,
    print_pairs,
    print_table,
    unix_time,
    waiting,
    warn,
)
from ._runner import KEY_ENV, Settings, parse_amount, run

__all__ = ["app", "run_app"]

#: The contract's page size for service listings.
_PAGE = 50

#: What an input price is per, by service type (output prices are per output token).
_UNITS = {"chatbot": "token", "text-to-image": "image", "image-editing": "image", "speech-to-text": "unit"}

app = typer.Typer(
    name="og-inference",
    help="The 0G Compute Network inference marketplace from the command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
ledger_app = typer.Typer(help="The ledger: your main account.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (persistent session tokens) for one provider.", no_args_is_help=True)
settle_app = typer.Typer(help="Provider settlements.", no_args_is_help=True)
devnet_app = typer.Typer(
    help="The local devnet (the og-inference-devnet distribution).", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")
app.add_typer(keys_app, name="keys")
app.add_typer(settle_app, name="settle")
app.add_typer(devnet_app, name="devnet")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (amounts in int wei) for scripts.")]
ProviderArg = Annotated[str, typer.Argument(help="The provider's address.", show_default=False)]
AmountArg = Annotated[str, typer.Argument(help='An amount of OG, e.g. "3" or "0.5".', show_default=False)]


@app.callback()
def _options(
    ctx: typer.Context,
    network: Annotated[
        str,
        typer.Option("--network", "-n", envvar="OG_NETWORK", help="mainnet, testnet, hardhat or a chain id."),
    ] = "testnet",
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", envvar="OG_RPC_URL", help="The JSON-RPC endpoint.")
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", envvar="OG_KEY_FILE", help="A file holding the hex private key."),
    ] = None,
    private_key: Annotated[
        str | None,
        typer.Option(
            "--private-key",
            help=f"The hex private key (discouraged: prefer {KEY_ENV} or --key-file).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Choose the network, the RPC endpoint and the wallet key."""
    if private_key:
        warn(
            "--private-key puts the key in your shell history and the process list; "
            f"set {KEY_ENV} or use --key-file instead"
        )
    ctx.obj = Settings(network=network, rpc_url=rpc_url, key_file=key_file, key_argument=private_key)


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


def _tx_line(receipt: TxReceipt) -> str:
    return f"tx {receipt.tx_hash} (block {receipt.block_number})"


def _done(message: str, receipts: Sequence[TxReceipt], as_json: bool, **extra: Any) -> None:
    """Report a write: a line and its transactions, or JSON with the receipts."""
    if as_json:
        emit_json({"message": message, "receipts": [dump(r) for r in receipts], **extra})
        return
    out.print(message, markup=False)
    for receipt in receipts:
        out.print(f"  {_tx_line(receipt)}", markup=False)


def _send(
    ctx: typer.Context,
    doing: str,
    job: Callable[[AsyncBroker], Awaitable[TxReceipt]],
    done: str,
    as_json: bool,
) -> None:
    """Run a one-transaction command with a spinner until its receipt, then report it."""
    with waiting(f"{doing}; waiting for the receipt"):
        receipt = run(_settings(ctx), job)
    _done(done, [receipt], as_json)


# -- discovery ------------------------------------------------------------------------------------


def _price(wei: int, unit: str) -> str:
    return f"{amount(wei)}/{unit}"


def _service_row(svc: Service) -> list[str]:
    return [
        svc.provider,
        svc.service_type,
        svc.model,
        _price(svc.input_price, _UNITS.get(svc.service_type, "unit")),
        _price(svc.output_price, "token"),
        svc.verifiability or "-",
        svc.url,
    ]


async def _all_details(broker: AsyncBroker) -> list[ServiceDetail]:
    details: list[ServiceDetail] = []
    offset = 0
    while True:
        page = await broker.inference.list_services_with_detail(offset, _PAGE, include_unacknowledged=True)
        details.extend(page)
        offset += _PAGE
        if len(page) < _PAGE:
            return details


@app.command()
def services(
    ctx: typer.Context,
    service_type: Annotated[
        str | None, typer.Option("--type", "-t", help="Only this type, e.g. chatbot or text-to-image.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Only models containing this text.")
    ] = None,
    detail: Annotated[
        bool, typer.Option("--detail", help="Add health from the network's status API.")
    ] = False,
    include_all: Annotated[
        bool, typer.Option("--all", help="Include services whose TEE signer 0G has not acknowledged.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the services registered on the network."""

    def wanted(svc: Service) -> bool:
        return (
            (include_all or svc.tee_signer_acknowledged)
            and (service_type is None or svc.service_type == service_type)
            and (model is None or model.lower() in svc.model.lower())
        )

    async def job(broker: AsyncBroker) -> list[ServiceDetail]:
        if detail:
            found = await _all_details(broker)
        else:
            found = [
                ServiceDetail(service=s)
                async for s in broker.inference.iter_services(include_unacknowledged=True)
            ]
        return [d for d in found if wanted(d.service)]

    with waiting("Reading the services"):
        found = run(_settings(ctx), job, wallet=False)
    if as_json:
        emit_json([dump(d.service, health=dump(d.health) if d.health else None) for d in found])
        return
    columns = ["Provider", "Type", "Model", "Price in", "Price out", "Verifiability", "URL"]
    rows = [_service_row(d.service) for d in found]
    if detail:
        columns += ["Health", "Uptime"]
        for row, d in zip(rows, found):
            health = d.health
            row += (
                [health.status, f"{health.uptime:g}%" if health.uptime is not None else "-"]
                if health
                else [
                    "unknown",
                    "-",
                ]
            )
    print_table(f"{len(found)} service(s)", columns, rows)


@app.command()
def models(ctx: typer.Context, provider: ProviderArg, as_json: JsonOption = False) -> None:
    """List a provider's models (its /v1/models catalogue)."""
    with waiting("Asking the provider"):
        catalogue = run(_settings(ctx), lambda b: b.inference.get_provider_models(provider), wallet=False)
    if as_json:
        emit_json(dump(catalogue))
        return
    rows = [[model_id, "yes" if model_id == catalogue.default_model else ""] for model_id in catalogue.ids]
    print_table(f"Models of {catalogue.provider}", ["Model", "Default"], rows)


# -- the ledger -----------------------------------------------------------------------------------


@ledger_app.command("show")
def ledger_show(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Option("--user", help="Another address's ledger (no key needed).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the ledger: total, available and locked in provider sub-accounts."""
    with waiting("Reading the ledger"):
        ledger = run(_settings(ctx), lambda b: b.ledger.get_ledger(user), wallet=user is None)
    if as_json:
        emit_json(dump(ledger, locked=ledger.locked))
        return
    print_pairs(
        f"Ledger of {ledger.user}",
        [
            ("total", amount(ledger.total)),
            ("available", amount(ledger.available)),
            ("locked", f"{amount(ledger.locked)} (in provider sub-accounts)"),
        ],
    )


@ledger_app.command("create")
def ledger_create(
    ctx: typer.Context,
    value: AmountArg,
    info: Annotated[str, typer.Option("--info", help="Free-form text stored with the ledger.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create the ledger with a first deposit."""
    wei = parse_amount(value)
    _send(
        ctx,
        f"Creating the ledger with {amount(wei)}",
        lambda b: b.ledger.add_ledger(wei, info),
        f"Created the ledger with {amount(wei)}",
        as_json,
    )


def _ledger_amount_command(
    name: str, summary: str, doing: str, send: Callable[[AsyncBroker, int], Awaitable[TxReceipt]], done: str
) -> None:
    """Register ``ledger NAME AMOUNT``: one transaction moving ``AMOUNT`` OG."""

    def command(ctx: typer.Context, value: AmountArg, as_json: JsonOption = False) -> None:
        wei = parse_amount(value)
        _send(ctx, f"{doing} {amount(wei)}", lambda b: send(b, wei), done.format(amount(wei)), as_json)

    ledger_app.command(name, help=summary)(command)


_ledger_amount_command(
    "deposit",
    "Deposit into the ledger from the wallet.",
    "Depositing",
    lambda b, w: b.ledger.deposit_fund(w),
    "Deposited {}",
)
_ledger_amount_command(
    "refund",
    "Withdraw from the ledger's available balance back to the wallet.",
    "Refunding",
    lambda b, w: b.ledger.refund(w),
    "Refunded {} to the wallet",
)


@ledger_app.command("retrieve")
def ledger_retrieve(
    ctx: typer.Context,
    providers: Annotated[
        list[str] | None,
        typer.Argument(help="Providers to retrieve from (default: all).", show_default=False),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Request refunds from provider sub-accounts and collect the unlocked ones."""
    with waiting("Retrieving funds; waiting for the receipts"):
        receipts = run(
            _settings(ctx), lambda b: b.ledger.retrieve_fund(list(providers) if providers else None)
        )
    message = (
        "Nothing to retrieve" if not receipts else "Retrieval requested (refunds unlock after the lock time)"
    )
    _done(message, receipts, as_json)


@ledger_app.command("delete")
def ledger_delete(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Delete the (empty) ledger."""
    _send(ctx, "Deleting the ledger", lambda b: b.ledger.delete_ledger(), "Deleted the ledger", as_json)


# -- sub-accounts ---------------------------------------------------------------------------------


def _unlock_text(refunds: list[RefundStatus]) -> str:
    if not refunds:
        return "-"
    locked = [r for r in refunds if not r.is_unlocked]
    if not locked:
        return "unlocked"
    return unix_time(min(r.unlocks_at for r in locked))


@app.command()
def accounts(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List every provider sub-account: balance, pending refund and when refunds unlock."""

    async def job(broker: AsyncBroker) -> tuple[list[Any], list[RefundStatus]]:
        balances = await broker.ledger.get_providers_with_balance()
        return balances, await broker.inference.get_refunds()

    with waiting("Reading the sub-accounts"):
        balances, refunds = run(_settings(ctx), job)
    by_provider: dict[str, list[RefundStatus]] = {}
    for refund in refunds:
        by_provider.setdefault(refund.provider, []).append(refund)
    if as_json:
        emit_json(
            [
                dump(
                    b,
                    spendable=b.balance - b.pending_refund,
                    refunds=[dump(r) for r in by_provider.get(b.provider, [])],
                )
                for b in balances
            ]
        )
        return
    rows = [
        [
            b.provider,
            amount(b.balance),
            amount(b.pending_refund),
            amount(b.balance - b.pending_refund),
            _unlock_text(by_provider.get(b.provider, [])),
        ]
        for b in balances
    ]
    print_table(
        f"{len(rows)} sub-account(s)",
        ["Provider", "Balance", "Pending refund", "Spendable", "Refund unlocks"],
        rows,
    )


@app.command()
def ack(
    ctx: typer.Context,
    provider: ProviderArg,
    initial: Annotated[
        str | None, typer.Option("--amount", help="OG to move into a new sub-account (default: the minimum).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Acknowledge a provider's TEE signer (opening the sub-account if needed)."""

    wei = parse_amount(initial) if initial is not None else None
    with waiting("Acknowledging; waiting for the receipt"):
        result = run(
            _settings(ctx), lambda b: b.inference.acknowledge_provider_signer(provider, initial_amount=wei)
        )
    if as_json:
        emit_json(dump(result))
        return
    text = {
        "created_account": f"Opened the sub-account with {amount(result.amount)} (acknowledging the signer)",
        "acknowledged": "Acknowledged the provider's TEE signer",
        "already_acknowledged": "Already acknowledged; nothing sent",
    }[result.status]
    out.print(text, markup=False)
    for tx_hash in result.tx_hashes:
        out.print(f"  tx {tx_hash}", markup=False)
    for warning in result.warnings:
        warn(warning)


@app.command()
def fund(ctx: typer.Context, provider: ProviderArg, value: AmountArg, as_json: JsonOption = False) -> None:
    """Move OG from the ledger into a provider sub-account."""

    wei = parse_amount(value)
    _send(
        ctx,
        f"Transferring {amount(wei)}",
        lambda b: b.ledger.transfer_fund(provider, wei),
        f"Transferred {amount(wei)} to {provider}",
        as_json,
    )


# -- API keys -------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    provider: ProviderArg,
    expires_in: Annotated[
        int, typer.Option("--expires-in", min=0, help="Lifetime in seconds (0: never expires).")
    ] = 0,
    token_id: Annotated[
        int | None, typer.Option("--token-id", help="An id in 0..254 (default: a free one).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Issue an API key (printed once: store it, it cannot be shown again)."""
    with waiting("Signing the key"):
        key = run(
            _settings(ctx),
            # The SDK takes the lifetime in milliseconds (the TS unit).
            lambda b: b.inference.create_api_key(provider, expires_in=expires_in, token_id=token_id),
        )
    secret = key.secret.get_secret_value()
    if as_json:
        emit_json(dump(key, secret=secret))
        return
    expiry = unix_time(key.expires_at // 1000) if key.expires_at else "never"
    print_pairs(
        f"API key {key.token_id} for {key.provider}",
        [("generation", str(key.generation)), ("expires", expiry), ("key", secret)],
    )
    warn("the key is shown once; store it now (revoke it with: og-inference keys revoke PROVIDER ID)")


@keys_app.command("list")
def keys_list(ctx: typer.Context, provider: ProviderArg, as_json: JsonOption = False) -> None:
    """Show the key generation and the revoked key ids of a provider sub-account."""

    async def job(broker: AsyncBroker) -> tuple[int, list[int]]:
        account = await broker.ledger.get_account(provider)
        return account.generation, await broker.inference.list_revoked_api_keys(provider)

    with waiting("Reading the sub-account"):
        generation, revoked = run(_settings(ctx), job)
    if as_json:
        emit_json({"provider": provider, "generation": generation, "revoked_ids": revoked})
        return
    print_pairs(
        f"API keys for {provider}",
        [
            ("generation", f"{generation} (keys of older generations are revoked)"),
            ("revoked ids", ", ".join(map(str, revoked)) or "none"),
        ],
    )


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    provider: ProviderArg,
    token_ids: Annotated[list[int], typer.Argument(help="The key ids to revoke.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Revoke API keys by id (one transaction)."""

    async def job(broker: AsyncBroker) -> TxReceipt:
        if len(token_ids) == 1:
            return await broker.inference.revoke_api_key(provider, token_ids[0])
        return await broker.inference.revoke_api_keys(provider, list(token_ids))

    _send(ctx, "Revoking", job, f"Revoked key id(s) {', '.join(map(str, token_ids))}", as_json)


@keys_app.command("revoke-all")
def keys_revoke_all(ctx: typer.Context, provider: ProviderArg, as_json: JsonOption = False) -> None:
    """Revoke every API key and session token for a provider (starts a new generation)."""

    _send(
        ctx,
        "Revoking all tokens",
        lambda b: b.inference.revoke_all_tokens(provider),
        "Revoked every key and session token",
        as_json,
    )


# -- requests and verification --------------------------------------------------------------------


def _verification_text(result: VerificationResult) -> str:
    status = result.status
    if status is VerificationStatus.BOUND:
        return f"bound: signed by the TEE signer {result.signer} over exactly this request and response"
    return f"{status.value}" + (f": {result.reason}" if result.reason else "")


@app.command()
def chat(
    ctx: typer.Context,
    provider: ProviderArg,
    prompt: Annotated[str, typer.Argument(help="The user message.", show_default=False)],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="A model other than the default.")
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="A system message.")] = None,
    verify: Annotated[str, typer.Option("--verify", help="off, background or required.")] = "background",
    as_json: JsonOption = False,
) -> None:
    """Chat with a provider: the answer streams to the terminal, then the fee and the verification."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]

    async def job(broker: AsyncBroker) -> tuple[ChatResult, VerificationResult]:
        async with AsyncExitStack() as stack:
            with waiting("Sending the request"):
                stream = await stack.enter_async_context(
                    broker.inference.chat_stream(provider, messages, model=model, verify=verify)
                )
            async for chunk in stream:
                if not as_json and chunk.content:
                    sys.stdout.write(chunk.content)
                    sys.stdout.flush()
            result = await stream.final()
        if not as_json:
            sys.stdout.write("\n")
        with waiting("Verifying the response"):
            outcome = await result.verification
        return result, outcome

    result, outcome = run(_settings(ctx), job)
    if as_json:
        emit_json(
            {
                "provider": result.provider,
                "model": result.model,
                "chat_id": result.chat_id,
                "content": result.content,
                "finish_reason": result.finish_reason,
                "usage": result.usage,
                "fee": result.fee,
                "cost": dump(result.cost) if result.cost else None,
                "verification": dump(outcome),
            }
        )
        return
    cost = result.cost
    units = f" ({cost.input_units} in, {cost.output_units} out)" if cost else ""
    print_pairs(
        None, [("fee", f"{amount(result.fee)}{units}"), ("verification", _verification_text(outcome))]
    )


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    provider: ProviderArg,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Save the attestation report there.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a provider's TEE attestation and signer (exit code 1 if it does not verify)."""
    with waiting("Fetching and checking the attestation"):
        report = run(
            _settings(ctx),
            lambda b: b.inference.verify_service(provider, str(output_dir) if output_dir else None),
            wallet=False,
        )
    if as_json:
        emit_json(dump(report))
    else:
        print_pairs(
            f"Service {report.provider}: {'verified' if report.verified else 'NOT verified'}",
            [(step.kind, step.message) for step in report.steps],
        )
    if not report.verified:
        raise typer.Exit(1)


@settle_app.command("wait")
def settle_wait(
    ctx: typer.Context,
    provider: ProviderArg,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait at most.")] = 120.0,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.1, help="Seconds between reads.")
    ] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Wait until a provider settles your fees on chain, then show what it took."""

    with waiting(f"Waiting for {provider} to settle (at most {timeout:g} s)"):
        report = run(
            _settings(ctx),
            lambda b: b.inference.wait_settled(provider, timeout=timeout, poll_interval=poll_interval),
        )
    if as_json:
        emit_json(dump(report))
        return
    print_pairs(
        f"Settled after {report.waited:.1f} s",
        [
            ("fee settled", amount(report.fee_settled)),
            ("balance", f"{amount(report.balance_before)} -> {amount(report.balance_after)}"),
            ("settlement nonce", f"{report.nonce_before} -> {report.nonce_after}"),
            *(("tx", h) for h in report.tx_hashes),
        ],
    )


# -- the devnet -----------------------------------------------------------------------------------


@devnet_app.command(
    "up", context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
)
def devnet_up(ctx: typer.Context) -> None:
    """Start a local devnet until Ctrl+C (options as for og-devnet up, e.g. --json)."""
    try:  # a separate distribution: looked up at run time, never a dependency of the SDK
        devnet_main = importlib.import_module("og_inference_devnet.__main__").main
    except ImportError:
        warn("the devnet is a separate distribution, og-inference-devnet, and it is not installed")
        sys.stderr.write("  install it from the repository: pip install -e ./devnet\n")
        raise typer.Exit(1) from None
    raise typer.Exit(devnet_main(["up", *ctx.args]))


def run_app(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code (see :func:`og_inference_async.cli.main`)."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="og-inference")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
