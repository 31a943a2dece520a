"""Safety on the devnet: tampered responses fail closed, echoed secrets are redacted, ledger writes
are seen by the next request (issue 8 items 4, 11 and 13)."""

from __future__ import annotations

import logging
import traceback

import pytest

from og_inference_async import (
    AsyncBroker,
    InsufficientBalanceError,
    NotAcknowledgedError,
    OGError,
    ProviderServerError,
    RequestRetryPolicy,
    ResponseVerificationError,
    ServiceNotFoundError,
    VerificationError,
    og,
)
from og_inference_async.types.inference import VerificationStatus
from og_inference_devnet import Devnet

from .chain_helpers import Providers
from .test_requests import HELLO, _reset_providers, funded, providers, wav

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

__all__ = ["_reset_providers", "providers"]  # fixtures, re-used from test_requests

OG = 10**18


def _fresh(dn: Devnet, index: int) -> AsyncBroker:
    broker = AsyncBroker(dn.accounts[index].private_key, network=dn.network)
    broker.inference.retry_policy = RequestRetryPolicy.no_wait()
    return broker


# -- item 4: tampered responses -----------------------------------------------------------------


async def test_tampered_chat_fails_required_and_is_not_bound_in_background(
    devnet: Devnet, providers: Providers
) -> None:
    """The provider changes the body after signing: 'required' raises every time and never hands
    the content over; 'background' delivers it and reports NOT_BOUND."""
    broker = await funded(devnet, 8, providers.chat)
    async with broker:
        chat = providers.chat.address
        providers.chat.faults.tamper = True
        for _ in range(3):
            with pytest.raises(VerificationError) as info:
                await broker.inference.chat(chat, HELLO, verify="required")
            err = info.value
            assert isinstance(err, ResponseVerificationError)
            assert err.verification.status is VerificationStatus.NOT_BOUND
            assert "response hash differs" in (err.verification.reason or "")
            assert "Evil" not in str(err) and "Evil" not in repr(err) and not hasattr(err, "response")
            assert err.fee > 0  # billed by the provider anyway, and counted
        result = await broker.inference.chat(chat, HELLO, verify="background")
        assert result.content == "Evil: hello devnet"
        assert (await result.verification).status is VerificationStatus.NOT_BOUND
        providers.chat.faults.tamper = False
        clean = await broker.inference.chat(chat, HELLO, verify="required")
        assert clean.content == "Echo: hello devnet"
        assert (await clean.verification).status is VerificationStatus.BOUND


async def test_tampered_stream_under_required(devnet: Devnet, providers: Providers) -> None:
    """Default delivery: the chunks arrive unverified and the end of the stream raises (no result).
    With hold_until_verified no chunk arrives at all. Under 'background' the outcome is NOT_BOUND."""
    broker = await funded(devnet, 9, providers.chat)
    async with broker:
        chat = providers.chat.address
        providers.chat.faults.tamper = True
        async with broker.inference.chat_stream(chat, HELLO, verify="required") as stream:
            seen: list[str] = []
            with pytest.raises(ResponseVerificationError) as info:
                async for piece in stream:
                    seen.append(piece.content)
            assert "".join(seen) == "Evil: hello devnet"  # delivered as it came, never presented as verified
            assert stream.result is None
            assert stream.verification is not None
            assert stream.verification.status is VerificationStatus.NOT_BOUND
            assert info.value.verification is stream.verification
            with pytest.raises(OGError):
                await stream.final()
        async with broker.inference.chat_stream(
            chat, HELLO, verify="required", hold_until_verified=True
        ) as held:
            got: list[str] = []
            with pytest.raises(ResponseVerificationError):
                async for piece in held:
                    got.append(piece.content)
            assert got == [] and held.content == "" and held.result is None
        async with broker.inference.chat_stream(chat, HELLO, verify="background") as background:
            result = await background.final()
        assert result.content == "Evil: hello devnet"
        assert (await result.verification).status is VerificationStatus.NOT_BOUND


async def test_tampered_images_and_transcriptions_fail_required(devnet: Devnet, providers: Providers) -> None:
    """Images (sync and async jobs) and transcriptions changed after signing raise under 'required'."""
    broker = await funded(devnet, 10, providers.image, providers.audio)
    async with broker:
        providers.image.faults.tamper = True
        providers.audio.faults.tamper = True
        with pytest.raises(ResponseVerificationError) as sync:
            await broker.inference.generate_image(providers.image.address, "a fox", verify="required")
        with pytest.raises(ResponseVerificationError) as job:
            await broker.inference.generate_image_async(providers.image.address, "a fox", verify="required")
        with pytest.raises(ResponseVerificationError) as audio:
            await broker.inference.transcribe(providers.audio.address, wav(1.0), verify="required")
        for err in (sync.value, job.value, audio.value):
            assert err.verification.status is VerificationStatus.NOT_BOUND
        shown = await broker.inference.generate_image(providers.image.address, "a fox", verify="background")
        assert (await shown.verification).status is VerificationStatus.NOT_BOUND


# -- item 11: secrets echoed by a provider -------------------------------------------------------


async def test_echoed_session_token_is_redacted(
    devnet: Devnet, providers: Providers, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider quoting our request headers in its errors: the session token is in no exception
    text, body, traceback or log line (ProviderError and the other mapped errors, chat and stream)."""
    broker = await funded(devnet, 11, providers.chat)
    async with broker:
        chat = providers.chat.address
        token = (await broker.inference.get_request_headers(chat))["Authorization"].split(" ", 1)[1]
        assert token.startswith("app-sk-")
        secret = token[len("app-sk-") :][:24]
        providers.chat.faults.echo_headers = True
        errors: list[BaseException] = []
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(ServiceNotFoundError) as unknown_model:
                await broker.inference.chat(chat, HELLO, model="no/such-model")
            errors.append(unknown_model.value)
            with pytest.raises(ServiceNotFoundError) as stream_refused:
                async with broker.inference.chat_stream(chat, HELLO, model="no/such-model"):
                    pass
            errors.append(stream_refused.value)
            providers.chat.faults.error_rate = 1.0
            with pytest.raises(ProviderServerError) as server:
                await broker.inference.chat(chat, HELLO)
            errors.append(server.value)
        for err in errors:
            assert "request headers" in str(err) and "[redacted]" in str(err)  # it was echoed
            texts = [
                str(err),
                repr(err),
                str(getattr(err, "body", "")),
                "".join(traceback.format_exception(type(err), err, err.__traceback__)),
            ]
            assert not any(secret in text or "app-sk-" in text for text in texts), type(err).__name__
        assert secret not in caplog.text and "app-sk-" not in caplog.text


# -- item 13: ledger writes and the caches they make stale --------------------------------------


async def test_transfer_after_not_acknowledged_serves_the_next_chat(
    devnet: Devnet, providers: Providers
) -> None:
    """chat raises NotAcknowledgedError (no sub-account, cached); transfer_fund mines; the very next
    chat goes through (it used to keep raising for the account cache's 5 minutes)."""
    async with _fresh(devnet, 12) as broker:
        chat = providers.chat.address
        await broker.ledger.add_ledger(og("10"))
        for _ in range(2):  # the second answer comes from the cache
            with pytest.raises(NotAcknowledgedError):
                await broker.inference.chat(chat, HELLO)
        await broker.ledger.transfer_fund(chat, og("3"))
        result = await broker.inference.chat(chat, HELLO)
        assert result.content == "Echo: hello devnet"


async def test_emptying_refund_drops_the_cached_acknowledgement(devnet: Devnet, providers: Providers) -> None:
    """A refund that deletes the ledger (and its sub-accounts) is seen at once: no stale session header."""
    async with _fresh(devnet, 15) as broker:
        chat = providers.chat.address
        await broker.ledger.add_ledger(og("3"))
        await broker.ledger.transfer_fund(chat, og("2"))
        assert "Authorization" in await broker.inference.get_request_headers(chat)  # acknowledgement cached
        await broker.ledger.retrieve_fund_from_provider(chat)
        await devnet.increase_time(devnet.lock_time + 1)
        await broker.ledger.retrieve_fund_from_provider(chat)
        ledger = await broker.ledger.get_ledger()
        await broker.ledger.refund(ledger.total)
        assert not await broker.ledger.has_ledger()
        with pytest.raises(NotAcknowledgedError):
            await broker.inference.get_request_headers(chat)


async def test_acknowledge_opens_an_account_a_first_request_can_use(
    devnet: Devnet, providers: Providers
) -> None:
    """acknowledge_provider_signer's default opening amount (2 OG) lets the next chat through; the
    on-chain minimum alone (1 OG) is all the provider's reserve, so that chat would get a 402."""
    chat = providers.chat.address
    async with _fresh(devnet, 16) as broker:
        await broker.ledger.add_ledger(og("5"))
        ack = await broker.inference.acknowledge_provider_signer(chat)
        assert ack.status == "created_account" and ack.amount == 2 * OG
        assert (await broker.ledger.get_account(chat)).balance == 2 * OG
        assert (await broker.inference.chat(chat, HELLO)).content == "Echo: hello devnet"
    async with _fresh(devnet, 17) as minimal:
        await minimal.ledger.add_ledger(og("5"))
        ack = await minimal.inference.acknowledge_provider_signer(chat, initial_amount=og("1"))
        assert ack.amount == OG
        with pytest.raises(InsufficientBalanceError):
            await minimal.inference.chat(chat, HELLO)
