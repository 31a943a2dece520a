"""Session-token codec, signing, verification and API-key helpers (og_inference_async._tokens, ._apikeys)."""

from __future__ import annotations

import base64
import json
import logging
import random

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.backends import get_backend
from eth_utils import keccak

from og_inference_async._apikeys import (
    ApiKey,
    check_token_id,
    issue_api_key,
    make_api_key_claims,
    pick_token_id,
    revoked_ids,
)
from og_inference_async._exceptions import (
    ApiKeyError,
    ConfigError,
    InvalidAddressError,
    TokenDecodeError,
    TokenVerificationError,
    VerificationError,
)
from og_inference_async._tokens import (
    DecodedToken,
    SignedToken,
    TokenClaims,
    TokenRejectedError,
    decode_token,
    make_session_claims,
    personal_sign_text,
    recover_personal_signer,
    recover_token_signer,
    sign_token,
    verify_token,
)

# PROTOCOL.md section 14 (computed with ethers v6).
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
RAW = (
    '{"address":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","provider":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8",'
    '"timestamp":1700000000000,"expiresAt":1700086400000,"nonce":"00112233445566778899aabbccddeeff",'
    '"generation":0,"tokenId":255}'
)
HASH = "0x2adcedbfb28f8616841a24c8dedd0719dd8544aea69779f9e60b12dc0e6e2326"
SIGNATURE = (
    "0xec4b8b1f5b9e033f5f33e1ac85356e66c3063dbc3ef12ad46350a841de772b646802fa1fb16494a2653f713d53751a3d0fe07"
    "12a02cf3662937589d1d51460ca1b"
)
HEADER = (
    "Bearer app-sk-eyJhZGRyZXNzIjoiMHhmMzlGZDZlNTFhYWQ4OEY2RjRjZTZhQjg4MjcyNzljZmZGYjkyMjY2IiwicHJvdmlkZXIiOi"
    "IweDcwOTk3OTcwQzUxODEyZGMzQTAxMEM3ZDAxYjUwZTBkMTdkYzc5QzgiLCJ0aW1lc3RhbXAiOjE3MDAwMDAwMDAwMDAsImV4cGlyZXNB"
    "dCI6MTcwMDA4NjQwMDAwMCwibm9uY2UiOiIwMDExMjIzMzQ0NTU2Njc3ODg5OWFhYmJjY2RkZWVmZiIsImdlbmVyYXRpb24iOjAsInRv"
    "a2VuSWQiOjI1NX18MHhlYzRiOGIxZjViOWUwMzNmNWYzM2UxYWM4NTM1NmU2NmMzMDYzZGJjM2VmMTJhZDQ2MzUwYTg0MWRlNzcyYjY0"
    "NjgwMmZhMWZiMTY0OTRhMjY1M2Y3MTNkNTM3NTFhM2QwZmUwNzEyYTAyY2YzNjYyOTM3NTg5ZDFkNTE0NjBjYTFi"
)
RESPONSE_SIGNATURE = (
    "0xd4a27aa5167e14eca7f5d29873db8e942d76d53836dc3256d6dbd2a8b9c3a6c517e5ac8264c54054412e35accaee3064e40ed0d"
    "1c8d834518539bd3f92248fe81b"
)
NOW = 1_700_000_000_000

ACCOUNT = Account.from_key(KEY)
OTHER = Account.from_key("0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a")  # hardhat #2


def vector_claims(**overrides: object) -> TokenClaims:
    fields: dict[str, object] = {
        "address": ADDRESS,
        "provider": PROVIDER,
        "timestamp": NOW,
        "expires_at": NOW + 86_400_000,
        "nonce": "00112233445566778899aabbccddeeff",
        "generation": 0,
        "token_id": 255,
    }
    fields.update(overrides)
    return TokenClaims(**fields)  # type: ignore[arg-type]


def encode(payload: bytes) -> str:
    return "app-sk-" + base64.b64encode(payload).decode()


def token_with(obj: object, signature: str = SIGNATURE) -> str:
    return encode((json.dumps(obj, separators=(",", ":")) + "|" + signature).encode())


# --- vectors ---------------------------------------------------------------------------------------


def test_vector_raw_json_is_byte_exact() -> None:
    """The claims serialise to exactly the section-14 rawMessage."""
    assert vector_claims().to_json() == RAW


def test_vector_hash_signature_and_header() -> None:
    """Hash, signature, token string and Authorization header match section 14 byte for byte."""
    token = sign_token(vector_claims(), ACCOUNT)
    assert "0x" + keccak(token.raw_message.encode()).hex() == HASH
    assert token.raw_message == RAW
    assert token.signature == SIGNATURE
    assert token.authorization == HEADER
    assert token.token_string == HEADER.removeprefix("Bearer ")


def test_vector_response_signature() -> None:
    """personal_sign("abc:def") with hardhat #0 gives the section-14 value and recovers to it."""
    assert personal_sign_text("abc:def", ACCOUNT) == RESPONSE_SIGNATURE
    assert recover_personal_signer("abc:def", RESPONSE_SIGNATURE) == ADDRESS
    assert recover_personal_signer("abc:deg", RESPONSE_SIGNATURE) != ADDRESS


def test_vector_decodes_and_verifies() -> None:
    """The section-14 header decodes to the same claims and verifies."""
    decoded = decode_token(HEADER)
    assert decoded.claims == vector_claims()
    assert decoded.raw_message == RAW and decoded.signature == SIGNATURE
    assert decoded.message_hash.hex() == HASH[2:]
    assert recover_token_signer(decoded) == ADDRESS
    verify_token(decoded, expected_provider=PROVIDER.lower(), now_ms=NOW + 1000)


def test_coincurve_backend_is_selected() -> None:
    """eth-keys signs with the coincurve backend (about 0.2 ms per signature instead of ~ms)."""
    assert type(get_backend()).__name__ == "CoinCurveECCBackend"


# --- claims ----------------------------------------------------------------------------------------


def test_claims_checksum_address_but_keep_provider_as_given() -> None:
    """address is EIP-55 checksummed; provider is written exactly as passed (the TS behaviour)."""
    claims = vector_claims(address=ADDRESS.lower(), provider=PROVIDER.lower())
    assert claims.address == ADDRESS
    assert claims.provider == PROVIDER.lower()
    assert json.loads(claims.to_json())["provider"] == PROVIDER.lower()


def test_claims_key_order_and_plain_ints() -> None:
    """Keys come in the protocol order and ints are plain JSON numbers."""
    claims = vector_claims(generation=2**70, token_id=7, expires_at=0)
    text = claims.to_json()
    assert list(json.loads(text)) == [
        "address", "provider", "timestamp", "expiresAt", "nonce", "generation", "tokenId",
    ]  # fmt: skip
    assert f'"generation":{2**70},' in text and '"expiresAt":0,' in text


def test_claims_non_ascii_nonce_matches_json_stringify() -> None:
    """Non-ASCII and control characters are encoded as JavaScript's JSON.stringify does (node-checked)."""
    claims = vector_claims(nonce='a\x01"\\/é€😀\u2028\t')
    assert (
        claims.to_json().split('"nonce":')[1].split(',"generation"')[0] == '"a\\u0001\\"\\\\/é€😀\u2028\\t"'
    )


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("timestamp", True, ConfigError),
        ("timestamp", 1.0, ConfigError),
        ("timestamp", "1", ConfigError),
        ("timestamp", -1, ConfigError),
        ("generation", None, ConfigError),
        ("token_id", 256, ConfigError),
        ("nonce", 5, ConfigError),
        ("nonce", "\ud800", ConfigError),
        ("address", "0x1234", InvalidAddressError),
        ("provider", "70997970C51812dc3A010C7d01b50e0d17dc79C8", InvalidAddressError),
    ],
)
def test_claims_reject_bad_fields(field: str, value: object, error: type[Exception]) -> None:
    """TokenClaims refuses wrong types and out-of-range values."""
    with pytest.raises(error):
        vector_claims(**{field: value})


def test_make_session_claims_bounds() -> None:
    """Ephemeral claims carry tokenId 255 and expire after the lifetime, which must be 1 ms..24 h."""
    claims = make_session_claims(ADDRESS, PROVIDER, generation=3, now_ms=NOW, lifetime_ms=1000, nonce="n")
    assert (claims.token_id, claims.expires_at, claims.generation) == (255, NOW + 1000, 3)
    assert len(make_session_claims(ADDRESS, PROVIDER, generation=0, now_ms=NOW).nonce) == 32
    for bad in (0, 86_400_001, -5):
        with pytest.raises(ConfigError):
            make_session_claims(ADDRESS, PROVIDER, generation=0, now_ms=NOW, lifetime_ms=bad)


def test_sign_token_refuses_foreign_account() -> None:
    """Signing claims whose address is not the account's raises ConfigError."""
    with pytest.raises(ConfigError):
        sign_token(vector_claims(), OTHER)


def test_signed_and_decoded_reprs_hide_secrets() -> None:
    """Neither repr nor str of a signed or decoded token contains the signature or token string."""
    token = sign_token(vector_claims(), ACCOUNT)
    decoded = decode_token(token.authorization)
    for text in (repr(token), str(token), repr(decoded), str(decoded)):
        assert SIGNATURE[2:20] not in text
        assert token.token_string[7:40] not in text
        assert "redacted" in text


# --- decoding --------------------------------------------------------------------------------------


GOOD = json.loads(RAW)

MALFORMED = {
    "not a str": b"",  # replaced below
    "empty": "",
    "bearer only": "Bearer ",
    "wrong prefix": "Bearer sk-" + HEADER[len("Bearer app-sk-") :],
    "bad base64 alphabet": "app-sk-!!!!",
    "bad padding": HEADER.removeprefix("Bearer ")[:-1],
    "non-ascii": "app-sk-ééé=",
    "bad utf-8": encode(b"\xff\xfe|" + SIGNATURE.encode()),
    "no separator": encode(RAW.encode()),
    "signature too short": encode((RAW + "|" + SIGNATURE[:-2]).encode()),
    "signature not hex": encode((RAW + "|0x" + "zz" * 65).encode()),
    "signature without 0x": encode((RAW + "|" + SIGNATURE[2:] + "ab").encode()),
    "bad json": encode(("{not json|" + SIGNATURE).encode()),
    "json array": token_with([1, 2]),
    "json NaN": encode((RAW.replace('"generation":0', '"generation":NaN') + "|" + SIGNATURE).encode()),
    "duplicate key": encode(
        (RAW.replace('"tokenId":255', '"tokenId":255,"tokenId":1') + "|" + SIGNATURE).encode()
    ),
    "missing tokenId": token_with({k: v for k, v in GOOD.items() if k != "tokenId"}),
    "bool tokenId": token_with({**GOOD, "tokenId": True}),
    "float timestamp": token_with({**GOOD, "timestamp": 1.7e12}),
    "string generation": token_with({**GOOD, "generation": "0"}),
    "null expiresAt": token_with({**GOOD, "expiresAt": None}),
    "tokenId 256": token_with({**GOOD, "tokenId": 256}),
    "negative timestamp": token_with({**GOOD, "timestamp": -1}),
    "short address": token_with({**GOOD, "address": "0x1234"}),
    "provider not str": token_with({**GOOD, "provider": 5}),
    "nonce not str": token_with({**GOOD, "nonce": 1}),
    "truncated": HEADER.removeprefix("Bearer ")[:200],
    "too long": "app-sk-" + "A" * 10_000,
    "huge int": token_with({**GOOD, "generation": 2**300}),
}
MALFORMED["not a str"] = None  # type: ignore[assignment]


@pytest.mark.parametrize("value", list(MALFORMED.values()), ids=list(MALFORMED))
def test_decode_rejects_malformed(value: str) -> None:
    """Every malformed token raises TokenDecodeError, never another exception."""
    with pytest.raises(TokenDecodeError):
        decode_token(value)


def test_decode_deeply_nested_json_is_a_decode_error() -> None:
    """JSON nested beyond the recursion limit is a TokenDecodeError, not a RecursionError."""
    with pytest.raises(TokenDecodeError):
        decode_token(encode(("[" * 3000 + "|" + SIGNATURE).encode()))


def test_decode_accepts_bare_token_lowercase_scheme_and_extra_keys() -> None:
    """A bare app-sk- string, a lowercase 'bearer' scheme and unknown extra keys all decode."""
    bare = HEADER.removeprefix("Bearer ")
    assert decode_token(bare).raw_message == RAW
    assert decode_token("bearer " + bare).raw_message == RAW
    extra = decode_token(token_with({**GOOD, "extra": [1]}))
    assert extra.claims == vector_claims()


def test_decode_splits_on_last_pipe() -> None:
    """A '|' inside the nonce does not confuse the separator, and the token still verifies."""
    token = sign_token(vector_claims(nonce="a|b|c"), ACCOUNT)
    decoded = decode_token(token.authorization)
    assert decoded.claims.nonce == "a|b|c"
    verify_token(decoded, now_ms=NOW)


def test_decode_fuzz_random_inputs_never_escape() -> None:
    """Random bytes, random base64 payloads and mutated tokens only ever raise TokenDecodeError."""
    rng = random.Random(1234)
    good = HEADER.removeprefix("Bearer ")
    for _ in range(3000):
        kind = rng.randrange(4)
        if kind == 0:
            value = "app-sk-" + base64.b64encode(rng.randbytes(rng.randrange(0, 400))).decode()
        elif kind == 1:
            value = rng.randbytes(rng.randrange(0, 200)).decode("latin-1")
        elif kind == 2:
            chars = list(good)
            for _ in range(rng.randrange(1, 5)):
                chars[rng.randrange(7, len(chars))] = rng.choice("ABCxyz019+/=|")
            value = "".join(chars)
        else:
            payload = bytearray((RAW + "|" + SIGNATURE).encode())
            for _ in range(rng.randrange(1, 4)):
                payload[rng.randrange(len(payload))] = rng.randrange(256)
            value = encode(bytes(payload))
        try:
            decoded = decode_token(value)
        except TokenDecodeError:
            continue
        try:  # a mutation that still decodes must be handled by verification too
            verify_token(decoded, now_ms=NOW)
        except TokenVerificationError:
            pass


# --- verification ----------------------------------------------------------------------------------


def reason_of(decoded: DecodedToken, **kwargs: object) -> str:
    with pytest.raises(TokenRejectedError) as info:
        verify_token(decoded, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, TokenVerificationError)
    return info.value.reason


def signed(**overrides: object) -> DecodedToken:
    return decode_token(sign_token(vector_claims(**overrides), ACCOUNT).authorization)


def test_verify_rejects_wrong_signer() -> None:
    """A token whose address is not the signer fails."""
    tampered = token_with({**GOOD, "address": OTHER.address})
    with pytest.raises(TokenVerificationError, match="signed by"):
        verify_token(decode_token(tampered), now_ms=NOW)


def test_verify_rejects_unrecoverable_signature() -> None:
    """A signature with an invalid v does not recover and fails verification."""
    with pytest.raises(TokenVerificationError, match="does not recover"):
        verify_token(decode_token(token_with(GOOD, SIGNATURE[:-2] + "05")), now_ms=NOW)


def test_verify_provider_is_case_insensitive() -> None:
    """The provider must match case-insensitively; another provider fails."""
    verify_token(signed(), expected_provider=PROVIDER.upper().replace("0X", "0x"), now_ms=NOW)
    with pytest.raises(TokenVerificationError, match="provider"):
        verify_token(signed(), expected_provider=OTHER.address, now_ms=NOW)


def test_verify_expiry_and_skew() -> None:
    """Tokens expire at expiresAt (plus skew) and may not be issued in the future (beyond skew)."""
    exp = NOW + 86_400_000
    verify_token(signed(), now_ms=exp + 59_999)
    with pytest.raises(TokenVerificationError, match="expired"):
        verify_token(signed(), now_ms=exp + 60_000)
    with pytest.raises(TokenVerificationError, match="expired"):
        verify_token(signed(), now_ms=exp, skew_ms=0)
    verify_token(signed(), now_ms=NOW - 60_000)
    with pytest.raises(TokenVerificationError, match="future"):
        verify_token(signed(), now_ms=NOW - 60_001)


def test_verify_reasons_are_stable_codes() -> None:
    """Each verification failure carries a machine-readable reason code."""
    assert (
        reason_of(decode_token(token_with({**GOOD, "address": OTHER.address})), now_ms=NOW) == "wrong_signer"
    )
    assert reason_of(decode_token(token_with(GOOD, SIGNATURE[:-2] + "05")), now_ms=NOW) == "bad_signature"
    assert reason_of(signed(), expected_provider=OTHER.address, now_ms=NOW) == "wrong_provider"
    assert reason_of(signed(), now_ms=NOW + 2 * 86_400_000) == "expired"
    assert reason_of(signed(), now_ms=NOW - 3_600_000) == "not_yet_valid"
    assert reason_of(signed(expires_at=0), now_ms=NOW) == "no_expiry"
    assert reason_of(signed(expires_at=NOW - 1), now_ms=NOW) == "bad_lifetime"
    assert reason_of(signed(expires_at=NOW + 86_400_001), now_ms=NOW) == "lifetime_too_long"


def test_verify_ephemeral_lifetime_rules() -> None:
    """Ephemeral tokens must expire, within 24 h of issue and after it; persistent ones may never expire."""
    with pytest.raises(TokenVerificationError, match="expiresAt 0"):
        verify_token(signed(expires_at=0), now_ms=NOW)
    with pytest.raises(TokenVerificationError, match="exceeds"):
        verify_token(signed(expires_at=NOW + 86_400_001), now_ms=NOW)
    with pytest.raises(TokenVerificationError, match="before"):
        verify_token(signed(expires_at=NOW), now_ms=NOW)
    verify_token(signed(expires_at=NOW + 3_600_000), now_ms=NOW, max_ephemeral_ms=3_600_000)
    verify_token(signed(expires_at=0, token_id=0), now_ms=NOW + 10**12)


def test_recover_personal_signer_rejects_garbage() -> None:
    """A malformed response signature raises VerificationError."""
    for bad in ("0x1234", "nothex", SIGNATURE[:-2] + "ff", SIGNATURE[:-2] + "25", "0x" + "00" * 64 + "1b"):
        with pytest.raises(VerificationError):
            recover_personal_signer("abc:def", bad)


def test_recover_matches_eth_account() -> None:
    """The direct coincurve recovery returns what eth-account returns, for every v form and any text."""
    rng = random.Random(7)
    for i in range(40):
        account = Account.from_key(rng.randbytes(32))
        text = "".join(rng.choice("ab:♥\n0f") for _ in range(rng.randrange(0, 90)))
        signature = personal_sign_text(text, account)
        expected = Account.recover_message(encode_defunct(text=text), signature=bytes.fromhex(signature[2:]))
        assert recover_personal_signer(text, signature) == expected == account.address
        as_0_1 = signature[:-2] + f"{int(signature[-2:], 16) - 27:02x}"
        assert recover_personal_signer(text, as_0_1) == expected
        other = f"{text}x{i}"
        assert recover_personal_signer(other, signature) == Account.recover_message(
            encode_defunct(text=other), signature=bytes.fromhex(signature[2:])
        )


def test_recover_rejects_r_or_s_out_of_range() -> None:
    """r or s at or above the curve order, or zero, do not recover (eth-keys refuses them too)."""
    order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
    r, s = RESPONSE_SIGNATURE[2:66], RESPONSE_SIGNATURE[66:130]
    for bad in (order + s, r + order, "00" * 32 + s, r + "00" * 32):
        with pytest.raises(VerificationError):
            recover_personal_signer("abc:def", "0x" + bad + "1b")


# --- API keys --------------------------------------------------------------------------------------


def test_pick_token_id_skips_revoked_and_issued() -> None:
    """The lowest id neither revoked nor issued is picked."""
    assert pick_token_id(0, set()) == 0
    assert pick_token_id(0b1011, {2, 4}) == 5
    assert pick_token_id((1 << 254) - 1, set()) == 254


def test_pick_token_id_exhausted() -> None:
    """When all 255 ids are used or revoked, ApiKeyError points to revoke_all_tokens."""
    with pytest.raises(ApiKeyError, match="revoke_all_tokens"):
        pick_token_id((1 << 200) - 1, set(range(200, 255)))
    with pytest.raises(ApiKeyError, match="all 255 API key ids"):
        pick_token_id((1 << 255) - 1, set())


def test_revoked_ids_and_bitmap_validation() -> None:
    """revoked_ids lists set bits; non-uint256 bitmaps are ConfigError."""
    assert revoked_ids(0) == []
    assert revoked_ids(0b100101 | 1 << 255) == [0, 2, 5, 255]
    for bad in (-1, 1 << 256, True, "3"):
        with pytest.raises(ConfigError):
            revoked_ids(bad)  # type: ignore[arg-type]


def test_check_token_id() -> None:
    """255, out-of-range and already-revoked ids raise ApiKeyError; free ids pass."""
    check_token_id(0, 0b10)
    check_token_id(254, 0)
    with pytest.raises(ApiKeyError, match="ephemeral session id"):
        check_token_id(255, 0)
    for bad in (-1, 256, True):
        with pytest.raises(ApiKeyError):
            check_token_id(bad, 0)
    with pytest.raises(ApiKeyError, match="already revoked"):
        check_token_id(1, 0b10)


def api_key_claims(expires_in_ms: int | None, token_id: int = 4) -> TokenClaims:
    return make_api_key_claims(
        ADDRESS.lower(),
        PROVIDER,
        token_id=token_id,
        generation=2,
        now_ms=NOW,
        expires_in_ms=expires_in_ms,
        nonce="n",
    )


def test_make_api_key_claims_expiry() -> None:
    """expiresAt is now + expires_in, or 0 for None/0; negative lifetimes are ConfigError."""
    assert api_key_claims(None).expires_at == 0
    assert api_key_claims(0).expires_at == 0
    claims = api_key_claims(5000)
    assert (claims.expires_at, claims.token_id, claims.generation) == (NOW + 5000, 4, 2)
    assert claims.address == ADDRESS
    with pytest.raises(ConfigError):
        api_key_claims(-1)
    with pytest.raises(ApiKeyError, match="ephemeral"):
        api_key_claims(None, token_id=255)


def test_issue_api_key_round_trip_and_redaction(caplog: pytest.LogCaptureFixture) -> None:
    """An issued API key decodes and verifies, and its secret is absent from repr, str, JSON and logs."""
    caplog.set_level(logging.DEBUG)
    key = issue_api_key(ACCOUNT, PROVIDER, token_id=9, generation=1, now_ms=NOW, expires_in_ms=None)
    secret = key.secret.get_secret_value()
    assert secret.startswith("app-sk-")
    decoded = decode_token(secret)
    assert (decoded.claims.token_id, decoded.claims.generation, decoded.claims.expires_at) == (9, 1, 0)
    verify_token(decoded, expected_provider=PROVIDER, now_ms=NOW + 10**11)
    assert (key.token_id, key.created_at, key.expires_at, key.provider) == (9, NOW, 0, PROVIDER)
    logging.getLogger("test").info("key %s / %r", key, key)
    for text in (repr(key), str(key), key.model_dump_json(), caplog.text):
        assert secret[7:40] not in text


def test_api_key_model_is_frozen_and_rejects_ephemeral() -> None:
    """ApiKey cannot be mutated, and an ephemeral token cannot become an API key."""
    key = issue_api_key(ACCOUNT, PROVIDER, token_id=0, generation=0, now_ms=NOW)
    with pytest.raises(ValueError):
        key.token_id = 3  # type: ignore[misc]
    with pytest.raises(ApiKeyError):
        ApiKey.from_token(sign_token(vector_claims(), ACCOUNT))


def test_signed_token_is_immutable() -> None:
    """SignedToken fields cannot be reassigned."""
    token: SignedToken = sign_token(vector_claims(), ACCOUNT)
    with pytest.raises(AttributeError):
        token.signature = "0x"  # type: ignore[misc]


def test_fast_personal_sign_matches_eth_account_byte_for_byte() -> None:
    """The coincurve signing path gives eth-account's exact signatures (texts and token digests)."""
    import random

    from eth_account import Account
    from eth_account.messages import encode_defunct

    from og_inference_async._tokens import personal_sign_text

    rng = random.Random(5)
    for _ in range(40):
        account = Account.from_key(bytes(rng.randrange(256) for _ in range(31)) + b"\x01")
        text = "".join(rng.choice("ab:é☃09") for _ in range(rng.randrange(0, 80)))
        expected = "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()
        assert personal_sign_text(text, account) == expected
