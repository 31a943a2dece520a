"""The Redis coordinator: nonces and leases shared by every process that signs for one wallet.

Keys live under ``<namespace>:{<chain>:<account>}:...`` (one hash slot per account, so the scripts
also run on a Redis Cluster). Each step is one Lua script, atomic on the server:

* ``next`` holds the account's next nonce. :data:`_TAKE` hands it out and increments it; when the
  key is missing the caller reads the node's ``pending`` count and :data:`_SEED` sets it (never
  lowering it). A reseed (after the node reported a nonce as used) sets ``max(pending, next)``
  and bumps ``gen``, the fencing token every take returns.
* ``taken`` remembers each nonce handed out with a lease deadline (server time). A worker that
  crashes between taking a nonce and sending it leaves a gap; once the lease ran out,
  :data:`_CLAIM` gives that nonce to a worker whose transaction waits behind the gap, which fills
  it with a 0-value self-transfer (the in-process gap healing).
* ``owner`` maps each nonce in ``taken`` to the token of the worker it is leased to (a take or a
  claim leases it). ``free`` holds nonces given back (their transaction definitely not held by
  the node): :data:`_GIVE_BACK` moves a nonce from ``taken`` to ``free`` only while it is leased
  to the caller (so one claimed by another worker meanwhile is never handed out twice);
  :data:`_TAKE` hands the lowest free nonce out before a fresh one, and :data:`_CLAIM` gives free
  ones to a waiting worker too. :data:`_CLAIM` takes only nonces at or above the floor it is
  given (the node's ``pending`` count) and prunes those below it. A reseed drops free nonces
  below the node's ``pending`` count (spent elsewhere).
* API key ids (:class:`RedisApiKeyRegistry`) are a set per (user, provider, generation); a claim
  is one ``SADD`` (:data:`_CLAIM_ID`), so two processes never issue one id.
* Shared budgets (:class:`RedisBudgetStore`) are three keys per budget: a hash of ``spent`` and
  ``reserved``, a hash of open holds (id -> amount) and a sorted set of their deadlines. A
  reservation is one script (:data:`_RESERVE`) over every level of a nested budget: it frees the
  expired holds (a crashed process's), checks ``limit - spent - reserved >= amount`` at every
  level, then holds the amount at all of them. Wei amounts are kept as two base-10**15 limbs
  (``"hi:lo"``): Lua numbers are doubles, exact only below 2**53.
* Leases (:meth:`RedisCoordinator.lease`) are ``SET NX PX`` with a random token; only the holder
  of the token releases it (:data:`_UNLOCK`), and the expiry frees it if the holder crashed.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel

from ._apikeys import ApiKey
from ._chain._nonce import NonceAllocator, SharedNonceAllocator
from ._exceptions import ConfigError, CoordinatorError
from ._singleflight import SingleFlight
from .coordination import Coordinator

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - exercised only without the extra
    aioredis = None  # type: ignore[assignment]
    RedisError = Exception  # type: ignore[assignment,misc]

__all__ = ["RedisCoordinator"]

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS next, gen, taken, free, owner, request; ARGV lease_ms, keep, token. -> {nonce or -1, gen}
#: ``request`` (one key per take, kept for the lease) makes a retried take return the same nonce.
_TAKE = (
    _NOW_MS
    + """
local gen = tonumber(redis.call('GET', KEYS[2]) or '0')
local done = redis.call('GET', KEYS[6])
if done then return {tonumber(done), gen} end
local n
local free = redis.call('ZRANGE', KEYS[4], 0, 0)
if #free > 0 then
  n = free[1]
  redis.call('ZREM', KEYS[4], n)
else
  n = redis.call('GET', KEYS[1])
  if not n then return {-1, gen} end
  redis.call('INCR', KEYS[1])
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), n)
redis.call('HSET', KEYS[5], n, ARGV[3])
for _, old in ipairs(redis.call('ZRANGE', KEYS[3], 0, -tonumber(ARGV[2]) - 1)) do
  redis.call('ZREM', KEYS[3], old)
  redis.call('HDEL', KEYS[5], old)
end
redis.call('SET', KEYS[6], n, 'PX', tonumber(ARGV[1]))
return {tonumber(n), gen}
"""
)

#: KEYS taken, free, owner; ARGV token, nonces. -> how many went back (only nonces still leased to the
#: caller: one claimed by another worker meanwhile is not handed out twice)
_GIVE_BACK = """
local back = 0
for i = 2, #ARGV do
  local n = ARGV[i]
  if redis.call('HGET', KEYS[3], n) == ARGV[1] and redis.call('ZREM', KEYS[1], n) == 1 then
    redis.call('HDEL', KEYS[3], n)
    redis.call('ZADD', KEYS[2], tonumber(n), n)
    back = back + 1
  end
end
return back
"""

#: KEYS next, gen, free; ARGV pending, reseed ('1' or '0'). -> gen
_SEED = """
local cur = redis.call('GET', KEYS[1])
local pending = tonumber(ARGV[1])
if not cur then
  redis.call('SET', KEYS[1], pending)
elseif ARGV[2] == '1' then
  if pending > tonumber(cur) then redis.call('SET', KEYS[1], pending) end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. pending)
  redis.call('INCR', KEYS[2])
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
"""

#: KEYS taken, free, owner; ARGV nonce, floor, lease_ms, token. -> nonces in [floor, nonce) given back or
#: whose lease ran out, each now leased to the claimer (it can give one back; a crashed claimer's is
#: claimed again); entries below floor (the node holds those nonces) are pruned.
_CLAIM = (
    _NOW_MS
    + """
local out = {}
local top = tonumber(ARGV[1])
local floor = tonumber(ARGV[2])
local items = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #items, 2 do
  local v = tonumber(items[i])
  if v < floor then
    redis.call('ZREM', KEYS[1], items[i])
    redis.call('HDEL', KEYS[3], items[i])
  elseif v < top and tonumber(items[i + 1]) <= now then
    table.insert(out, v)
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. floor)
for _, v in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], floor, '(' .. top)) do
  redis.call('ZREM', KEYS[2], v)
  table.insert(out, tonumber(v))
end
for _, v in ipairs(out) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), v)
  redis.call('HSET', KEYS[3], v, ARGV[4])
end
return out
"""
)

#: KEYS lease; ARGV token. -> 1 when released
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: KEYS issued ids; ARGV wanted id (-1: the lowest free), revoked ids... -> the id, or -1 (taken / none free)
_CLAIM_ID = """
local want = tonumber(ARGV[1])
if want >= 0 then
  if redis.call('SADD', KEYS[1], want) == 1 then return want end
  return -1
end
local revoked = {}
for i = 2, #ARGV do revoked[tonumber(ARGV[i])] = true end
for id = 0, 254 do
  if not revoked[id] and redis.call('SADD', KEYS[1], id) == 1 then return id end
end
return -1
"""

#: Lua helpers of the budget scripts: wei amounts as two base-10**15 limbs, expired holds freed.
_LIMBS = (
    _NOW_MS
    + """
local B = 1000000000000000
local function norm(h, l)
  while l < 0 do l = l + B; h = h - 1 end
  while l >= B do l = l - B; h = h + 1 end
  return h, l
end
local function fmt(h, l) return string.format('%.0f:%.0f', h, l) end
local function parse(v)
  if not v then return 0, 0 end
  local i = string.find(v, ':')
  return tonumber(string.sub(v, 1, i - 1)), tonumber(string.sub(v, i + 1))
end
local function add(key, field, h, l)
  local oh, ol = parse(redis.call('HGET', key, field))
  redis.call('HSET', key, field, fmt(norm(oh + h, ol + l)))
end
local function drop(base, id)
  local h, l = parse(redis.call('HGET', KEYS[base + 2], id))
  if redis.call('HDEL', KEYS[base + 2], id) == 1 then add(KEYS[base + 1], 'reserved', -h, -l) end
  redis.call('ZREM', KEYS[base + 3], id)
end
local function purge(base)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[base + 3], '-inf', now)) do drop(base, id) end
end
"""
)

#: KEYS (state, holds, deadlines) per level, innermost first; ARGV id, ttl_ms, amount hi, lo, then
#: per level limit hi, lo ('-' for none). -> {-1, ''} held, or {level index, remaining 'hi:lo'}
_RESERVE = (
    _LIMBS
    + """
local levels = #KEYS / 3
local id, ah, al = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 0, levels - 1 do purge(3 * i) end
for i = 0, levels - 1 do
  if ARGV[5 + 2 * i] ~= '-' then
    local sh, sl = parse(redis.call('HGET', KEYS[3 * i + 1], 'spent'))
    local rh, rl = parse(redis.call('HGET', KEYS[3 * i + 1], 'reserved'))
    local h, l = norm(tonumber(ARGV[5 + 2 * i]) - sh - rh, tonumber(ARGV[6 + 2 * i]) - sl - rl)
    if h < ah or (h == ah and l < al) then return {i, fmt(h, l)} end
  end
end
for i = 0, levels - 1 do
  add(KEYS[3 * i + 1], 'reserved', ah, al)
  redis.call('HSET', KEYS[3 * i + 2], id, fmt(ah, al))
  redis.call('ZADD', KEYS[3 * i + 3], now + tonumber(ARGV[2]), id)
end
return {-1, ''}
"""
)

#: KEYS as _RESERVE; ARGV id, fee hi, lo. The hold (if not expired) is dropped, the fee counted as spent.
_SETTLE = (
    _LIMBS
    + """
for i = 0, #KEYS / 3 - 1 do
  drop(3 * i, ARGV[1])
  add(KEYS[3 * i + 1], 'spent', tonumber(ARGV[2]), tonumber(ARGV[3]))
end
return 1
"""
)

#: KEYS state, holds, deadlines of one budget. -> {spent, reserved} as 'hi:lo' (expired holds freed)
_TOTALS = (
    _LIMBS
    + """
purge(0)
return {fmt(parse(redis.call('HGET', KEYS[1], 'spent'))), fmt(parse(redis.call('HGET', KEYS[1], 'reserved')))}
"""
)

#: The limb base of the budget scripts, and the largest amount they keep exactly.
_LIMB = 10**15
_MAX_BUDGET_WEI = 2**53 * _LIMB - 1

#: How many handed-out nonces an account's ``taken`` set remembers.
_KEEP_TAKEN = 10_000


class RedisCoordinator(Coordinator):
    """Nonces and leases shared through a Redis server by every process using one wallet.

    ``pip install "og-inference-async[redis]"``. Pass the same URL (and namespace) to every
    process's broker::

        coordinator = RedisCoordinator("redis://127.0.0.1:6379/0")
        async with AsyncBroker(key, coordinator=coordinator) as broker:
            ...
        await coordinator.aclose()

    Args:
        url: a ``redis://`` / ``rediss://`` / ``unix://`` URL (a password in it is never shown).
        namespace: prefix of every key (separate deployments on one server).
        nonce_lease: seconds a taken nonce stays its taker's; after that, when it left a gap
            (the taker crashed before sending), another worker fills it.
        timeout: seconds for one Redis command (connect included, and the wait for a free
            connection of the pool).
        max_connections: connections of this process to the server (callers beyond wait).

    Raises:
        ConfigError: redis-py is not installed, or a bad argument.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "og",
        nonce_lease: float = 60.0,
        timeout: float = 5.0,
        max_connections: int = 16,
    ) -> None:
        if aioredis is None:
            raise ConfigError(
                "RedisCoordinator needs redis-py", hint='pip install "og-inference-async[redis]"'
            )
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("RedisCoordinator needs a redis://, rediss:// or unix:// URL")
        if not namespace or not isinstance(namespace, str):
            raise ConfigError("namespace must be a non-empty string")
        for name, value in (("nonce_lease", nonce_lease), ("timeout", timeout)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds")
        if not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigError("max_connections must be a positive int")
        self._url = url
        self.namespace = namespace
        self.nonce_lease = float(nonce_lease)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
        )
        self._pool: Any = pool
        self._client: Any = aioredis.Redis(connection_pool=pool)
        self._allocators: dict[tuple[int, str], NonceAllocator] = {}
        self._scripts: dict[str, Any] = {}

    def __repr__(self) -> str:
        parts = urlsplit(self._url)
        shown = parts._replace(netloc=parts.hostname or "" if parts.password else parts.netloc).geturl()
        return f"RedisCoordinator({shown!r}, namespace={self.namespace!r})"

    async def __aenter__(self) -> RedisCoordinator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- plumbing --------------------------------------------------------------------------------

    async def _call(self, what: str, run: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await run()
        except (RedisError, OSError) as exc:
            raise CoordinatorError(
                f"the Redis coordinator could not {what} ({type(exc).__name__}); nothing was signed",
                hint="check that the Redis server is reachable",
            ) from None

    async def _script(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._client.register_script(source)
        return await self._call(name, lambda: script(keys=keys, args=args))

    async def check(self) -> None:
        """Ping the server.

        Raises:
            CoordinatorError: it cannot be reached.
        """
        await self._call("be reached", self._client.ping)

    async def aclose(self) -> None:
        """Close the connection pool."""
        with anyio.CancelScope(shield=True):
            try:
                await self._client.aclose()
                await self._pool.disconnect()
            except (RedisError, OSError):
                pass

    # -- nonces ----------------------------------------------------------------------------------

    def nonce_allocator(self, chain_id: int, address: str) -> NonceAllocator:
        """The allocator of ``address`` on ``chain_id`` whose counter lives in Redis."""
        key = (chain_id, address.lower())
        alloc = self._allocators.get(key)
        if alloc is None:
            counter = _RedisNonceCounter(self, f"{self.namespace}:{{{chain_id}:{address.lower()}}}")
            alloc = self._allocators[key] = SharedNonceAllocator(chain_id, address, counter)
        return alloc

    # -- API key ids ---------------------------------------------------------------------------

    def api_key_registry(self) -> RedisApiKeyRegistry:
        """The registry of issued API key ids shared through Redis (a set per user, provider, generation)."""
        return RedisApiKeyRegistry(self)

    # -- shared budgets --------------------------------------------------------------------------

    def budget_store(self) -> RedisBudgetStore:
        """The store of shared budgets in this server and namespace."""
        return RedisBudgetStore(self)

    # -- leases ----------------------------------------------------------------------------------

    def lease(
        self, name: str, *, ttl: float = 60.0, wait: float = 120.0
    ) -> AbstractAsyncContextManager[None]:
        """Hold ``name`` across processes (``SET NX PX`` with a token; released only with it).

        Raises:
            CoordinatorError: Redis cannot be reached, or the lease was not free within ``wait``.
        """
        return self._lease(name, ttl, wait)

    @asynccontextmanager
    async def _lease(self, name: str, ttl: float, wait: float) -> AsyncIterator[None]:
        key = f"{self.namespace}:lease:{name}"
        token = secrets.token_hex(16)
        ttl_ms = max(1, int(ttl * 1000))
        deadline = time.monotonic() + wait
        delay = 0.01
        while not await self._call("take a lease", lambda: self._client.set(key, token, nx=True, px=ttl_ms)):
            if time.monotonic() + delay > deadline:
                raise CoordinatorError(f"the lease {name!r} was not free within {wait} s")
            await anyio.sleep(delay)  # polls the holder's key; the expiry bounds a crashed holder
            delay = min(delay * 2, 0.2)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._script("release a lease", _UNLOCK, [key], [token])
                except CoordinatorError:
                    pass  # it expires on its own


class _RedisNonceCounter:
    """The :class:`~og_inference_async._chain._nonce.SharedNonceCounter` of one account in Redis.

    Each counter object has a random token: a nonce taken or claimed is leased to it, and only it
    can give that nonce back.
    """

    def __init__(self, owner: RedisCoordinator, prefix: str) -> None:
        self._owner = owner
        names = ("next", "gen", "taken", "free", "owner")
        self._prefix = prefix
        self._next, self._gen, self._taken, self._free, self._owners = (f"{prefix}:{n}" for n in names)
        self._token = secrets.token_hex(8)
        self._seeds: dict[object, SingleFlight[str, None]] = {}

    @property
    def _lease_ms(self) -> int:
        return int(self._owner.nonce_lease * 1000)

    async def take(self, read_pending: Callable[[], Awaitable[int]]) -> tuple[int, int]:
        """``(nonce, generation)``: a given-back nonce first, else the next one (the counter is
        seeded from ``read_pending`` first when it has none)."""
        request = f"{self._prefix}:take:{secrets.token_hex(8)}"
        keys = [self._next, self._gen, self._taken, self._free, self._owners, request]
        args = [self._lease_ms, _KEEP_TAKEN, self._token]
        while True:
            with anyio.CancelScope(shield=True):  # a nonce taken in Redis is never dropped on the floor
                try:
                    nonce, gen = await self._owner._script("take a nonce", _TAKE, keys, args)
                except CoordinatorError:
                    # the answer may be lost after Redis ran the take: asking again with the same
                    # request key returns that nonce instead of leaving it taken and unsent
                    nonce, gen = await self._owner._script("take a nonce", _TAKE, keys, args)
            if int(nonce) >= 0:
                return int(nonce), int(gen)
            flights = self._seeds.setdefault(anyio.lowlevel.current_token(), SingleFlight())
            await flights.run("seed", partial(self._seed, read_pending))

    async def _seed(self, read_pending: Callable[[], Awaitable[int]]) -> None:
        """Set the counter to the node's ``pending`` count unless another process did (once per loop)."""
        keys = [self._next, self._gen, self._free]
        await self._owner._script("seed the nonce counter", _SEED, keys, [await read_pending(), 0])

    async def give_back(self, nonces: list[int]) -> None:
        """Return nonces this counter took or claimed and will not send (each only while leased to it)."""
        keys = [self._taken, self._free, self._owners]
        await self._owner._script("give nonces back", _GIVE_BACK, keys, [self._token, *nonces])

    async def reseed(self, pending: int) -> int:
        """``next = max(pending, next)``, given-back nonces below ``pending`` dropped, a new generation."""
        keys = [self._next, self._gen, self._free]
        return int(await self._owner._script("reseed the nonce counter", _SEED, keys, [pending, 1]))

    async def claim_expired(self, nonce: int, floor: int) -> list[int]:
        """Nonces in ``[floor, nonce)`` given back or whose taker's lease ran out (now leased to this one)."""
        keys = [self._taken, self._free, self._owners]
        args = [nonce, floor, self._lease_ms, self._token]
        found = await self._owner._script("claim nonce gaps", _CLAIM, keys, args)
        return sorted(int(n) for n in found)


class RedisApiKeyRegistry:
    """Issued API key ids in Redis: every process's ``create_api_key`` claims its id atomically there.

    Only ids are stored (never a key's secret).

    Args:
        owner: the coordinator whose server and namespace it uses.
    """

    def __init__(self, owner: RedisCoordinator) -> None:
        self._owner = owner
        self._local: dict[tuple[str, str, int], set[int]] = {}

    def __repr__(self) -> str:
        return f"RedisApiKeyRegistry(namespace={self._owner.namespace!r})"

    def issued_ids(self, user: str, provider: str, generation: int) -> Collection[int]:
        """Ids this process claimed (the complete set lives in Redis; ``claim_id`` consults it)."""
        return self._local.get((user.lower(), provider.lower(), generation), set())

    def record(self, user: str, key: ApiKey) -> None:
        """Remember the id locally (it was claimed in Redis already; the secret is not kept)."""
        self._local.setdefault((user.lower(), key.provider.lower(), key.generation), set()).add(key.token_id)

    async def claim_id(
        self, user: str, provider: str, generation: int, *, revoked: list[int], token_id: int | None
    ) -> int | None:
        """Claim ``token_id`` or the lowest free id atomically in Redis; ``None`` when taken / none free.

        Raises:
            CoordinatorError: Redis cannot be reached.
        """
        key = f"{self._owner.namespace}:apikeys:{user.lower()}:{provider.lower()}:{generation}"
        args = [-1 if token_id is None else token_id, *revoked]
        found = int(await self._owner._script("claim an API key id", _CLAIM_ID, [key], args))
        return None if found < 0 else found


def _limbs(wei: int) -> list[int]:
    if not 0 <= wei <= _MAX_BUDGET_WEI:
        raise ConfigError(f"a shared budget keeps amounts up to {_MAX_BUDGET_WEI} wei, got {wei}")
    return list(divmod(wei, _LIMB))


def _wei(limbs: str) -> int:
    hi, lo = limbs.split(":")
    return int(hi) * _LIMB + int(lo)


class RedisBudgetStore:
    """Shared spend budgets in Redis: each reservation, settlement and read is one atomic script.

    Args:
        owner: the coordinator whose server and namespace it uses.
    """

    def __init__(self, owner: RedisCoordinator) -> None:
        self._owner = owner

    def __repr__(self) -> str:
        return f"RedisBudgetStore(namespace={self._owner.namespace!r})"

    def _keys(self, names: list[str]) -> list[str]:
        base = [f"{self._owner.namespace}:budget:{name}" for name in names]
        return [f"{b}:{part}" for b in base for part in ("state", "holds", "deadlines")]

    async def reserve(
        self, levels: list[tuple[str, int | None]], hold_id: str, amount: int, ttl: float
    ) -> tuple[int, int] | None:
        """Hold ``amount`` at every level, or nothing: ``None`` when held, else ``(level, remaining)``.

        Raises:
            CoordinatorError: Redis cannot be reached (nothing was held, nothing is sent).
        """
        args: list[Any] = [hold_id, max(1, int(ttl * 1000)), *_limbs(amount)]
        for _, limit in levels:
            args.extend(["-", "-"] if limit is None else _limbs(limit))
        keys = self._keys([name for name, _ in levels])
        level, left = await self._owner._script("reserve a shared budget", _RESERVE, keys, args)
        return None if int(level) < 0 else (int(level), _wei(left))

    async def settle(self, names: list[str], hold_id: str, fee: int) -> None:
        """Replace the hold by ``fee`` spent at every level (a hold that expired counts the fee only).

        Raises:
            CoordinatorError: Redis cannot be reached (the hold then expires on its own).
        """
        args = [hold_id, *_limbs(fee)]
        await self._owner._script("settle a shared budget", _SETTLE, self._keys(names), args)

    async def totals(self, name: str) -> tuple[int, int]:
        """``(spent, reserved)`` in wei of one shared budget, as every process sees it.

        Raises:
            CoordinatorError: Redis cannot be reached.
        """
        spent, reserved = await self._owner._script("read a shared budget", _TOTALS, self._keys([name]), [])
        return _wei(spent), _wei(reserved)
