"""The MLLP codec: partial reads, many frames per read, errors, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.mllp.framing import (
    HEAD_BYTES,
    Frame,
    FramingError,
    FramingProblem,
    MllpDecoder,
    encode_frame,
)
from tests.unit.hl7v2.corpus import ADT_A01, ORU_LAB

payloads = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))


def feed_in_chunks(decoder: MllpDecoder, stream: bytes, cuts: list[int]) -> list[object]:
    events: list[object] = []
    start = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        events += decoder.feed(stream[start:cut])
        start = cut
    return events


@given(st.lists(payloads, max_size=6), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_split_of_a_stream_gives_back_the_frames(
    messages: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    events = feed_in_chunks(MllpDecoder(), stream, cuts)
    assert events == [Frame(m) for m in messages]


def test_byte_by_byte_and_whitespace_between_frames() -> None:
    decoder = MllpDecoder()
    stream = encode_frame(ADT_A01) + b"\r\n" + encode_frame(ORU_LAB)
    events = [e for b in stream for e in decoder.feed(bytes([b]))]
    assert events == [Frame(ADT_A01), Frame(ORU_LAB)]
    assert decoder.close() == []


def test_junk_is_reported_once_per_run() -> None:
    decoder = MllpDecoder()
    events = decoder.feed(b"GET / HTTP/1.1\r\n") + decoder.feed(b"Host: x\r\n")
    assert [e.problem for e in events if isinstance(e, FramingError)] == [FramingProblem.JUNK]
    assert decoder.feed(encode_frame(b"MSH|x")) == [Frame(b"MSH|x")]


def test_restart_and_bad_end() -> None:
    decoder = MllpDecoder()
    events = decoder.feed(b"\x0bMSH|first\x0bMSH|second\x1c\x0d")
    assert isinstance(events[0], FramingError) and events[0].problem is FramingProblem.RESTARTED
    assert events[0].head == b"MSH|first"
    assert events[1] == Frame(b"MSH|second")
    events = decoder.feed(b"\x0bMSH|x\x1cZ") + decoder.feed(encode_frame(b"ok"))
    assert isinstance(events[0], FramingError) and events[0].problem is FramingProblem.BAD_END
    assert events[-1] == Frame(b"ok")


def test_end_block_split_across_reads() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\x0bMSH|a\x1c") == []
    assert decoder.feed(b"\x0d") == [Frame(b"MSH|a")]


def test_oversize_frames_are_skipped_with_bounded_memory() -> None:
    decoder = MllpDecoder(max_frame=1000)
    events: list[object] = decoder.feed(b"\x0b" + ADT_A01)
    chunk = b"x" * 100_000
    for _ in range(100):  # 10 MB
        events += decoder.feed(chunk)
        assert decoder.buffered <= HEAD_BYTES
    events += decoder.feed(b"\x1c\x0d" + encode_frame(b"next"))
    error = events[0]
    assert isinstance(error, FramingError) and error.problem is FramingProblem.OVERSIZE
    assert error.size == len(ADT_A01) + 10_000_000
    assert error.head.startswith(ADT_A01[:100])
    assert events[1] == Frame(b"next")


def test_truncated_at_close() -> None:
    decoder = MllpDecoder()
    decoder.feed(b"\x0bMSH|half")
    (event,) = decoder.close()
    assert isinstance(event, FramingError) and event.problem is FramingProblem.TRUNCATED


def test_encode_refuses_framing_bytes() -> None:
    with pytest.raises(ValueError):
        encode_frame(b"a\x1cb")
