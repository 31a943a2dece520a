"""The devnet provider against the real contracts: endpoints, auth, billing, settlement, faults."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import wave
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from PIL import Image

from og_inference_async._apikeys import make_api_key_claims
from og_inference_async._exceptions import RPCError, TransactionOutcomeUnknownError
from og_inference_async._tokens import make_session_claims, recover_personal_signer, sign_token
from og_inference_async.abi import inference_abi, ledger_abi
from og_inference_devnet import Devnet
from og_inference_devnet.provider import (
    ProviderHandle,
    sign_settlement,
    start_default_providers,
    start_provider,
)
from og_inference_devnet.provider._billing import (
    FeeBook,
    FeeRecord,
    billable_seconds,
    transcription_fee,
)
from og_inference_devnet.provider._server import DEFAULT_PROVIDERS

from .chain_helpers import Providers

pytestmark = pytest.mark.anyio

OG = 10**18
CHAT_IN, CHAT_OUT = 1_000_000_000_000, 2_000_000_000_000
IMAGE_PRICE = 10**16
EDIT_PRICE = 2 * 10**16
AUDIO_PRICE = 10**14
TOKEN_IN, TOKEN_OUT = 10**12, 10**13  # the token-mode speech-to-text provider


@pytest.fixture(scope="module")
async def providers(devnet: Devnet) -> AsyncIterator[Providers]:
    """Five providers (accounts 24-27 and a key of its own) that settle only on demand, for the module.

    ``audio`` bills per second of audio (duration mode), ``audio_tokens`` per token (the default).
    They register inside a module snapshot that is reverted at the end, so other modules never see them.
    """
    snapshot = await devnet.snapshot()
    async with anyio.create_task_group() as tg:
        common: dict[str, Any] = {"settle_interval": None, "async_job_seconds": 0.05, "async_retry_after": 0}
        chat, image, edit, audio, audio_tokens = (
            await start_provider(
                devnet,
                tg,
                service_type="chatbot",
                model="test/echo",
                input_price=CHAT_IN,
                output_price=CHAT_OUT,
                account_index=24,
                **common,
            ),
            await start_provider(
                devnet,
                tg,
                service_type="text-to-image",
                model="test/img",
                input_price=IMAGE_PRICE,
                output_price=0,
                account_index=25,
                **common,
            ),
            await start_provider(
                devnet,
                tg,
                service_type="image-editing",
                model="test/edit",
                input_price=EDIT_PRICE,
                output_price=0,
                account_index=26,
                **common,
            ),
            await start_provider(
                devnet,
                tg,
                service_type="speech-to-text",
                model="test/stt",
                input_price=AUDIO_PRICE,
                output_price=0,
                account_index=27,
                transcription_billing="duration",
                **common,
            ),
            await start_provider(
                devnet,
                tg,
                service_type="speech-to-text",
                model="test/stt-tokens",
                input_price=TOKEN_IN,
                output_price=TOKEN_OUT,
                private_key="0x" + hashlib.sha256(b"og-test-provider:stt-tokens").hexdigest(),
                **common,
            ),
        )
        yield Providers(chat, image, edit, audio, audio_tokens)
        tg.cancel_scope.cancel()
    await devnet.revert(snapshot)


@pytest.fixture(autouse=True)
def _reset_providers(request: pytest.FixtureRequest) -> None:
    """Forget billing state between tests (the chain itself is reverted by the conftest)."""
    if "providers" in request.fixturenames:
        for handle in request.getfixturevalue("providers").all():
            handle.reset()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def user(dn: Devnet, index: int) -> LocalAccount:
    account: LocalAccount = Account.from_key(dn.accounts[index].private_key)
    return account


async def fund(
    dn: Devnet, who: LocalAccount, provider: str, *, ledger: int = 10 * OG, transfer: int = 3 * OG
) -> None:
    """Create the user's ledger and a sub-account with ``provider`` (auto-acknowledged)."""
    await dn.send_as(who.address, dn.ledger, ledger_abi().fn("addLedger").encode(""), value=ledger)
    await dn.send_as(
        who.address, dn.ledger, ledger_abi().fn("transferFund").encode(provider, dn.service_name, transfer)
    )


async def account_of(dn: Devnet, who: str, provider: str) -> tuple[Any, ...]:
    fn = inference_abi().fn("getAccount")
    (acc,) = fn.decode_raw(await dn.call(dn.inference, fn.encode(who, provider)))
    return tuple(acc)


async def ledger_total(dn: Devnet, who: str) -> int:
    fn = ledger_abi().fn("getLedger")
    (ledger,) = fn.decode_raw(await dn.call(dn.ledger, fn.encode(who)))
    return int(ledger[2])


def session(
    who: LocalAccount, provider: str, *, generation: int = 0, lifetime_ms: int = 3_600_000
) -> dict[str, str]:
    claims = make_session_claims(
        who.address, provider, generation=generation, now_ms=int(time.time() * 1000), lifetime_ms=lifetime_ms
    )
    return {"Authorization": sign_token(claims, who).authorization}


def api_key(
    who: LocalAccount,
    provider: str,
    token_id: int,
    *,
    generation: int = 0,
    expires_in_ms: int | None = None,
    now_ms: int | None = None,
) -> dict[str, str]:
    claims = make_api_key_claims(
        who.address,
        provider,
        token_id=token_id,
        generation=generation,
        now_ms=now_ms if now_ms is not None else int(time.time() * 1000),
        expires_in_ms=expires_in_ms,
        nonce=f"nonce-{token_id}",
    )
    return {"Authorization": sign_token(claims, who).authorization}


def chat_body(text: str = "hello devnet world", **extra: Any) -> bytes:
    return json.dumps(
        {"model": "test/echo", "messages": [{"role": "user", "content": text}], **extra}
    ).encode()


async def post_chat(
    http: httpx.AsyncClient, p: ProviderHandle, headers: dict[str, str], body: bytes
) -> httpx.Response:
    return await http.post(
        p.url + "/v1/proxy/chat/completions",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
    )


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# --- pure ----------------------------------------------------------------------------------------


async def test_eip712_settlement_vector() -> None:
    """sign_settlement reproduces the PROTOCOL.md section 14 EIP-712 TEESettlement signature."""
    sig = sign_settlement(
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        chain_id=31337,
        contract="0x0165878A594ca255338adfa4d48449f69242Eb8F",
        requests_hash=b"\0" * 32,
        nonce=1,
        provider="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        user="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        total_fee=1000,
    )
    assert "0x" + sig.hex() == (
        "0xcd5246368e392806d6198036641e8584bba02212f1d2e480afa32a46ebc8d0ca0b2b55a2a107221c0b3c1281947e7f442eb8b11"
        "6affd18c738fb60522cebc1611c"
    )


async def test_billable_seconds_and_transcription_fee() -> None:
    """Audio is billed per second rounded half up, at least one second, token mode per token."""
    assert [billable_seconds(s) for s in (0, 0.2, 1.49, 1.5, 2.5)] == [0, 1, 1, 2, 3]
    assert transcription_fee({"type": "duration", "seconds": 2.5}, 10, 99) == 30
    assert transcription_fee({"type": "tokens", "input_tokens": 3, "output_tokens": 4}, 10, 100) == 430


def test_fee_book_reserves_pending_jobs() -> None:
    """A job's reservation is owed but not unsettled; completing bills it once, failing releases it."""
    book = FeeBook()
    book.add("0xA", FeeRecord("r", 5, b"\0" * 32))
    book.reserve("0xa", "job-1", 7)
    book.reserve("0xA", "job-2", 11)
    assert (book.unsettled("0xa"), book.pending("0xa"), book.owed("0xa")) == (5, 18, 23)
    assert book.complete("0xa", "job-1", FeeRecord("c1", 7, b"\1" * 32))
    assert not book.complete("0xa", "job-1", FeeRecord("c1", 7, b"\1" * 32))  # billed once only
    assert book.release("0xa", "job-2") == 11 and book.release("0xa", "job-2") is None
    assert (book.unsettled("0xa"), book.pending("0xa"), book.total_billed) == (12, 0, 12)


def test_default_speech_to_text_provider_bills_tokens() -> None:
    """The default speech-to-text provider has an output price and runs in token mode by default."""
    (stt,) = [p for p in DEFAULT_PROVIDERS if p[0] == "speech-to-text"]
    assert stt[3] > 0
    from og_inference_devnet.provider import ProviderConfig

    assert ProviderConfig("speech-to-text", "m", 0, 1).transcription_billing == "tokens"


# --- registration and public endpoints ------------------------------------------------------------


@pytest.mark.integration
async def test_registration_on_chain(devnet: Devnet, providers: Providers) -> None:
    """The provider is registered with its URL, prices, TEE signer, and acknowledged by the owner."""
    fn = inference_abi().fn("getService")
    (svc,) = fn.decode_raw(await devnet.call(devnet.inference, fn.encode(providers.chat.address)))
    assert svc[1] == "chatbot" and svc[2] == providers.chat.url and svc[6] == "test/echo"
    assert (svc[3], svc[4]) == (CHAT_IN, CHAT_OUT)
    assert svc[7] == "TeeML" and json.loads(svc[8])["ProviderType"] == "decentralized"
    assert svc[9].lower() == providers.chat.tee_signer.lower() and svc[10] is True
    info = providers.chat.info()
    assert {"address", "url", "service_type", "model", "tee_signer"} <= info.keys()


@pytest.mark.integration
async def test_models_and_quote(devnet: Devnet, providers: Providers, http: httpx.AsyncClient) -> None:
    """/v1/models lists the model without auth; /v1/quote's report_data carries the TEE signer."""
    models = (await http.get(providers.chat.url + "/v1/models")).json()
    assert models["object"] == "list" and models["data"][0]["id"] == "test/echo"
    quote = (await http.get(providers.chat.url + "/v1/quote")).json()
    raw = base64.b64decode(quote["report_data"])
    assert len(raw) == 64 and raw.rstrip(b"\0").decode() == providers.chat.tee_signer
    assert quote["signing_address"] == providers.chat.tee_signer and quote["devnet"] is True
    compose = json.loads(quote["tcb_info"])["app_compose"]
    events = json.loads(quote["event_log"])
    assert any(
        e["event"] == "compose-hash" and e["event_payload"] == hashlib.sha256(compose.encode()).hexdigest()
        for e in events
    )


# --- chat ------------------------------------------------------------------------------------------


@pytest.mark.integration
async def test_chat_completion_signed_billed_and_settled(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient
) -> None:
    """A chat is answered, signed over sha256(request):sha256(response), billed, then settled exactly."""
    p = providers.chat
    alice = user(devnet, 5)
    await fund(devnet, alice, p.address)
    body = chat_body("hello devnet world")
    r = await post_chat(http, p, session(alice, p.address), body)
    assert r.status_code == 200, r.text
    chat_id = r.headers["ZG-Res-Key"]
    data = r.json()
    assert data["id"] == f"chatcmpl-{chat_id}"
    assert data["choices"][0]["message"]["content"] == "Echo: hello devnet world"
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    fee = 3 * CHAT_IN + 4 * CHAT_OUT

    sig = (await http.get(f"{p.url}/v1/proxy/signature/{chat_id}", params={"model": "test/echo"})).json()
    assert sig["text"] == hashlib.sha256(body).hexdigest() + ":" + hashlib.sha256(r.content).hexdigest()
    assert recover_personal_signer(sig["text"], sig["signature"]) == p.tee_signer
    assert sig["signing_algo"] == "ecdsa" and sig["signing_address"] == p.tee_signer
    # the body id works too
    assert (await http.get(f"{p.url}/v1/proxy/signature/{data['id']}")).status_code == 200

    unsettled = await http.get(
        f"{p.url}/v1/user/{alice.address}/unsettledfee", headers=session(alice, p.address)
    )
    assert unsettled.json() == {"unsettledFee": str(fee)}

    before = await account_of(devnet, alice.address, p.address)
    ledger_before = await ledger_total(devnet, alice.address)
    (result,) = await p.settle_now()
    assert (result.status, result.settled, result.unsettled, result.nonce) == (
        "SUCCESS",
        fee,
        0,
        before[2] + 1,
    )
    after = await account_of(devnet, alice.address, p.address)
    assert before[3] - after[3] == fee and after[2] == before[2] + 1
    assert p.unsettled_fee(alice.address) == 0
    assert ledger_before - await ledger_total(devnet, alice.address) == fee
    assert await p.settle_now() == []


@pytest.mark.integration
async def test_chat_stream_usage_and_signature(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient
) -> None:
    """A stream ends with usage then [DONE]; the signature covers the whole raw SSE body."""
    p = providers.chat
    bob = user(devnet, 6)
    await fund(devnet, bob, p.address)
    for include_usage in (False, True):
        extra: dict[str, Any] = {"stream": True}
        if include_usage:
            extra["stream_options"] = {"include_usage": True}
        body = chat_body("one two three four", **extra)
        async with http.stream(
            "POST",
            p.url + "/v1/proxy/chat/completions",
            content=body,
            headers={**session(bob, p.address), "Content-Type": "application/json"},
        ) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            raw = b"".join([chunk async for chunk in r.aiter_raw()])
        chat_id = r.headers["ZG-Res-Key"]
        events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        last = json.loads(events[-2])
        assert last["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
        assert (last["choices"] == []) is include_usage
        text = "".join(
            json.loads(e)["choices"][0]["delta"].get("content", "")
            for e in events[:-1]
            if json.loads(e)["choices"]
        )
        assert text == "Echo: one two three four"
        assert json.loads(events[0])["id"] == f"chatcmpl-{chat_id}"
        sig = (await http.get(f"{p.url}/v1/proxy/signature/{chat_id}")).json()
        assert sig["text"].split(":")[1] == hashlib.sha256(raw).hexdigest()
        assert recover_personal_signer(sig["text"], sig["signature"]) == p.tee_signer
    assert p.unsettled_fee(bob.address) == 2 * (4 * CHAT_IN + 5 * CHAT_OUT)


@pytest.mark.integration
async def test_max_tokens_and_model_check(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient
) -> None:
    """max_tokens cuts the answer (finish_reason length); an unknown model is refused unbilled."""
    p = providers.chat
    carol = user(devnet, 7)
    await fund(devnet, carol, p.address)
    r = await post_chat(http, p, session(carol, p.address), chat_body("a b c d e f", max_tokens=3))
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["usage"]["completion_tokens"] == 3
    r = await post_chat(
        http,
        p,
        session(carol, p.address),
        json.dumps({"model": "other", "messages": [{"role": "user", "content": "x"}]}).encode(),
    )
    assert r.status_code == 404 and error_code(r) == "model_not_found"
    r = await post_chat(http, p, session(carol, p.address), b"{not json")
    assert r.status_code == 400 and error_code(r) == "invalid_request"
    assert p.unsettled_fee(carol.address) == 6 * CHAT_IN + 3 * CHAT_OUT


# --- auth ------------------------------------------------------------------------------------------


@pytest.mark.integration
async def test_token_failures_are_refused_and_not_billed(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient
) -> None:
    """Each bad token gets its own status and code, and nothing is billed."""
    p = providers.chat
    dave = user(devnet, 8)
    await fund(devnet, dave, p.address)
    body = chat_body()
    good = session(dave, p.address)["Authorization"]
    payload = base64.b64decode(good.removeprefix("Bearer app-sk-")).decode()
    raw, _, sig = payload.rpartition("|")
    tampered = raw.replace('"generation":0', '"generation":1')
    bad_sig = "Bearer app-sk-" + base64.b64encode(f"{tampered}|{sig}".encode()).decode()
    now = int(time.time() * 1000)
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "missing_token"),
        ({"Authorization": "Bearer app-sk-???"}, 401, "malformed_token"),
        ({"Authorization": bad_sig}, 401, "invalid_signature"),
        (session(dave, providers.image.address), 403, "wrong_provider"),
        (api_key(dave, p.address, 3, expires_in_ms=1, now_ms=now - 10_000), 401, "token_expired"),
        (session(user(devnet, 9), p.address), 404, "account_not_found"),
        (session(dave, p.address, generation=1), 401, "generation_mismatch"),
    ]
    # an ephemeral token living longer than 24 h (signed by hand: the codec refuses to build one)
    from og_inference_async._tokens import TokenClaims

    long_lived = TokenClaims(
        address=dave.address,
        provider=p.address,
        timestamp=now,
        expires_at=now + 86_400_001,
        nonce="n",
        generation=0,
        token_id=255,
    )
    cases.append(
        ({"Authorization": sign_token(long_lived, dave).authorization}, 401, "invalid_token_lifetime")
    )
    for headers, status, code in cases:
        r = await post_chat(http, p, headers, body)
        assert (r.status_code, error_code(r)) == (status, code), (code, r.text)
    assert p.unsettled_fee(dave.address) == 0
    assert p.total_billed == 0


@pytest.mark.integration
async def test_revocations_are_seen_by_the_next_request(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient
) -> None:
    """revokeToken and revokeAllTokens take effect on the very next request (cache follows the chain)."""
    p = providers.chat
    erin = user(devnet, 10)
    await fund(devnet, erin, p.address)
    key = api_key(erin, p.address, 7)
    assert (await post_chat(http, p, key, chat_body())).status_code == 200
    await devnet.send_as(
        erin.address, devnet.inference, inference_abi().fn("revokeToken").encode(p.address, 7)
    )
    r = await post_chat(http, p, key, chat_body())
    assert (r.status_code, error_code(r)) == (401, "token_revoked")
    ephemeral = session(erin, p.address)
    assert (await post_chat(http, p, ephemeral, chat_body())).status_code == 200
    await devnet.send_as(
        erin.address, devnet.inference, inference_abi().fn("revokeAllTokens").encode(p.address)
    )
    r = await post_chat(http, p, ephemeral, chat_body())
    assert (r.status_code, error_code(r)) == (401, "generation_mismatch")
    assert (await post_chat(http, p, session(erin, p.address, generation=1), chat_body())).status_code == 200
    assert p.unsettled_fee(erin.address) == 3 * (3 * CHAT_IN + 4 * CHAT_OUT)


@pytest.mark.integration
async def test_unacknowledged_account_is_refused(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient
) -> None:
    """An account whose user withdrew the acknowledgement gets 403 not_acknowledged."""
    p = providers.chat
    fay = user(devnet, 11)
    await fund(devnet, fay, p.address)
    retrieve = ledger_abi().fn("retrieveFund").encode([p.address], devnet.service_name)
    await devnet.send_as(fay.address, devnet.ledger, retrieve)
    await devnet.increase_time(devnet.lock_time + 1)
    await devnet.send_as(fay.address, devnet.ledger, retrieve)
    await devnet.send_as(
        fay.address, devnet.inference, inference_abi().fn("acknowledgeTEESigner").encode(p.address, False)
    )
    r = await post_chat(http, p, session(fay, p.address), chat_body())
    assert (r.status_code, error_code(r)) == (403, "not_acknowledged")


@pytest.mark.integration
async def test_balance_rule(devnet: Devnet, providers: Providers, http: httpx.AsyncClient) -> None:
    """locked >= unsettled + fee + 1 OG: a request over the line gets 402 with required/available."""
    p = providers.image  # 0.01 OG per image makes the line easy to reach
    gus = user(devnet, 12)
    await fund(devnet, gus, p.address, transfer=OG + 3 * IMAGE_PRICE)
    url = p.url + "/v1/proxy/images/generations"
    headers = session(gus, p.address)
    ok = await http.post(url, json={"model": "test/img", "prompt": "a cat", "n": 2}, headers=headers)
    assert ok.status_code == 200
    r = await http.post(url, json={"model": "test/img", "prompt": "a cat", "n": 2}, headers=headers)
    assert r.status_code == 402
    err = r.json()["error"]
    assert err["code"] == "insufficient_balance"
    assert int(err["required"]) == 2 * IMAGE_PRICE + 2 * IMAGE_PRICE + OG
    assert int(err["available"]) == OG + 3 * IMAGE_PRICE
    assert p.unsettled_fee(gus.address) == 2 * IMAGE_PRICE
    assert (
        await http.post(url, json={"model": "test/img", "prompt": "a cat"}, headers=headers)
    ).status_code == 200


@pytest.mark.integration
async def test_unsettledfee_needs_matching_address(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient
) -> None:
    """The unsettled-fee route answers only for the token's own address; unknown chat ids give 404."""
    p = providers.chat
    hal = user(devnet, 13)
    await fund(devnet, hal, p.address)
    r = await http.get(
        f"{p.url}/v1/user/{devnet.accounts[14].address}/unsettledfee", headers=session(hal, p.address)
    )
    assert (r.status_code, error_code(r)) == (403, "address_mismatch")
    r = await http.get(f"{p.url}/v1/user/{hal.address.lower()}/unsettledfee", headers=session(hal, p.address))
    assert r.json() == {"unsettledFee": "0"}
    r = await http.get(f"{p.url}/v1/proxy/signature/00000000-0000-0000-0000-000000000000")
    assert (r.status_code, error_code(r)) == (404, "not_found")


# --- images, audio, async ------------------------------------------------------------------------


@pytest.mark.integration
async def test_images_and_edits(devnet: Devnet, providers: Providers, http: httpx.AsyncClient) -> None:
    """Generations return n real PNGs; edits take a multipart upload; both bill n * price."""
    ivy = user(devnet, 15)
    await fund(devnet, ivy, providers.image.address)
    await devnet.send_as(
        ivy.address,
        devnet.ledger,
        ledger_abi().fn("transferFund").encode(providers.edit.address, devnet.service_name, 3 * OG),
    )
    r = await http.post(
        providers.image.url + "/v1/proxy/images/generations",
        json={"model": "test/img", "prompt": "a red fox", "n": 2, "size": "32x16"},
        headers=session(ivy, providers.image.address),
    )
    assert r.status_code == 200 and r.headers["ZG-Res-Key"]
    images = [Image.open(io.BytesIO(base64.b64decode(d["b64_json"]))) for d in r.json()["data"]]
    assert [im.size for im in images] == [(32, 16), (32, 16)] and images[0].format == "PNG"
    assert providers.image.unsettled_fee(ivy.address) == 2 * IMAGE_PRICE

    png = base64.b64decode(r.json()["data"][0]["b64_json"])
    r = await http.post(
        providers.edit.url + "/v1/proxy/images/edits",
        files={"image": ("in.png", png, "image/png")},
        data={"prompt": "make it blue", "n": "3", "model": "test/edit"},
        headers=session(ivy, providers.edit.address),
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 3
    assert providers.edit.unsettled_fee(ivy.address) == 3 * EDIT_PRICE
    sig = (await http.get(f"{providers.edit.url}/v1/proxy/signature/{r.headers['ZG-Res-Key']}")).json()
    assert sig["text"].split(":")[1] == hashlib.sha256(r.content).hexdigest()


@pytest.mark.integration
async def test_transcription(devnet: Devnet, providers: Providers, http: httpx.AsyncClient) -> None:
    """A transcription returns text and duration usage and bills per billable second."""
    p = providers.audio
    jon = user(devnet, 16)
    await fund(devnet, jon, p.address)
    audio = b"the quick brown fox " * 4000  # 80,000 bytes = 2.5 s at 16 kHz 16-bit
    r = await http.post(
        p.url + "/v1/proxy/audio/transcriptions",
        files={"file": ("a.txt", audio, "audio/wav")},
        data={"model": "test/stt"},
        headers=session(jon, p.address),
    )
    assert r.status_code == 200, r.text
    assert r.json()["text"].startswith("the quick brown fox the quick")
    assert r.json()["usage"] == {"type": "duration", "seconds": 2.5}
    assert p.unsettled_fee(jon.address) == 3 * AUDIO_PRICE

    wav = io.BytesIO()
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 4)  # 4 s
    async with http.stream(
        "POST",
        p.url + "/v1/proxy/audio/transcriptions",
        files={"file": ("a.wav", wav.getvalue(), "audio/wav")},
        data={"model": "test/stt", "stream": "true"},
        headers=session(jon, p.address),
    ) as r:
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    done = json.loads(events[-2])
    assert events[-1] == "[DONE]" and done["type"] == "transcript.text.done"
    assert done["usage"] == {"type": "duration", "seconds": 4.0} and "4.00 seconds" in done["text"]
    assert p.unsettled_fee(jon.address) == 7 * AUDIO_PRICE


@pytest.mark.integration
async def test_transcription_token_mode(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient
) -> None:
    """Token mode (the default) reports input/output tokens and bills them at the input/output prices."""
    p = providers.audio_tokens
    assert (p.info()["price_unit"], p.info()["transcription_billing"]) == ("token", "tokens")
    assert providers.audio.info()["price_unit"] == "second"
    joy = user(devnet, 16)
    await fund(devnet, joy, p.address)
    audio = b"one two three four five " * 1000  # 24,000 bytes = 0.75 s at 16 kHz 16-bit: 19 audio tokens
    r = await http.post(
        p.url + "/v1/proxy/audio/transcriptions",
        files={"file": ("a.txt", audio, "audio/wav")},
        data={"model": "test/stt-tokens"},
        headers=session(joy, p.address),
    )
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage == {"type": "tokens", "input_tokens": 19, "output_tokens": 5000, "total_tokens": 5019}
    fee = 19 * TOKEN_IN + 5000 * TOKEN_OUT
    assert p.unsettled_fee(joy.address) == fee == transcription_fee(usage, TOKEN_IN, TOKEN_OUT)


@pytest.mark.integration
async def test_async_image_job(devnet: Devnet, providers: Providers, http: httpx.AsyncClient) -> None:
    """An async job answers 202, is polled with Retry-After until completed, and is billed once."""
    p = providers.image
    kim = user(devnet, 17)
    await fund(devnet, kim, p.address)
    headers = session(kim, p.address)
    r = await http.post(
        p.url + "/v1/async/images/generations",
        json={"model": "test/img", "prompt": "owl", "n": 1},
        headers=headers,
    )
    assert r.status_code == 202 and r.json()["status"] == "pending"
    job_id = r.json()["jobId"]
    seen = set()
    for _ in range(100):
        poll = await http.get(f"{p.url}/v1/async/jobs/{job_id}", headers=headers)
        seen.add(poll.json()["status"])
        if poll.json()["status"] == "completed":
            break
        assert poll.headers["Retry-After"] == "0"
        await anyio.sleep(0.01)
    assert poll.json()["data"]["data"][0]["b64_json"]
    assert "completed" in seen and "pending" in seen
    assert p.unsettled_fee(kim.address) == IMAGE_PRICE
    # the completed answer is signed like a sync response, over the submit body and its own raw bytes
    chat_id = poll.headers["ZG-Res-Key"]
    assert poll.json()["chatId"] == chat_id
    again = await http.get(f"{p.url}/v1/async/jobs/{job_id}", headers=headers)
    assert again.content == poll.content and again.headers["ZG-Res-Key"] == chat_id
    sig = (await http.get(f"{p.url}/v1/proxy/signature/{chat_id}")).json()
    submitted = r.request.content
    assert (
        sig["text"] == hashlib.sha256(submitted).hexdigest() + ":" + hashlib.sha256(poll.content).hexdigest()
    )
    assert recover_personal_signer(sig["text"], sig["signature"]) == p.tee_signer
    assert p.unsettled_fee(kim.address) == IMAGE_PRICE  # polling again bills nothing
    other = session(user(devnet, 18), p.address)
    await fund(devnet, user(devnet, 18), p.address)
    assert (await http.get(f"{p.url}/v1/async/jobs/{job_id}", headers=other)).status_code == 404


@pytest.mark.integration
async def test_async_jobs_cannot_overspend(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient
) -> None:
    """Pending jobs' fees count as owed: of 5 concurrent submissions only the 3 the balance covers pass."""
    p = providers.image
    ann = user(devnet, 14)
    await fund(devnet, ann, p.address, transfer=OG + 3 * IMAGE_PRICE)
    headers = session(ann, p.address)
    job = {"model": "test/img", "prompt": "owl", "n": 1}
    statuses: list[int] = []
    p.core.config.async_job_seconds = 0.3
    try:

        async def submit() -> None:
            r = await http.post(p.url + "/v1/async/images/generations", json=job, headers=headers)
            statuses.append(r.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(submit)
        assert sorted(statuses) == [202, 202, 202, 402, 402]
        assert (p.core.book.pending(ann.address), p.unsettled_fee(ann.address)) == (3 * IMAGE_PRICE, 0)
        # a synchronous request sees the pending fees too
        r = await http.post(p.url + "/v1/proxy/images/generations", json=job, headers=headers)
        assert r.status_code == 402 and int(r.json()["error"]["pending"]) == 3 * IMAGE_PRICE
        for _ in range(250):
            if not p.core.book.pending(ann.address):
                break
            await anyio.sleep(0.02)
    finally:
        p.core.config.async_job_seconds = 0.05
    # billed at completion, exactly the reserved fees
    assert p.unsettled_fee(ann.address) == 3 * IMAGE_PRICE
    assert sum(j.status == "completed" for j in p.core.jobs.values()) == 3


# --- settlement edge ------------------------------------------------------------------------------


@pytest.mark.integration
async def test_partial_settlement_keeps_the_remainder(devnet: Devnet, providers: Providers) -> None:
    """Fees above the sub-account balance settle PARTIAL: the balance is taken, the rest stays owed."""
    p = providers.chat
    lou = user(devnet, 19)
    await fund(devnet, lou, p.address, transfer=2 * OG)
    p.core.book.add(lou.address, FeeRecord("big", 3 * OG, b"\1" * 32))
    (result,) = await p.settle_now()
    assert (result.status, result.settled, result.unsettled) == ("PARTIAL", 2 * OG, OG)
    assert p.unsettled_fee(lou.address) == OG
    assert (await account_of(devnet, lou.address, p.address))[3] == 0


@pytest.mark.integration
async def test_settlement_in_doubt_that_landed_is_not_charged_twice(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settlement sent but without a receipt stays owed; the next round sees its nonce and drops it."""
    p = providers.chat
    amy, ben = user(devnet, 2), user(devnet, 3)
    await fund(devnet, amy, p.address)
    await fund(devnet, ben, p.address, transfer=2 * OG)
    fee = 3 * CHAT_IN + 4 * CHAT_OUT
    assert (await post_chat(http, p, session(amy, p.address), chat_body())).status_code == 200
    p.core.book.add(ben.address, FeeRecord("big", 3 * OG, b"\1" * 32))  # more than ben holds: PARTIAL
    before = await account_of(devnet, amy.address, p.address)

    async def no_receipt(tx_hash: str) -> dict[str, Any]:
        raise TransactionOutcomeUnknownError("injected: no receipt", tx_hash=tx_hash)

    monkeypatch.setattr(p.core.chain, "wait_receipt", no_receipt)
    with pytest.raises(TransactionOutcomeUnknownError):
        await p.settle_now()
    monkeypatch.undo()
    # it landed (anvil mines it), but the provider cannot know yet: still owed, not re-signed
    await devnet.wait_receipt(p.core.book.in_doubt()[amy.address.lower()].tx_hash)
    assert (await account_of(devnet, amy.address, p.address))[2] == before[2] + 1
    assert p.unsettled_fee(amy.address) == fee and set(p.core.book.in_doubt()) == {
        amy.address.lower(),
        ben.address.lower(),
    }
    assert (await post_chat(http, p, session(amy, p.address), chat_body())).status_code == 200

    results = await p.settle_now()
    first = {r.user: r for r in results if r.nonce == before[2] + 1}
    assert (first[amy.address].status, first[amy.address].settled) == ("SUCCESS", fee)
    assert (first[ben.address].status, first[ben.address].settled) == ("PARTIAL", 2 * OG)
    assert first[amy.address].tx_hash == first[ben.address].tx_hash is not None
    # amy's second chat settled with the next nonce; each fee was taken exactly once
    after = await account_of(devnet, amy.address, p.address)
    assert (after[2], before[3] - after[3]) == (before[2] + 2, 2 * fee)
    assert p.unsettled_fee(amy.address) == 0 and not p.core.book.in_doubt()
    assert p.unsettled_fee(ben.address) == OG  # the PARTIAL remainder stays owed
    assert (await account_of(devnet, ben.address, p.address))[3] == 0


@pytest.mark.integration
async def test_settlement_in_doubt_that_never_landed_is_settled_again(
    devnet: Devnet, providers: Providers, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settlement lost on the way to the node is put back and settled next round, with the same nonce."""
    p = providers.chat
    cat = user(devnet, 4)
    await fund(devnet, cat, p.address)
    fee = 3 * CHAT_IN + 4 * CHAT_OUT
    assert (await post_chat(http, p, session(cat, p.address), chat_body())).status_code == 200
    before = await account_of(devnet, cat.address, p.address)
    real_rpc = p.core.chain.rpc

    async def lossy_rpc(method: str, params: list[Any]) -> Any:
        if method == "eth_sendRawTransaction":
            raise RPCError("injected: connection reset", retryable=True)
        return await real_rpc(method, params)

    monkeypatch.setattr(p.core.chain, "rpc", lossy_rpc)
    with pytest.raises(RPCError):
        await p.settle_now()
    monkeypatch.undo()
    assert p.unsettled_fee(cat.address) == fee and cat.address.lower() in p.core.book.in_doubt()
    (result,) = await p.settle_now()
    assert (result.status, result.settled, result.nonce) == ("SUCCESS", fee, before[2] + 1)
    after = await account_of(devnet, cat.address, p.address)
    assert (after[2], before[3] - after[3]) == (before[2] + 1, fee)
    assert p.unsettled_fee(cat.address) == 0 and not p.core.book.in_doubt()


# --- faults ----------------------------------------------------------------------------------------


@pytest.mark.integration
async def test_faults(devnet: Devnet, providers: Providers, http: httpx.AsyncClient) -> None:
    """429/503 with Retry-After, seeded 500s, a cut stream and a wrong signature; faults are never billed."""
    p = providers.chat
    max_ = user(devnet, 1)
    await fund(devnet, max_, p.address)
    headers = session(max_, p.address)
    p.faults.rate_limit = 1
    p.faults.retry_after = 7
    r = await post_chat(http, p, headers, chat_body())
    assert (r.status_code, r.headers["Retry-After"], error_code(r)) == (429, "7", "rate_limited")
    p.faults.unavailable = 1
    assert (await post_chat(http, p, headers, chat_body())).status_code == 503
    assert (await post_chat(http, p, headers, chat_body())).status_code == 200

    p.faults.reseed(1)
    p.faults.error_rate = 0.5
    first = [(await post_chat(http, p, headers, chat_body())).status_code for _ in range(10)]
    p.faults.reseed(1)
    second = [(await post_chat(http, p, headers, chat_body())).status_code for _ in range(10)]
    assert first == second and set(first) == {200, 500}
    p.faults.error_rate = 0
    billed = p.unsettled_fee(max_.address)
    assert billed == (1 + 2 * first.count(200)) * (3 * CHAT_IN + 4 * CHAT_OUT)

    p.faults.cut_stream_after = 2
    with pytest.raises(httpx.RemoteProtocolError):
        async with http.stream(
            "POST",
            p.url + "/v1/proxy/chat/completions",
            content=chat_body(stream=True),
            headers={**headers, "Content-Type": "application/json"},
        ) as r:
            chat_id = r.headers["ZG-Res-Key"]
            [chunk async for chunk in r.aiter_raw()]
    assert p.unsettled_fee(max_.address) == billed
    assert (await http.get(f"{p.url}/v1/proxy/signature/{chat_id}")).status_code == 404
    p.faults.cut_stream_after = None

    p.faults.wrong_signature = True
    r = await post_chat(http, p, headers, chat_body())
    sig = (await http.get(f"{p.url}/v1/proxy/signature/{r.headers['ZG-Res-Key']}")).json()
    assert recover_personal_signer(sig["text"], sig["signature"]) != p.tee_signer
    p.faults.wrong_signature = False

    p.faults.latency = 0.2
    start = time.perf_counter()
    await http.get(p.url + "/v1/models")
    assert time.perf_counter() - start >= 0.2


# --- many providers --------------------------------------------------------------------------------


@pytest.mark.integration
async def test_default_and_many_providers_start_and_serve(devnet: Devnet, http: httpx.AsyncClient) -> None:
    """The four default providers plus 16 more with fresh keys start concurrently, each serving at its URL.

    How fast they start is measured by ``benchmarks/bench_provider.py``, not asserted here.
    """
    async with anyio.create_task_group() as tg:
        defaults = await start_default_providers(devnet, tg)
        extra: list[ProviderHandle] = []

        async def one(i: int) -> None:
            extra.append(
                await start_provider(
                    devnet,
                    tg,
                    service_type="chatbot",
                    model=f"m{i}",
                    input_price=1,
                    output_price=1,
                    private_key=Account.create().key.hex(),
                    settle_interval=None,
                )
            )

        async with anyio.create_task_group() as inner:
            for i in range(16):
                inner.start_soon(one, i)
        assert [h.service_type for h in defaults] == [
            "chatbot",
            "text-to-image",
            "image-editing",
            "speech-to-text",
        ]
        assert len({h.url for h in defaults + extra}) == 20
        for h in defaults + extra:
            assert (await http.get(h.url + "/v1/models")).status_code == 200
        tg.cancel_scope.cancel()
