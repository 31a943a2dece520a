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


def need_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` when it is an ``int`` (a ``bool`` is not) within ``[low, high]`` (``None``: unbounded)."""
    if not _is_number(value, (int,)):
        raise ConfigError(f"{name} must be an int, got {_quoted(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ConfigError(f"{name} must be within {span}, got {_quoted(value)}")
    return int(value)


def need_seconds(name: str, value: Any, *, zero_ok: bool = False) -> float:
    """``value`` as finite seconds: above 0, or 0 and above with ``zero_ok``."""
    good = (
        _is_number(value, (int, float)) and math.isfinite(value) and (value > 0 or (zero_ok and value == 0))
    )
    if not good:
        floor = "0 or more" if zero_ok else "more than 0"
        raise ConfigError(f"{name} must be a finite number of seconds, {floor}, got {_quoted(value)}")
    return float(value)


def need_probability(name: str, value: Any) -> float:
    """``value`` as a probability within ``[0, 1]``."""
    if not (_is_number(value, (int, float)) and 0 <= value <= 1):
        raise ConfigError(f"{name} must be a probability within [0, 1], got {_quoted(value)}")
    return float(value)


def need_bool(name: str, value: Any) -> bool:
    """``value`` when it is ``True`` or ``False`` (not ``0``/``1``)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {_quoted(value)}")
    return value


def need_text(name: str, value: Any) -> str:
    """``value`` when it is a non-blank ``str``."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty str, got {_quoted(value)}")
    return value
