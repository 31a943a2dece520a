"""AsyncBroker: owns or borrows the web3 provider and ONE shared httpx client; lifecycle; the object graph.

States: ``unopened`` -> ``opened`` -> ``closed``. Building does no I/O. ``async with`` opens
(checks the chain id) and closes; closing is idempotent and final (no reopen). Clients passed
in by the user are borrowed and never closed. Background work lives only in the broker's task
group, which is cancelled on close.

The broker is the composition root: :meth:`AsyncBroker.open` builds the object graph once and
hands each part what it needs (see :meth:`AsyncBroker._build_graph`)::

    AsyncBroker
    ├── httpx.AsyncClient (owned or borrowed) ── RpcClient ── ChainReader ("contracts")
    ├── TxSender (with a wallet)                  Wallet(account, sender)
    ├── task group ──────────────────────────── Background
    ├── AuthManager(contracts, wallet)            session tokens, account reads, API keys
    ├── ProviderTransport(http, auth, policies)   every request to a provider
    ├── LedgerAPI(contracts, wallet, auth.forget) broker.ledger
    └── InferenceServices.build(...)              the services behind broker.inference
        (discovery, chat/images/audio, verification, onboarding, funding, settlement)

``broker.inference`` is a facade that exists before ``open`` (its policies can be set then) and
delegates to the services of the open broker.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ._config import Network, RetryPolicy, SessionPolicy, TxPolicy, checksum, get_network
from ._exceptions import BrokerStateError, ConfigError, NetworkMismatchError, RPCError
from ._observe import BrokerStats, Hooks, Observer
from ._retry import RequestRetryPolicy
from ._runtime import Background, Wallet
from ._units import Amount
from .coordination import Coordinator, InProcessCoordinator
from .inference._common import RequestPolicies
from .inference.budgets import DEFAULT_HOLD_TTL, DEFAULT_MAX_TOKENS, Budget, BudgetBook

if TYPE_CHECKING:  # the chain and HTTP layers load in open(): constructing a broker stays light
    import httpx
    from eth_account.signers.local import LocalAccount
    from web3 import AsyncWeb3

    from ._chain import ChainReader, RpcClient, TxSender
    from .inference import InferenceAPI, InferenceServices
    from .inference.auth import ApiKeyRegistry
    from .ledger import LedgerAPI
    from .transactions import TransactionsAPI
    from .types import RpcEndpointHealth

__all__ = ["AsyncBroker"]

log = logging.getLogger(__name__)

#: How long closing waits for background work to stop after cancelling it (seconds).
_CLOSE_GRACE = 10.0


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


def _load_account(private_key: str | LocalAccount | None) -> LocalAccount | None:
    if private_key is None:
        return None
    # eth-account loads only for a wallet: deriving the address checks the key at construction
    from eth_account import Account
    from eth_account.signers.local import LocalAccount

    if isinstance(private_key, LocalAccount):
        return private_key
    if not isinstance(private_key, str):
        raise ConfigError("private_key must be a hex string or an eth_account LocalAccount")
    try:
        acct: LocalAccount = Account.from_key(private_key)
    except Exception:  # eth-account boundary; never echo the key
        raise ConfigError("private_key is not a valid secp256k1 private key") from None
    return acct


def _endpoint_urls(urls: Sequence[str] | None, *, rpc_url: str | None, web3: object) -> tuple[str, ...]:
    """``rpc_urls`` checked: a non-empty sequence of distinct strings, alone."""
    if urls is None:
        return ()
    if rpc_url is not None:
        raise ConfigError("pass rpc_url or rpc_urls, not both")
    if web3 is not None:
        raise ConfigError("rpc_urls cannot be combined with a borrowed web3")
    if isinstance(urls, (str, bytes)) or not isinstance(urls, Sequence):
        raise ConfigError("rpc_urls must be a list of URLs")
    out = tuple(urls)
    if not out:
        raise ConfigError("rpc_urls is empty")
    if not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in out):
        raise ConfigError("every entry of rpc_urls must be an http:// or https:// URL string")
    if len(set(out)) != len(out):
        raise ConfigError("rpc_urls lists the same URL twice")
    return out


def _shielded(close: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """Wrap a close callback so that cancellation of the closer cannot leak a pool (bounded)."""

    async def run() -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
            await close()

    return run


class _HostedTaskGroup:
    """The broker's task group, entered and exited by a task of its own (on asyncio).

    A task group entered by ``open()`` in the caller's task would tie ``aclose()`` to that same
    task and cancel-scope nesting: closing inside ``anyio.fail_after(...)`` or from another task
    would corrupt the caller's cancel scopes. Hosting it in a dedicated task frees ``aclose()``
    to run anywhere.
    """

    def __init__(self) -> None:
        self.group: TaskGroup | None = None
        self._stop = anyio.Event()
        self._task: Any = None

    async def start(self) -> TaskGroup:
        import asyncio

        ready = anyio.Event()

        async def host() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    self.group = tg
                    ready.set()
                    await self._stop.wait()
                    tg.cancel_scope.cancel()
            except Exception:  # a background task failed; nothing is left to report it to
                log.exception("background work of the broker failed")
            finally:
                ready.set()

        self._task = asyncio.get_running_loop().create_task(host(), name="og-inference-async broker")
        await ready.wait()
        if self.group is None:
            raise BrokerStateError("the broker's task group could not start")
        return self.group

    async def stop(self) -> None:
        import asyncio

        self._stop.set()
        if self._task is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                await asyncio.shield(self._task)


@dataclass(frozen=True)
class _Graph:
    """What ``open()`` built: the namespaces' collaborators."""

    ledger: LedgerAPI
    inference: InferenceServices


class AsyncBroker:
    """The entry point: one wallet (optional), one network, one shared HTTP pool.

    Use it as an async context manager::

        async with AsyncBroker(private_key, network="testnet") as broker:
            ledger = await broker.ledger.get_ledger()

    Args:
        private_key: the wallet's key (hex) or an eth-account ``LocalAccount``. ``None`` makes a
            read-only broker (discovery only; writes raise :class:`ConfigError`).
        network: ``"mainnet"``, ``"testnet"``, ``"hardhat"``, a chain id, or a :class:`Network`.
        rpc_url: overrides the network's default RPC.
        rpc_urls: several JSON-RPC endpoints of the same chain instead of one (not with
            ``rpc_url`` or ``web3``): reads go to the healthiest and fail over on transient
            failures and rate limits; each transaction is sent through one endpoint and never
            re-sent through another before it was looked up by hash and nonce; every URL's chain
            id is checked in ``open()``. See :meth:`rpc_health`.
        ledger_address: overrides the LedgerManager address.
        inference_address: overrides the InferenceServing address.
        http_client: an ``httpx.AsyncClient`` to borrow (never closed by the broker).
        web3: an ``AsyncWeb3`` to borrow for chain access (never closed by the broker).
        retry: bounded retry policy of the chain's JSON-RPC reads and waits (:class:`RetryPolicy`).
        request_retry: bounded, billing-safe retry policy of provider HTTP requests
            (:class:`RequestRetryPolicy`; the same object as ``broker.inference.retry_policy``,
            which can also be set later). Per call or per ``broker.inference.with_options()``
            view, ``max_retries=`` overrides its attempts.
        tx_policy: gas, fee and receipt policy for transactions.
        session: session-token lifetime, reuse margin and cache bounds.
        hooks: event callbacks (:class:`Hooks`: ``on_request``, ``on_response``,
            ``on_transaction``); see also :meth:`stats`.
        api_key_registry: where issued API key ids are recorded (persist them by passing your own);
            default: the coordinator's (Redis: shared by the processes), else in memory.
        coordinator: what the brokers signing for this wallet agree through: the default
            :class:`~og_inference_async.coordination.InProcessCoordinator` (one process), or a
            :class:`~og_inference_async.coordination.RedisCoordinator` shared by several
            processes (nonces, leases on money moves, API key ids; it is checked in ``open()``,
            never closed by the broker).

    Raises:
        ConfigError: bad key, unknown network, malformed addresses, no RPC URL, or ``rpc_urls``
            with ``rpc_url`` / ``web3``, empty, repeated or not strings.
    """

    def __init__(
        self,
        private_key: str | LocalAccount | None = None,
        *,
        network: str | int | Network = "testnet",
        rpc_url: str | None = None,
        rpc_urls: Sequence[str] | None = None,
        ledger_address: str | None = None,
        inference_address: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        web3: AsyncWeb3[Any] | None = None,
        retry: RetryPolicy | None = None,
        request_retry: RequestRetryPolicy | None = None,
        tx_policy: TxPolicy | None = None,
        session: SessionPolicy | None = None,
        api_key_registry: ApiKeyRegistry | None = None,
        coordinator: Coordinator | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        net = get_network(network)
        if ledger_address is not None or inference_address is not None:
            net = net.with_addresses(
                ledger=checksum(ledger_address, what="ledger_address") if ledger_address else None,
                inference=checksum(inference_address, what="inference_address")
                if inference_address
                else None,
            )
        self.network: Network = net
        #: the JSON-RPC endpoints when there are several (``rpc_urls``), else empty
        self.rpc_urls: tuple[str, ...] = _endpoint_urls(rpc_urls, rpc_url=rpc_url, web3=web3)
        self.rpc_url: str | None = self.rpc_urls[0] if self.rpc_urls else (rpc_url or net.rpc_url)
        if web3 is None and not self.rpc_url:
            raise ConfigError(f"network {net.name!r} has no default RPC URL; pass rpc_url=")
        for name, value, kind in (
            ("retry", retry, RetryPolicy),
            ("request_retry", request_retry, RequestRetryPolicy),
            ("tx_policy", tx_policy, TxPolicy),
            ("session", session, SessionPolicy),
            ("hooks", hooks, Hooks),
        ):
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
        self._account = _load_account(private_key)
        self._borrowed_http = http_client
        self._borrowed_web3 = web3
        self.retry = retry or RetryPolicy()
        self.tx_policy = tx_policy or TxPolicy()
        self.session_policy = session or SessionPolicy()
        self._api_key_registry = api_key_registry
        if coordinator is not None and not isinstance(coordinator, Coordinator):
            raise ConfigError(f"coordinator must be a Coordinator, got {type(coordinator).__name__}")
        #: the nonce allocators and leases this broker shares (see :mod:`og_inference_async.coordination`)
        self.coordinator: Coordinator = coordinator or InProcessCoordinator()
        self._state = _State.UNOPENED
        self._stack: AsyncExitStack | None = None
        self._http: httpx.AsyncClient | None = None
        self._rpc: RpcClient | None = None
        self._chain: ChainReader | None = None
        self._tx: TxSender | None = None
        self._task_group: TaskGroup | None = None
        self._hosted: _HostedTaskGroup | None = None
        self._policies = RequestPolicies(retry=request_retry)
        self._observer = Observer(hooks)
        self._budgets = BudgetBook(self.coordinator.budget_store())
        self._graph: _Graph | None = None

    # -- identity --------------------------------------------------------------------------------

    @property
    def address(self) -> str | None:
        """The wallet address, or ``None`` for a read-only broker."""
        return self._account.address if self._account else None

    @property
    def is_read_only(self) -> bool:
        """``True`` when the broker has no wallet."""
        return self._account is None

    @property
    def state(self) -> str:
        """``"unopened"``, ``"opened"`` or ``"closed"``."""
        return self._state.value

    def __repr__(self) -> str:
        who = self.address or "read-only"
        return f"<AsyncBroker {who} on {self.network.name} ({self.network.chain_id}) {self._state.value}>"

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncBroker:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Open pools and check the chain id. Prefer ``async with``.

        Raises:
            BrokerStateError: already opened or closed.
            NetworkMismatchError: the RPC serves another chain.
            RPCError: the RPC could not be reached.
            CoordinatorError: the coordinator (Redis) could not be reached.
        """
        if self._state is not _State.UNOPENED:
            raise BrokerStateError(f"broker is {self._state.value}; a broker opens once")
        self._state = _State.OPENED
        from ._chain import ChainReader, RpcClient, TxSender
        from ._http import make_http_client, rpc_poster

        stack = AsyncExitStack()
        try:
            if self._borrowed_http is not None:
                self._http = self._borrowed_http
            else:
                self._http = make_http_client()
                stack.push_async_callback(_shielded(self._http.aclose))
            if self._borrowed_web3 is not None:
                self._rpc = RpcClient(self._borrowed_web3, owned=False, retry=self.retry)
            elif self.rpc_urls:
                http = self._http
                self._rpc = RpcClient.on_endpoints(
                    [(url, rpc_poster(http, url)) for url in self.rpc_urls], retry=self.retry
                )
            else:
                assert self.rpc_url is not None
                self._rpc = RpcClient.on_pool(
                    self.rpc_url, rpc_poster(self._http, self.rpc_url), retry=self.retry
                )
            stack.push_async_callback(_shielded(self._rpc.aclose))
            actual = await self._check_chain_ids(self._rpc)
            self._chain = ChainReader(self._rpc, ledger=self.network.ledger, inference=self.network.inference)
            await self._start_task_group(stack)
            tg = self._task_group
            assert tg is not None
            if self._account is not None:
                await self.coordinator.check()
                self._tx = TxSender(
                    self._rpc,
                    self._account,
                    actual,
                    self.tx_policy,
                    spawn=tg.start_soon,
                    nonces=self.coordinator.nonce_allocator(actual, self._account.address),
                )
            self._graph = self._build_graph(self._http, self._chain, self._tx, tg)
        except BaseException:
            self._state = _State.CLOSED
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._stack = stack

    async def _check_chain_ids(self, rpc: RpcClient) -> int:
        """The chain id every endpoint serves, checked against the network's."""
        from ._chain._fallback import display_url

        expected = self.network.chain_id
        if rpc.endpoints is None:
            actual = await rpc.chain_id()
            if actual != expected:
                raise NetworkMismatchError(
                    f"the RPC serves chain {actual}, but network {self.network.name!r} is chain {expected}",
                    expected=expected,
                    actual=actual,
                )
            return actual
        for index, url in enumerate(rpc.endpoints.urls):
            shown = display_url(url)
            try:
                actual = await rpc.request_int("eth_chainId", [], endpoint=index)
            except RPCError as exc:
                raise RPCError(
                    f"the RPC endpoint {shown} could not be checked: {exc.message}",
                    code=exc.code,
                    retryable=exc.retryable,
                    method="eth_chainId",
                ) from None
            if actual != expected:
                raise NetworkMismatchError(
                    f"the RPC endpoint {shown} serves chain {actual}, but network {self.network.name!r} "
                    f"is chain {expected}",
                    expected=expected,
                    actual=actual,
                )
        return expected

    async def _start_task_group(self, stack: AsyncExitStack) -> None:
        import asyncio

        try:
            asyncio.get_running_loop()
            on_asyncio = True
        except RuntimeError:
            on_asyncio = False
        if on_asyncio:
            hosted = _HostedTaskGroup()
            self._task_group = await hosted.start()
            self._hosted = hosted
            stack.push_async_callback(hosted.stop)
        else:  # elsewhere the group is entered here, and aclose() must run in this task
            tg = anyio.create_task_group()
            await stack.enter_async_context(tg)
            self._task_group = tg
            stack.callback(tg.cancel_scope.cancel)

    async def aclose(self) -> None:
        """Cancel background work and close owned pools. Idempotent; a closed broker stays closed.

        It may run in any task and inside any cancel scope (``anyio.fail_after``); it is shielded
        and bounded, so a cancellation of the closer never leaves a pool open.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        stack, self._stack = self._stack, None
        if stack is not None:
            with anyio.CancelScope(shield=True):
                await stack.aclose()

    def _build_graph(
        self, http: httpx.AsyncClient, contracts: ChainReader, sender: TxSender | None, group: TaskGroup
    ) -> _Graph:
        """Build the object graph of the open broker, once: each part gets what it needs."""
        from ._transport import ProviderTransport
        from .inference import InferenceServices
        from .inference.auth import AuthManager
        from .ledger import LedgerAPI

        wallet = Wallet(self._account, sender, self.coordinator)
        registry = self._api_key_registry or self.coordinator.api_key_registry()
        auth = AuthManager(contracts, wallet, registry=registry, policy=self.session_policy)
        ledger = LedgerAPI(contracts, wallet, forget=auth.forget, services=self._inference_services)
        transport = ProviderTransport(http, auth=auth, settings=self._policies, observer=self._observer)
        if sender is not None:
            sender.observer = self._observer
        services = InferenceServices.build(
            contracts=contracts,
            wallet=wallet,
            auth=auth,
            ledger=ledger,
            transport=transport,
            policies=self._policies,
            background=Background(group, lambda: self._state is _State.OPENED),
            status_api=self.network.status_api,
            observer=self._observer,
            budgets=self._budgets,
        )
        return _Graph(ledger=ledger, inference=services)

    def _open_graph(self) -> _Graph:
        """The graph of the open broker (on every call of ``broker.inference``: kept to one check)."""
        graph = self._graph
        if graph is None or self._state is not _State.OPENED:
            self._require_open()
            raise BrokerStateError("the broker is still opening")
        return graph

    def _built_graph(self) -> _Graph:
        """The graph once built, also after closing (for reads of local state)."""
        if self._graph is None:
            self._require_open()  # raises: never opened (or the open failed)
            raise BrokerStateError("the broker is still opening")
        return self._graph

    def _inference_services(self) -> InferenceServices:
        graph = self._graph  # inlined _open_graph(): this runs on every broker.inference call
        if graph is None or self._state is not _State.OPENED:
            return self._open_graph().inference
        return graph.inference

    def _inference_state(self) -> InferenceServices:
        return self._built_graph().inference

    # -- internals for namespaces ----------------------------------------------------------------

    def _require_open(self) -> None:
        if self._state is not _State.OPENED:
            raise BrokerStateError(
                "the broker is not open; use 'async with AsyncBroker(...) as broker:'"
                if self._state is _State.UNOPENED
                else "the broker is closed; create a new one"
            )

    @property
    def _chain_reader(self) -> ChainReader:
        self._require_open()
        assert self._chain is not None
        return self._chain

    @property
    def _sender(self) -> TxSender:
        self._require_open()
        if self._tx is None:
            raise ConfigError("this broker is read-only (no private_key); transactions need a wallet")
        return self._tx

    @property
    def _user(self) -> str:
        if self._account is None:
            raise ConfigError("this broker is read-only (no private_key)")
        return self._account.address

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client (owned or borrowed)."""
        self._require_open()
        assert self._http is not None
        return self._http

    @property
    def task_group(self) -> TaskGroup:
        """The broker's task group: background work started here stops when the broker closes."""
        self._require_open()
        assert self._task_group is not None
        return self._task_group

    def rpc_health(self) -> list[RpcEndpointHealth]:
        """The health of each JSON-RPC endpoint, in the order of ``rpc_urls`` (a local read, no I/O).

        Returns:
            One :class:`~og_inference_async.types.RpcEndpointHealth` per endpoint when the broker
            was built with ``rpc_urls``; an empty list with a single ``rpc_url`` or a borrowed
            ``web3`` (nothing to choose between). It stays readable after closing.

        Raises:
            BrokerStateError: the broker was never opened.
        """
        rpc = self._rpc
        if rpc is None:
            self._require_open()
            return []
        return rpc.endpoints.health.snapshot() if rpc.endpoints is not None else []

    def stats(self) -> BrokerStats:
        """A snapshot of this broker's counters since it opened (also after it closed).

        Returns:
            JSON-RPC calls by method, provider requests by route and retries, transactions by
            kind, fees counted by provider, verification outcomes, session-token cache hits,
            top-ups by provider.
        """
        obs = self._observer
        graph = self._graph
        tokens = graph.inference.auth.tokens.stats if graph is not None else None
        return BrokerStats(
            rpc_calls=dict(self._rpc.calls) if self._rpc is not None else {},
            provider_requests=dict(obs.requests),
            retries=obs.retries,
            transactions=dict(obs.transactions),
            fees=graph.inference.fees.totals() if graph is not None else {},
            verification=dict(obs.verification),
            session_token_hits=tokens.hits if tokens is not None else 0,
            session_token_misses=tokens.misses if tokens is not None else 0,
            top_ups=dict(obs.top_ups),
        )

    async def get_wallet_balance(self) -> int:
        """The wallet's native balance in wei."""
        return await self._chain_reader.wallet_balance(self._user)

    # -- namespaces ------------------------------------------------------------------------------

    @property
    def ledger(self) -> LedgerAPI:
        """Ledger operations: create, deposit, transfer to providers, retrieve, refund.

        Raises:
            BrokerStateError: the broker is not open.
        """
        return self._open_graph().ledger

    @cached_property
    def transactions(self) -> TransactionsAPI:
        """Transactions this wallet signed: in doubt, recent, and their resolution."""
        from .transactions import TransactionsAPI

        return TransactionsAPI(lambda: self._sender)

    def budget(
        self,
        limit: Amount | None,
        *,
        tag: str | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        shared: str | None = None,
        hold_ttl: float = DEFAULT_HOLD_TTL,
    ) -> Budget:
        """A spend budget for this broker's requests; ``async with`` makes it current.

        Inside ``async with broker.budget(og("5")) as budget:`` every request method of
        ``broker.inference`` (and every task started inside) is charged to it, unless a call
        passes its own ``budget=``. Before sending, the request's worst-case fee
        (:meth:`~og_inference_async.inference.InferenceAPI.estimate_fee`) is reserved; a request
        that could exceed what is left raises :class:`BudgetExceededError` and is not sent; the
        reservation then settles to the fee the usage reports. A budget made while another of
        this broker is current is nested in it (a swarm budget holding per-agent budgets): its
        requests count against both, and against the enclosing budgets' per-tag totals.
        Reservations are made without an ``await`` between check and hold, so concurrent
        requests never overspend a budget, not by one wei.

        Args:
            limit: the most the budget may spend (wei or an amount string); ``None``: no limit
                (a budget that only counts, e.g. per tag).
            tag: the name its spending is totalled under (``Budget.spent_by_tag()``).
            default_max_tokens: the output cap given to a chat that names none (lowered to what
                the budget can still pay for); default 1024.
            shared: a name that makes the budget shared by every process whose broker names it
                (needs a coordinator that shares budgets, e.g. ``RedisCoordinator``): each
                reservation is then also one atomic step in the coordinator, over this budget and
                every enclosing shared one, so N processes never overspend it together.
            hold_ttl: seconds a shared reservation lasts if its process never settles it (it
                crashed); default 600.

        Returns:
            The :class:`Budget` (building it does no I/O; the broker need not be open).

        Raises:
            InvalidAmountError: a bad ``limit``.
            ConfigError: a bad ``tag``, ``default_max_tokens`` or ``hold_ttl``, or ``shared``
                without a coordinator that shares budgets.
        """
        return self._budgets.budget(
            limit, tag=tag, default_max_tokens=default_max_tokens, shared=shared, hold_ttl=hold_ttl
        )

    @cached_property
    def inference(self) -> InferenceAPI:
        """Inference operations: discovery, requests, verification, funding, settlement, API keys.

        Its policies (``verification``, ``retry_policy``) can be set before the broker opens.
        """
        from .inference import InferenceAPI

        return InferenceAPI(self._inference_services, self._policies, state=self._inference_state)
