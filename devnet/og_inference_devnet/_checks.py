"""Argument checks of the devnet's settings (providers, fault knobs): a wrong value is a ``ConfigError``.

The messages name the setting and the range, and quote a value only when it is short.
"""

from __future__ import annotations

import math
from typing import Any

from og_inference_async import ConfigError

__all__ = ["MAX_UINT256", "need_bool", "need_int", "need_probability", "need_seconds", "need_text"]

#: The largest value a contract's uint256 field holds.
MAX_UINT256 = 2**256 - 1


def _quoted(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text}" if len(text) <= 40 else f"a long {type(value).__name__}"


def _is_number(value: Any, kinds: tuple[type, ...]) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool)


def _require(ok: bool, name: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {what}, got {_quoted(value)}")


def need_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` when it is an ``int`` (a ``bool`` is not) within ``[low, high]`` (``None``: unbounded)."""
    _require(_is_number(value, (int,)), name, "an int", value)
    if high is None:
        span = "any int" if low is None else f"{low} or more"
    else:
        span = f"within [{'-inf' if low is None else low}, {'2**256 - 1' if high == MAX_UINT256 else high}]"
    _require((low is None or value >= low) and (high is None or value <= high), name, span, value)
    return int(value)


def need_seconds(name: str, value: Any, *, zero_ok: bool = False) -> float:
    """``value`` as finite seconds: above 0, or 0 and above with ``zero_ok``."""
    good = (
        _is_number(value, (int, float)) and math.isfinite(value) and (value > 0 or (zero_ok and value == 0))
    )
    _require(good, name, f"a finite number of seconds, {'0 or more' if zero_ok else 'more than 0'}", value)
    return float(value)


def need_probability(name: str, value: Any) -> float:
    """``value`` as a probability within ``[0, 1]``."""
    _require(_is_number(value, (int, float)) and 0 <= value <= 1, name, "a probability within [0, 1]", value)
    return float(value)


def need_bool(name: str, value: Any) -> bool:
    """``value`` when it is ``True`` or ``False`` (not ``0``/``1``)."""
    _require(isinstance(value, bool), name, "True or False", value)
    return bool(value)


def need_text(name: str, value: Any) -> str:
    """``value`` when it is a non-blank ``str``."""
    _require(isinstance(value, str) and bool(value.strip()), name, "a non-empty str", value)
    return str(value)
