"""Session headers, API keys and revocation on the devnet."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from og_inference_async import ApiKeyError, AsyncBroker, NotAcknowledgedError, og
from og_inference_async._tokens import decode_token, verify_token

from .chain_helpers import register_provider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def _funded(dn: Any, index: int = 6) -> tuple[AsyncBroker, str]:
    """A provider with a funded sub-account for accounts[index], and a fresh (unopened) broker."""
    provider = await register_provider(dn)
    async with AsyncBroker(dn.accounts[index].private_key, network=dn.network) as setup:
        await setup.ledger.add_ledger(og("5"))
        await setup.ledger.transfer_fund(provider, og("2"))
    return AsyncBroker(dn.accounts[index].private_key, network=dn.network), provider


async def test_headers_need_acknowledgement(devnet: Any) -> None:
    """Without a sub-account the provider is not acknowledged and no header is issued."""
    provider = await register_provider(devnet)
    async with AsyncBroker(devnet.accounts[7].private_key, network=devnet.network) as broker:
        assert not await broker.inference.acknowledged(provider)
        with pytest.raises(NotAcknowledgedError):
            await broker.inference.get_request_headers(provider)


async def test_headers_carry_a_valid_ephemeral_token(devnet: Any) -> None:
    """The header decodes, verifies for the provider and carries tokenId 255 and generation 0."""
    broker, provider = await _funded(devnet)
    async with broker:
        headers = await broker.inference.get_request_headers(provider)
        decoded = decode_token(headers["Authorization"])
        verify_token(decoded, expected_provider=provider)
        assert decoded.claims.token_id == 255 and decoded.claims.generation == 0
        assert decoded.claims.address == broker.address
        assert await broker.inference.get_request_headers(provider) == headers  # cached


async def test_cold_burst_signs_once_and_reads_once(devnet: Any) -> None:
    """1,000 concurrent callers on a fresh broker cause one signature and at most two RPC requests."""
    fresh, provider = await _funded(devnet)
    async with fresh:
        rpc = fresh._chain_reader.rpc
        before = rpc.request_count
        results: list[dict[str, str]] = []

        async def call() -> None:
            results.append(await fresh.inference.get_request_headers(provider))

        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(call)
        assert len({r["Authorization"] for r in results}) == 1
        assert fresh.inference.auth.tokens.stats.signatures == 1
        assert rpc.request_count - before <= 2


async def test_revoke_all_tokens_bumps_the_generation(devnet: Any) -> None:
    """After revoke_all_tokens the cached token is dropped and the next one carries generation 1."""
    broker, provider = await _funded(devnet)
    async with broker:
        old = decode_token((await broker.inference.get_request_headers(provider))["Authorization"])
        receipt = await broker.inference.revoke_all_tokens(provider)
        assert receipt.events_named("AllTokensRevoked")
        new = decode_token((await broker.inference.get_request_headers(provider))["Authorization"])
        assert (old.claims.generation, new.claims.generation) == (0, 1)
        assert (await broker.ledger.get_account(provider)).generation == 1


async def test_api_keys_get_distinct_ids_and_revoke(devnet: Any) -> None:
    """Concurrent API keys never share an id; revoked ids are listed and skipped; 255 is refused."""
    broker, provider = await _funded(devnet)
    async with broker:
        keys: list[Any] = []

        async def create() -> None:
            keys.append(await broker.inference.create_api_key(provider))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(create)
        assert sorted(k.token_id for k in keys) == list(range(10))
        key = keys[0]
        assert "app-sk-" not in repr(key) and "app-sk-" not in str(key)
        decoded = decode_token(key.secret.get_secret_value())
        verify_token(decoded, expected_provider=provider)
        assert decoded.claims.expires_at == 0

        await broker.inference.revoke_api_key(provider, 3)
        await broker.inference.revoke_api_keys(provider, [4, 5])
        assert await broker.inference.list_revoked_api_keys(provider) == [3, 4, 5]
        assert (await broker.inference.create_api_key(provider, expires_in_ms=60_000)).token_id == 10
        with pytest.raises(ApiKeyError):
            await broker.inference.revoke_api_key(provider, 255)
        with pytest.raises(ApiKeyError):
            await broker.inference.revoke_api_key(provider, 3)
        with pytest.raises(ApiKeyError):
            await broker.inference.create_api_key(provider, token_id=4)
        with pytest.raises(ApiKeyError):
            await broker.inference.create_api_key(provider, token_id=255)


async def test_all_ids_taken_is_a_clear_error(devnet: Any) -> None:
    """When all 255 ids are issued or revoked, create_api_key raises ApiKeyError."""
    broker, provider = await _funded(devnet)
    async with broker:
        generation = (await broker.ledger.get_account(provider)).generation
        registry = broker.inference.auth.registry
        ids = registry.issued_ids(broker.address, provider, generation)  # type: ignore[arg-type]
        assert not ids
        for i in range(255):
            registry._ids.setdefault((broker.address, provider.lower(), generation), set()).add(i)  # type: ignore[attr-defined]
        with pytest.raises(ApiKeyError, match="255"):
            await broker.inference.create_api_key(provider)


async def test_no_secret_in_logs(devnet: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Tokens, keys and signatures never appear in captured logs."""
    caplog.set_level(logging.DEBUG)
    broker, provider = await _funded(devnet)
    async with broker:
        header = (await broker.inference.get_request_headers(provider))["Authorization"]
        key = await broker.inference.create_api_key(provider)
    secret = key.secret.get_secret_value()
    for needle in (header.split(" ")[1], secret, decode_token(header).signature[2:]):
        assert needle not in caplog.text


async def test_explicit_id_already_issued_is_refused(devnet: Any) -> None:
    """Asking for an id this broker already issued raises ApiKeyError (two keys must not share an id)."""
    broker, provider = await _funded(devnet)
    async with broker:
        first = await broker.inference.create_api_key(provider, token_id=9)
        assert first.token_id == 9
        with pytest.raises(ApiKeyError, match="already issued"):
            await broker.inference.create_api_key(provider, token_id=9)


async def test_session_policy_and_registry_come_from_the_broker(devnet: Any) -> None:
    """The broker's SessionPolicy sets the token lifetime; its api_key_registry records issued keys."""
    from og_inference_async import InMemoryApiKeyRegistry, SessionPolicy

    _, provider = await _funded(devnet)
    registry = InMemoryApiKeyRegistry()
    policy = SessionPolicy(lifetime_ms=600_000, refresh_margin_ms=60_000)
    async with AsyncBroker(
        devnet.accounts[6].private_key, network=devnet.network, session=policy, api_key_registry=registry
    ) as broker:
        claims = decode_token((await broker.inference.get_request_headers(provider))["Authorization"]).claims
        assert claims.expires_at - claims.timestamp == 600_000
        key = await broker.inference.create_api_key(provider)
        assert key.token_id in registry.issued_ids(broker.address, provider, 0)  # type: ignore[arg-type]


async def test_forget_discards_a_read_already_in_flight(devnet: Any) -> None:
    """A sub-account read that started before forget() does not repopulate the cache afterwards."""
    broker, provider = await _funded(devnet)
    async with broker:
        auth = broker.inference.auth
        started = anyio.Event()
        release = anyio.Event()
        real = broker._chain_reader.get_account

        async def slow(user: str, prov: str) -> Any:
            started.set()
            await release.wait()
            return await real(user, prov)

        broker._chain_reader.get_account = slow  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(auth.read_account, provider)
            await started.wait()
            auth.forget(provider)
            release.set()
        assert provider not in auth._accounts
