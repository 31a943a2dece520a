"""Argument checks shared by the policies and the public methods (plain functions, no I/O).

Each check raises :class:`~og_inference_async.ConfigError` (or the subclass given) with a
message that names the argument, what was expected, and the type that was given. Values are
echoed only when they are short, so a wrong argument never floods a log (or carries a secret
passed in the wrong place).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._exceptions import ConfigError

__all__ = [
    "MAX_UINT256",
    "check_bool",
    "check_bytes",
    "check_callable",
    "check_int",
    "check_messages",
    "check_optional_str",
    "check_seconds",
    "check_str",
    "is_sequence_of",
    "shown",
]

#: The largest uint256: nothing the contracts hold or count can be larger.
MAX_UINT256 = 2**256 - 1


def shown(value: Any, limit: int = 60) -> str:
    """A short, safe description of ``value`` for an error message: its type, and its repr when short."""
    kind = type(value).__name__
    if isinstance(value, (bool, type(None))):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 200 else f"an int of {value.bit_length()} bits"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return f"str {value!r}" if len(value) <= limit else f"a str of {len(value)} characters"
    return f"a {kind}"


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    error: type[ConfigError] = ConfigError,
) -> int:
    """``value`` as an ``int`` (not a ``bool``, ``float`` or ``str``) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an int, got {shown(value)}")
    if minimum is not None and value < minimum:
        raise error(f"{name} must be at least {minimum}, got {shown(value)}")
    if maximum is not None and value > maximum:
        raise error(f"{name} must be at most {maximum}, got {shown(value)}")
    return value


def check_seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Finite seconds (``int`` or ``float``, not ``bool``): ``> 0``, or ``>= 0`` with ``allow_zero``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds (int or float), got {shown(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ConfigError(f"{name} must be {bound} seconds, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` when it is a real ``bool`` (not ``0``/``1``/``"yes"``)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {shown(value)}")
    return value


def check_str(name: str, value: Any, *, allow_empty: bool = False, max_chars: int | None = None) -> str:
    """``value`` when it is a ``str`` (non-blank unless ``allow_empty``)."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a str, got {shown(value)}")
    if not allow_empty and not value.strip():
        raise ConfigError(f"{name} must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise ConfigError(f"{name} is longer than {max_chars} characters")
    return value


def check_optional_str(name: str, value: Any) -> str | None:
    """``None``, or a non-blank ``str``."""
    return None if value is None else check_str(name, value)


def check_callable(name: str, value: Any) -> None:
    """``None`` or something callable."""
    if value is not None and not callable(value):
        raise ConfigError(f"{name} must be a function (or None), got {shown(value)}")


def check_bytes(name: str, value: Any, *, allow_empty: bool = True) -> bytes | bytearray | memoryview:
    """A bytes-like object (``bytes``, ``bytearray``, ``memoryview``)."""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ConfigError(f"{name} must be bytes, got {shown(value)}")
    if not allow_empty and len(value) == 0:
        raise ConfigError(f"{name} is empty")
    return value


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI chat messages: a non-empty list/tuple of mappings, each with a non-empty ``role`` string.

    Returns:
        A list of plain dicts (a copy: later changes by the caller do not alter what was checked).
    """
    if isinstance(messages, (str, bytes, bytearray, Mapping)) or not isinstance(messages, Sequence):
        raise ConfigError(
            f"messages must be a list of message dicts, got {shown(messages)}",
            hint='write messages=[{"role": "user", "content": "hello"}]',
        )
    if not messages:
        raise ConfigError("messages must not be empty")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ConfigError(
                f"messages[{i}] must be a dict with 'role' and 'content', got {shown(message)}",
                hint='write messages=[{"role": "user", "content": "hello"}]',
            )
        role = message.get("role")
        if not isinstance(role, str) or not role.strip():
            raise ConfigError(f"messages[{i}] has no 'role' (a non-empty str such as 'user')")
        out.append(dict(message))
    return out


def is_sequence_of(value: Any, kind: type | tuple[type, ...]) -> bool:
    """Whether ``value`` is a list/tuple whose items are all ``kind`` (bools never count as ints)."""
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, (list, tuple)):
        return False
    return all(isinstance(item, kind) and not isinstance(item, bool) for item in value)
