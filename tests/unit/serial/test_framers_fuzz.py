"""Every framer, fed any bytes in any chunking: never raises, never yields a frame that was
not sent, and finds every intact frame again after garbage between frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.serial import astm, datex, medibus
from adapters.serial import intellivue as iv


def _payload_of(ev: Any) -> bytes | None:
    if isinstance(ev, astm.Frame | iv.Frame | datex.Frame | medibus.Message):
        return ev.raw
    return None


FRAMERS: dict[str, tuple[Callable[[], Any], Callable[[bytes], bytes], bytes]] = {
    # name: (framer factory, encode(payload) -> wire, bytes that never start a frame)
    "astm": (
        astm.Framer,
        lambda p: astm.encode_frame(1, bytes(b % 0x5E + 0x20 for b in p)[:200], True),
        b"\x02\x05\x06\x15\x04",
    ),
    "intellivue": (iv.Framer, iv.encode_frame, bytes([iv.BOF])),
    "datex": (
        datex.Framer,
        lambda p: datex.encode_frame(datex.encode_header(len(p), 9, [], 0) + p),
        bytes([datex.FLAG]),
    ),
    "medibus": (
        medibus.Framer,
        lambda p: medibus.encode_response(0x24, bytes(b % 0x5E + 0x20 for b in p)),
        b"\x1b\x01",
    ),
}


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(FRAMERS)), st.binary(max_size=600), st.lists(st.integers(0, 600)))
def test_random_bytes_never_crash_a_framer(name: str, data: bytes, cuts: list[int]) -> None:
    factory, _, _ = FRAMERS[name]
    framer = factory()
    for chunk in _chunks(data, cuts):
        framer.feed(chunk)
    framer.expire()


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(FRAMERS)),
    st.lists(st.binary(min_size=1, max_size=120), min_size=1, max_size=6),
    st.lists(st.binary(max_size=30), min_size=6, max_size=6),
    st.lists(st.integers(0, 2000), max_size=8),
)
def test_frames_survive_garbage_between_them(
    name: str, payloads: list[bytes], garbage: list[bytes], cuts: list[int]
) -> None:
    factory, encode, openers = FRAMERS[name]
    frames = [encode(p) for p in payloads]
    # Garbage is anything that does not open a frame (as on a real line between frames).
    clean = [bytes(b for b in g if b not in openers and b not in (0x0D, 0x7E)) for g in garbage]
    wire = b"".join(g + f for g, f in zip(clean, frames, strict=False))
    framer = factory()
    got = []
    for chunk in _chunks(wire, cuts):
        got += [p for p in map(_payload_of, framer.feed(chunk)) if p is not None]
    assert got == frames
