"""Amounts: OG <-> wei with :class:`~decimal.Decimal`, strict parsing, never floats.

Inside the SDK every amount is an ``int`` in wei (1 OG = 10**18 wei; the TS SDK calls the
unit "neuron"). At the public edges an amount may be given as an ``int`` (wei) or as a
``Decimal`` / ``str`` in OG; floats and bools are refused because they silently lose
precision (the TS SDK turns 0.1 OG into 100000000000000006 neuron).
"""

from __future__ import annotations

from decimal import Decimal, Inexact, InvalidOperation, localcontext

from ._exceptions import InvalidAmountError

__all__ = ["WEI_PER_OG", "Amount", "format_og", "og", "to_wei"]

WEI_PER_OG = 10**18

#: An amount at the public edge: ``int`` wei, or ``Decimal`` / ``str`` OG.
Amount = int | Decimal | str


def og(value: Decimal | str | int) -> int:
    """Convert an amount in OG to wei, exactly.

    Args:
        value: OG as a ``Decimal``, a decimal string (``"1.5"``, ``"0.000000000000000001"``)
            or a whole ``int`` number of OG.

    Returns:
        The amount in wei.

    Raises:
        InvalidAmountError: for floats, bools, non-finite values, text that is not a decimal
            number, negative amounts or more than 18 decimal places.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidAmountError(
            f"amounts must be int (wei), Decimal or str (OG), not {type(value).__name__}",
            hint='write og("0.1") or og(Decimal("0.1")) instead of a float',
        )
    if isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, Decimal):
        dec = value
    elif isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            dec = Decimal(text)
        except InvalidOperation:
            raise InvalidAmountError(f"not a decimal amount of OG: {value!r}") from None
    else:
        raise InvalidAmountError(f"unsupported amount type {type(value).__name__}")
    if not dec.is_finite():
        raise InvalidAmountError(f"amount must be finite, got {value!r}")
    if dec < 0:
        raise InvalidAmountError(f"amount must not be negative, got {value!r}")
    # Exact arithmetic: the default context keeps 28 digits and would round large amounts.
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        try:
            wei = dec.scaleb(18)
        except Inexact:
            raise InvalidAmountError(f"amount {value!r} is too large to represent exactly") from None
    if wei != wei.to_integral_value():
        raise InvalidAmountError(f"amount {value!r} has more than 18 decimal places")
    return int(wei)


def to_wei(amount: Amount) -> int:
    """Normalise a public-edge amount to wei.

    ``int`` is taken as wei; ``Decimal`` and ``str`` are taken as OG (see :func:`og`).

    Raises:
        InvalidAmountError: for floats, bools, negative or malformed amounts.
    """
    if isinstance(amount, bool) or isinstance(amount, float):
        raise InvalidAmountError(
            f"amounts must be int (wei), Decimal or str (OG), not {type(amount).__name__}",
            hint='write og("0.1") or Decimal("0.1") instead of a float',
        )
    if isinstance(amount, int):
        if amount < 0:
            raise InvalidAmountError(f"amount must not be negative, got {amount} wei")
        return amount
    return og(amount)


def format_og(wei: int) -> str:
    """Format wei as a decimal string of OG without trailing zeros (``1500000000000000000`` -> ``"1.5"``)."""
    if isinstance(wei, bool) or not isinstance(wei, int):
        raise InvalidAmountError("format_og takes an int amount of wei")
    sign = "-" if wei < 0 else ""
    whole, frac = divmod(abs(wei), WEI_PER_OG)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:018d}".rstrip("0")
