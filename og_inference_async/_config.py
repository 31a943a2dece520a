"""Networks (chain ids, RPCs, contract addresses) and the broker's policies.

Addresses come from PROTOCOL.md section 1.2 (identical in the TS SDK 0.9.0 and the community
SDK). The ``hardhat`` addresses only hold on a chain that replays the 0G deployment order; the
devnet does exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

from ._exceptions import ConfigError, InvalidAddressError
from ._validate import MAX_UINT256, check_bool, check_int, check_seconds, shown

__all__ = [
    "HARDHAT",
    "MAINNET",
    "NETWORKS",
    "TESTNET",
    "FeePolicy",
    "Network",
    "RetryPolicy",
    "SessionPolicy",
    "TxPolicy",
    "checksum",
    "get_network",
]

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

# The contract addresses of the built-in networks below, as written there (already EIP-55; a unit
# test checks each with eth_utils): taken as they are, so that importing the package hashes nothing
# and loads no eth_utils.
_BUILTIN_ADDRESSES = frozenset(
    {
        "0x2dE54c845Cd948B72D2e32e39586fe89607074E3",
        "0x47340d900bdFec2BD393c626E12ea0656F938d84",
        "0xE70830508dAc0A97e6c087c75f402f9Be669E406",
        "0xa79F4c8311FF93C06b8CfB403690cc987c93F91E",
        "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
        "0x0165878A594ca255338adfa4d48449f69242Eb8F",
    }
)


@lru_cache(maxsize=65536)
def _checksummed(address: str) -> str | None:
    """EIP-55 form of a valid address, ``None`` for anything else (cached: keccak is not free).

    All-lowercase and all-uppercase hex (after ``0x``) are unchecksummed and accepted; mixed case
    is a checksum and must be right.
    """
    if address in _BUILTIN_ADDRESSES:
        return address
    from eth_utils import is_address, to_checksum_address  # here: importing the package stays light

    if len(address) != 42 or not is_address(address):
        return None
    out: str = to_checksum_address(address)
    digits = address[2:]
    if digits != digits.lower() and digits != digits.upper() and address != out:
        return None
    return out


def _bad_checksum(address: str) -> bool:
    """Whether ``address`` is 20 hex bytes whose mixed case is a wrong EIP-55 checksum."""
    from eth_utils import is_address

    return len(address) == 42 and is_address(address) and _checksummed(address) is None


def checksum(address: str, *, what: str = "address", allow_zero: bool = False) -> str:
    """Validate an address and return its EIP-55 checksummed form.

    ``0x`` + 40 hex digits, all lowercase or all uppercase (unchecksummed), or in mixed case
    matching its EIP-55 checksum: a mixed-case address with a wrong checksum is refused, since it
    is most likely a mistyped character.

    Raises:
        InvalidAddressError: if it is not a 20-byte hex address, has a wrong EIP-55 checksum, or is
            zero when not allowed.
    """
    if not isinstance(address, str):
        raise InvalidAddressError(f"{what} must be an address string, got {shown(address)}")
    out = _checksummed(address)
    if out is None:
        if _bad_checksum(address):
            raise InvalidAddressError(
                f"{what} {address} has a wrong EIP-55 checksum (its upper/lower case does not match)",
                hint="a mixed-case address must match its checksum exactly: check it for a mistyped "
                "character, or copy it again from its source",
            )
        raise InvalidAddressError(
            f"{what} is not a valid address (0x followed by 40 hex digits): {shown(address)}"
        )
    if not allow_zero and out == ZERO_ADDRESS:
        raise InvalidAddressError(f"{what} must not be the zero address")
    return out


@dataclass(frozen=True)
class Network:
    """A 0G network: its chain id, a default RPC and the two contract proxies.

    Attributes:
        name: short key (``"mainnet"``, ``"testnet"``, ``"hardhat"`` or a custom name).
        chain_id: the EVM chain id the RPC must report.
        rpc_url: default JSON-RPC endpoint (may be overridden per broker).
        ledger: LedgerManager proxy address.
        inference: InferenceServing proxy address.
        status_api: base URL of the read-only compute status API, if the network has one.
    """

    name: str
    chain_id: int
    rpc_url: str | None
    ledger: str
    inference: str
    status_api: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"network name must be a non-empty str, got {shown(self.name)}")
        if not isinstance(self.chain_id, int) or isinstance(self.chain_id, bool) or self.chain_id <= 0:
            raise ConfigError(f"chain_id must be a positive int, got {shown(self.chain_id)}")
        for name in ("rpc_url", "status_api"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} must be a URL string or None, got {shown(value)}")
        object.__setattr__(self, "ledger", checksum(self.ledger, what="ledger address"))
        object.__setattr__(self, "inference", checksum(self.inference, what="inference address"))

    def with_addresses(self, *, ledger: str | None = None, inference: str | None = None) -> Network:
        """Return a copy with the given contract addresses replaced."""
        return replace(
            self,
            ledger=ledger if ledger is not None else self.ledger,
            inference=inference if inference is not None else self.inference,
        )


MAINNET = Network(
    name="mainnet",
    chain_id=16661,
    rpc_url="https://evmrpc.0g.ai",
    ledger="0x2dE54c845Cd948B72D2e32e39586fe89607074E3",
    inference="0x47340d900bdFec2BD393c626E12ea0656F938d84",
    status_api="https://compute-status.0g.ai",
)
TESTNET = Network(
    name="testnet",
    chain_id=16602,
    rpc_url="https://evmrpc-testnet.0g.ai",
    ledger="0xE70830508dAc0A97e6c087c75f402f9Be669E406",
    inference="0xa79F4c8311FF93C06b8CfB403690cc987c93F91E",
    status_api="https://compute-status-testnet.0g.ai",
)
HARDHAT = Network(
    name="hardhat",
    chain_id=31337,
    rpc_url="http://127.0.0.1:8545",
    ledger="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
    inference="0x0165878A594ca255338adfa4d48449f69242Eb8F",
    status_api=None,
)

NETWORKS: dict[str, Network] = {n.name: n for n in (MAINNET, TESTNET, HARDHAT)}
_BY_CHAIN_ID: dict[int, Network] = {n.chain_id: n for n in NETWORKS.values()}


def get_network(network: str | int | Network) -> Network:
    """Resolve a network by name (``"mainnet"``), chain id (``16661``) or pass a :class:`Network` through.

    Unknown chains are refused (no silent fallback to testnet or mainnet): build a
    :class:`Network` with explicit addresses instead.

    Raises:
        ConfigError: the name or chain id is not a known network.
    """
    if isinstance(network, Network):
        return network
    if isinstance(network, bool):
        raise ConfigError("network must be a name, a chain id or a Network")
    if isinstance(network, int):
        if network in _BY_CHAIN_ID:
            return _BY_CHAIN_ID[network]
        raise ConfigError(
            f"unknown chain id {network}; pass Network(name=..., chain_id=..., ledger=..., inference=...)"
        )
    if isinstance(network, str) and network.lower() in NETWORKS:
        return NETWORKS[network.lower()]
    raise ConfigError(f"unknown network {network!r}; known: {', '.join(sorted(NETWORKS))}")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retry/backoff for reads and waits. Both attempts and total time are bounded.

    Attributes:
        attempts: maximum number of attempts (>= 1).
        max_delay: total time budget in seconds for all attempts (at least two attempt timeouts
            by default, so a read that timed out is retried).
        initial_backoff: first backoff in seconds (exponential with jitter after it).
        max_backoff: cap for one backoff (a JSON-RPC ``Retry-After`` may ask for more, up to
            what is left of ``max_delay``).
        attempt_timeout: seconds one JSON-RPC request may take before it counts as failed.

    Raises:
        ConfigError: ``attempts`` is not an int in 1..1000, a time is not a finite number of
            seconds (``max_delay`` and ``attempt_timeout`` above 0, the backoffs 0 or more).
    """

    attempts: int = 4
    max_delay: float = 30.0
    initial_backoff: float = 0.2
    max_backoff: float = 3.0
    attempt_timeout: float = 10.0

    def __post_init__(self) -> None:
        check_int("attempts", self.attempts, minimum=1, maximum=1000)
        check_seconds("max_delay", self.max_delay)
        check_seconds("initial_backoff", self.initial_backoff, allow_zero=True)
        check_seconds("max_backoff", self.max_backoff, allow_zero=True)
        check_seconds("attempt_timeout", self.attempt_timeout)

    @classmethod
    def no_wait(cls, attempts: int = 3) -> RetryPolicy:
        """A policy for tests: same attempts, zero waits."""
        return cls(
            attempts=attempts, max_delay=5.0, initial_backoff=0.0, max_backoff=0.0, attempt_timeout=5.0
        )


@dataclass(frozen=True)
class FeePolicy:
    """Fee fields for transactions.

    Attributes:
        mode: ``"legacy"`` (``gasPrice``, as the 0G SDKs send), ``"eip1559"``, or ``"auto"``
            (EIP-1559 when the latest block has a base fee, else legacy).
        gas_price: fixed legacy gas price in wei; ``None`` reads ``eth_gasPrice``.
        max_gas_price: refuse to send when the price read from the node is above this.
        priority_fee: EIP-1559 tip in wei; ``None`` reads ``eth_maxPriorityFeePerGas``.

    Raises:
        ConfigError: an unknown mode; a fee that is not an int number of wei (``gas_price`` and
            ``max_gas_price`` at least 1, ``priority_fee`` 0 or more); ``gas_price`` or
            ``priority_fee`` above ``max_gas_price``.
    """

    mode: str = "legacy"
    gas_price: int | None = None
    max_gas_price: int | None = None
    priority_fee: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.mode, str) or self.mode not in ("legacy", "eip1559", "auto"):
            raise ConfigError(f"fee mode must be legacy, eip1559 or auto, got {shown(self.mode)}")
        for name, low in (("gas_price", 1), ("max_gas_price", 1), ("priority_fee", 0)):
            value = getattr(self, name)
            if value is not None:
                check_int(f"{name} (wei)", value, minimum=low, maximum=MAX_UINT256)
        if (
            self.gas_price is not None
            and self.max_gas_price is not None
            and self.gas_price > self.max_gas_price
        ):
            raise ConfigError(
                f"gas_price {self.gas_price} is above max_gas_price {self.max_gas_price}: "
                "nothing could be sent"
            )
        if (
            self.priority_fee is not None
            and self.max_gas_price is not None
            and self.priority_fee > self.max_gas_price
        ):
            raise ConfigError(f"priority_fee {self.priority_fee} is above max_gas_price {self.max_gas_price}")


@dataclass(frozen=True)
class TxPolicy:
    """How transactions are sent and awaited.

    Attributes:
        gas_margin_percent: extra gas over ``eth_estimateGas``, in percent (an int, no floats).
        gas_cap: never send with more gas than this; an estimate above it is refused before signing.
        receipt_timeout: seconds to wait for a receipt (a hard bound: no RPC request outlives
            it); then the transaction is cancelled (see ``cancel_on_timeout``) or reported as
            :class:`~og_inference_async.TransactionOutcomeUnknownError`.
        receipt_poll_interval: first wait between receipt polls in seconds (doubles up to 1 s).
        receipt_attempts: maximum number of receipt polls.
        rebroadcast_interval: while no receipt has come, the IDENTICAL signed bytes are handed to
            the node again this often (seconds; doubling), so a send the node lost is redelivered.
        send_timeout: seconds to keep re-sending the identical bytes after an ambiguous answer to
            ``eth_sendRawTransaction`` (5xx, 429, reset, timeout) until the node knows it or
            refuses it.
        cancel_on_timeout: when no receipt came within ``receipt_timeout``, replace the
            transaction with a 0-value self-transfer at the same nonce (bumped fees), so the
            outcome becomes definite: executed, or not executed.
        cancel_timeout: seconds to wait for the original or the cancelling replacement to be mined.
        replacement_bump_percent: fee increase of a cancelling replacement, in percent.
        gap_heal_after: seconds a transaction may wait behind a nonce that this process gave
            back (refused by the node) before that nonce is filled with a 0-value self-transfer.
        fees: the :class:`FeePolicy`.

    Raises:
        ConfigError: a field of the wrong type or out of range: the percents and counts are
            ints (``gas_margin_percent`` 0..1000, ``replacement_bump_percent`` 10..1000 since
            nodes refuse smaller bumps, ``gas_cap`` at least 21,000, ``receipt_attempts`` at least
            1), the times finite seconds above 0, ``cancel_on_timeout`` a bool.
    """

    gas_margin_percent: int = 25
    gas_cap: int = 8_000_000
    receipt_timeout: float = 120.0
    receipt_poll_interval: float = 0.005
    receipt_attempts: int = 2000
    rebroadcast_interval: float = 2.0
    send_timeout: float = 30.0
    cancel_on_timeout: bool = True
    cancel_timeout: float = 60.0
    replacement_bump_percent: int = 15
    gap_heal_after: float = 2.0
    fees: FeePolicy = field(default_factory=FeePolicy)

    def __post_init__(self) -> None:
        check_int("gas_margin_percent", self.gas_margin_percent, minimum=0, maximum=1000)
        check_int("gas_cap", self.gas_cap, minimum=21_000, maximum=2**64 - 1)
        check_seconds("receipt_timeout", self.receipt_timeout)
        check_seconds("receipt_poll_interval", self.receipt_poll_interval)
        check_int("receipt_attempts", self.receipt_attempts, minimum=1)
        check_seconds("rebroadcast_interval", self.rebroadcast_interval)
        check_seconds("send_timeout", self.send_timeout)
        check_bool("cancel_on_timeout", self.cancel_on_timeout)
        check_seconds("cancel_timeout", self.cancel_timeout)
        # nodes refuse a replacement that raises the fees by less than 10 % ("underpriced")
        check_int("replacement_bump_percent", self.replacement_bump_percent, minimum=10, maximum=1000)
        check_seconds("gap_heal_after", self.gap_heal_after)
        if not isinstance(self.fees, FeePolicy):
            raise ConfigError(f"fees must be a FeePolicy, got {shown(self.fees)}")


@dataclass(frozen=True)
class SessionPolicy:
    """Session tokens and the account reads behind them.

    Attributes:
        lifetime_ms: lifetime of ephemeral session tokens (at most 24 h = 86,400,000 ms).
        refresh_margin_ms: a cached token is reissued when this little life is left (default 1 h).
        max_entries: how many providers the token and account caches keep (least recently used go).
        account_ttl: seconds an account read (generation, revoked ids) is trusted.
        ack_ttl: seconds a positive acknowledgement is trusted.

    Raises:
        ConfigError: a field of the wrong type or out of range.
    """

    lifetime_ms: int = 86_400_000
    refresh_margin_ms: int = 3_600_000
    max_entries: int = 10_000
    account_ttl: float = 300.0
    ack_ttl: float = 600.0

    def __post_init__(self) -> None:
        for name in ("lifetime_ms", "refresh_margin_ms", "max_entries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative int")
        if not 0 < self.lifetime_ms <= 86_400_000:
            raise ConfigError("lifetime_ms must be in 1..86,400,000 (24 h)")
        if self.refresh_margin_ms >= self.lifetime_ms:
            raise ConfigError("refresh_margin_ms must be smaller than lifetime_ms")
        if self.max_entries < 1:
            raise ConfigError("max_entries must be at least 1")
        check_seconds("account_ttl", self.account_ttl, allow_zero=True)
        check_seconds("ack_ttl", self.ack_ttl, allow_zero=True)
