"""Starting devnet providers: socket, uvicorn server, on-chain registration, settlement loop."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.abc
import httpx
import uvicorn
from eth_account import Account
from eth_utils import keccak

from og_inference_async import ConfigError

from ._billing import FeeBook, SettlementResult
from ._chain import ProviderChain, inference_function
from ._core import ProviderConfig, ProviderCore
from ._faults import ProviderFaults

__all__ = [
    "DEFAULT_PROVIDERS",
    "ProviderHandle",
    "start_default_providers",
    "start_provider",
    "tee_key_for",
]

#: The providers :func:`start_default_providers` starts:
#: (service type, model, input price, output price, dev account index).
DEFAULT_PROVIDERS: tuple[tuple[str, str, int, int, int], ...] = (
    # 1 OG per million prompt tokens, 2 OG per million completion tokens
    ("chatbot", "og-devnet/echo-chat-7b", 1_000_000_000_000, 2_000_000_000_000, 20),
    # 0.01 OG per image
    ("text-to-image", "og-devnet/pattern-diffusion", 10_000_000_000_000_000, 0, 21),
    # 0.02 OG per edited image
    ("image-editing", "og-devnet/pattern-edit", 20_000_000_000_000_000, 0, 22),
    # token mode: 0.00001 OG per output (transcript) token; audio input tokens are free
    ("speech-to-text", "og-devnet/whisper-echo", 0, 10_000_000_000_000, 23),
)

_PRICE_UNITS = {
    "chatbot": "token",
    "text-to-image": "image",
    "image-editing": "image",
    "speech-to-text": "token",
}
_SERVICE_TYPES = tuple(_PRICE_UNITS)
_TRANSCRIPTION_BILLING = ("tokens", "duration")


class DevnetLike(Protocol):
    """What a provider needs from the devnet (``og_inference_devnet.Devnet``)."""

    rpc_url: str
    chain_id: int
    inference: str

    @property
    def accounts(self) -> list[Any]:
        """The funded dev accounts (``address`` and ``private_key``)."""
        ...

    @property
    def owner(self) -> Any:
        """The contracts' owner account (acknowledges providers' TEE signers)."""
        ...

    async def send_as(
        self, address: str, to: str | None, data: bytes = b"", value: int = 0
    ) -> dict[str, Any]:
        """Send a transaction from an unlocked dev account and return its receipt."""
        ...

    async def set_balance(self, address: str, wei: int) -> None:
        """Set an address's native balance."""
        ...


def tee_key_for(provider_key: str) -> str:
    """Derive a provider's TEE signer key deterministically from its account key."""
    raw = bytes.fromhex(provider_key.removeprefix("0x"))
    return "0x" + bytes(keccak(b"og-devnet-tee-signer:" + raw)).hex()


@dataclass
class ProviderHandle:
    """A running devnet provider.

    Attributes:
        address: the provider's account address (its on-chain identity).
        url: the service URL registered on chain (``http://127.0.0.1:<port>``, or the
            ``advertised_url`` it was started with).
        local_url: where the provider's own server listens (equal to ``url`` unless an
            ``advertised_url``, e.g. a fault proxy in front of it, was registered instead).
        tee_signer: the TEE signer address (registered and acknowledged by the owner).
        service_type: the registered service type.
        model: the registered model.
        input_price: wei per input unit, as registered.
        output_price: wei per output token, as registered.
        faults: the fault knobs (mutable at runtime).
        core: the provider's state (fee book, config, chain access) for white-box tests.
    """

    address: str
    url: str
    tee_signer: str
    service_type: str
    model: str
    input_price: int
    output_price: int
    faults: ProviderFaults
    core: ProviderCore = field(repr=False)
    local_url: str = ""
    _scope: anyio.CancelScope | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.local_url:
            self.local_url = self.url

    def info(self) -> dict[str, Any]:
        """The provider's public facts as a JSON-able dict.

        Keys: ``address``, ``url``, ``endpoint`` (``url + "/v1/proxy"``), ``service_type``,
        ``model``, ``tee_signer``, ``input_price`` and ``output_price`` (wei, as decimal strings),
        ``price_unit`` (what ``input_price`` is per: ``"token"``, ``"image"``, or ``"second"`` for
        speech-to-text in duration mode; ``output_price`` is always per output token),
        ``settle_interval`` (seconds or ``None``), and for speech-to-text ``transcription_billing``
        (``"tokens"`` or ``"duration"``).
        """
        unit = _PRICE_UNITS.get(self.service_type, "unit")
        billing: dict[str, Any] = {}
        if self.service_type == "speech-to-text":
            billing["transcription_billing"] = self.core.config.transcription_billing
            if self.core.config.transcription_billing == "duration":
                unit = "second"
        return {
            "address": self.address,
            "url": self.url,
            "endpoint": self.url + "/v1/proxy",
            "service_type": self.service_type,
            "model": self.model,
            "tee_signer": self.tee_signer,
            "input_price": str(self.input_price),
            "output_price": str(self.output_price),
            "price_unit": unit,
            "settle_interval": self.core.config.settle_interval,
            **billing,
        }

    def unsettled_fee(self, user: str) -> int:
        """Fees billed to ``user`` and not settled yet, in wei."""
        return self.core.book.unsettled(user)

    @property
    def requests_received(self) -> int:
        """Every HTTP request the provider received since start (any route, answered or refused)."""
        return self.core.requests_received

    @property
    def requests_served(self) -> int:
        """Requests billed since start (synchronous answers and completed async jobs)."""
        return self.core.requests_served

    @property
    def total_billed(self) -> int:
        """Every fee billed since start (settled or not), in wei."""
        return self.core.book.total_billed

    async def settle_now(self) -> list[SettlementResult]:
        """Settle all unsettled fees on chain now (see ``ProviderCore.settle_now`` for the rules).

        Returns:
            One :class:`SettlementResult` per user that had unsettled fees.
        """
        return await self.core.settle_now()

    def invalidate_cache(self, user: str | None = None) -> None:
        """Forget cached on-chain account reads (normally refreshed whenever a block is mined)."""
        self.core.invalidate(user)

    def reset(self) -> None:
        """Forget all billing state, async jobs and cached reads, and turn faults off.

        Call it after reverting the chain to a snapshot (``dn.revert``): fees billed after the
        snapshot would otherwise be settled against the reverted state.
        """
        self.core.book = FeeBook()
        self.core.jobs.clear()
        self.core.invalidate()
        self.faults.reset()

    async def aclose(self) -> None:
        """Stop serving and stop the settlement loop (idempotent). Fees left unsettled stay unsettled."""
        if self._scope is not None:
            self._scope.cancel()


async def _serve(
    server: uvicorn.Server,
    sock: socket.socket,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run a uvicorn server on a bound socket until cancelled, then shut it down cleanly.

    uvicorn's own ``serve()`` is not used: it installs process-wide signal handlers and polls
    every 100 ms; ``startup``/``shutdown`` around a plain sleep is all a devnet server needs.
    """
    server.config.load()
    server.lifespan = server.config.lifespan_class(server.config)
    try:
        await server.startup(sockets=[sock])
        task_status.started()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await _shutdown(server, sock)


async def _shutdown(server: uvicorn.Server, sock: socket.socket) -> None:
    server.should_exit = True
    for listener in server.servers:
        listener.close()
    sock.close()
    for connection in list(server.server_state.connections):
        connection.shutdown()
    with anyio.move_on_after(1.0):
        while server.server_state.connections or server.server_state.tasks:  # noqa: ASYNC110 - uvicorn state
            await anyio.sleep(0.01)
    for task in list(server.server_state.tasks):
        task.cancel()
    for listener in server.servers:
        with anyio.move_on_after(1.0):
            await listener.wait_closed()


def _bind() -> socket.socket:
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
    # TCP, and without it Nagle + delayed ACKs add ~40 ms to every keep-alive request
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _register(dn: DevnetLike, core: ProviderCore, private_key: str, *, acknowledge: bool) -> None:
    chain = core.chain
    cfg = core.config
    info = {"ProviderType": "decentralized", "TEEVerifier": "dstack", "devnet": True, **cfg.additional_info}
    (exists,) = await chain.call(inference_function("serviceExists"), core.address)
    value = 0
    if not exists:
        (value,) = await chain.call(inference_function("MIN_PROVIDER_STAKE"))
    params = (
        cfg.service_type,
        core.url,
        cfg.model,
        "TeeML",
        cfg.input_price,
        cfg.output_price,
        json.dumps(info, separators=(",", ":")),
        core.tee_address,
    )
    await chain.send(private_key, inference_function("addOrUpdateService").encode(params), value=int(value))
    if acknowledge:
        await dn.send_as(
            dn.owner.address,
            chain.inference,
            inference_function("acknowledgeTEESignerByOwner").encode(core.address),
        )
    core.service = await chain.get_service(core.address)


async def start_provider(
    dn: DevnetLike,
    task_group: anyio.abc.TaskGroup,
    *,
    service_type: str,
    model: str,
    input_price: int,
    output_price: int,
    account_index: int | None = None,
    private_key: str | None = None,
    faults: ProviderFaults | None = None,
    settle_interval: float | None = 2.0,
    acknowledge: bool = True,
    http: httpx.AsyncClient | None = None,
    advertised_url: str | None = None,
    **config: Any,
) -> ProviderHandle:
    """Start one devnet provider: serve its HTTP API, register it on chain, settle periodically.

    The provider listens on a free port of 127.0.0.1, registers with
    ``addOrUpdateService`` (staking ``MIN_PROVIDER_STAKE`` on first registration; verifiability
    ``TeeML``; ``additionalInfo`` ``{"ProviderType":"decentralized",...}``; a TEE signer derived
    from its key), and the contract owner acknowledges its TEE signer. Everything runs in
    ``task_group`` and stops when it is cancelled (or on :meth:`ProviderHandle.aclose`).

    Args:
        dn: the running devnet.
        task_group: where the server, the settlement loop and async jobs run.
        service_type: ``"chatbot"``, ``"text-to-image"``, ``"image-editing"`` or ``"speech-to-text"``.
        model: the model name.
        input_price: wei per input unit (token or image; for speech-to-text an input (audio)
            token, or a second of audio with ``transcription_billing="duration"``).
        output_price: wei per output token.
        account_index: which devnet dev account is the provider (use high indexes such as
            20-29; not 0, the owner). Exactly one of ``account_index`` / ``private_key``.
        private_key: a provider key of your own; the account is funded with
            ``dn.set_balance`` when it holds less than 1,000 OG.
        faults: initial fault knobs (default: none).
        settle_interval: seconds between settlement rounds, ``None`` for on-demand only.
        acknowledge: have the owner acknowledge the TEE signer (``False`` leaves it
            unacknowledged, for negative tests).
        http: an ``httpx.AsyncClient`` for JSON-RPC (default: a new one, closed on cancel).
        advertised_url: the service URL to register on chain instead of the server's own
            ``http://127.0.0.1:<port>``, e.g. the URL of an
            :class:`~og_inference_devnet.faultproxy.HttpFaultProxy` forwarding to
            :attr:`ProviderHandle.local_url`, so that SDK clients go through the proxy.
        **config: further :class:`ProviderConfig` fields (``clock_skew_ms``,
            ``async_job_seconds``, ``transcription_billing`` (``"tokens"``, the default, or
            ``"duration"``), ...).

    Returns:
        The running provider's handle.

    Raises:
        ConfigError: bad arguments.
        OGError: registration failed on chain.
    """
    if service_type not in _SERVICE_TYPES:
        raise ConfigError(f"service_type must be one of {_SERVICE_TYPES}, got {service_type!r}")
    billing_mode = config.get("transcription_billing", "tokens")
    if billing_mode not in _TRANSCRIPTION_BILLING:
        raise ConfigError(
            f"transcription_billing must be one of {_TRANSCRIPTION_BILLING}, got {billing_mode!r}"
        )
    if (account_index is None) == (private_key is None):
        raise ConfigError("pass exactly one of account_index and private_key")
    if advertised_url is not None and (
        not isinstance(advertised_url, str) or not advertised_url.startswith(("http://", "https://"))
    ):
        raise ConfigError(f"advertised_url must be an http(s):// URL, got {advertised_url!r}")
    if account_index is not None:
        if not 1 <= account_index < len(dn.accounts):
            raise ConfigError(f"account_index must be within [1, {len(dn.accounts) - 1}] (0 is the owner)")
        private_key = str(dn.accounts[account_index].private_key)
    assert private_key is not None
    if private_key.lower().removeprefix("0x") == str(dn.owner.private_key).lower().removeprefix("0x"):
        raise ConfigError("the provider must not be the contract owner (account 0)")
    cfg = ProviderConfig(
        service_type=service_type,
        model=model,
        input_price=int(input_price),
        output_price=int(output_price),
        settle_interval=settle_interval,
        **config,
    )
    own_http = http is None
    client = http or httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(30.0, connect=5.0))
    chain = ProviderChain(dn.rpc_url, dn.chain_id, dn.inference, client)
    core = ProviderCore(
        private_key=private_key,
        tee_key=tee_key_for(private_key),
        chain=chain,
        config=cfg,
        faults=faults or ProviderFaults(),
    )
    if account_index is None:
        address = Account.from_key(private_key).address
        balance = int(await chain.rpc("eth_getBalance", [address, "latest"]), 16)
        if balance < 1000 * 10**18:
            await dn.set_balance(address, 1000 * 10**18)

    from ._app import build_app  # local import keeps Starlette out of non-server imports

    sock = _bind()
    port = sock.getsockname()[1]
    local_url = f"http://127.0.0.1:{port}"
    core.url = advertised_url.rstrip("/") if advertised_url is not None else local_url
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(core),
            log_config=None,
            access_log=False,
            lifespan="off",
            http="h11",
            server_header=False,
            date_header=False,
            timeout_keep_alive=30,
        )
    )

    async def run(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as inner:
                core.task_group = inner
                await inner.start(_serve, server, sock)
                inner.start_soon(core.head_watcher.run)
                task_status.started()
                if cfg.settle_interval:
                    inner.start_soon(core.settle_forever, cfg.settle_interval)
                await anyio.sleep_forever()
        finally:
            core.task_group = None
            if own_http:
                with anyio.CancelScope(shield=True):
                    await client.aclose()

    outer_scope = anyio.CancelScope()

    async def run_scoped(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with outer_scope:
            await run(task_status=task_status)

    try:
        await task_group.start(run_scoped)
        await _register(dn, core, private_key, acknowledge=acknowledge)
    except BaseException:
        outer_scope.cancel()
        raise
    svc = core.service
    assert svc is not None
    return ProviderHandle(
        address=core.address,
        url=core.url,
        tee_signer=core.tee_address,
        service_type=svc.service_type,
        model=svc.model,
        input_price=svc.input_price,
        output_price=svc.output_price,
        faults=core.faults,
        core=core,
        local_url=local_url,
        _scope=outer_scope,
    )


async def start_default_providers(
    dn: DevnetLike, task_group: anyio.abc.TaskGroup, *, settle_interval: float | None = 2.0
) -> list[ProviderHandle]:
    """Start the four default providers concurrently (see :data:`DEFAULT_PROVIDERS`).

    chatbot (account 20), text-to-image (21), image-editing (22) and speech-to-text (23, billed
    per output token in token mode), each settling every ``settle_interval`` seconds (``None``:
    only on ``settle_now()``).

    Returns:
        Their handles, in that order.
    """
    handles: list[ProviderHandle | None] = [None] * len(DEFAULT_PROVIDERS)

    async def one(i: int) -> None:
        service_type, model, input_price, output_price, index = DEFAULT_PROVIDERS[i]
        handles[i] = await start_provider(
            dn,
            task_group,
            service_type=service_type,
            model=model,
            input_price=input_price,
            output_price=output_price,
            account_index=index,
            settle_interval=settle_interval,
        )

    async with anyio.create_task_group() as tg:
        for i in range(len(DEFAULT_PROVIDERS)):
            tg.start_soon(one, i)
    return [h for h in handles if h is not None]
