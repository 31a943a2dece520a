"""Bad input across the public API, on the devnet: a typed ConfigError and nothing sent.

Every case calls a public method of an opened broker whose wallet has a funded ledger and a funded,
acknowledged sub-account with one provider of each service type, so a call that slipped through
the checks would really send a transaction or a billed request. Each case asserts the typed error,
that the wallet's nonce (``latest`` and ``pending``) did not move, and that no provider received
any HTTP request.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest
from eth_utils import keccak

from og_inference_async import (
    ApiKeyError,
    AsyncBroker,
    ConfigError,
    FeePolicy,
    InvalidAddressError,
    InvalidAmountError,
    RequestRetryPolicy,
    RetryPolicy,
    ServiceTypeMismatchError,
    SessionPolicy,
    TxPolicy,
    VerificationPolicy,
    og,
)
from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle, start_provider

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

USER, OTHER = 17, 18
ZERO = "0x" + "00" * 20
HELLO = [{"role": "user", "content": "hello"}]
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
WAV = b"RIFF\x24\0\0\0WAVEfmt "


def provider_key(label: str) -> str:
    """A deterministic provider key of this module."""
    return "0x" + bytes(keccak(b"og-test-bad-input:" + label.encode())).hex()


def typo(address: str) -> str:
    """The address with the case of one letter flipped: a mistyped checksummed address."""
    for i in range(len(address) - 1, 1, -1):
        if address[i].isalpha():
            flipped = address[:i] + address[i].swapcase() + address[i + 1 :]
            digits = flipped[2:]
            if digits != digits.lower() and digits != digits.upper():
                return flipped
    raise AssertionError("no letter to flip")


@dataclass
class Env:
    """The module's providers and addresses."""

    chat: ProviderHandle
    image: ProviderHandle
    edit: ProviderHandle
    audio: ProviderHandle
    user: str
    other: str

    def handles(self) -> list[ProviderHandle]:
        return [self.chat, self.image, self.edit, self.audio]


@pytest.fixture(scope="module")
async def env(devnet: Devnet) -> AsyncIterator[Env]:
    """Four providers (one per service type) and a user funded with all of them, for the whole module."""
    common: dict[str, Any] = {"settle_interval": None, "async_job_seconds": 0.02, "async_retry_after": 0}
    snapshot = await devnet.snapshot()
    async with anyio.create_task_group() as tg:
        handles = [
            await start_provider(
                devnet,
                tg,
                service_type=kind,
                model=f"bad/{kind}",
                input_price=10**12,
                output_price=10**12,
                private_key=provider_key(kind),
                **common,
            )
            for kind in ("chatbot", "text-to-image", "image-editing", "speech-to-text")
        ]
        async with AsyncBroker(devnet.accounts[USER].private_key, network=devnet.network) as setup:
            await setup.ledger.add_ledger(og("20"))
            for handle in handles:
                await setup.ledger.transfer_fund(handle.address, og("3"))
        yield Env(*handles, user=devnet.accounts[USER].address, other=devnet.accounts[OTHER].address)
        tg.cancel_scope.cancel()
    await devnet.revert(snapshot)


@pytest.fixture(autouse=True)
def _reset_providers(request: pytest.FixtureRequest) -> None:
    """Forget billing state between tests (the chain is reverted by the conftest)."""
    if "env" in request.fixturenames:
        for handle in request.getfixturevalue("env").handles():
            handle.reset()


async def _nonces(dn: Devnet, address: str) -> tuple[int, int]:
    latest = await dn.rpc("eth_getTransactionCount", [address, "latest"])
    pending = await dn.rpc("eth_getTransactionCount", [address, "pending"])
    return int(latest, 16), int(pending, 16)


# -- the table ----------------------------------------------------------------------------------

Call = Callable[[AsyncBroker, Env], Any]


async def _stream(broker: AsyncBroker, provider: str, messages: Any = HELLO, **kw: Any) -> None:
    async with broker.inference.chat_stream(provider, messages, **kw) as stream:
        async for _ in stream:
            pass


def _set_retry_policy(broker: AsyncBroker, value: Any) -> None:
    broker.inference.retry_policy = value


def _set_verification(broker: AsyncBroker, value: Any) -> None:
    broker.inference.verification = value


CASES: list[tuple[str, Call, type[ConfigError]]] = [
    # -- amounts ------------------------------------------------------------------------------
    ("deposit negative", lambda b, e: b.ledger.deposit_fund(-1), InvalidAmountError),
    ("deposit zero", lambda b, e: b.ledger.deposit_fund(0), InvalidAmountError),
    ("deposit zero text", lambda b, e: b.ledger.deposit_fund("0.0"), InvalidAmountError),
    ("deposit float", lambda b, e: b.ledger.deposit_fund(1.5), InvalidAmountError),
    ("deposit NaN text", lambda b, e: b.ledger.deposit_fund("NaN"), InvalidAmountError),
    ("deposit Infinity text", lambda b, e: b.ledger.deposit_fund("Infinity"), InvalidAmountError),
    ("deposit absurd exponent", lambda b, e: b.ledger.deposit_fund("1e999980"), InvalidAmountError),
    ("deposit huge exponent", lambda b, e: b.ledger.deposit_fund("1e99999999999"), InvalidAmountError),
    ("deposit bool", lambda b, e: b.ledger.deposit_fund(True), InvalidAmountError),
    ("deposit negative text", lambda b, e: b.ledger.deposit_fund("-2"), InvalidAmountError),
    ("deposit sub-wei", lambda b, e: b.ledger.deposit_fund("1.0000000000000000001"), InvalidAmountError),
    ("deposit huge digit string", lambda b, e: b.ledger.deposit_fund("9" * 100_000), InvalidAmountError),
    ("deposit None", lambda b, e: b.ledger.deposit_fund(None), InvalidAmountError),
    ("deposit above uint256", lambda b, e: b.ledger.deposit_fund(2**256), InvalidAmountError),
    ("deposit text", lambda b, e: b.ledger.deposit_fund("three"), InvalidAmountError),
    ("deposit Decimal NaN", lambda b, e: b.ledger.deposit_fund(Decimal("NaN")), InvalidAmountError),
    ("deposit hex text", lambda b, e: b.ledger.deposit_fund("0x10"), InvalidAmountError),
    ("add_ledger zero", lambda b, e: b.ledger.add_ledger(0), InvalidAmountError),
    ("add_ledger negative", lambda b, e: b.ledger.add_ledger(-5), InvalidAmountError),
    ("add_ledger float", lambda b, e: b.ledger.add_ledger(0.1), InvalidAmountError),
    ("add_ledger info type", lambda b, e: b.ledger.add_ledger("3", additional_info=5), ConfigError),
    ("add_ledger info too long", lambda b, e: b.ledger.add_ledger("3", "x" * 5000), ConfigError),
    ("refund zero", lambda b, e: b.ledger.refund(0), InvalidAmountError),
    ("refund negative", lambda b, e: b.ledger.refund(-1), InvalidAmountError),
    ("refund nan", lambda b, e: b.ledger.refund("nan"), InvalidAmountError),
    ("refund float", lambda b, e: b.ledger.refund(1e18), InvalidAmountError),
    ("transfer zero", lambda b, e: b.ledger.transfer_fund(e.chat.address, 0), InvalidAmountError),
    ("transfer negative", lambda b, e: b.ledger.transfer_fund(e.chat.address, -1), InvalidAmountError),
    ("transfer too large", lambda b, e: b.ledger.transfer_fund(e.chat.address, "1e60"), InvalidAmountError),
    ("transfer float", lambda b, e: b.ledger.transfer_fund(e.chat.address, 2.0), InvalidAmountError),
    ("deposit_for zero", lambda b, e: b.ledger.deposit_fund_for(e.other, 0), InvalidAmountError),
    ("deposit_for NaN", lambda b, e: b.ledger.deposit_fund_for(e.other, "NaN"), InvalidAmountError),
    (
        "ack negative initial",
        lambda b, e: b.inference.acknowledge_provider_signer(e.chat.address, initial_amount=-1),
        InvalidAmountError,
    ),
    (
        "ack float initial",
        lambda b, e: b.inference.acknowledge_provider_signer(e.chat.address, initial_amount=0.5),
        InvalidAmountError,
    ),
    (
        "ensure_ready negative",
        lambda b, e: b.inference.ensure_ready(e.chat.address, min_balance=-1),
        InvalidAmountError,
    ),
    (
        "ensure_ready inf",
        lambda b, e: b.inference.ensure_ready(e.chat.address, min_balance="inf"),
        InvalidAmountError,
    ),
    (
        "ensure_ready float ledger",
        lambda b, e: b.inference.ensure_ready(e.chat.address, ledger_amount=1.0),
        InvalidAmountError,
    ),
    (
        "ensure_ready flag type",
        lambda b, e: b.inference.ensure_ready(e.chat.address, create_ledger="yes"),
        ConfigError,
    ),
    (
        "auto-funding negative buffer",
        lambda b, e: b.inference.start_auto_funding(e.chat.address, buffer=-1),
        InvalidAmountError,
    ),
    (
        "auto-funding float minimum",
        lambda b, e: b.inference.start_auto_funding(e.chat.address, min_transfer=0.1),
        InvalidAmountError,
    ),
    (
        "auto-funding zero interval",
        lambda b, e: b.inference.start_auto_funding(e.chat.address, interval=0),
        ConfigError,
    ),
    (
        "auto-funding NaN interval",
        lambda b, e: b.inference.start_auto_funding(e.chat.address, interval=math.nan),
        ConfigError,
    ),
    (
        "auto-funding callback",
        lambda b, e: b.inference.start_auto_funding(e.chat.address, on_error=5),
        ConfigError,
    ),
    # -- addresses ----------------------------------------------------------------------------
    (
        "deposit_for bad checksum",
        lambda b, e: b.ledger.deposit_fund_for(typo(e.other), "3"),
        InvalidAddressError,
    ),
    ("deposit_for short", lambda b, e: b.ledger.deposit_fund_for(e.other[:-2], "3"), InvalidAddressError),
    (
        "deposit_for non-hex",
        lambda b, e: b.ledger.deposit_fund_for("0x" + "zz" * 20, "3"),
        InvalidAddressError,
    ),
    ("deposit_for zero address", lambda b, e: b.ledger.deposit_fund_for(ZERO, "3"), InvalidAddressError),
    ("deposit_for None", lambda b, e: b.ledger.deposit_fund_for(None, "3"), InvalidAddressError),
    ("deposit_for no 0x", lambda b, e: b.ledger.deposit_fund_for(e.other[2:], "3"), InvalidAddressError),
    ("deposit_for int", lambda b, e: b.ledger.deposit_fund_for(123, "3"), InvalidAddressError),
    ("deposit_for bytes", lambda b, e: b.ledger.deposit_fund_for(b"\x01" * 20, "3"), InvalidAddressError),
    (
        "transfer bad checksum",
        lambda b, e: b.ledger.transfer_fund(typo(e.chat.address), "1"),
        InvalidAddressError,
    ),
    ("transfer zero address", lambda b, e: b.ledger.transfer_fund(ZERO, "1"), InvalidAddressError),
    ("transfer short", lambda b, e: b.ledger.transfer_fund("0x12", "1"), InvalidAddressError),
    ("transfer to self", lambda b, e: b.ledger.transfer_fund(e.user, "1"), InvalidAddressError),
    ("get_ledger bad checksum", lambda b, e: b.ledger.get_ledger(typo(e.other)), InvalidAddressError),
    ("get_ledger empty", lambda b, e: b.ledger.get_ledger(""), InvalidAddressError),
    (
        "get_account bad checksum",
        lambda b, e: b.ledger.get_account(typo(e.chat.address)),
        InvalidAddressError,
    ),
    (
        "retrieve bad checksum",
        lambda b, e: b.ledger.retrieve_fund([typo(e.chat.address)]),
        InvalidAddressError,
    ),
    ("retrieve a str", lambda b, e: b.ledger.retrieve_fund(e.chat.address), ConfigError),
    (
        "retrieve duplicates",
        lambda b, e: b.ledger.retrieve_fund([e.chat.address, e.chat.address.lower()]),
        ConfigError,
    ),
    ("retrieve zero", lambda b, e: b.ledger.retrieve_fund_from_provider(ZERO), InvalidAddressError),
    (
        "ack bad checksum",
        lambda b, e: b.inference.acknowledge_provider_signer(typo(e.chat.address)),
        InvalidAddressError,
    ),
    ("ensure_ready zero", lambda b, e: b.inference.ensure_ready(ZERO), InvalidAddressError),
    ("chat bad checksum", lambda b, e: b.inference.chat(typo(e.chat.address), HELLO), InvalidAddressError),
    ("chat provider list", lambda b, e: b.inference.chat([e.chat.address], HELLO), InvalidAddressError),
    ("image zero provider", lambda b, e: b.inference.generate_image(ZERO, "a cat"), InvalidAddressError),
    (
        "get_service bad checksum",
        lambda b, e: b.inference.get_service(typo(e.chat.address)),
        InvalidAddressError,
    ),
    (
        "headers bad checksum",
        lambda b, e: b.inference.get_request_headers(typo(e.chat.address)),
        InvalidAddressError,
    ),
    (
        "api key bad checksum",
        lambda b, e: b.inference.create_api_key(typo(e.chat.address)),
        InvalidAddressError,
    ),
    ("revoke all zero", lambda b, e: b.inference.revoke_all_tokens(ZERO), InvalidAddressError),
    (
        "wait_settled bad checksum",
        lambda b, e: b.inference.wait_settled(typo(e.chat.address)),
        InvalidAddressError,
    ),
    ("get_refunds non-hex", lambda b, e: b.inference.get_refunds("0xzz"), InvalidAddressError),
    (
        "has_auto_funding bad",
        lambda b, e: b.inference.has_auto_funding(typo(e.chat.address)),
        InvalidAddressError,
    ),
    ("local_fees unhashable", lambda b, e: b.inference.local_fees(["x"]), InvalidAddressError),
    # -- providers of the wrong service type --------------------------------------------------
    (
        "chat on text-to-image",
        lambda b, e: b.inference.chat(e.image.address, HELLO),
        ServiceTypeMismatchError,
    ),
    ("chat on image-editing", lambda b, e: b.inference.chat(e.edit.address, HELLO), ServiceTypeMismatchError),
    (
        "chat on speech-to-text",
        lambda b, e: b.inference.chat(e.audio.address, HELLO),
        ServiceTypeMismatchError,
    ),
    ("stream on text-to-image", lambda b, e: _stream(b, e.image.address), ServiceTypeMismatchError),
    ("stream on speech-to-text", lambda b, e: _stream(b, e.audio.address), ServiceTypeMismatchError),
    (
        "image on chatbot",
        lambda b, e: b.inference.generate_image(e.chat.address, "a cat"),
        ServiceTypeMismatchError,
    ),
    (
        "image on image-editing",
        lambda b, e: b.inference.generate_image(e.edit.address, "a cat"),
        ServiceTypeMismatchError,
    ),
    (
        "image on speech-to-text",
        lambda b, e: b.inference.generate_image(e.audio.address, "a cat"),
        ServiceTypeMismatchError,
    ),
    (
        "async image on chatbot",
        lambda b, e: b.inference.generate_image_async(e.chat.address, "a cat"),
        ServiceTypeMismatchError,
    ),
    (
        "edit on chatbot",
        lambda b, e: b.inference.edit_image(e.chat.address, PNG, "blue"),
        ServiceTypeMismatchError,
    ),
    (
        "edit on text-to-image",
        lambda b, e: b.inference.edit_image(e.image.address, PNG, "blue"),
        ServiceTypeMismatchError,
    ),
    (
        "transcribe on chatbot",
        lambda b, e: b.inference.transcribe(e.chat.address, WAV),
        ServiceTypeMismatchError,
    ),
    (
        "transcribe on text-to-image",
        lambda b, e: b.inference.transcribe(e.image.address, WAV),
        ServiceTypeMismatchError,
    ),
    (
        "job poll on chatbot",
        lambda b, e: b.inference.wait_image_job(e.chat.address, "job-1"),
        ServiceTypeMismatchError,
    ),
    (
        "job poll on speech-to-text",
        lambda b, e: b.inference.wait_image_job(e.audio.address, "job-1"),
        ServiceTypeMismatchError,
    ),
    # -- messages and chat arguments ----------------------------------------------------------
    ("messages str", lambda b, e: b.inference.chat(e.chat.address, "hello"), ConfigError),
    ("messages empty", lambda b, e: b.inference.chat(e.chat.address, []), ConfigError),
    ("messages one dict", lambda b, e: b.inference.chat(e.chat.address, HELLO[0]), ConfigError),
    ("messages of str", lambda b, e: b.inference.chat(e.chat.address, ["hello"]), ConfigError),
    ("message without role", lambda b, e: b.inference.chat(e.chat.address, [{"content": "x"}]), ConfigError),
    (
        "message role int",
        lambda b, e: b.inference.chat(e.chat.address, [{"role": 1, "content": "x"}]),
        ConfigError,
    ),
    ("messages None", lambda b, e: b.inference.chat(e.chat.address, None), ConfigError),
    ("messages bytes", lambda b, e: b.inference.chat(e.chat.address, b"hello"), ConfigError),
    ("chat stream flag", lambda b, e: b.inference.chat(e.chat.address, HELLO, stream=True), ConfigError),
    ("chat blank model", lambda b, e: b.inference.chat(e.chat.address, HELLO, model=""), ConfigError),
    (
        "chat NaN parameter",
        lambda b, e: b.inference.chat(e.chat.address, HELLO, temperature=math.nan),
        ConfigError,
    ),
    ("chat verify mode", lambda b, e: b.inference.chat(e.chat.address, HELLO, verify="bogus"), ConfigError),
    (
        "chat content not JSON",
        lambda b, e: b.inference.chat(e.chat.address, [{"role": "user", "content": object()}]),
        ConfigError,
    ),
    ("stream messages str", lambda b, e: b.inference.chat_stream(e.chat.address, "hello"), ConfigError),
    ("stream drain timeout", lambda b, e: _stream(b, e.chat.address, drain_timeout=0), ConfigError),
    ("stream include_usage", lambda b, e: _stream(b, e.chat.address, include_usage="yes"), ConfigError),
    # -- image and audio inputs ---------------------------------------------------------------
    ("edit image str", lambda b, e: b.inference.edit_image(e.edit.address, "str", "blue"), ConfigError),
    ("edit image None", lambda b, e: b.inference.edit_image(e.edit.address, None, "blue"), ConfigError),
    ("edit image empty", lambda b, e: b.inference.edit_image(e.edit.address, b"", "blue"), ConfigError),
    ("edit blank prompt", lambda b, e: b.inference.edit_image(e.edit.address, PNG, " "), ConfigError),
    ("edit n zero", lambda b, e: b.inference.edit_image(e.edit.address, PNG, "blue", n=0), ConfigError),
    ("image n eleven", lambda b, e: b.inference.generate_image(e.image.address, "cat", n=11), ConfigError),
    ("image n float", lambda b, e: b.inference.generate_image(e.image.address, "cat", n=1.0), ConfigError),
    ("image prompt empty", lambda b, e: b.inference.generate_image(e.image.address, ""), ConfigError),
    ("image prompt bytes", lambda b, e: b.inference.generate_image(e.image.address, b"cat"), ConfigError),
    ("image size int", lambda b, e: b.inference.generate_image(e.image.address, "cat", size=64), ConfigError),
    (
        "image verify mode",
        lambda b, e: b.inference.generate_image(e.image.address, "cat", verify="bogus"),
        ConfigError,
    ),
    (
        "async image max_wait",
        lambda b, e: b.inference.generate_image_async(e.image.address, "cat", max_wait=-1),
        ConfigError,
    ),
    (
        "async image max_polls",
        lambda b, e: b.inference.generate_image_async(e.image.address, "cat", max_polls=0),
        ConfigError,
    ),
    ("job id empty", lambda b, e: b.inference.wait_image_job(e.image.address, ""), ConfigError),
    (
        "job request hash",
        lambda b, e: b.inference.wait_image_job(e.image.address, "j", request_sha256="beef"),
        ConfigError,
    ),
    ("audio None", lambda b, e: b.inference.transcribe(e.audio.address, None), ConfigError),
    ("audio missing path", lambda b, e: b.inference.transcribe(e.audio.address, "/no/such.wav"), ConfigError),
    ("audio empty", lambda b, e: b.inference.transcribe(e.audio.address, b""), ConfigError),
    ("audio int", lambda b, e: b.inference.transcribe(e.audio.address, 42), ConfigError),
    ("audio language", lambda b, e: b.inference.transcribe(e.audio.address, WAV, language=5), ConfigError),
    ("audio filename", lambda b, e: b.inference.transcribe(e.audio.address, WAV, ""), ConfigError),
    # -- API key ids --------------------------------------------------------------------------
    ("api key id 255", lambda b, e: b.inference.create_api_key(e.chat.address, token_id=255), ApiKeyError),
    ("api key id -1", lambda b, e: b.inference.create_api_key(e.chat.address, token_id=-1), ApiKeyError),
    ("api key id 300", lambda b, e: b.inference.create_api_key(e.chat.address, token_id=300), ApiKeyError),
    ("api key id bool", lambda b, e: b.inference.create_api_key(e.chat.address, token_id=True), ApiKeyError),
    ("api key id str", lambda b, e: b.inference.create_api_key(e.chat.address, token_id="1"), ApiKeyError),
    (
        "api key expiry negative",
        lambda b, e: b.inference.create_api_key(e.chat.address, expires_in=-1),
        ConfigError,
    ),
    ("revoke id 255", lambda b, e: b.inference.revoke_api_key(e.chat.address, 255), ApiKeyError),
    ("revoke id 1000", lambda b, e: b.inference.revoke_api_key(e.chat.address, 1000), ApiKeyError),
    ("revoke no ids", lambda b, e: b.inference.revoke_api_keys(e.chat.address, []), ApiKeyError),
    ("revoke duplicate ids", lambda b, e: b.inference.revoke_api_keys(e.chat.address, [1, 1]), ApiKeyError),
    ("revoke ids not a list", lambda b, e: b.inference.revoke_api_keys(e.chat.address, 5), ApiKeyError),
    ("revoke ids mixed", lambda b, e: b.inference.revoke_api_keys(e.chat.address, [1, "2"]), ApiKeyError),
    # -- limits, offsets, timeouts ------------------------------------------------------------
    ("list limit zero", lambda b, e: b.inference.list_services(limit=0), ConfigError),
    ("list offset negative", lambda b, e: b.inference.list_services(offset=-1), ConfigError),
    ("list offset bool", lambda b, e: b.inference.list_services(offset=True), ConfigError),
    ("list limit str", lambda b, e: b.inference.list_services(limit="10"), ConfigError),
    ("list offset too large", lambda b, e: b.inference.list_services(offset=2**256), ConfigError),
    ("detail limit zero", lambda b, e: b.inference.list_services_with_detail(limit=0), ConfigError),
    (
        "metadata model int",
        lambda b, e: b.inference.get_service_metadata(e.chat.address, model=5),
        ConfigError,
    ),
    ("wait_settled zero", lambda b, e: b.inference.wait_settled(e.chat.address, timeout=0), ConfigError),
    (
        "wait_settled poll",
        lambda b, e: b.inference.wait_settled(e.chat.address, poll_interval=-1),
        ConfigError,
    ),
    # -- policies -----------------------------------------------------------------------------
    ("retry policy type", lambda b, e: _set_retry_policy(b, {"attempts": 2}), ConfigError),
    ("verification mode", lambda b, e: _set_verification(b, "paranoid"), ConfigError),
    ("verification type", lambda b, e: _set_verification(b, 3), ConfigError),
    ("tx gas margin negative", lambda b, e: TxPolicy(gas_margin_percent=-60), ConfigError),
    ("tx receipt timeout NaN", lambda b, e: TxPolicy(receipt_timeout=math.nan), ConfigError),
    ("tx bump too small", lambda b, e: TxPolicy(replacement_bump_percent=1), ConfigError),
    ("fee gas price negative", lambda b, e: FeePolicy(gas_price=-1), ConfigError),
    ("fee gas price float", lambda b, e: FeePolicy(gas_price=2.5e9), ConfigError),
    ("retry attempts zero", lambda b, e: RetryPolicy(attempts=0), ConfigError),
    ("request retry NaN", lambda b, e: RequestRetryPolicy(max_elapsed=math.nan), ConfigError),
    ("session lifetime zero", lambda b, e: SessionPolicy(lifetime_ms=0), ConfigError),
    ("verification attempts zero", lambda b, e: VerificationPolicy(signature_attempts=0), ConfigError),
    (
        "chat verify policy object",
        lambda b, e: b.inference.chat(e.chat.address, HELLO, verify=VerificationPolicy(mode="nope")),
        ConfigError,
    ),
    # -- response processing, attestation, adapter -------------------------------------------
    ("process chat id int", lambda b, e: b.inference.process_response(e.chat.address, 5), ConfigError),
    (
        "process body str",
        lambda b, e: b.inference.process_response(e.chat.address, "id", response_body="text"),
        ConfigError,
    ),
    (
        "process usage list",
        lambda b, e: b.inference.process_response(e.chat.address, "id", usage=[1]),
        ConfigError,
    ),
    ("verify output dir", lambda b, e: b.inference.verify_service(e.chat.address, output_dir=5), ConfigError),
    (
        "openai api key",
        lambda b, e: b.inference.openai_client(e.chat.address, api_key="sk-wrong"),
        ConfigError,
    ),
]


def test_the_table_has_over_100_cases() -> None:
    """The table keeps at least 100 distinct bad-input cases."""
    names = [name for name, _, _ in CASES]
    assert len(names) >= 100 and len(set(names)) == len(names)


@pytest.mark.parametrize(("call", "error"), [(c, e) for _, c, e in CASES], ids=[n for n, _, _ in CASES])
async def test_bad_input_is_refused_and_nothing_is_sent(
    devnet: Devnet, env: Env, call: Call, error: type[ConfigError]
) -> None:
    """A typed ConfigError, no transaction (latest and pending nonce unchanged), no provider request."""
    async with AsyncBroker(devnet.accounts[USER].private_key, network=devnet.network) as broker:
        broker.inference.retry_policy = RequestRetryPolicy.no_wait()
        nonces = await _nonces(devnet, env.user)
        received = [h.requests_received for h in env.handles()]
        billed = [h.total_billed for h in env.handles()]
        with pytest.raises(error) as info:
            result = call(broker, env)
            if inspect.isawaitable(result):
                await result
        assert isinstance(info.value, ConfigError)
        assert await _nonces(devnet, env.user) == nonces
        assert [h.requests_received for h in env.handles()] == received
        assert [h.total_billed for h in env.handles()] == billed


async def test_good_input_reaches_the_provider(devnet: Devnet, env: Env) -> None:
    """The control: the same wallet's valid chat is received and billed, so the counters do count."""
    async with AsyncBroker(devnet.accounts[USER].private_key, network=devnet.network) as broker:
        before = env.chat.requests_received
        result = await broker.inference.chat(env.chat.address, HELLO, verify="off")
        assert result.content == "Echo: hello"
        assert env.chat.requests_received > before and env.chat.unsettled_fee(env.user) == result.fee


# -- the devnet provider refuses routes of other service types ----------------------------------

ROUTES = {
    "chatbot": ("POST", "/v1/proxy/chat/completions"),
    "text-to-image": ("POST", "/v1/proxy/images/generations"),
    "image-editing": ("POST", "/v1/proxy/images/edits"),
    "speech-to-text": ("POST", "/v1/proxy/audio/transcriptions"),
    "async text-to-image": ("POST", "/v1/async/images/generations"),
    "async image-editing": ("POST", "/v1/async/images/edits"),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_devnet_provider_refuses_other_service_types(devnet: Devnet, env: Env, route: str) -> None:
    """Sent by hand with a valid session token, a route of another service type gets 404 and no bill."""
    method, path = ROUTES[route]
    async with AsyncBroker(devnet.accounts[USER].private_key, network=devnet.network) as broker:
        for handle in env.handles():
            if route.endswith(handle.service_type):
                continue
            headers = await broker.inference.get_request_headers(handle.address)
            billed, owed = handle.total_billed, handle.unsettled_fee(env.user)
            async with httpx.AsyncClient(trust_env=False) as http:
                reply = await http.request(
                    method, handle.url + path, headers=headers, json={"messages": HELLO, "prompt": "cat"}
                )
            assert reply.status_code == 404, (route, handle.service_type)
            assert reply.json()["error"]["code"] == "unsupported_endpoint"
            assert handle.service_type in reply.json()["error"]["message"]
            assert handle.total_billed == billed and handle.unsettled_fee(env.user) == owed
