"""Secrets in remote text: redact() and every place the SDK keeps a provider's answer."""

from __future__ import annotations

import base64
import json
import logging
import traceback
from typing import Any

import httpx
import pytest

from og_inference_async import (
    InsufficientBalanceError,
    NotAcknowledgedError,
    OGError,
    ProviderAuthError,
    ProviderError,
    ProviderResponseError,
    ProviderServerError,
    ServiceNotFoundError,
    redact,
)
from og_inference_async._redact import REDACTED, redact_bytes
from og_inference_async.inference._funding_auto import describe_error

from .test_requests import CHAT_URL, PROVIDER, Env, chunk, env, sse

pytestmark = pytest.mark.anyio

__all__ = ["env"]  # the fixture, re-used from test_requests

#: A session token shaped like the real ones: base64(JSON "|" 65-byte signature), with + / =.
_PAYLOAD = json.dumps({"address": "0x" + "ab" * 20, "provider": PROVIDER, "tokenId": 255}).encode()
SECRET = base64.b64encode(_PAYLOAD + b"|" + bytes(range(190, 255))).decode()
TOKEN = "app-sk-" + SECRET
PRIVATE_KEY = "0x" + "4c" * 32
SIGNATURE = "0x" + "1b" * 65
MESSAGES = [{"role": "user", "content": "hi"}]


# -- redact() -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        (f"Authorization: Bearer {TOKEN}", [SECRET, "app-sk-"], ["Authorization: Bearer"]),
        (f"authorization: bearer {SECRET}", [SECRET], ["bearer"]),
        (f"key {TOKEN} leaked", [SECRET], ["leaked"]),
        ("x-api-key: k-123456 and api_key=abc&b=1", ["k-123456", "abc"], ["b=1"]),
        ('{"apiKey": "s3cret", "password": "hunter2"}', ["s3cret", "hunter2"], ["apiKey"]),
        ("use sk-proj-abcdefghijklmnopqrstuvwx", ["abcdefghijklmnop"], ["use"]),
        (f"key {PRIVATE_KEY} sig {SIGNATURE}", ["4c4c4c", "1b1b1b"], ["key", "sig"]),
        ("plain " + "9f" * 32, ["9f9f9f"], ["plain"]),
        (
            "provider 0x" + "ef" * 20 + " chat 3f2c9c1e-8a8e-4b9e",
            [],
            ["0x" + "ef" * 20, "3f2c9c1e-8a8e-4b9e"],
        ),
        ("token_expired: the token expired", [], ["token_expired: the token expired"]),
        (f"escaped Bearer {TOKEN.replace('/', chr(92) + '/')}", ["app-sk-", SECRET[:20]], ["escaped"]),
    ],
)
def test_redact_rules(text: str, gone: list[str], kept: list[str]) -> None:
    """Tokens, keys and 32/65-byte hex go; addresses, ids, codes and prose stay; twice is once."""
    out = redact(text)
    for secret in gone:
        assert secret not in out
    for part in kept:
        assert part in out
    assert redact(out) == out
    assert (REDACTED in out) == bool(gone)


def test_redacted_json_stays_json() -> None:
    """A JSON error body that quotes the header (even as an escaped JSON string) keeps its shape."""
    inner = json.dumps({"authorization": f"Bearer {TOKEN}", "x-api-key": "k"})
    body = json.dumps(
        {"error": {"code": "insufficient_balance", "required": "1000", "message": inner}}
    ).encode()
    cleaned = redact_bytes(body)
    parsed = json.loads(cleaned)
    assert parsed["error"]["code"] == "insufficient_balance" and parsed["error"]["required"] == "1000"
    assert SECRET not in cleaned.decode() and "app-sk-" not in cleaned.decode()
    assert redact_bytes(b"\xff\xfe no secret") == b"\xff\xfe no secret"


# -- the SDK's error paths ----------------------------------------------------------------------


def leaks(exc: BaseException, logs: str) -> list[str]:
    """Where the secret can still be read: str, repr, body, hint, traceback, logs."""
    places = {
        "str": str(exc),
        "repr": repr(exc),
        "body": str(getattr(exc, "body", "")),
        "hint": str(getattr(exc, "hint", "")),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "logs": logs,
    }
    return [name for name, text in places.items() if SECRET in text or "app-sk-" in text]


def use_real_token(env: Env) -> None:
    async def headers(provider: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    env.api.auth.get_request_headers = headers


def echo(status: int, code: str | None, *, plain: bool = False, **extra: Any) -> Any:
    """A provider that quotes the request's Authorization header in its error answer."""

    def answer(request: httpx.Request) -> httpx.Response:
        header = request.headers["authorization"]
        if plain:
            return httpx.Response(status, text=f"gateway refused: Authorization={header}")
        error: dict[str, Any] = {"message": f"refused request with Authorization: {header}", **extra}
        if code is not None:
            error["code"] = code
        return httpx.Response(status, json={"error": error, "echo": {"authorization": header}})

    return answer


@pytest.mark.parametrize(
    ("status", "code", "plain", "kind"),
    [
        (401, "invalid_signature", False, ProviderAuthError),
        (402, "insufficient_balance", False, InsufficientBalanceError),
        (403, "not_acknowledged", False, NotAcknowledgedError),
        (404, "model_not_found", False, ServiceNotFoundError),
        (500, "internal_error", False, ProviderServerError),
        (400, None, True, ProviderError),
        (418, None, False, ProviderError),
    ],
)
async def test_echoed_token_is_in_no_error(
    env: Env, caplog: pytest.LogCaptureFixture, status: int, code: str | None, plain: bool, kind: type
) -> None:
    """A provider echoing our Authorization header: the token is in no exception text, body or log."""
    use_real_token(env)
    env.router.post(CHAT_URL).mock(side_effect=echo(status, code, plain=plain, required="5", available="1"))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(kind) as info:
            await env.api.chat(PROVIDER, MESSAGES)
    assert leaks(info.value, caplog.text) == []
    assert "refused" in str(info.value)  # the rest of the provider's message is kept
    if isinstance(info.value, ProviderError):
        assert info.value.body is not None and REDACTED in info.value.body


async def test_echoed_token_on_stream_open_and_in_an_error_event(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Stream refusals and error events inside a stream are redacted the same way."""
    use_real_token(env)
    route = env.router.post(CHAT_URL).mock(side_effect=echo(401, "invalid_signature"))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ProviderAuthError) as refused:
            async with env.api.chat_stream(PROVIDER, MESSAGES):
                pass
    assert leaks(refused.value, caplog.text) == []
    event = {"error": {"code": "upstream_error", "status": 502, "message": f"upstream saw Bearer {TOKEN}"}}
    route.mock(
        return_value=httpx.Response(
            200, content=b"".join(sse(chunk("a"), event)), headers={"content-type": "text/event-stream"}
        )
    )
    with caplog.at_level(logging.DEBUG):
        async with env.api.chat_stream(PROVIDER, MESSAGES) as stream:
            with pytest.raises(ProviderServerError) as broken:
                async for _ in stream:
                    pass
    assert leaks(broken.value, caplog.text) == []
    assert "upstream saw Bearer" in str(broken.value)


async def test_echoed_token_in_a_body_that_is_not_json(env: Env) -> None:
    """A 200 answer that is not JSON (a gateway page quoting the header) becomes a redacted error."""
    use_real_token(env)
    env.router.post(CHAT_URL).mock(
        side_effect=lambda request: httpx.Response(
            200, text=f"<html>hello {request.headers['authorization']}</html>"
        )
    )
    with pytest.raises(ProviderResponseError) as info:
        await env.api.chat(PROVIDER, MESSAGES)
    assert leaks(info.value, "") == [] and info.value.body is not None and "<html>" in info.value.body


def test_describe_error_redacts_foreign_exceptions() -> None:
    """Auto-funding reports (and logs) describe_error(exc): secrets in any exception text are removed."""
    described = describe_error(RuntimeError(f"callback saw {TOKEN} and {PRIVATE_KEY}"))
    assert SECRET not in described and "4c4c4c" not in described and described.startswith("RuntimeError")
    assert isinstance(ProviderError(f"x {TOKEN}", hint=f"h {TOKEN}"), OGError)
    err = ProviderError(f"x {TOKEN}", body=f"b {TOKEN}", hint=f"h {TOKEN}")
    assert leaks(err, "") == []
