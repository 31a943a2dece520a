"""File uploads of the multipart requests (image edits, transcriptions): loading, form fields, encoding.

A path is read in a worker thread; uploads of ``OFFLOAD_BYTES`` or more are encoded and hashed
in a worker thread, so big audio or images never stall the event loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import anyio

from .._exceptions import ConfigError
from .._http import encode_multipart
from .._validate import check_bytes, check_str, shown
from ._verify import sha256_hex
from .verification import OFFLOAD_BYTES

__all__ = ["form_fields", "load_upload", "multipart_upload"]


async def load_upload(
    name: str, value: Any, filename: str | None, default_name: str
) -> tuple[bytes | bytearray | memoryview, str]:
    """An upload given as bytes or as the path of a file: ``(content, file name)``.

    A path is checked and read in a worker thread (``anyio.Path``), never on the event loop.

    Raises:
        ConfigError: not bytes and not the path of an existing, non-empty file.
    """
    if filename is not None:
        check_str("filename", filename, max_chars=255)
        if any(c in filename for c in '\r\n"\0'):
            raise ConfigError("filename must not contain quotes, NUL or line breaks")
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = check_bytes(name, value, allow_empty=False)
        return data, filename or default_name
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(
            f"{name} must be bytes or the path of a file, got {shown(value)}",
            hint=f"pass the {name} file's content (bytes) or its path",
        )
    try:
        path = anyio.Path(value)
        text = str(path)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} is not a valid file path") from None
    if not text or "\0" in text:
        raise ConfigError(f"{name} is not a valid file path")
    try:
        is_file = await path.is_file()
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        raise ConfigError(
            f"{name} must be bytes or the path of an existing file; {shown(text)} is not a file",
            hint=f"pass the {name} file's content (bytes) or a path that exists",
        )
    try:
        content = await path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {name} file {shown(text)}: {exc.strerror or type(exc).__name__}"
        ) from None
    if not content:
        raise ConfigError(f"{name} file {shown(text)} is empty")
    return content, filename or os.path.basename(text) or default_name


def _encode_upload(
    fields: Mapping[str, str], name: str, filename: str, data: bytes | bytearray | memoryview, mime: str
) -> tuple[bytes, str, str]:
    body, ctype = encode_multipart(fields, {name: (filename, bytes(data), mime)})
    return body, ctype, sha256_hex(body)


async def multipart_upload(
    fields: Mapping[str, str], name: str, filename: str, data: bytes | bytearray | memoryview, mime: str
) -> tuple[bytes, str, str]:
    """Multipart-encode one file upload and hash the body: ``(body, content type, sha256 hex)``.

    Uploads of ``OFFLOAD_BYTES`` or more are encoded and hashed in a worker thread.
    """
    if len(data) >= OFFLOAD_BYTES:
        return await anyio.to_thread.run_sync(_encode_upload, fields, name, filename, data, mime)
    return _encode_upload(fields, name, filename, data, mime)


def form_fields(params: Mapping[str, Any]) -> dict[str, str]:
    """Multipart form fields from request parameters (``None`` left out).

    Raises:
        ConfigError: a value that cannot be written as a form field (not JSON, NaN, ...).
    """
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str):
            out[key] = value
        elif isinstance(value, int):
            out[key] = str(value)
        else:
            try:
                out[key] = json.dumps(value, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError, RecursionError):
                raise ConfigError(f"form field {key!r} cannot be sent: {shown(value)}") from None
    return out
