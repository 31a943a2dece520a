"""Worst-case fees of requests before they are sent (plain sync code).

The bounds follow the fee rules of PROTOCOL 4.6 with the on-chain prices:

* chat: input tokens are at most the UTF-8 bytes of the JSON request (a byte-level tokenizer
  never makes more tokens than bytes) plus :data:`TEMPLATE_TOKENS` for the chat template; output
  tokens at most ``max_completion_tokens`` / ``max_tokens``. Without an output cap there is no
  bound (unless the output price is 0).
* images: ``n`` images at the input price (exact).
* speech-to-text: the audio's duration (from a WAV header, else the upload's size at
  :data:`MIN_AUDIO_BYTES_PER_SECOND`), priced by the duration rule or by the token rule at
  :data:`AUDIO_TOKENS_PER_SECOND` in and :data:`TEXT_TOKENS_PER_SECOND` out, whichever is more.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Mapping
from typing import Any

from .._exceptions import ConfigError
from ..types.inference import FeeBreakdown
from ._fees import priced

__all__ = [
    "AUDIO_TOKENS_PER_SECOND",
    "MIN_AUDIO_BYTES_PER_SECOND",
    "TEMPLATE_TOKENS",
    "TEXT_TOKENS_PER_SECOND",
    "audio_bound",
    "audio_seconds",
    "chat_bound",
    "image_bound",
    "output_cap",
]

#: Tokens a chat template may add around the messages.
TEMPLATE_TOKENS = 64
#: The lowest bit rate assumed for audio whose duration cannot be read (4 kB/s = 32 kbit/s).
MIN_AUDIO_BYTES_PER_SECOND = 4000
#: Audio tokens per second assumed under token billing (speech encoders use 25 to 50).
AUDIO_TOKENS_PER_SECOND = 50
#: Transcript tokens per second assumed under token billing (speech is under 4 words a second).
TEXT_TOKENS_PER_SECOND = 10

_OUTPUT_KEYS = ("max_completion_tokens", "max_tokens")


def output_cap(params: Mapping[str, Any]) -> int | None:
    """The request's output token cap (``max_completion_tokens``, else ``max_tokens``), if any.

    Raises:
        ConfigError: the cap is not a non-negative int.
    """
    for key in _OUTPUT_KEYS:
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{key} must be a non-negative int")
        return value
    return None


def chat_bound(body: bytes, max_output: int | None, input_price: int, output_price: int) -> FeeBreakdown:
    """The worst-case fee of a chat whose JSON request is ``body``.

    Raises:
        ConfigError: the output is unbounded (no ``max_tokens``) and the output price is not 0.
    """
    if max_output is None:
        if output_price:
            raise ConfigError(
                "the fee of a chat without max_tokens has no upper bound",
                hint="pass max_tokens (or max_completion_tokens)",
            )
        max_output = 0
    inputs = len(body) + TEMPLATE_TOKENS
    return priced(inputs, max_output, input_price, output_price)


def image_bound(n: int, input_price: int) -> FeeBreakdown:
    """The fee of ``n`` images (exact: images are billed per image at the input price)."""
    return priced(n, 0, input_price, 0)


def audio_seconds(audio: bytes | bytearray | memoryview) -> int:
    """Whole seconds the audio lasts at most: a WAV header's duration, else the size at 32 kbit/s."""
    if bytes(audio[:4]) == b"RIFF" and bytes(audio[8:12]) == b"WAVE":
        try:
            with wave.open(io.BytesIO(audio)) as wav:
                rate: int = wav.getframerate()
                frames: int = wav.getnframes()
                if rate > 0:
                    return max(-(-frames // rate), 1)
        except (wave.Error, EOFError):
            pass
    return max(-(-len(audio) // MIN_AUDIO_BYTES_PER_SECOND), 1)


def audio_bound(audio: bytes | bytearray | memoryview, input_price: int, output_price: int) -> FeeBreakdown:
    """The worst-case fee of transcribing ``audio`` under either speech-to-text billing mode."""
    seconds = audio_seconds(audio)
    by_tokens = priced(
        seconds * AUDIO_TOKENS_PER_SECOND, seconds * TEXT_TOKENS_PER_SECOND, input_price, output_price
    )
    by_duration = priced(seconds, 0, input_price, output_price)
    return by_tokens if by_tokens.fee >= by_duration.fee else by_duration
