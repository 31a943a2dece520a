"""Bad input is refused with a typed ConfigError before anything is sent (issue 8, items 5, 6, 7, 10, 12)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from og_inference_async import (
    ApiKeyError,
    AsyncBroker,
    ConfigError,
    FeePolicy,
    InvalidAddressError,
    InvalidAmountError,
    Network,
    RequestRetryPolicy,
    RetryPolicy,
    ServiceTypeMismatchError,
    SessionPolicy,
    TxPolicy,
    VerificationPolicy,
    format_og,
    og,
    to_wei,
)
from og_inference_async._config import checksum
from og_inference_async.types import Service
from og_inference_devnet.provider import ProviderConfig, ProviderFaults

from .fakes import FakeContracts, FakeProvider, FakeWeb3, wire_inference

KEY = "0x" + "42" * 32
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
URL = "http://provider.test"
HELLO = [{"role": "user", "content": "hi"}]


def short_id(value: Any) -> str:
    """A test id that never prints a 5000-digit int (Python refuses to) or a 100,000-character str."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"int{value.bit_length()}bits"
    text = repr(value)
    return text if len(text) <= 30 else text[:20] + f"...({len(text)})"


# -- item 7: amounts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "1e999980",  # once: ~30 s of big-int arithmetic on the event loop, then a raw ValueError
        "1e99999999999999999999",  # Decimal itself refuses the exponent (InvalidOperation)
        "9" * 100_000,
        "0." + "0" * 5000 + "1",
        "1e60",
        str(2**256),
        "NaN",
        "-nan",
        "sNaN",
        "Infinity",
        "-inf",
        "-1",
        "-0.5",
        "1.0000000000000000001",
        "١٢",  # non-ASCII digits, which Decimal would take
        "0x10",
        "",
        "   ",
        "1 000",
        Decimal("1e999980"),
        Decimal("NaN"),
        Decimal("-3"),
        10**1000,
        -1,
        1.5,
        float("nan"),
        True,
        None,
        [1],
    ],
    ids=short_id,
)
def test_og_refuses_junk_with_invalid_amount_error(bad: Any) -> None:
    """Absurd exponents, huge digit strings, NaN/Infinity and negatives are InvalidAmountError at once."""
    with pytest.raises(InvalidAmountError):
        og(bad)


@pytest.mark.parametrize("bad", ["1e999980", 2**256, -(10**5000), 10**5000, "1e77"], ids=short_id)
def test_to_wei_refuses_amounts_no_contract_can_hold(bad: Any) -> None:
    """Amounts above 2**256 - 1 wei are refused (a huge negative int is never echoed as a ValueError)."""
    with pytest.raises(InvalidAmountError):
        to_wei(bad)


@pytest.mark.parametrize("bad", [10**5000, -(10**5000), 2**256], ids=short_id)
def test_format_og_refuses_huge_ints_with_a_typed_error(bad: int) -> None:
    """format_og of an int beyond uint256 is InvalidAmountError, not Python's digit-limit ValueError."""
    with pytest.raises(InvalidAmountError):
        format_og(bad)


def test_amounts_at_the_limits_still_parse() -> None:
    """The largest uint256 amount, scientific notation and plain forms parse exactly."""
    assert to_wei(2**256 - 1) == 2**256 - 1
    assert og(format_og(2**256 - 1)) == 2**256 - 1
    assert og("1e3") == 1000 * 10**18
    assert og("1E-18") == 1
    assert og(" 2 ") == og("+2") == 2 * 10**18
    assert og(".5") == og("0.50") == 5 * 10**17
    assert og("-0") == 0


# -- item 5: addresses ----------------------------------------------------------------------------

GOOD = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"


def test_mixed_case_address_with_a_wrong_checksum_is_refused() -> None:
    """One mistyped case in a checksummed address is refused; lower/upper-case forms are accepted."""
    typo = GOOD[:-2] + "E0"
    with pytest.raises(InvalidAddressError, match="checksum"):
        checksum(typo, what="recipient")
    assert checksum(GOOD.lower()) == GOOD
    assert checksum("0x" + GOOD[2:].upper()) == GOOD
    assert checksum(GOOD) == GOOD


@pytest.mark.parametrize(
    "bad",
    [
        GOOD[2:],  # no 0x
        GOOD + "0",
        GOOD[:-1],
        "0x" + "g" * 40,
        " " + GOOD,
        "",
        None,
        42,
        b"\x00" * 20,
        ["0x" + "ab" * 20],
    ],
)
def test_malformed_addresses_are_invalid_address_errors(bad: Any) -> None:
    """Non-hex, short, long, unprefixed or non-str addresses are InvalidAddressError (never TypeError)."""
    with pytest.raises(InvalidAddressError):
        checksum(bad)


def test_custom_network_refuses_a_bad_checksum() -> None:
    """A Network built with a mistyped contract address fails at construction."""
    with pytest.raises(InvalidAddressError):
        Network(name="x", chain_id=7, rpc_url=None, ledger=GOOD[:-2] + "E0", inference=GOOD)


# -- item 6: policies -----------------------------------------------------------------------------


BAD_POLICIES: list[tuple[str, Callable[[], object]]] = [
    ("FeePolicy gas_price -1", lambda: FeePolicy(gas_price=-1)),
    ("FeePolicy gas_price 0", lambda: FeePolicy(gas_price=0)),
    ("FeePolicy gas_price float", lambda: FeePolicy(gas_price=1.5e9)),  # type: ignore[arg-type]
    ("FeePolicy gas_price str", lambda: FeePolicy(gas_price="1000")),  # type: ignore[arg-type]
    ("FeePolicy gas_price bool", lambda: FeePolicy(gas_price=True)),
    ("FeePolicy gas_price > uint256", lambda: FeePolicy(gas_price=2**256)),
    ("FeePolicy max_gas_price -5", lambda: FeePolicy(max_gas_price=-5)),
    ("FeePolicy priority_fee -1", lambda: FeePolicy(priority_fee=-1)),
    ("FeePolicy gas_price above max", lambda: FeePolicy(gas_price=10, max_gas_price=5)),
    ("FeePolicy mode", lambda: FeePolicy(mode="fast")),
    ("FeePolicy mode type", lambda: FeePolicy(mode=1)),  # type: ignore[arg-type]
    ("TxPolicy gas_margin_percent -60", lambda: TxPolicy(gas_margin_percent=-60)),
    ("TxPolicy gas_margin_percent float", lambda: TxPolicy(gas_margin_percent=12.5)),  # type: ignore[arg-type]
    ("TxPolicy gas_margin_percent bool", lambda: TxPolicy(gas_margin_percent=True)),
    ("TxPolicy gas_cap tiny", lambda: TxPolicy(gas_cap=100)),
    ("TxPolicy receipt_timeout 0", lambda: TxPolicy(receipt_timeout=0)),
    ("TxPolicy receipt_timeout -1", lambda: TxPolicy(receipt_timeout=-1)),
    ("TxPolicy receipt_timeout nan", lambda: TxPolicy(receipt_timeout=math.nan)),
    ("TxPolicy receipt_timeout inf", lambda: TxPolicy(receipt_timeout=math.inf)),
    ("TxPolicy receipt_timeout str", lambda: TxPolicy(receipt_timeout="5")),  # type: ignore[arg-type]
    ("TxPolicy receipt_poll_interval 0", lambda: TxPolicy(receipt_poll_interval=0)),
    ("TxPolicy receipt_attempts 0", lambda: TxPolicy(receipt_attempts=0)),
    ("TxPolicy rebroadcast_interval -1", lambda: TxPolicy(rebroadcast_interval=-1)),
    ("TxPolicy send_timeout nan", lambda: TxPolicy(send_timeout=math.nan)),
    ("TxPolicy cancel_on_timeout int", lambda: TxPolicy(cancel_on_timeout=1)),  # type: ignore[arg-type]
    ("TxPolicy cancel_timeout 0", lambda: TxPolicy(cancel_timeout=0)),
    ("TxPolicy replacement_bump_percent 5", lambda: TxPolicy(replacement_bump_percent=5)),
    ("TxPolicy replacement_bump_percent float", lambda: TxPolicy(replacement_bump_percent=15.0)),  # type: ignore[arg-type]
    ("TxPolicy gap_heal_after -2", lambda: TxPolicy(gap_heal_after=-2)),
    ("TxPolicy fees type", lambda: TxPolicy(fees="legacy")),  # type: ignore[arg-type]
    ("RetryPolicy attempts 0", lambda: RetryPolicy(attempts=0)),
    ("RetryPolicy attempts -3", lambda: RetryPolicy(attempts=-3)),
    ("RetryPolicy attempts bool", lambda: RetryPolicy(attempts=True)),
    ("RetryPolicy attempts float", lambda: RetryPolicy(attempts=2.0)),  # type: ignore[arg-type]
    ("RetryPolicy max_delay -1", lambda: RetryPolicy(max_delay=-1)),
    ("RetryPolicy initial_backoff -0.1", lambda: RetryPolicy(initial_backoff=-0.1)),
    ("RetryPolicy max_backoff nan", lambda: RetryPolicy(max_backoff=math.nan)),
    ("RetryPolicy attempt_timeout 0", lambda: RetryPolicy(attempt_timeout=0)),
    ("RequestRetryPolicy attempts 0", lambda: RequestRetryPolicy(attempts=0)),
    ("RequestRetryPolicy max_elapsed nan", lambda: RequestRetryPolicy(max_elapsed=math.nan)),
    ("RequestRetryPolicy max_retry_after inf", lambda: RequestRetryPolicy(max_retry_after=math.inf)),
    ("RequestRetryPolicy wait_scale -1", lambda: RequestRetryPolicy(wait_scale=-1)),
    ("SessionPolicy lifetime 0", lambda: SessionPolicy(lifetime_ms=0)),
    ("SessionPolicy account_ttl inf", lambda: SessionPolicy(account_ttl=math.inf)),
    ("SessionPolicy ack_ttl bool", lambda: SessionPolicy(ack_ttl=True)),
    ("VerificationPolicy mode", lambda: VerificationPolicy(mode="strict")),
    ("VerificationPolicy signature_attempts str", lambda: VerificationPolicy(signature_attempts="3")),  # type: ignore[arg-type]
    ("VerificationPolicy max_background 0", lambda: VerificationPolicy(max_background=0)),
    ("VerificationPolicy retry wait nan", lambda: VerificationPolicy(signature_retry_wait=math.nan)),
    ("VerificationPolicy accept_unbindable str", lambda: VerificationPolicy(accept_unbindable="yes")),  # type: ignore[arg-type]
    ("VerificationPolicy on_result", lambda: VerificationPolicy(on_result=5)),  # type: ignore[arg-type]
    ("Network chain_id bool", lambda: Network("x", True, None, GOOD, GOOD)),
    ("devnet ProviderFaults error_rate", lambda: ProviderFaults(error_rate=2)),
    ("devnet ProviderFaults latency", lambda: ProviderFaults(latency=-1)),
    ("devnet ProviderFaults rate_limit", lambda: ProviderFaults(rate_limit=-2)),
    ("devnet ProviderConfig price", lambda: ProviderConfig("chatbot", "m", -1, 0)),
    ("devnet ProviderConfig settle", lambda: ProviderConfig("chatbot", "m", 0, 0, settle_interval=0)),
    ("Network rpc_url type", lambda: Network("x", 7, 5, GOOD, GOOD)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("make", [m for _, m in BAD_POLICIES], ids=[i for i, _ in BAD_POLICIES])
def test_policies_validate_their_fields(make: Callable[[], object]) -> None:
    """Every policy refuses wrong types and out-of-range values at construction, as ConfigError."""
    with pytest.raises(ConfigError):
        make()


def test_policy_replace_is_validated_too() -> None:
    """dataclasses.replace goes through the same checks."""
    with pytest.raises(ConfigError):
        dataclasses.replace(TxPolicy(), gas_margin_percent=-1)


def test_default_and_test_policies_construct() -> None:
    """The defaults and the zero-wait test policies are valid."""
    for policy in (
        TxPolicy(),
        FeePolicy(mode="eip1559", priority_fee=0),
        RetryPolicy(),
        RetryPolicy.no_wait(),
        RequestRetryPolicy.no_wait(),
        RequestRetryPolicy.never(),
        SessionPolicy(),
        VerificationPolicy(),
    ):
        assert policy is not None


# -- items 10 and 12: request arguments and service types ---------------------------------------


def make_service(service_type: str) -> Service:
    return Service(
        provider=PROVIDER,
        service_type=service_type,
        url=URL,
        input_price=10,
        output_price=20,
        updated_at=0,
        model="m",
        verifiability="TeeML",
        additional_info="{}",
        tee_signer_address=PROVIDER,
        tee_signer_acknowledged=True,
    )


@pytest.fixture
async def api() -> AsyncIterator[Any]:
    """The inference facade on fakes (chain, auth); respx records every request (and none may be sent)."""
    http = httpx.AsyncClient()
    broker = AsyncBroker(KEY, network="hardhat", web3=FakeWeb3(FakeProvider()), http_client=http)  # type: ignore[arg-type]
    async with broker:
        inference, services = wire_inference(broker, contracts=FakeContracts(), auth=_StubAuth())
        inference.services = services
        inference.verification = "off"
        with respx.mock(assert_all_called=False, assert_all_mocked=False) as router:
            inference.router = router
            yield inference
            assert router.calls.call_count == 0, "a request was sent"
    await http.aclose()


class _StubAuth:
    """One fixed session header."""

    async def get_request_headers(self, provider: str) -> dict[str, str]:
        return {"Authorization": "Bearer app-sk-unit-test"}

    def forget(self, provider: str | None = None) -> None:
        return None


def use(api: Any, service_type: str) -> None:
    api.services.directory.remember(make_service(service_type), float("inf"))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("service_type", "call"),
    [
        ("text-to-image", lambda a: a.chat(PROVIDER, HELLO)),
        ("speech-to-text", lambda a: a.chat(PROVIDER, HELLO)),
        ("chatbot", lambda a: a.generate_image(PROVIDER, "a cat")),
        ("image-editing", lambda a: a.generate_image(PROVIDER, "a cat")),
        ("chatbot", lambda a: a.edit_image(PROVIDER, b"png", "blue")),
        ("chatbot", lambda a: a.transcribe(PROVIDER, b"RIFF")),
        ("text-to-image", lambda a: a.transcribe(PROVIDER, b"RIFF")),
        ("chatbot", lambda a: a.generate_image_async(PROVIDER, "a cat")),
        ("chatbot", lambda a: a.wait_image_job(PROVIDER, "job-1")),
        ("embedding", lambda a: a.chat(PROVIDER, HELLO)),
    ],
)
async def test_wrong_service_type_is_refused_before_sending(api: Any, service_type: str, call: Any) -> None:
    """A request the provider's on-chain service type does not serve raises and sends nothing."""
    use(api, service_type)
    with pytest.raises(ServiceTypeMismatchError) as info:
        await call(api)
    assert info.value.service_type == service_type and info.value.provider == PROVIDER
    assert service_type in str(info.value)


@pytest.mark.anyio
async def test_stream_on_a_wrong_service_type_is_refused_on_enter(api: Any) -> None:
    """chat_stream to a text-to-image provider raises on ``async with`` and sends nothing."""
    use(api, "text-to-image")
    with pytest.raises(ServiceTypeMismatchError):
        async with api.chat_stream(PROVIDER, HELLO):
            pass


@pytest.mark.anyio
@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.chat(PROVIDER, "hello"),
        lambda a: a.chat(PROVIDER, []),
        lambda a: a.chat(PROVIDER, {"role": "user", "content": "hi"}),
        lambda a: a.chat(PROVIDER, ["hello"]),
        lambda a: a.chat(PROVIDER, [{"content": "no role"}]),
        lambda a: a.chat(PROVIDER, [{"role": "", "content": "x"}]),
        lambda a: a.chat(PROVIDER, None),
        lambda a: a.chat(PROVIDER, HELLO, model=""),
        lambda a: a.chat(PROVIDER, HELLO, model=3),
        lambda a: a.chat(PROVIDER, HELLO, temperature=math.nan),
        lambda a: a.chat(PROVIDER, HELLO, verify="strict"),
        lambda a: a.chat(["not", "an", "address"], HELLO),
        lambda a: a.chat(PROVIDER.lower()[:-1], HELLO),
    ],
)
async def test_chat_refuses_loose_input(api: Any, call: Any) -> None:
    """messages="hello" (once split into characters and billed) and other wrong shapes are ConfigError."""
    use(api, "chatbot")
    with pytest.raises(ConfigError):
        await call(api)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.edit_image(PROVIDER, "str", "blue"),
        lambda a: a.edit_image(PROVIDER, None, "blue"),
        lambda a: a.edit_image(PROVIDER, b"", "blue"),
        lambda a: a.edit_image(PROVIDER, b"png", ""),
        lambda a: a.edit_image(PROVIDER, b"png", "blue", n=0),
        lambda a: a.edit_image(PROVIDER, b"png", "blue", n=True),
        lambda a: a.edit_image(PROVIDER, b"png", "blue", filename='a"b.png'),
        lambda a: a.edit_image(PROVIDER, b"png", "blue", verify=1),
    ],
)
async def test_edit_image_refuses_loose_input(api: Any, call: Any) -> None:
    """edit_image("str") once raised TypeError: now a ConfigError, nothing sent."""
    use(api, "image-editing")
    with pytest.raises(ConfigError):
        await call(api)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.transcribe(PROVIDER, None),
        lambda a: a.transcribe(PROVIDER, "/no/such/file.wav"),
        lambda a: a.transcribe(PROVIDER, 123),
        lambda a: a.transcribe(PROVIDER, b""),
        lambda a: a.transcribe(PROVIDER, b"RIFF", filename=""),
        lambda a: a.transcribe(PROVIDER, b"RIFF", language=5),
        lambda a: a.transcribe(PROVIDER, b"RIFF", prompt=object()),
    ],
)
async def test_transcribe_refuses_loose_input(api: Any, call: Any) -> None:
    """transcribe(None) once raised TypeError: now a ConfigError, nothing sent."""
    use(api, "speech-to-text")
    with pytest.raises(ConfigError):
        await call(api)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "call",
    [
        lambda a: a.generate_image(PROVIDER, "cat", n=11),
        lambda a: a.generate_image(PROVIDER, "cat", n="2"),
        lambda a: a.generate_image(PROVIDER, None),
        lambda a: a.generate_image(PROVIDER, "cat", size=64),
        lambda a: a.generate_image(PROVIDER, "cat", verify="bogus"),  # was checked after the billed call
        lambda a: a.generate_image_async(PROVIDER, "cat", max_wait=0),
        lambda a: a.generate_image_async(PROVIDER, "cat", max_polls=0),
        lambda a: a.generate_image_async(PROVIDER, "cat", verify="bogus"),
        lambda a: a.wait_image_job(PROVIDER, ""),
        lambda a: a.wait_image_job(PROVIDER, "j", request_sha256="abc"),
        lambda a: a.process_response(PROVIDER, 5),
        lambda a: a.process_response(PROVIDER, "id", request_body="text"),
        lambda a: a.verify_service(PROVIDER, output_dir=5),
        lambda a: a.openai_client(PROVIDER, api_key=5),
    ],
)
async def test_other_request_methods_refuse_loose_input(api: Any, call: Any) -> None:
    """Image, job, verification and adapter arguments are checked before any request."""
    use(api, "text-to-image")
    with pytest.raises(ConfigError):
        await call(api)


@pytest.mark.anyio
async def test_chat_stream_checks_arguments_when_built(api: Any) -> None:
    """chat_stream checks its arguments when called, before ``async with``."""
    with pytest.raises(ConfigError):
        api.chat_stream(PROVIDER, "hello")
    with pytest.raises(ConfigError):
        api.chat_stream(PROVIDER, HELLO, drain_timeout=-1)
    with pytest.raises(ConfigError):
        api.chat_stream(PROVIDER, HELLO, include_usage="yes")


@pytest.mark.anyio
async def test_retry_policy_setter_checks_the_type(api: Any) -> None:
    """broker.inference.retry_policy takes only a RequestRetryPolicy."""
    with pytest.raises(ConfigError):
        api.retry_policy = {"attempts": 3}


@pytest.mark.anyio
async def test_uploads_may_be_paths(api: Any, tmp_path: Path) -> None:
    """An image or audio path is read (its name becomes the file name); a missing path is refused."""
    use(api, "speech-to-text")
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"RIFF....WAVE")
    api.router.post(URL + "/v1/proxy/audio/transcriptions").mock(
        return_value=httpx.Response(200, json={"text": "ok"})
    )
    result = await api.transcribe(PROVIDER, clip)
    sent = api.router.calls[0].request.content
    assert b'filename="clip.wav"' in sent and b"RIFF....WAVE" in sent and result.text == "ok"
    api.router.reset()
    with pytest.raises(ConfigError, match="not a file"):
        await api.transcribe(PROVIDER, tmp_path / "missing.wav")
    with pytest.raises(ConfigError, match="not a file"):
        await api.transcribe(PROVIDER, str(tmp_path))  # a directory
    use(api, "image-editing")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xffjpeg")
    api.router.post(URL + "/v1/proxy/images/edits").mock(
        return_value=httpx.Response(200, json={"data": [{"b64_json": "aGk="}]})
    )
    edited = await api.edit_image(PROVIDER, str(photo), "make it blue")
    sent = api.router.calls[0].request.content
    assert b'filename="photo.jpg"' in sent and b"Content-Type: image/jpeg" in sent and edited.images
    api.router.reset()


@pytest.mark.anyio
async def test_api_key_arguments_are_checked_first() -> None:
    """Out-of-range API key ids and a non-list of ids are ApiKeyError before any chain read."""
    node = FakeProvider()
    broker = AsyncBroker(KEY, network="hardhat", web3=FakeWeb3(node))  # type: ignore[arg-type]
    async with broker:
        calls = len(node.calls)
        for call in (
            lambda: broker.inference.create_api_key(PROVIDER, token_id=255),
            lambda: broker.inference.create_api_key(PROVIDER, token_id=-1),
            lambda: broker.inference.create_api_key(PROVIDER, token_id=True),
            lambda: broker.inference.revoke_api_keys(PROVIDER, 5),  # once a TypeError
            lambda: broker.inference.revoke_api_keys(PROVIDER, [1, "2"]),
            lambda: broker.inference.revoke_api_key(PROVIDER, 300),
        ):
            with pytest.raises(ApiKeyError):
                await call()
        with pytest.raises(ConfigError):
            await broker.inference.create_api_key(PROVIDER, expires_in=-5)
        with pytest.raises(ConfigError):
            await broker.inference.list_services(offset=True)
        with pytest.raises(ConfigError):
            await broker.ledger.retrieve_fund(PROVIDER)  # a str, not a list
        assert len(node.calls) == calls
