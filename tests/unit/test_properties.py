"""Property-based tests (hypothesis): amounts, addresses, session tokens, SSE parsing, revert decoding.

Example counts are kept moderate so the whole file runs in a few seconds.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal, localcontext
from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from og_inference_async import (
    ContractRevertError,
    InvalidAddressError,
    InvalidAmountError,
    OGError,
    ProviderResponseError,
    RPCError,
    TokenDecodeError,
    format_og,
    og,
    to_wei,
)
from og_inference_async._chain._abi import _ERROR_STRING, _PANIC, decode_revert, inference_abi, ledger_abi
from og_inference_async._config import checksum
from og_inference_async._tokens import (
    EPHEMERAL_TOKEN_ID,
    TokenClaims,
    decode_token,
    recover_token_signer,
    sign_token,
)
from og_inference_async._units import MAX_WEI
from og_inference_async.inference._sse import SSEEvent, SSEParser

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUICK = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ACCOUNT = Account.from_key("0x" + "11" * 32)

# -- amounts --------------------------------------------------------------------------------------

wei_values = st.one_of(
    st.integers(min_value=0, max_value=10**24),
    st.integers(min_value=0, max_value=MAX_WEI),
    st.sampled_from([0, 1, 10**18, MAX_WEI, MAX_WEI - 1]),
)


@FAST
@given(wei_values)
def test_format_og_and_og_round_trip(wei: int) -> None:
    """og(format_og(w)) == w for every amount a contract can hold; to_wei agrees on both forms."""
    text = format_og(wei)
    assert og(text) == wei == to_wei(text) == to_wei(wei)
    assert og(Decimal(text)) == wei
    assert not text.endswith(".") and (text == "0" or not text.startswith("0") or text.startswith("0."))


@FAST
@given(st.decimals(min_value=0, max_value=10**40, places=18, allow_nan=False, allow_infinity=False))
def test_decimals_with_up_to_18_places_are_exact(value: Decimal) -> None:
    """A Decimal (or its text, also in scientific notation) with at most 18 places converts exactly."""
    with localcontext() as ctx:
        ctx.prec = 100
        expected = int(value.scaleb(18))
    assert og(value) == expected == og(str(value)) == og(f"{value:E}".replace("E+", "e"))


junk = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="0123456789.eE+-_ naNiIfty", max_size=40),
    st.from_regex(r"\A-?[0-9]{1,8}(\.[0-9]{0,30})?[eE][+-]?[0-9]{1,9}\Z"),
    st.from_regex(r"\A[0-9]{60,400}\Z"),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
)


@FAST
@given(junk)
def test_amount_junk_raises_only_invalid_amount_error(value: Any) -> None:
    """og / to_wei either give an int in [0, 2**256 - 1] or raise InvalidAmountError, nothing else."""
    for convert in (og, to_wei):
        try:
            out = convert(value)
        except InvalidAmountError:
            continue
        assert isinstance(out, int) and not isinstance(out, bool) and 0 <= out <= MAX_WEI


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_never_accepted(value: float) -> None:
    """A float is refused whatever its value (0.1 OG cannot be exact)."""
    for convert in (og, to_wei):
        try:
            convert(value)  # type: ignore[arg-type]
        except InvalidAmountError:
            continue
        raise AssertionError(f"{convert.__name__} accepted the float {value!r}")


@FAST
@given(st.one_of(st.integers(min_value=-(2**400), max_value=2**400), st.floats(), st.text(max_size=5)))
def test_format_og_raises_only_invalid_amount_error(value: Any) -> None:
    """format_og gives text or InvalidAmountError (never Python's digit-limit ValueError)."""
    try:
        text = format_og(value)
    except InvalidAmountError:
        return
    assert isinstance(text, str) and og(text.lstrip("-")) == abs(value)


# -- addresses ------------------------------------------------------------------------------------

raw_addresses = st.binary(min_size=20, max_size=20).filter(lambda b: any(b))


@FAST
@given(raw_addresses)
def test_lower_upper_and_checksummed_forms_are_accepted(raw: bytes) -> None:
    """Unchecksummed (all lower / all upper case) and correctly checksummed forms all normalise alike."""
    good = to_checksum_address(raw)
    assert checksum(good) == good
    assert checksum("0x" + raw.hex()) == good
    assert checksum("0x" + raw.hex().upper()) == good


@FAST
@given(raw_addresses, st.data())
def test_any_single_case_flip_of_a_checksummed_address_is_refused(raw: bytes, data: st.DataObject) -> None:
    """Flipping the case of one letter of a checksummed address (a typo) is refused as a bad checksum."""
    good = to_checksum_address(raw)
    letters = [i for i, c in enumerate(good) if i >= 2 and c.isalpha()]
    assume(letters)
    i = data.draw(st.sampled_from(letters))
    flipped = good[:i] + good[i].swapcase() + good[i + 1 :]
    digits = flipped[2:]
    assume(digits != digits.lower() and digits != digits.upper())  # still mixed case: a checksum
    try:
        checksum(flipped)
    except InvalidAddressError as exc:
        assert "checksum" in str(exc)
    else:
        raise AssertionError(f"{flipped} (one case flipped) was accepted")


@FAST
@given(st.one_of(st.text(max_size=50), st.from_regex(r"\A0x[0-9a-zA-Z]{38,42}\Z"), st.integers(), st.none()))
def test_address_junk_raises_only_invalid_address_error(value: Any) -> None:
    """checksum either returns a checksummed address or raises InvalidAddressError."""
    try:
        out = checksum(value)
    except InvalidAddressError:
        return
    assert out == to_checksum_address(out)


# -- session tokens -------------------------------------------------------------------------------

uint64 = st.integers(min_value=0, max_value=2**63 - 1)


@st.composite
def claims(draw: st.DrawFn) -> TokenClaims:
    provider_raw = draw(raw_addresses)
    forms = [to_checksum_address(provider_raw), "0x" + provider_raw.hex(), "0x" + provider_raw.hex().upper()]
    provider = draw(st.sampled_from(forms))
    return TokenClaims(
        address=ACCOUNT.address,
        provider=provider,
        timestamp=draw(uint64),
        expires_at=draw(uint64),
        nonce=draw(st.text(max_size=40)),
        generation=draw(st.integers(min_value=0, max_value=2**256 - 1)),
        token_id=draw(st.integers(min_value=0, max_value=EPHEMERAL_TOKEN_ID)),
    )


@QUICK
@given(claims(), st.sampled_from(["", "Bearer ", "bearer  "]))
def test_token_encode_decode_round_trip(c: TokenClaims, prefix: str) -> None:
    """A signed token decodes to the same claims, message and signature, and recovers its signer."""
    token = sign_token(c, ACCOUNT)
    decoded = decode_token(prefix + token.token_string)
    assert decoded.claims == c
    assert decoded.raw_message == token.raw_message == c.to_json()
    assert decoded.signature == token.signature
    assert recover_token_signer(decoded) == ACCOUNT.address


def _payload(text: str) -> str:
    return "app-sk-" + base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
claim_like = st.fixed_dictionaries(
    {},
    optional={
        key: st.one_of(json_values, st.just("0x" + "ab" * 20), uint64)
        for key in ("address", "provider", "timestamp", "expiresAt", "nonce", "generation", "tokenId")
    },
)
token_junk = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: "app-sk-" + base64.b64encode(b).decode()),
    st.text(max_size=80).map(lambda t: "app-sk-" + t),
    st.text(max_size=60).map(lambda t: _payload(t + "|0x" + "1b" * 65)),
    claim_like.map(lambda d: _payload(json.dumps(d) + "|0x" + "ab" * 65)),
    claim_like.map(lambda d: _payload(json.dumps(d))),
    st.integers(),
    st.none(),
    st.binary(max_size=10),
)


@FAST
@given(token_junk)
def test_token_decoder_raises_only_its_typed_error(value: Any) -> None:
    """Random junk fed to decode_token raises TokenDecodeError (or decodes); never a foreign exception."""
    try:
        decoded = decode_token(value)
    except TokenDecodeError:
        return
    try:
        recover_token_signer(decoded)
    except OGError:
        pass


# -- SSE ------------------------------------------------------------------------------------------


def _parse(pieces: list[bytes], *, max_line_bytes: int | None = None) -> list[SSEEvent]:
    parser = SSEParser() if max_line_bytes is None else SSEParser(max_line_bytes=max_line_bytes)
    events: list[SSEEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


def _split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    bounds = [0, *points, len(raw)]
    return [raw[a:b] for a, b in zip(bounds, bounds[1:])]


line_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=20
)
sse_line = st.one_of(
    line_text.map(lambda t: "data: " + t),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(lambda d: "data: " + json.dumps(d)),
    st.just("data: [DONE]"),
    line_text.map(lambda t: "event: " + t),
    line_text.map(lambda t: "id: " + t),
    line_text.map(lambda t: ": " + t),
    st.just(""),
    line_text,
)


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(sse_line, max_size=25))
    endings = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(lines), max_size=len(lines)))
    return "".join(line + end for line, end in zip(lines, endings)).encode("utf-8")


@FAST
@given(st.one_of(sse_streams(), st.binary(max_size=300)), st.lists(st.integers(min_value=0), max_size=12))
def test_any_chunking_gives_the_same_events(raw: bytes, cuts: list[int]) -> None:
    """However a stream (well-formed or random bytes) is split into chunks, the same events come out."""
    assert _parse(_split(raw, cuts)) == _parse([raw])


@FAST
@given(st.lists(st.binary(max_size=60), max_size=10), st.integers(min_value=1, max_value=64))
def test_sse_junk_raises_only_og_errors(chunks: list[bytes], limit: int) -> None:
    """Random chunks never raise anything but ProviderResponseError (a line over the limit)."""
    try:
        events = _parse(chunks, max_line_bytes=limit)
    except ProviderResponseError:
        return
    assert all(isinstance(e.data, str) for e in events)


# -- revert data ----------------------------------------------------------------------------------

selectors = sorted({*ledger_abi().errors, *inference_abi().errors, _ERROR_STRING, _PANIC})
revert_data = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.text(max_size=100),
    st.binary(max_size=200).map(lambda b: "0x" + b.hex()),
    st.from_regex(r"\A0x[0-9a-fA-F]{0,150}\Z"),
    st.tuples(st.sampled_from(selectors), st.binary(max_size=300)).map(lambda t: t[0] + t[1]),
    st.tuples(st.sampled_from(selectors), st.binary(max_size=300)).map(lambda t: "0x" + (t[0] + t[1]).hex()),
    st.tuples(st.sampled_from(selectors), st.lists(st.binary(min_size=32, max_size=32), max_size=6)).map(
        lambda t: t[0] + b"".join(t[1])
    ),
)


@FAST
@given(revert_data, st.one_of(st.none(), st.just("0x" + "ab" * 32)))
def test_decode_revert_never_raises(data: Any, tx_hash: str | None) -> None:
    """Any revert data (random bytes, hex, text, None, known selectors + junk) gives a typed error object."""
    err = decode_revert(data, tx_hash=tx_hash, context="Test.call")
    assert isinstance(err, (ContractRevertError, RPCError))
    assert err.tx_hash == tx_hash
    str(err)  # the message renders
