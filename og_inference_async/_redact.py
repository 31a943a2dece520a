"""Redaction of secrets from remote text the SDK keeps (plain sync code, no dependencies).

A provider, gateway or node may echo what it received (headers included) in an error body. Any
such text that the SDK keeps (exception messages, ``body`` attributes, hints, log lines) goes
through :func:`redact` first, so a session token never reaches ``str(exc)``, ``repr(exc)``, a
traceback or a log.

Redacted (each replaced by ``[redacted]``):

- the credential after ``Bearer`` / ``Basic`` (any case);
- ``app-sk-...`` session tokens and API keys, and ``sk-...`` style API keys;
- the value of a secret-named field: ``api_key``, ``api-key``, ``apikey``, ``x-api-key``,
  ``access_token``, ``refresh_token``, ``client_secret``, ``secret``, ``password``,
  ``private_key`` (``name=value``, ``name: value``, ``"name": "value"``);
- hex strings of exactly 32 bytes (64 hex digits: private keys, and also hashes) or 65 bytes
  (130 hex digits: signatures), with or without ``0x``.

Redaction never spans a quote or a backslash-escaped quote, so a redacted JSON body stays valid
JSON with the same structure (error codes and amounts are kept). Applying it twice changes nothing.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact", "redact_bytes"]

#: What a secret is replaced with.
REDACTED = "[redacted]"

# token characters: base64 (standard and URL-safe), JWT dots, and a JSON-escaped slash
_TOKEN = r"(?:[A-Za-z0-9._~+/=-]|\\/)+"

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(bearer|basic)(\s+)" + _TOKEN, re.IGNORECASE), r"\1\2" + REDACTED),
    (re.compile(r"\bapp-sk-(?:[A-Za-z0-9+/=_-]|\\/)*"), REDACTED),
    (re.compile(r"\bsk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{16,}"), REDACTED),
    (
        re.compile(
            r"\b((?:x-)?api[_-]?key|access[_-]?token|refresh[_-]?token|client[_-]?secret|secret|password"
            r"|private[_-]?key)"
            r"((?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?)"
            r"(?!bearer\b|basic\b|\[redacted\])"
            r"([^\s\"'\\,;&}\]]+)",
            re.IGNORECASE,
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"\b(?:0x)?(?:[0-9a-fA-F]{130}|[0-9a-fA-F]{64})\b"), REDACTED),
)

#: A cheap pre-check: text without any of these cannot hold a secret the rules find.
_MAYBE = re.compile(r"bearer|basic|sk-|key|token|secret|password|[0-9a-fA-F]{64}", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with bearer tokens, ``app-sk-`` tokens, API keys and 32/65-byte hex values replaced.

    Use it on every piece of remote text that is kept (see the module docstring for the rules).
    """
    if not text or _MAYBE.search(text) is None:
        return text
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def redact_bytes(raw: bytes) -> bytes:
    """:func:`redact` for a raw body (decoded as UTF-8; undecodable bytes become U+FFFD)."""
    if not raw:
        return raw
    text = raw.decode("utf-8", errors="replace")
    cleaned = redact(text)
    return raw if cleaned == text else cleaned.encode("utf-8")
