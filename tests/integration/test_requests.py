"""broker.inference requests against real devnet providers: every endpoint, faults, verification, OpenAI."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from eth_utils import keccak
from PIL import Image

from og_inference_async import (
    AsyncBroker,
    ImageJobTimeoutError,
    InsufficientBalanceError,
    NotAcknowledgedError,
    ProviderConnectionError,
    ProviderRateLimitError,
    ProviderServerError,
    RequestRetryPolicy,
    VerificationError,
    og,
)
from og_inference_async._tokens import decode_token
from og_inference_async.types.inference import VerificationStatus
from og_inference_devnet import Devnet
from og_inference_devnet.provider import ProviderHandle, start_provider

from .chain_helpers import Providers

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

CHAT_IN, CHAT_OUT = 10**12, 2 * 10**12
IMAGE_PRICE, EDIT_PRICE, AUDIO_PRICE = 10**16, 2 * 10**16, 10**14
TOKEN_IN, TOKEN_OUT = 10**12, 10**13
HELLO = [{"role": "user", "content": "hello devnet"}]


def provider_key(label: str) -> str:
    """A deterministic provider key of this module (no clash with other modules' dev accounts)."""
    return "0x" + bytes(keccak(b"og-test-requests:" + label.encode())).hex()


@pytest.fixture(scope="module")
async def providers(devnet: Devnet) -> AsyncIterator[Providers]:
    """Five providers with their own keys that settle on demand only, for the whole module.

    ``audio`` bills speech-to-text per second (duration mode), ``audio_tokens`` per token (the default).

    They register inside a module snapshot that is reverted at the end, so other modules never see them.
    """
    common: dict[str, Any] = {"settle_interval": None, "async_job_seconds": 0.02, "async_retry_after": 0}
    snapshot = await devnet.snapshot()
    async with anyio.create_task_group() as tg:
        handles = Providers(
            await start_provider(
                devnet,
                tg,
                service_type="chatbot",
                model="rq/chat",
                input_price=CHAT_IN,
                output_price=CHAT_OUT,
                private_key=provider_key("chat"),
                **common,
            ),
            await start_provider(
                devnet,
                tg,
                service_type="text-to-image",
                model="rq/img",
                input_price=IMAGE_PRICE,
                output_price=0,
                private_key=provider_key("image"),
                **common,
            ),
            await start_provider(
                devnet,
                tg,
                service_type="image-editing",
                model="rq/edit",
                input_price=EDIT_PRICE,
                output_price=0,
                private_key=provider_key("edit"),
                **common,
            ),
            await start_provider(
                devnet,
                tg,
                service_type="speech-to-text",
                model="rq/stt",
                input_price=AUDIO_PRICE,
                output_price=0,
                private_key=provider_key("audio"),
                transcription_billing="duration",
                **common,
            ),
            await start_provider(
                devnet,
                tg,
                service_type="speech-to-text",
                model="rq/stt-tokens",
                input_price=TOKEN_IN,
                output_price=TOKEN_OUT,
                private_key=provider_key("audio-tokens"),
                **common,
            ),
        )
        yield handles
        tg.cancel_scope.cancel()
    await devnet.revert(snapshot)


@pytest.fixture(autouse=True)
def _reset_providers(request: pytest.FixtureRequest) -> None:
    """Forget billing state and faults between tests (the chain is reverted by the conftest)."""
    if "providers" in request.fixturenames:
        for handle in request.getfixturevalue("providers").all():
            handle.reset()


async def funded(dn: Devnet, index: int, *providers: ProviderHandle, amount: str = "3") -> AsyncBroker:
    """A fresh (unopened) broker for accounts[index], whose ledger and provider sub-accounts are funded."""
    key = dn.accounts[index].private_key
    async with AsyncBroker(key, network=dn.network) as setup:
        await setup.ledger.add_ledger(og("10"))
        for handle in providers:
            await setup.ledger.transfer_fund(handle.address, og(amount))
    broker = AsyncBroker(key, network=dn.network)
    broker.inference.retry_policy = RequestRetryPolicy.no_wait()
    return broker


def wav(seconds: float, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return out.getvalue()


# -- the endpoints ------------------------------------------------------------------------------


async def test_chat_bound_and_fee_matches_the_provider(devnet: Devnet, providers: Providers) -> None:
    """A chat answers, carries the ZG-Res-Key chat id, is BOUND, and its fee equals the provider's bill."""
    broker = await funded(devnet, 8, providers.chat)
    async with broker:
        result = await broker.inference.chat(providers.chat.address, HELLO)
        assert result.content == "Echo: hello devnet"
        assert result.chat_id and not result.chat_id.startswith("chatcmpl-")
        assert result.raw["id"] == f"chatcmpl-{result.chat_id}"
        outcome = await result.verification
        assert outcome.status is VerificationStatus.BOUND and outcome.signer == providers.chat.tee_signer
        assert result.fee > 0 and result.fee == providers.chat.unsettled_fee(broker.address)
        assert broker.inference.local_fees(providers.chat.address) == result.fee


async def test_stream_is_bound_under_required(devnet: Devnet, providers: Providers) -> None:
    """A stream yields the words, ends with usage, costs what the provider billed, and verifies BOUND."""
    broker = await funded(devnet, 9, providers.chat)
    async with broker:
        async with broker.inference.chat_stream(
            providers.chat.address, [{"role": "user", "content": "one two three"}], verify="required"
        ) as stream:
            words = [chunk.content async for chunk in stream if chunk.content]
        result = stream.result
        assert result is not None and "".join(words) == result.content == "Echo: one two three"
        assert result.usage and result.usage["completion_tokens"] == 4
        assert result.fee == providers.chat.unsettled_fee(broker.address)
        assert result.verification.result is not None
        assert result.verification.result.status is VerificationStatus.BOUND


async def test_image_generation_and_edit(devnet: Devnet, providers: Providers) -> None:
    """Images come back as PNGs, billed per image, and verify BOUND (multipart bytes hashed exactly)."""
    broker = await funded(devnet, 10, providers.image, providers.edit)
    async with broker:
        broker.inference.verification = "required"
        made = await broker.inference.generate_image(
            providers.image.address, "a red square", n=2, size="16x16"
        )
        assert len(made.images) == 2 and made.fee == 2 * IMAGE_PRICE
        png = made.images[0].data
        assert png is not None and Image.open(io.BytesIO(png)).size == (16, 16)
        edited = await broker.inference.edit_image(providers.edit.address, png, "make it blue", size="8x8")
        assert len(edited.images) == 1 and edited.fee == EDIT_PRICE
        assert (await edited.verification).status is VerificationStatus.BOUND
        assert providers.image.unsettled_fee(broker.address) == made.fee
        assert providers.edit.unsettled_fee(broker.address) == edited.fee


async def test_transcription_bills_seconds(devnet: Devnet, providers: Providers) -> None:
    """A 2.4 s WAV is transcribed, billed 2 seconds, and verified BOUND."""
    broker = await funded(devnet, 11, providers.audio)
    async with broker:
        result = await broker.inference.transcribe(
            providers.audio.address, wav(2.4), "clip.wav", verify="required"
        )
        assert "2.40 seconds" in result.text
        assert result.fee == 2 * AUDIO_PRICE == providers.audio.unsettled_fee(broker.address)
        streamed = await broker.inference.transcribe(
            providers.audio.address, wav(1.0), stream=True, verify="off"
        )
        assert "1.00 seconds" in streamed.text and streamed.fee == AUDIO_PRICE


async def test_transcription_fee_matches_the_provider_in_both_modes(
    devnet: Devnet, providers: Providers
) -> None:
    """The SDK's fee equals the provider's bill per token (default mode) and per second, JSON and SSE."""
    broker = await funded(devnet, 16, providers.audio, providers.audio_tokens)
    async with broker:
        tokens = providers.audio_tokens
        spoken = b"the quick brown fox jumps " * 400  # a text upload is "transcribed" to itself
        result = await broker.inference.transcribe(tokens.address, spoken, "words.txt", verify="required")
        assert result.usage is not None and result.usage["type"] == "tokens"
        assert result.cost is not None and result.cost.output_units == 2000 == result.usage["output_tokens"]
        assert result.fee == result.cost.input_units * TOKEN_IN + 2000 * TOKEN_OUT
        streamed = await broker.inference.transcribe(tokens.address, wav(1.5), stream=True, verify="off")
        assert streamed.usage is not None and streamed.usage["type"] == "tokens" and streamed.fee > 0
        assert tokens.unsettled_fee(broker.address) == result.fee + streamed.fee
        assert broker.inference.local_fees(tokens.address) == tokens.unsettled_fee(broker.address)
        seconds = providers.audio
        for audio, stream in ((wav(2.6), False), (spoken, True)):
            await broker.inference.transcribe(seconds.address, audio, "a.wav", stream=stream, verify="off")
        assert broker.inference.local_fees(seconds.address) == seconds.unsettled_fee(broker.address)
        assert seconds.unsettled_fee(broker.address) == (3 + 1) * AUDIO_PRICE  # 2.6 s -> 3; 10,400 B -> 1


async def test_async_image_job(devnet: Devnet, providers: Providers) -> None:
    """generate_image_async submits a job, polls it to completion, counts n images and verifies BOUND."""
    broker = await funded(devnet, 12, providers.image)
    async with broker:
        result = await broker.inference.generate_image_async(
            providers.image.address, "a cat", n=2, verify="required"
        )
        assert result.job_id and len(result.images) == 2 and result.fee == 2 * IMAGE_PRICE
        assert providers.image.unsettled_fee(broker.address) == result.fee
        outcome = result.verification.result
        assert outcome is not None and outcome.status is VerificationStatus.BOUND
        assert result.chat_id and outcome.signer == providers.image.tee_signer


async def test_resumed_async_image_job_verifies(devnet: Devnet, providers: Providers) -> None:
    """A job resumed after a timeout verifies BOUND with the submit hash, SIGNED without it."""
    broker = await funded(devnet, 13, providers.image)
    providers.image.core.config.async_job_seconds = 0.1
    try:
        async with broker:
            with pytest.raises(ImageJobTimeoutError) as info:
                await broker.inference.generate_image_async(providers.image.address, "an owl", max_polls=1)
            err = info.value
            assert err.request_sha256 is not None
            resumed = await broker.inference.wait_image_job(
                providers.image.address, err.job_id, request_sha256=err.request_sha256, verify="required"
            )
            assert resumed.verification.result is not None
            assert resumed.verification.result.status is VerificationStatus.BOUND
            bare = await broker.inference.wait_image_job(
                providers.image.address, err.job_id, verify="required"
            )
            assert bare.request_sha256 is None and bare.chat_id == resumed.chat_id
            assert (await bare.verification).status is VerificationStatus.SIGNED
    finally:
        providers.image.core.config.async_job_seconds = 0.02


# -- verification -------------------------------------------------------------------------------


async def test_wrong_signature_is_rejected_and_fails_required(devnet: Devnet, providers: Providers) -> None:
    """With the wrong-signature fault, background verification says REJECTED and 'required' raises."""
    broker = await funded(devnet, 13, providers.chat)
    async with broker:
        providers.chat.faults.wrong_signature = True
        result = await broker.inference.chat(providers.chat.address, HELLO, verify="background")
        assert (await result.verification).status is VerificationStatus.REJECTED
        with pytest.raises(VerificationError) as info:
            await broker.inference.chat(providers.chat.address, HELLO, verify="required")
        assert info.value.verification.status is VerificationStatus.REJECTED  # type: ignore[attr-defined]


async def test_process_response_on_a_foreign_request(devnet: Devnet, providers: Providers) -> None:
    """process_response binds a response fetched with raw httpx using the SDK's headers."""
    broker = await funded(devnet, 14, providers.chat)
    async with broker:
        body = b'{"model":"rq/chat","messages":[{"role":"user","content":"raw"}]}'
        headers = await broker.inference.get_request_headers(providers.chat.address)
        reply = await broker.http.post(
            providers.chat.url + "/v1/proxy/chat/completions",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        outcome = await broker.inference.process_response(
            providers.chat.address,
            reply.headers["ZG-Res-Key"],
            request_body=body,
            response_body=reply.content,
            usage=reply.json()["usage"],
        )
        assert outcome.status is VerificationStatus.BOUND
        assert broker.inference.local_fees(providers.chat.address) == providers.chat.unsettled_fee(
            broker.address
        )
        tampered = await broker.inference.process_response(
            providers.chat.address, reply.headers["ZG-Res-Key"], request_body=body, response_body=b"{}"
        )
        assert tampered.status is VerificationStatus.NOT_BOUND


async def test_verify_service(devnet: Devnet, providers: Providers, tmp_path: Any) -> None:
    """The devnet quote names the on-chain TEE signer, which the owner acknowledged."""
    async with AsyncBroker(network=devnet.network) as reader:
        result = await reader.inference.verify_service(providers.chat.address, output_dir=str(tmp_path))
    assert result.verified and result.signer_match and result.compose_verified is True
    assert result.report_signer == providers.chat.tee_signer
    assert (tmp_path / "attestation_report.json").exists()


# -- faults and errors --------------------------------------------------------------------------


async def test_rate_limit_is_retried_then_raised(devnet: Devnet, providers: Providers) -> None:
    """Two 429s are retried through; endless 429s raise ProviderRateLimitError with Retry-After."""
    broker = await funded(devnet, 15, providers.chat)
    async with broker:
        broker.inference.verification = "off"
        providers.chat.faults.rate_limit = 2
        result = await broker.inference.chat(providers.chat.address, HELLO)
        assert result.content.startswith("Echo:") and providers.chat.faults.rate_limit == 0
        providers.chat.faults.rate_limit = -1
        providers.chat.faults.retry_after = 3
        with pytest.raises(ProviderRateLimitError) as info:
            await broker.inference.chat(providers.chat.address, HELLO)
        assert info.value.retry_after == 3.0


async def test_unavailable_is_retried_then_raised(devnet: Devnet, providers: Providers) -> None:
    """A 503 is retried (the request was not served); persistent 503s raise ProviderServerError."""
    broker = await funded(devnet, 8, providers.chat)
    async with broker:
        broker.inference.verification = "off"
        providers.chat.faults.unavailable = 1
        await broker.inference.chat(providers.chat.address, HELLO)
        providers.chat.faults.unavailable = -1
        with pytest.raises(ProviderServerError) as info:
            await broker.inference.chat(providers.chat.address, HELLO)
        assert info.value.status_code == 503
        assert providers.chat.unsettled_fee(broker.address) == broker.inference.local_fees(
            providers.chat.address
        )


async def test_cut_stream_is_a_typed_error(devnet: Devnet, providers: Providers) -> None:
    """A stream the provider cuts mid-way raises a provider error; nothing is counted or billed."""
    broker = await funded(devnet, 9, providers.chat)
    async with broker:
        providers.chat.faults.cut_stream_after = 2
        got: list[str] = []
        with pytest.raises(ProviderConnectionError, match="broke after 2 chunks"):
            async with broker.inference.chat_stream(
                providers.chat.address, [{"role": "user", "content": "a b c d e f"}]
            ) as stream:
                async for chunk in stream:
                    got.append(chunk.content)
        assert len(got) == 2 and stream.result is None
        assert broker.inference.local_fees(providers.chat.address) == 0
        assert providers.chat.unsettled_fee(broker.address) == 0


async def test_balance_too_low_is_typed(devnet: Devnet, providers: Providers) -> None:
    """A sub-account holding only the 1 OG reserve is refused with InsufficientBalanceError and amounts."""
    broker = await funded(devnet, 10, providers.chat, amount="1")
    async with broker:
        with pytest.raises(InsufficientBalanceError) as info:
            await broker.inference.chat(providers.chat.address, HELLO)
        assert info.value.available == og("1") and info.value.required is not None
        assert info.value.required > og("1")


async def test_no_sub_account_is_not_acknowledged(devnet: Devnet, providers: Providers) -> None:
    """Without a sub-account the SDK refuses before sending (NotAcknowledgedError)."""
    async with AsyncBroker(devnet.accounts[11].private_key, network=devnet.network) as broker:
        with pytest.raises(NotAcknowledgedError):
            await broker.inference.chat(providers.chat.address, HELLO)


async def test_token_refreshed_once_after_revoke_all(devnet: Devnet, providers: Providers) -> None:
    """After another broker of this wallet revokes all tokens, the next chat re-signs once and succeeds."""
    broker = await funded(devnet, 12, providers.chat)
    async with broker:
        broker.inference.verification = "off"
        await broker.inference.chat(providers.chat.address, HELLO)
        before = decode_token(
            (await broker.inference.get_request_headers(providers.chat.address))["Authorization"]
        )
        async with AsyncBroker(devnet.accounts[12].private_key, network=devnet.network) as other:
            await other.inference.revoke_all_tokens(providers.chat.address)
        signatures = broker.inference.auth.tokens.stats.signatures
        result = await broker.inference.chat(providers.chat.address, HELLO)
        assert result.content.startswith("Echo:")
        assert broker.inference.auth.tokens.stats.signatures == signatures + 1
        after = decode_token(
            (await broker.inference.get_request_headers(providers.chat.address))["Authorization"]
        )
        assert (before.claims.generation, after.claims.generation) == (0, 1)


# -- the OpenAI adapter -------------------------------------------------------------------------


async def test_openai_client_with_session_tokens_and_api_key(devnet: Devnet, providers: Providers) -> None:
    """The OpenAI SDK works through the shared pool with session tokens and with an API key."""
    pytest.importorskip("openai")
    broker = await funded(devnet, 13, providers.chat)
    async with broker:
        chat = providers.chat.address
        async with await broker.inference.openai_client(chat) as client:
            out = await client.chat.completions.create(model="rq/chat", messages=HELLO)
            assert out.choices[0].message.content == "Echo: hello devnet"
            stream = await client.chat.completions.create(
                model="rq/chat", messages=HELLO, stream=True, stream_options={"include_usage": True}
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            assert "".join(parts) == "Echo: hello devnet"
        assert not broker.http.is_closed  # leaving the OpenAI client's block left the pool open
        key = await broker.inference.create_api_key(chat)
        keyed = await broker.inference.openai_client(chat, api_key=key.secret.get_secret_value())
        out = await keyed.chat.completions.create(model="rq/chat", messages=HELLO)
        assert out.choices[0].message.content == "Echo: hello devnet"
        raw = await keyed.chat.completions.with_raw_response.create(model="rq/chat", messages=HELLO)
        outcome = await broker.inference.process_response(
            chat,
            raw.headers["ZG-Res-Key"],
            usage=raw.parse().usage.model_dump(),  # type: ignore[union-attr]
        )
        assert outcome.status is VerificationStatus.SIGNED
        assert (await broker.inference.chat(chat, HELLO)).content.startswith("Echo:")


async def test_openai_session_auth_refreshes_after_revoke_all(devnet: Devnet, providers: Providers) -> None:
    """The OpenAI client's session auth re-signs once when the generation was bumped elsewhere."""
    pytest.importorskip("openai")
    broker = await funded(devnet, 14, providers.chat)
    async with broker:
        client = await broker.inference.openai_client(providers.chat.address, max_retries=0)
        await client.chat.completions.create(model="rq/chat", messages=HELLO)
        async with AsyncBroker(devnet.accounts[14].private_key, network=devnet.network) as other:
            await other.inference.revoke_all_tokens(providers.chat.address)
        out = await client.chat.completions.create(model="rq/chat", messages=HELLO)
        assert out.choices[0].message.content == "Echo: hello devnet"
