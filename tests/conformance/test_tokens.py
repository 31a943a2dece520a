"""Conformance: tokens made by the official TS SDK verify with our codec, and ours are byte-identical."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest
from eth_account import Account

from og_inference_async import AsyncBroker, og
from og_inference_async._tokens import TokenClaims, decode_token, sign_token, verify_token

pytestmark = [pytest.mark.anyio, pytest.mark.conformance, pytest.mark.integration]

SCRIPT = Path(__file__).with_name("tokens.js")
KEYS = ["address", "provider", "timestamp", "expiresAt", "nonce", "generation", "tokenId"]


def _structure(token: str) -> tuple[list[str], dict[str, type], str]:
    """Field order, field types and signature of an app-sk token; asserts canonical base64."""
    body = token.removeprefix("Bearer ").removeprefix("app-sk-")
    raw = base64.b64decode(body, validate=True)
    assert base64.b64encode(raw).decode() == body  # standard alphabet, '=' padding
    text = raw.decode()
    message, _, signature = text.rpartition("|")
    fields = json.loads(message)
    assert json.dumps(fields, separators=(",", ":")) == message  # compact, no whitespace
    return list(fields), {k: type(v) for k, v in fields.items()}, signature


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
async def test_ts_tokens_verify_and_match_ours(devnet: Any, chatbot: Any, tmp_path: Path) -> None:
    """The TS SDK's session token and API key decode and verify; our encoder reproduces them exactly."""
    user = devnet.accounts[9]
    async with AsyncBroker(user.private_key, network=devnet.network) as broker:
        await broker.ledger.add_ledger(og("10"))
        await broker.ledger.transfer_fund(chatbot.address, og("5"))
        ours = (await broker.inference.get_request_headers(chatbot.address))["Authorization"]
        our_key = (await broker.inference.create_api_key(chatbot.address, expires_in_ms=3_600_000)).secret
    output = tmp_path / "tokens.json"
    config = {
        "rpc_url": devnet.rpc_url,
        "ledger": devnet.ledger,
        "inference": devnet.inference,
        "provider": chatbot.address,
        "key": user.private_key,
        "output": str(output),
    }
    env = {
        **os.environ,
        "NODE_PATH": str(Path(devnet.artifacts.cache_dir) / "node_modules"),
        "OG_TOKENS": json.dumps(config),
    }
    with anyio.fail_after(60):
        proc = await anyio.run_process(["node", str(SCRIPT)], env=env, check=False)
    report: dict[str, Any] = json.loads(output.read_text()) if output.exists() else {}
    assert proc.returncode == 0, (report.get("fatal"), proc.stderr.decode()[-1500:])

    account = Account.from_key(user.private_key)
    for ts_token, our_token, token_id in (
        (report["authorization"], ours, 255),
        (report["apiKey"], our_key.get_secret_value(), None),
    ):
        decoded = decode_token(ts_token)
        verify_token(decoded, expected_provider=chatbot.address)
        assert decoded.claims.address == user.address
        if token_id is not None:
            assert decoded.claims.token_id == token_id
        else:
            assert decoded.claims.token_id == report["tokenId"] == 7
        ts_keys, ts_types, ts_sig = _structure(ts_token)
        our_keys, our_types, our_sig = _structure(our_token)
        assert ts_keys == our_keys == KEYS
        assert ts_types == our_types
        for sig in (ts_sig, our_sig):
            assert re.fullmatch(r"0x[0-9a-f]{128}(1b|1c)", sig)
        # Same claims, same key: our encoder and signer give the identical token (RFC 6979).
        c = decoded.claims
        again = sign_token(
            TokenClaims(
                address=c.address,
                provider=c.provider,
                timestamp=c.timestamp,
                expires_at=c.expires_at,
                nonce=c.nonce,
                generation=c.generation,
                token_id=c.token_id,
            ),
            account,
        )
        assert again.token_string == ts_token.removeprefix("Bearer ")
