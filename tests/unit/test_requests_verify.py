"""Verification outcomes with locally signed signatures, the verification policy, fees, attestation."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import anyio
import httpx
import pytest
from eth_account import Account

from og_inference_async._tokens import personal_sign_text
from og_inference_async.inference._fees import billable_seconds, fee_breakdown, usage_units
from og_inference_async.inference._verify import (
    ResponseVerificationError,
    VerificationPolicy,
    check_signature,
    compose_check,
    expected_signer,
    report_signer,
)
from og_inference_async.types.inference import VerificationResult, VerificationStatus

from .test_requests import CHAT_URL, PROVIDER, TEE, URL, Env, chunk, completion, env, make_service, sse

pytestmark = pytest.mark.anyio

__all__ = ["env"]  # the fixture, re-used from test_requests

IMPOSTOR = Account.from_key("0x" + "09" * 32)
MESSAGES = [{"role": "user", "content": "hi"}]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def judge(
    text: str, signature: str, req: str | None, resp: str | None, *, ack: bool = True
) -> VerificationResult:
    return check_signature(
        provider=PROVIDER,
        chat_id="c",
        expected=TEE.address,
        signer_acknowledged=ack,
        text=text,
        signature=signature,
        request_sha256=req,
        response_sha256=resp,
    )


# -- check_signature ----------------------------------------------------------------------------


def test_bound_when_both_hashes_match() -> None:
    """A TEE signature over sha(req):sha(resp) of our bytes is BOUND."""
    text = f"{sha(b'req')}:{sha(b'resp')}"
    result = judge(text, personal_sign_text(text, TEE), sha(b"req"), sha(b"resp"))
    assert result.status is VerificationStatus.BOUND and result.is_bound and result.is_signature_valid
    assert result.signer == TEE.address


def test_not_bound_when_the_content_differs() -> None:
    """A genuine signature over other bytes is NOT_BOUND, not a crash and not REJECTED."""
    text = f"{sha(b'req')}:{sha(b'other')}"
    result = judge(text, personal_sign_text(text, TEE), sha(b"req"), sha(b"resp"))
    assert result.status is VerificationStatus.NOT_BOUND and result.is_signature_valid and not result.is_bound
    assert "response hash differs" in (result.reason or "")


def test_signed_when_no_bodies_are_given() -> None:
    """Without bodies the signature is only checked (SIGNED)."""
    result = judge("abc:def", personal_sign_text("abc:def", TEE), None, None)
    assert result.status is VerificationStatus.SIGNED


def test_rejected_for_another_key() -> None:
    """A signature from a key other than the TEE signer is REJECTED."""
    text = f"{sha(b'req')}:{sha(b'resp')}"
    result = judge(text, personal_sign_text(text, IMPOSTOR), sha(b"req"), sha(b"resp"))
    assert result.status is VerificationStatus.REJECTED and result.signer == IMPOSTOR.address


def test_rejected_for_malformed_signature_or_unacknowledged_signer() -> None:
    """Garbage signatures, and signers the owner did not acknowledge, are REJECTED."""
    assert judge("a:b", "0x1234", None, None).status is VerificationStatus.REJECTED
    good = personal_sign_text("a:b", TEE)
    assert judge("a:b", good, None, None, ack=False).status is VerificationStatus.REJECTED


def test_protocol_test_vector_recovers() -> None:
    """PROTOCOL 14: personal_sign('abc:def') by hardhat #0 recovers to its address."""
    signature = (
        "0xd4a27aa5167e14eca7f5d29873db8e942d76d53836dc3256d6dbd2a8b9c3a6c5"
        "17e5ac8264c54054412e35accaee3064e40ed0d1c8d834518539bd3f92248fe81b"
    )
    result = check_signature(
        provider=PROVIDER,
        chat_id="c",
        expected="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        signer_acknowledged=True,
        text="abc:def",
        signature=signature,
        request_sha256=None,
        response_sha256=None,
    )
    assert result.status is VerificationStatus.SIGNED


def test_expected_signer_for_separated_targets() -> None:
    """Decentralized separated providers are checked against TargetTeeAddress; centralized ones not."""
    target = IMPOSTOR.address
    separated = make_service(
        additional_info=json.dumps({"TargetSeparated": True, "TargetTeeAddress": target})
    )
    central = make_service(
        additional_info=json.dumps(
            {"TargetSeparated": True, "TargetTeeAddress": target, "ProviderType": "centralized"}
        )
    )
    assert expected_signer(separated) == target
    assert expected_signer(central) == TEE.address
    assert expected_signer(make_service(additional_info="not json")) == TEE.address


# -- process_response and the policy over HTTP --------------------------------------------------


def signature_route(env: Env, chat_id: str, text: str, key: Any = TEE) -> Any:
    return env.router.get(URL + f"/v1/proxy/signature/{chat_id}").mock(
        return_value=httpx.Response(200, json={"text": text, "signature": personal_sign_text(text, key)})
    )


async def test_process_response_binds_bodies_and_counts_usage(env: Env) -> None:
    """process_response checks the signature against the given bodies and records the usage fee."""
    text = f"{sha(b'REQ')}:{sha(b'RESP')}"
    route = signature_route(env, "id-1", text)
    result = await env.api.process_response(
        PROVIDER,
        "id-1",
        request_body=b"REQ",
        response_body=b"RESP",
        usage={"prompt_tokens": 1, "completion_tokens": 1},
    )
    assert result.status is VerificationStatus.BOUND
    assert route.calls[0].request.url.params["model"] == "m"
    assert env.api.local_fees(PROVIDER) == 30


async def test_process_response_without_chat_id_is_unavailable(env: Env) -> None:
    """No chat id: nothing is fetched and the outcome is UNAVAILABLE."""
    result = await env.api.process_response(PROVIDER, None)
    assert result.status is VerificationStatus.UNAVAILABLE


async def test_missing_signature_is_retried_then_unavailable(env: Env) -> None:
    """A 404 signature is fetched again a few times, then reported UNAVAILABLE."""
    route = env.router.get(URL + "/v1/proxy/signature/late").mock(
        return_value=httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})
    )
    result = await env.api.process_response(PROVIDER, "late")
    assert result.status is VerificationStatus.UNAVAILABLE and route.call_count == 3


async def test_non_teeml_service_is_not_verifiable(env: Env) -> None:
    """A service without TeeML/OpML/ZKML gives NOT_VERIFIABLE without fetching anything."""
    env.use(make_service(verifiability=""))
    assert (await env.api.process_response(PROVIDER, "x")).status is VerificationStatus.NOT_VERIFIABLE


async def test_required_policy_binds_chat_responses(env: Env) -> None:
    """Under 'required', chat() verifies before returning; the signed text covers our exact bytes."""
    body = json.dumps(completion()).encode()
    route = env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, content=body, headers={"ZG-Res-Key": "k"})
    )
    seen: dict[str, Any] = {}

    def on_post(request: httpx.Request) -> httpx.Response:
        text = f"{sha(route.calls[-1].request.content)}:{sha(body)}"
        seen["text"] = text
        return httpx.Response(200, json={"text": text, "signature": personal_sign_text(text, TEE)})

    env.router.get(URL + "/v1/proxy/signature/k").mock(side_effect=on_post)
    result = await env.api.chat(PROVIDER, MESSAGES, verify="required")
    outcome = result.verification.result
    assert outcome is not None and outcome.status is VerificationStatus.BOUND
    assert outcome.signed_text == seen["text"]


async def test_required_policy_fails_closed_on_rejection(env: Env) -> None:
    """Under 'required', an impostor's signature raises ResponseVerificationError; the content is withheld."""
    env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, json=completion(), headers={"ZG-Res-Key": "k"})
    )
    signature_route(env, "k", "a:b", key=IMPOSTOR)
    env.api.verification = "required"
    with pytest.raises(ResponseVerificationError) as info:
        await env.api.chat(PROVIDER, MESSAGES)
    assert info.value.verification.status is VerificationStatus.REJECTED
    # changed: the unverified result used to be attached; fail closed withholds the content
    assert not hasattr(info.value, "response") and "Echo" not in str(info.value)
    assert info.value.fee == env.api.local_fees(PROVIDER) == 80 and info.value.usage is not None


async def test_unbindable_text_fails_unless_accepted(env: Env) -> None:
    """A genuine signature over a text that is not a hash pair fails 'required' unless accept_unbindable.

    Changed: this test used to assert that NOT_BOUND passes 'required' by default (require_bound=False).
    """
    env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, json=completion(), headers={"ZG-Res-Key": "k"})
    )
    signature_route(env, "k", "00:11")
    with pytest.raises(ResponseVerificationError) as info:
        await env.api.chat(PROVIDER, MESSAGES, verify="required")
    assert info.value.verification.status is VerificationStatus.NOT_BOUND
    assert "cannot be bound" in str(info.value)
    lenient = VerificationPolicy(mode="required", accept_unbindable=True)
    result = await env.api.chat(PROVIDER, MESSAGES, verify=lenient)
    assert result.verification.result is not None
    assert result.verification.result.status is VerificationStatus.NOT_BOUND


async def test_tampered_content_fails_required_even_when_unbindable_is_accepted(env: Env) -> None:
    """A genuine hash-pair signature over other bytes (tampered content) never passes 'required'."""
    original = json.dumps(completion(content="Echo: hi")).encode()
    tampered = json.dumps(completion(content="Evil: hi")).encode()
    route = env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, content=tampered, headers={"ZG-Res-Key": "k"})
    )

    def sign(request: httpx.Request) -> httpx.Response:
        text = f"{sha(route.calls[-1].request.content)}:{sha(original)}"
        return httpx.Response(200, json={"text": text, "signature": personal_sign_text(text, TEE)})

    env.router.get(URL + "/v1/proxy/signature/k").mock(side_effect=sign)
    for policy in ("required", VerificationPolicy(mode="required", accept_unbindable=True)):
        with pytest.raises(ResponseVerificationError) as info:
            await env.api.chat(PROVIDER, MESSAGES, verify=policy)
        assert info.value.verification.status is VerificationStatus.NOT_BOUND
        assert "Evil" not in str(info.value) and "Evil" not in repr(info.value)
    background = await env.api.chat(PROVIDER, MESSAGES, verify="background")
    assert (await background.verification).status is VerificationStatus.NOT_BOUND


async def test_required_unavailable_and_unverifiable(env: Env) -> None:
    """'required' fails on UNAVAILABLE and NOT_VERIFIABLE unless allowed."""
    env.router.post(CHAT_URL).mock(return_value=httpx.Response(200, json=completion(id="")))
    with pytest.raises(ResponseVerificationError):
        await env.api.chat(PROVIDER, MESSAGES, verify="required")
    await env.api.chat(PROVIDER, MESSAGES, verify=VerificationPolicy(mode="required", allow_unavailable=True))
    env.use(make_service(verifiability=""))
    with pytest.raises(ResponseVerificationError):
        await env.api.chat(PROVIDER, MESSAGES, verify="required")
    await env.api.chat(
        PROVIDER, MESSAGES, verify=VerificationPolicy(mode="required", allow_unverifiable=True)
    )


async def test_off_policy_skips(env: Env) -> None:
    """Under 'off' nothing is fetched and the handle is SKIPPED at once."""
    env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, json=completion(), headers={"ZG-Res-Key": "k"})
    )
    result = await env.api.chat(PROVIDER, MESSAGES)
    assert result.verification.done and (await result.verification).status is VerificationStatus.SKIPPED


async def test_async_job_result_is_verified_like_a_response(env: Env) -> None:
    """A job result's chat id comes from the poll's ZG-Res-Key (else chatId) and verifies BOUND."""
    env.use(make_service(service_type="text-to-image", input_price=7, output_price=0))
    submit = env.router.post(URL + "/v1/async/images/generations").mock(
        return_value=httpx.Response(202, json={"jobId": "j1", "status": "pending"})
    )
    done = json.dumps(
        {"jobId": "j1", "status": "completed", "chatId": "c-j1", "data": {"data": [{"b64_json": "aGk="}]}}
    ).encode()
    poll = env.router.get(URL + "/v1/async/jobs/j1").mock(
        return_value=httpx.Response(200, content=done, headers={"ZG-Res-Key": "c-j1"})
    )

    def sign(request: httpx.Request) -> httpx.Response:
        text = f"{sha(submit.calls[0].request.content)}:{sha(done)}"
        return httpx.Response(200, json={"text": text, "signature": personal_sign_text(text, TEE)})

    env.router.get(URL + "/v1/proxy/signature/c-j1").mock(side_effect=sign)
    result = await env.api.generate_image_async(PROVIDER, "a cat", verify="required")
    assert result.chat_id == "c-j1" and result.response_sha256 == sha(done)
    assert (await result.verification).status is VerificationStatus.BOUND
    # the body's chatId is used when the header is missing
    poll.mock(return_value=httpx.Response(200, content=done))
    resumed = await env.api.wait_image_job(PROVIDER, "j1", verify="required")
    assert resumed.chat_id == "c-j1" and resumed.request_sha256 is None
    assert (await resumed.verification).status is VerificationStatus.SIGNED
    # a provider that gives job results no chat id fails 'required' as UNAVAILABLE
    poll.mock(
        return_value=httpx.Response(200, json={"jobId": "j1", "status": "completed", "data": {"data": []}})
    )
    with pytest.raises(ResponseVerificationError) as info:
        await env.api.wait_image_job(PROVIDER, "j1", verify="required")
    assert info.value.verification.status is VerificationStatus.UNAVAILABLE


async def test_background_policy_delivers_via_handle_and_callback(env: Env) -> None:
    """Under 'background' the result returns first; the outcome arrives on the handle and the callback."""
    env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, json=completion(), headers={"ZG-Res-Key": "k"})
    )
    gate = anyio.Event()

    async def slow_signature(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200, json={"text": "a:b", "signature": personal_sign_text("a:b", TEE)})

    env.router.get(URL + "/v1/proxy/signature/k").mock(side_effect=slow_signature)
    got: list[VerificationResult] = []
    env.api.verification = VerificationPolicy(mode="background", on_result=got.append)
    result = await env.api.chat(PROVIDER, MESSAGES)
    assert not result.verification.done
    gate.set()
    outcome = await result.wait_verified()
    assert outcome.status is VerificationStatus.NOT_BOUND and got == [outcome]


async def test_background_verification_settles_when_the_broker_closes(env: Env) -> None:
    """A background check cut short by the broker closing settles as UNAVAILABLE."""
    env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, json=completion(), headers={"ZG-Res-Key": "k"})
    )

    asked = anyio.Event()

    async def never(request: httpx.Request) -> httpx.Response:
        asked.set()
        await anyio.sleep_forever()
        raise AssertionError

    env.router.get(URL + "/v1/proxy/signature/k").mock(side_effect=never)
    result = await env.api.chat(PROVIDER, MESSAGES, verify="background")
    with anyio.fail_after(5):
        await asked.wait()  # the check is under way, waiting for the signature
    await env.broker.aclose()
    outcome = await result.verification
    assert outcome.status is VerificationStatus.UNAVAILABLE and "closed" in (outcome.reason or "")


async def test_required_stream_raises_at_its_end_and_counts_once(env: Env) -> None:
    """Under 'required' a rejected stream raises when it ends; the fee is counted once only."""
    usage = {"prompt_tokens": 1, "completion_tokens": 1}
    env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(
            200, content=b"".join(sse(chunk("a", finish="stop", usage=usage))), headers={"ZG-Res-Key": "k"}
        )
    )
    signature_route(env, "k", "a:b", key=IMPOSTOR)
    async with env.api.chat_stream(PROVIDER, MESSAGES, verify="required") as stream:
        seen = []
        with pytest.raises(ResponseVerificationError) as info:
            async for piece in stream:
                seen.append(piece.content)
        # chunks arrive before the verdict (documented); the error carries the outcome, not the content
        assert seen == ["a"] and info.value.verification.status is VerificationStatus.REJECTED
        assert stream.verification is info.value.verification
        assert [p async for p in stream] == []  # finished: no second verification, no second fee
    assert stream.result is None and env.api.local_fees(PROVIDER) == 30


async def test_required_stream_with_hold_hands_over_nothing_unverified(env: Env) -> None:
    """hold_until_verified: a failing stream yields no chunk; a passing one yields all after the verdict."""
    usage = {"prompt_tokens": 1, "completion_tokens": 2}
    body = b"".join(sse(chunk("Evil"), chunk(" text", finish="stop", usage=usage)))
    route = env.router.post(CHAT_URL).mock(
        return_value=httpx.Response(200, content=body, headers={"ZG-Res-Key": "k"})
    )
    signed = {"body": b"something else"}

    def sign(request: httpx.Request) -> httpx.Response:
        text = f"{sha(route.calls[-1].request.content)}:{sha(signed['body'])}"
        return httpx.Response(200, json={"text": text, "signature": personal_sign_text(text, TEE)})

    fetched = env.router.get(URL + "/v1/proxy/signature/k").mock(side_effect=sign)
    async with env.api.chat_stream(PROVIDER, MESSAGES, verify="required", hold_until_verified=True) as stream:
        seen: list[str] = []
        with pytest.raises(ResponseVerificationError) as info:
            async for piece in stream:
                seen.append(piece.content)
        assert seen == [] and stream.content == "" and stream.result is None
        assert info.value.verification.status is VerificationStatus.NOT_BOUND
        assert stream.verification is info.value.verification
    signed["body"] = body
    async with env.api.chat_stream(PROVIDER, MESSAGES, verify="required", hold_until_verified=True) as stream:
        calls_before = fetched.call_count
        first = await stream.__anext__()
        assert fetched.call_count == calls_before + 1  # verified before the first chunk came out
        assert first.content == "Evil" and stream.content == "Evil"
        rest = [p.content async for p in stream]
    assert rest == [" text"] and stream.result is not None and stream.content == "Evil text"
    assert stream.verification is not None and stream.verification.status is VerificationStatus.BOUND


async def test_hold_until_verified_needs_the_required_policy(env: Env) -> None:
    """hold_until_verified under another policy is a ConfigError before anything is sent."""
    from og_inference_async import ConfigError

    route = env.router.post(CHAT_URL)
    for mode in ("off", "background"):
        with pytest.raises(ConfigError):
            env.api.chat_stream(PROVIDER, MESSAGES, verify=mode, hold_until_verified=True)
    assert route.call_count == 0


def test_policy_coercion() -> None:
    """Mode names coerce to policies; unknown modes are ConfigErrors."""
    from og_inference_async import ConfigError

    assert VerificationPolicy.coerce("required").mode == "required"
    with pytest.raises(ConfigError):
        VerificationPolicy.coerce("sometimes")


# -- fees ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service_type", "usage", "n", "units"),
    [
        ("chatbot", {"prompt_tokens": 3, "completion_tokens": "4"}, None, (3, 4)),
        ("chatbot", {"prompt_tokens": "x", "completion_tokens": True}, None, (0, 0)),
        ("chatbot", None, None, None),
        ("text-to-image", None, 3, (3, 0)),
        ("text-to-image", None, "2", (2, 0)),
        ("image-editing", None, None, (1, 0)),
        ("image-editing", None, "junk", (1, 0)),
        ("speech-to-text", {"type": "duration", "seconds": 2.5}, None, (3, 0)),
        ("speech-to-text", {"seconds": 0.2}, None, (1, 0)),
        (
            "speech-to-text",
            {"type": "tokens", "input_tokens": 7, "output_tokens": 9, "seconds": 4},
            None,
            (7, 9),
        ),
        ("speech-to-text", {"input_tokens": 5, "output_tokens": 6}, None, (5, 6)),
        ("embedding", {"prompt_tokens": 8}, None, (8, 0)),
        ("video-generation", {"foo": 1}, None, None),
    ],
)
def test_usage_units_per_service_type(service_type: str, usage: Any, n: Any, units: Any) -> None:
    """Counts follow PROTOCOL 4.6 for each service type."""
    assert usage_units(service_type, usage, n=n) == units


def test_fee_breakdown_and_billable_seconds() -> None:
    """fee = inputs x input price + outputs x output price; seconds round half up, at least 1."""
    cost = fee_breakdown("chatbot", 10, 20, {"prompt_tokens": 2, "completion_tokens": 3})
    assert cost is not None and cost.fee == 80
    assert [billable_seconds(s) for s in (0, 0.4, 0.5, 1.49, 1.5, "2.5", -1, "x")] == [0, 1, 1, 1, 2, 3, 0, 0]


# -- attestation reports ------------------------------------------------------------------------


def test_report_signer_from_report_data_and_fallbacks() -> None:
    """report_data (base64 NUL-padded ASCII, or a raw padded address) names the signer."""
    padded = base64.b64encode(TEE.address.encode().ljust(64, b"\0")).decode()
    assert report_signer({"report_data": padded}) == (TEE.address, "report_data")
    raw = base64.b64encode(bytes.fromhex(TEE.address[2:]) + b"\0" * 44).decode()
    assert report_signer({"report_data": raw})[0] == TEE.address.lower()
    assert report_signer({"signing_address": TEE.address}) == (TEE.address, "signing_address")
    assert report_signer({}) == (None, "none")


def test_compose_check() -> None:
    """The compose hash must equal the compose-hash event's payload."""
    compose = '{"name":"x"}'
    good = {
        "tcb_info": json.dumps({"app_compose": compose}),
        "event_log": json.dumps([{"event": "compose-hash", "event_payload": sha(compose.encode())}]),
    }
    assert compose_check(good)[0] is True
    bad = dict(good, event_log=json.dumps([{"event": "compose-hash", "event_payload": "00"}]))
    assert compose_check(bad)[0] is False
    assert compose_check({})[0] is None


async def test_verify_service_and_report_file(env: Env, tmp_path: Any) -> None:
    """verify_service compares report_data with the on-chain signer and writes the report."""
    padded = base64.b64encode(TEE.address.encode().ljust(64, b"\0")).decode()
    env.router.get(URL + "/v1/quote").mock(return_value=httpx.Response(200, json={"report_data": padded}))
    env.contracts.services[PROVIDER] = make_service()  # verify_service reads the chain afresh
    result = await env.api.verify_service(PROVIDER, output_dir=str(tmp_path))
    assert result.verified and result.signer_match and result.report_signer == TEE.address
    assert result.compose_verified is None
    assert json.loads((tmp_path / "attestation_report.json").read_text()) == {"report_data": padded}
    other = base64.b64encode(IMPOSTOR.address.encode()).decode()
    env.router.get(URL + "/v1/quote").mock(return_value=httpx.Response(200, json={"report_data": other}))
    bad = await env.api.verify_service(PROVIDER)
    assert not bad.verified and not bad.signer_match
    assert any(step.kind == "error" for step in bad.steps)
