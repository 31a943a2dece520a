"""Amounts: OG <-> wei with :class:`~decimal.Decimal`, strict parsing, never floats.

Inside the SDK every amount is an ``int`` in wei (1 OG = 10**18 wei; the TS SDK calls the
unit "neuron"). At the public edges an amount may be given as an ``int`` (wei) or as a
``Decimal`` / ``str`` in OG; floats and bools are refused because they silently lose
precision (the TS SDK turns 0.1 OG into 100000000000000006 neuron).
"""

from __future__ import annotations

import re
from decimal import Decimal, Inexact, InvalidOperation, localcontext

from ._exceptions import InvalidAmountError

__all__ = ["MAX_WEI", "WEI_PER_OG", "Amount", "format_og", "og", "to_wei"]

WEI_PER_OG = 10**18

#: The largest amount the contracts can hold (uint256), in wei. Larger amounts are refused.
MAX_WEI = 2**256 - 1

#: An amount at the public edge: ``int`` wei, or ``Decimal`` / ``str`` OG.
Amount = int | Decimal | str

#: Longest amount text accepted (uint256 wei written in OG with all decimals is 79 characters).
_MAX_TEXT = 256
#: A plain ASCII decimal number with an optional, short exponent (no NaN, Infinity, non-ASCII digits).
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?", re.ASCII)
_NON_FINITE_RE = re.compile(r"[+-]?(?:s?nan[0-9]*|inf|infinity)", re.ASCII | re.IGNORECASE)
#: ``Decimal.adjusted()`` of the largest whole number of OG that still fits: 10**59 OG > MAX_WEI.
_MAX_ADJUSTED = len(str(MAX_WEI // WEI_PER_OG)) - 1
_FLOAT_HINT = 'write og("0.1") or og(Decimal("0.1")) instead of a float'


def _show(value: object) -> str:
    """A bounded description of a refused amount (no 100,000-digit echoes)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a str of {len(value)} characters"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value.bit_length() <= 300 else f"an int of {value.bit_length()} bits"
    if isinstance(value, Decimal):
        text = str(value)
        return text if len(text) <= 40 else "a Decimal with many digits"
    return type(value).__name__


def _parse_text(value: str) -> Decimal:
    """Parse OG text strictly and fast: length and exponent are bounded before ``Decimal`` sees it."""
    if len(value) > _MAX_TEXT:
        raise InvalidAmountError(f"amount text is too long ({len(value)} characters)")
    text = value.strip().replace("_", "")
    if _NON_FINITE_RE.fullmatch(text):
        raise InvalidAmountError(f"amount must be finite, got {value!r}")
    if not _DECIMAL_RE.fullmatch(text):
        raise InvalidAmountError(
            f"not a decimal amount of OG: {_show(value)}", hint='write amounts like "1.5" or "0.01"'
        )
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal parses
        raise InvalidAmountError(f"not a decimal amount of OG: {_show(value)}") from None


def og(value: Decimal | str | int) -> int:
    """Convert an amount in OG to wei, exactly.

    Parsing is bounded: text longer than 256 characters, exponents of more than 6 digits and
    amounts above ``MAX_WEI`` (2**256 - 1 wei) are refused at once, whatever their form.

    Args:
        value: OG as a ``Decimal``, a decimal string (``"1.5"``, ``"0.000000000000000001"``,
            ``"1e3"``) or a whole ``int`` number of OG.

    Returns:
        The amount in wei.

    Raises:
        InvalidAmountError: for floats, bools, non-finite values, text that is not a decimal
            number, negative amounts, amounts above ``MAX_WEI`` or more than 18 decimal places.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidAmountError(
            f"amounts must be int (wei), Decimal or str (OG), not {type(value).__name__}",
            hint=_FLOAT_HINT,
        )
    if isinstance(value, int):
        if value < 0:
            raise InvalidAmountError(f"amount must not be negative, got {_show(value)}")
        if value > MAX_WEI // WEI_PER_OG:
            raise InvalidAmountError(
                f"amount is larger than any on-chain amount (2**256 - 1 wei), got {_show(value)} OG"
            )
        return value * WEI_PER_OG
    if isinstance(value, Decimal):
        dec = value
    elif isinstance(value, str):
        dec = _parse_text(value)
    else:
        raise InvalidAmountError(f"unsupported amount type {type(value).__name__}", hint=_FLOAT_HINT)
    if not dec.is_finite():
        raise InvalidAmountError(f"amount must be finite, got {_show(value)}")
    if dec.is_signed() and not dec.is_zero():
        raise InvalidAmountError(f"amount must not be negative, got {_show(value)}")
    if not dec.is_zero() and dec.adjusted() > _MAX_ADJUSTED:
        raise InvalidAmountError(
            f"amount is larger than any on-chain amount (2**256 - 1 wei), got {_show(value)} OG"
        )
    # Exact arithmetic: the default context keeps 28 digits and would round large amounts. With
    # the magnitude bounded above, an inexact result can only come from sub-wei digits.
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        try:
            wei = abs(dec).scaleb(18)
        except Inexact:
            raise InvalidAmountError(f"amount {_show(value)} has more than 18 decimal places") from None
    if wei != wei.to_integral_value():
        raise InvalidAmountError(f"amount {_show(value)} has more than 18 decimal places")
    out = int(wei)
    if out > MAX_WEI:
        raise InvalidAmountError(
            f"amount is larger than any on-chain amount (2**256 - 1 wei), got {_show(value)} OG"
        )
    return out


def to_wei(amount: Amount) -> int:
    """Normalise a public-edge amount to wei.

    ``int`` is taken as wei; ``Decimal`` and ``str`` are taken as OG (see :func:`og`).

    Raises:
        InvalidAmountError: for floats, bools, negative, malformed or too large (above
            ``MAX_WEI``) amounts.
    """
    if isinstance(amount, bool) or isinstance(amount, float):
        raise InvalidAmountError(
            f"amounts must be int (wei), Decimal or str (OG), not {type(amount).__name__}",
            hint='write og("0.1") or Decimal("0.1") instead of a float',
        )
    if isinstance(amount, int):
        if amount < 0:
            raise InvalidAmountError(f"amount must not be negative, got {_show(amount)} wei")
        if amount > MAX_WEI:
            raise InvalidAmountError(
                f"amount is larger than any on-chain amount (2**256 - 1 wei), got {_show(amount)} wei"
            )
        return amount
    return og(amount)


def format_og(wei: int) -> str:
    """Format wei as a decimal string of OG without trailing zeros (``1500000000000000000`` -> ``"1.5"``).

    Raises:
        InvalidAmountError: ``wei`` is not an ``int``, or its magnitude is above ``MAX_WEI``.
    """
    if isinstance(wei, bool) or not isinstance(wei, int):
        raise InvalidAmountError("format_og takes an int amount of wei")
    if abs(wei) > MAX_WEI:
        raise InvalidAmountError(
            f"format_og: {_show(wei)} wei is larger than any on-chain amount (2**256 - 1 wei)"
        )
    sign = "-" if wei < 0 else ""
    whole, frac = divmod(abs(wei), WEI_PER_OG)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:018d}".rstrip("0")
