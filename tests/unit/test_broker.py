"""AsyncBroker lifecycle: no I/O on build, open/close state machine, borrowed clients, secrets."""

from __future__ import annotations

import logging

import httpx
import pytest

from og_inference_async import (
    AsyncBroker,
    BrokerStateError,
    ConfigError,
    NetworkMismatchError,
)

from .fakes import FakeProvider, FakeWeb3

pytestmark = pytest.mark.anyio

KEY = "0x" + "42" * 32


def _broker(node: FakeProvider, **kw: object) -> AsyncBroker:
    return AsyncBroker(KEY, network="hardhat", web3=FakeWeb3(node), **kw)  # type: ignore[arg-type]


def test_build_does_no_io_and_repr_hides_the_key() -> None:
    """Constructing a broker touches nothing; its repr shows the address, never the key."""
    node = FakeProvider()
    broker = _broker(node)
    assert node.calls == []
    assert broker.state == "unopened"
    assert KEY[2:] not in repr(broker)
    assert broker.address is not None and broker.address in repr(broker)


def test_bad_key_is_a_config_error_without_the_key() -> None:
    """A malformed key raises ConfigError whose message does not echo it."""
    with pytest.raises(ConfigError) as info:
        AsyncBroker("0xnotakey-secret", network="hardhat")
    assert "secret" not in str(info.value)


async def test_open_checks_chain_id() -> None:
    """Opening against an RPC of another chain raises NetworkMismatchError and closes."""
    node = FakeProvider({"eth_chainId": lambda p: hex(1)})
    broker = _broker(node)
    with pytest.raises(NetworkMismatchError):
        async with broker:
            pass
    assert broker.state == "closed"


async def test_close_is_idempotent_and_final() -> None:
    """aclose twice is fine; a closed broker cannot reopen or be used."""
    node = FakeProvider()
    broker = _broker(node)
    async with broker:
        assert broker.state == "opened"
    await broker.aclose()
    assert broker.state == "closed"
    with pytest.raises(BrokerStateError):
        await broker.open()
    with pytest.raises(BrokerStateError):
        await broker.ledger.get_ledger()


async def test_use_before_open_is_a_state_error() -> None:
    """Calling a namespace before 'async with' raises BrokerStateError."""
    broker = _broker(FakeProvider())
    with pytest.raises(BrokerStateError):
        await broker.ledger.get_ledger()


async def test_borrowed_clients_are_not_closed() -> None:
    """A borrowed httpx client and web3 provider stay open after the broker closes."""
    node = FakeProvider()
    client = httpx.AsyncClient()
    async with _broker(node, http_client=client) as broker:
        assert broker.http is client
    assert not client.is_closed
    assert node.disconnected == 0
    await client.aclose()


async def test_read_only_broker_refuses_writes() -> None:
    """A broker without a key can open but refuses transactions with ConfigError."""
    async with AsyncBroker(network="hardhat", web3=FakeWeb3(FakeProvider())) as broker:  # type: ignore[arg-type]
        assert broker.is_read_only
        with pytest.raises(ConfigError):
            await broker.ledger.deposit_fund(10**18)


async def test_background_tasks_stop_on_close() -> None:
    """Work started in the broker's task group is cancelled when the broker closes."""
    import anyio

    stopped = anyio.Event()

    async def forever() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    async with _broker(FakeProvider()) as broker:
        broker.task_group.start_soon(forever)
        await anyio.lowlevel.checkpoint()
    assert stopped.is_set()


async def test_no_key_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing the broker logs contains the private key."""
    caplog.set_level(logging.DEBUG)
    async with _broker(FakeProvider()):
        pass
    assert KEY[2:] not in caplog.text
