"""An incremental Server-Sent Events parser (plain sync code; bytes in, events out).

Feed it network chunks as they arrive: lines split across chunks (even inside a multi-byte
UTF-8 character or between ``\\r`` and ``\\n``) are reassembled. Events end at a blank line as the
SSE standard says; as a leniency for providers that write ``data: {...}\\n`` without the blank
line, a new ``data:`` line that follows a complete JSON value (or ``[DONE]``) starts a new event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .._exceptions import ProviderResponseError

__all__ = ["DONE", "SSEEvent", "SSEParser"]

#: The data of the OpenAI end-of-stream event.
DONE = "[DONE]"

#: A line (or an unterminated tail) longer than this is refused: a runaway or hostile stream.
MAX_LINE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One event: its type (``"message"`` unless an ``event:`` field said otherwise), data and id."""

    data: str
    event: str = "message"
    id: str | None = None


def _complete(data: str) -> bool:
    if data == DONE:
        return True
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


class SSEParser:
    """Turns raw SSE bytes into :class:`SSEEvent` objects, chunk by chunk.

    Args:
        max_line_bytes: the longest line accepted.
    """

    def __init__(self, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._skip_lf = False  # the previous chunk ended with "\r": a leading "\n" belongs to it
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._last_id: str | None = None
        self._max = max_line_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse a chunk and return the events it completed (possibly none).

        Raises:
            ProviderResponseError: a line exceeded ``max_line_bytes``.
        """
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf
        buf += chunk
        out: list[SSEEvent] = []
        pos = 0
        end = len(buf)
        while pos < end:
            lf = buf.find(b"\n", pos)
            cr = buf.find(b"\r", pos, lf if lf != -1 else end)
            if cr != -1:
                line = bytes(buf[pos:cr])
                if cr + 1 < end:
                    pos = cr + 2 if buf[cr + 1] == 0x0A else cr + 1
                else:
                    pos = cr + 1
                    self._skip_lf = True
            elif lf != -1:
                line = bytes(buf[pos:lf])
                pos = lf + 1
            else:
                break
            self._line(line, out)
        del buf[:pos]
        if len(buf) > self._max:
            raise ProviderResponseError(f"an SSE line is longer than {self._max} bytes")
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream: parse an unterminated last line and flush a pending event."""
        out: list[SSEEvent] = []
        if self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            self._line(line, out)
        self._dispatch(out)
        return out

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        if not raw:
            self._dispatch(out)
            return
        if raw[:1] == b":":  # comment / keep-alive
            return
        line = raw.decode("utf-8", errors="replace")
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            if self._data and _complete("\n".join(self._data)):
                self._dispatch(out)  # leniency: "data: {...}\n" events with no blank line between
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        # "retry" and unknown fields are ignored

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if self._id is not None:
            self._last_id = self._id
            self._id = None
        if self._data:
            out.append(SSEEvent("\n".join(self._data), self._event or "message", self._last_id))
        self._data = []
        self._event = ""
