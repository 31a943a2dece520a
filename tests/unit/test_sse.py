"""The incremental SSE parser: split chunks, line endings, multi-line data, [DONE], leniency, limits."""

from __future__ import annotations

import json

import pytest

from og_inference_async import ProviderResponseError
from og_inference_async.inference._sse import DONE, SSEEvent, SSEParser

STREAM = (
    b": keep-alive\n\n"
    b'data: {"id":"a","choices":[{"delta":{"content":"h\xc3\xa9llo"}}]}\n\n'
    b"event: note\nid: 7\ndata: line one\ndata: line two\n\n"
    b'data: {"usage":{"prompt_tokens":1}}\n\n'
    b"data: [DONE]\n\n"
)


def parse_all(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


def expected() -> list[SSEEvent]:
    return [
        SSEEvent('{"id":"a","choices":[{"delta":{"content":"héllo"}}]}'),
        SSEEvent("line one\nline two", "note", "7"),
        SSEEvent('{"usage":{"prompt_tokens":1}}', "message", "7"),
        SSEEvent(DONE, "message", "7"),
    ]


def test_whole_stream() -> None:
    """One chunk: comments skipped, fields parsed, multi-line data joined, ids kept."""
    assert parse_all([STREAM]) == expected()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_every_split(size: int) -> None:
    """Any chunking (even inside a UTF-8 character) gives the same events."""
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert parse_all(pieces) == expected()


@pytest.mark.parametrize("cut", range(1, 20))
def test_crlf_split_between_cr_and_lf(cut: int) -> None:
    """CRLF line endings, split anywhere (including between CR and LF), parse the same."""
    data = STREAM.replace(b"\n", b"\r\n")
    assert parse_all([data[:cut], data[cut:]]) == expected()


def test_bare_cr_line_endings() -> None:
    """Lone CR also ends lines."""
    assert parse_all([STREAM.replace(b"\n", b"\r")]) == expected()


def test_events_come_out_as_soon_as_complete() -> None:
    """feed returns an event only once its blank line arrived."""
    parser = SSEParser()
    assert parser.feed(b"data: {}") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == [SSEEvent("{}")]


def test_lenient_data_lines_without_blank_lines() -> None:
    """'data: {...}\\n' lines with no blank line between become separate events."""
    data = b'data: {"a":1}\ndata: {"b":2}\ndata: [DONE]\n'
    events = parse_all([data])
    assert [json.loads(e.data) for e in events[:2]] == [{"a": 1}, {"b": 2}]
    assert events[2].data == DONE


def test_close_flushes_an_unterminated_event() -> None:
    """A last event without its blank line (or newline) is delivered by close()."""
    parser = SSEParser()
    assert parser.feed(b"data: tail") == []
    assert parser.close() == [SSEEvent("tail")]


def test_data_without_space_and_unknown_fields() -> None:
    """'data:x' (no space) works; retry and unknown fields are ignored; empty events are dropped."""
    events = parse_all([b"retry: 10\nfoo: bar\n\ndata:x\n\n"])
    assert events == [SSEEvent("x")]


def test_runaway_line_is_refused() -> None:
    """A line longer than the limit raises ProviderResponseError."""
    parser = SSEParser(max_line_bytes=16)
    with pytest.raises(ProviderResponseError):
        parser.feed(b"data: " + b"x" * 32)
