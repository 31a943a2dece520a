"""The devnet provider's deterministic local "models": chat echo, PNG images, transcription.

Everything here is pure and synchronous so tests can predict every byte: token counts are
whitespace-split word counts, images are small PNGs coloured from a hash of the prompt, and a
transcription is the uploaded file's text (or a description of its bytes).
"""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import wave
import zlib
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from typing import Any

__all__ = [
    "ChatResult",
    "Transcription",
    "UploadedFile",
    "chat_reply",
    "count_tokens",
    "message_text",
    "parse_multipart",
    "png_image",
    "transcribe",
]

#: Largest image edge the devnet draws (bigger requested sizes are clamped).
MAX_IMAGE_EDGE = 512


def count_tokens(text: str) -> int:
    """The devnet tokenizer: the number of whitespace-separated words."""
    return len(text.split())


def message_text(content: Any) -> str:
    """Flatten an OpenAI message ``content`` (a string or a list of parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


@dataclass(frozen=True)
class ChatResult:
    """A chat completion of the devnet model.

    Attributes:
        words: the completion as a list of words (streams send one word per chunk).
        prompt_tokens: words in all messages.
        completion_tokens: ``len(words)``.
        finish_reason: ``"stop"``, or ``"length"`` when ``max_tokens`` cut the answer.
    """

    words: list[str]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str

    @property
    def text(self) -> str:
        """The completion text."""
        return " ".join(self.words)


def chat_reply(messages: list[Any], max_tokens: int | None = None) -> ChatResult:
    """Answer a chat: ``"Echo: <last user message>"``, cut to ``max_tokens`` words.

    Args:
        messages: OpenAI-shaped messages (dicts with ``role`` and ``content``).
        max_tokens: optional cap on completion words.

    Returns:
        The deterministic completion with its token counts.
    """
    prompt_tokens = 0
    last_user = ""
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        text = message_text(msg.get("content"))
        prompt_tokens += count_tokens(text)
        if msg.get("role") == "user":
            last_user = text
    words = ["Echo:", *last_user.split()]
    finish = "stop"
    if max_tokens is not None and max_tokens >= 0 and len(words) > max_tokens:
        words = words[:max_tokens]
        finish = "length"
    return ChatResult(words, prompt_tokens, len(words), finish)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _parse_size(size: Any) -> tuple[int, int]:
    if isinstance(size, str) and "x" in size:
        w_text, _, h_text = size.partition("x")
        if w_text.isdigit() and h_text.isdigit():
            return (min(max(int(w_text), 1), MAX_IMAGE_EDGE), min(max(int(h_text), 1), MAX_IMAGE_EDGE))
    return (64, 64)


def png_image(seed: bytes, size: Any = None) -> bytes:
    """Draw a deterministic RGB PNG: horizontal bands whose colours come from ``sha256(seed)``.

    Args:
        seed: bytes that pick the colours (the prompt, plus the image index).
        size: OpenAI ``"WxH"`` size string; edges are clamped to :data:`MAX_IMAGE_EDGE`,
            anything unparseable gives 64x64.

    Returns:
        The PNG file bytes.
    """
    width, height = _parse_size(size)
    digest = hashlib.sha256(seed).digest()
    colours = [digest[i : i + 3] for i in range(0, 30, 3)]
    rows = []
    for y in range(height):
        colour = colours[(y * len(colours)) // height]
        rows.append(b"\x00" + colour * width)
    raw = b"".join(rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def b64(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart form."""

    filename: str
    content_type: str
    data: bytes


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    """Parse a ``multipart/form-data`` body (stdlib only; no python-multipart needed).

    Args:
        body: the raw request body.
        content_type: the request's ``Content-Type`` header (with its boundary).

    Returns:
        ``(fields, files)``: text fields by name and file parts by name (the first of each name
        wins, except ``image[]``-style repeated names which keep the first too).

    Raises:
        ValueError: the body is not a multipart form.
    """
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValueError("expected a multipart/form-data body")
    msg: Message = BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    )
    if not msg.is_multipart():
        raise ValueError("malformed multipart body")
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}
    for part in msg.get_payload():
        if not isinstance(part, Message):
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files.setdefault(name, UploadedFile(filename, part.get_content_type(), data))
        else:
            fields.setdefault(name, data.decode("utf-8", errors="replace"))
    return fields, files


@dataclass(frozen=True)
class Transcription:
    """A transcription of the devnet model.

    Attributes:
        text: the transcript.
        seconds: the audio duration (from a WAV header, else bytes / 32000, i.e. 16 kHz 16-bit mono).
    """

    text: str
    seconds: float


def transcribe(audio: bytes) -> Transcription:
    """Transcribe an upload deterministically.

    A WAV file gives its real duration and a transcript naming it; a UTF-8 text upload is
    "transcribed" to its own text (handy in tests); other bytes give a transcript naming
    their size and hash.
    """
    seconds = len(audio) / 32000
    if audio[:4] == b"RIFF" and audio[8:12] == b"WAVE":
        try:
            with wave.open(io.BytesIO(audio)) as wav:
                seconds = wav.getnframes() / float(wav.getframerate() or 1)
            return Transcription(f"devnet transcript of {seconds:.2f} seconds of audio", seconds)
        except (wave.Error, EOFError):
            pass
    try:
        text = audio.decode("utf-8")
        if text.strip() and all(ch.isprintable() or ch.isspace() for ch in text):
            return Transcription(" ".join(text.split()), seconds)
    except UnicodeDecodeError:
        pass
    return Transcription(
        f"devnet transcript of {len(audio)} bytes {hashlib.sha256(audio).hexdigest()[:8]}", seconds
    )
