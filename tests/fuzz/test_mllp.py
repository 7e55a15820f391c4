"""The MLLP framing decoder, fed any bytes in any chunking: it never raises, its buffer stays
bounded, intact frames around broken ones come back whole, and a stream cut inside a frame
is reported as truncated at close."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from devices.mllp.framing import (
    HEAD_BYTES,
    Frame,
    FramingError,
    FramingProblem,
    MllpDecoder,
    encode_frame,
)
from tests.fuzz.support import budget, time_limit
from tests.unit.hl7v2 import corpus

PCD = encode_frame(corpus.ORU_PCD)
# Known bad streams: truncated frame, a start inside a frame, an end block without CR, junk,
# a frame over the limit, empty frames, a lone end block.
BAD_STREAMS = [
    PCD[:-1],
    PCD[:-2],
    PCD[: len(PCD) // 2],
    b"\x0bMSH|\x0b" + PCD[1:],
    PCD[:-1] + b"X" + PCD,
    b"junk\r\n" + PCD + b"more junk",
    b"\x0b" + b"A" * 5000 + b"\x1c\x0d" + PCD,
    b"\x0b\x1c\x0d\x0b\x1c\x0d",
    b"\x1c\x0d" + PCD,
    b"\x0b" * 100 + b"\x1c" * 100,
]


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


def _decode(data: bytes, cuts: list[int], max_frame: int) -> list[Frame | FramingError]:
    decoder = MllpDecoder(max_frame=max_frame)
    events: list[Frame | FramingError] = []
    with time_limit():
        for chunk in _chunks(data, cuts):
            events += decoder.feed(chunk)
            assert decoder.buffered <= max(max_frame, HEAD_BYTES)
        events += decoder.close()
    return events


@budget(400)
@given(
    st.one_of(st.binary(max_size=3000), st.sampled_from(BAD_STREAMS)),
    st.lists(st.integers(0, 6000), max_size=12),
    st.integers(1, 4096),
)
@example(b"\x0b" + b"A" * 10_000, [1, 2, 3], 100)
@example(PCD, [], 16)
def test_any_bytes_in_any_chunking_never_raise_and_stay_bounded(
    data: bytes, cuts: list[int], max_frame: int
) -> None:
    events = _decode(data, cuts, max_frame)
    for event in events:
        if isinstance(event, Frame):
            assert len(event.payload) <= max_frame
            assert b"\x0b" not in event.payload and b"\x1c" not in event.payload
        else:
            assert len(event.head) <= HEAD_BYTES


clean = st.binary(max_size=400).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))
junk = st.binary(max_size=40).map(lambda b: b.replace(b"\x0b", b""))


@budget(300)
@given(
    st.lists(st.tuples(junk, clean), min_size=1, max_size=6),
    st.sampled_from(BAD_STREAMS),
    st.lists(st.integers(0, 6000), max_size=12),
)
def test_intact_frames_come_back_around_broken_ones(
    frames: list[tuple[bytes, bytes]], broken: bytes, cuts: list[int]
) -> None:
    """Junk before each frame (no start block in it) and a broken stream at the end:
    every intact frame is decoded whole and in order."""
    stream = b"".join(j + encode_frame(p) for j, p in frames) + broken
    events = _decode(stream, cuts, 1 << 20)
    got = [e.payload for e in events if isinstance(e, Frame)]
    wanted = [p for _, p in frames]
    assert got[: len(wanted)] == wanted


@budget(100)
@given(clean, st.integers(1, 400), st.lists(st.integers(0, 600), max_size=6))
def test_a_stream_cut_inside_a_frame_is_reported_truncated(
    payload: bytes, cut: int, cuts: list[int]
) -> None:
    wire = encode_frame(payload)
    # the start block and at least one byte, not all of it (a lone start block before the
    # close is nothing to answer, and the decoder reports nothing)
    stream = wire[: 2 + cut % (len(wire) - 2)]
    events = _decode(stream, cuts, 1 << 20)
    assert not [e for e in events if isinstance(e, Frame)]
    assert events and isinstance(events[-1], FramingError)
    assert events[-1].problem is FramingProblem.TRUNCATED
