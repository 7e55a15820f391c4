"""Is a received data set complete? A pure walk over its element framing (PS3.5 7.1).

pydicom reads a data set whose last value is cut short without complaint (it returns the
bytes there are), so a truncated file such as pydicom's ``MR_truncated.dcm`` would be
stored and acknowledged as if whole. This walk checks only lengths: every element's value
fits in the buffer, every undefined-length sequence or encapsulated pixel data ends with
its delimiter, nesting stays within a sane depth. It never builds values, so it costs a
small fraction of a parse, and it raises instead of guessing.

Deflated transfer syntaxes are inflated first (bounded) and the zlib stream must end.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from caregraph.errors import MappingError

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})

# Explicit VRs with a reserved 2 bytes and a 4-byte length (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
MAX_DEPTH = 32


class IncompleteDataset(MappingError):
    """The data set's framing says more bytes should follow than were received."""


@dataclass(frozen=True, slots=True)
class Scan:
    """What one walk over a complete data set learned.

    ``data`` is what was walked (inflated, for a deflated transfer syntax), in
    ``syntax``; ``header_end`` is where the top-level pixel data starts (or the end), so
    ``data[:header_end]`` is the header as received; ``values`` holds the raw value bytes
    of the top-level elements asked for; ``spans`` the (tag, start, end) of each top-level
    element of the header.
    """

    data: bytes | bytearray
    syntax: str
    header_end: int
    values: dict[int, bytes]
    spans: list[tuple[int, int, int]]

    def header(self, limit: int, keep: frozenset[int] = frozenset()) -> tuple[bytes, list[int]]:
        """The header bytes, at most ``limit`` long if it can be done without dropping a
        tag in ``keep``: if the whole header is longer, its largest other top-level
        elements are left out (returned as the second value). Enhanced multi-frame
        objects carry megabytes of per-frame functional groups that no consumer of the
        header needs, and a Kafka message has a size limit."""
        if self.header_end <= limit:
            return bytes(self.data[: self.header_end]), []
        total = sum(end - start for _, start, end in self.spans)
        dropped: set[int] = set()
        for tag, start, end in sorted(self.spans, key=lambda s: s[2] - s[1], reverse=True):
            if total <= limit:
                break
            if tag in keep:
                continue
            dropped.add(tag)
            total -= end - start
        kept = b"".join(
            bytes(self.data[start:end]) for tag, start, end in self.spans if tag not in dropped
        )
        return kept, sorted(dropped)


def scan(
    data: bytes | bytearray,
    transfer_syntax: str,
    *,
    wanted: frozenset[int] = frozenset(),
    max_inflated: int = 1 << 30,
) -> Scan:
    """Walk ``data`` (a data set, no file meta); ``IncompleteDataset`` unless it is whole.

    A deflated data set is inflated (refused beyond ``max_inflated`` bytes: a few KB of
    zlib can claim gigabytes) and its content walked as explicit VR little endian.
    """
    if transfer_syntax in DEFLATED:
        data = _inflate(data, max_inflated)
        transfer_syntax = EXPLICIT_VR_LITTLE_ENDIAN
    explicit = transfer_syntax != IMPLICIT_VR_LITTLE_ENDIAN
    little = transfer_syntax != EXPLICIT_VR_BIG_ENDIAN
    if explicit and len(data) >= 6 and not _looks_like_vr(data[4:6]):
        # Some writers encode implicit VR under an explicit transfer syntax; pydicom reads
        # such data sets (it checks the first element the same way), so they are walked
        # as what they are rather than refused as broken.
        explicit = False
    walker = _Walker(data, explicit, little, wanted)
    walker.elements(0, len(data), 0, stop_at=None)
    if not explicit:
        syntax = IMPLICIT_VR_LITTLE_ENDIAN
    else:
        syntax = EXPLICIT_VR_LITTLE_ENDIAN if little else EXPLICIT_VR_BIG_ENDIAN
    end = walker.pixel_at if walker.pixel_at is not None else len(data)
    return Scan(data, syntax, end, walker.values, walker.spans)


def check_complete(
    data: bytes | bytearray, transfer_syntax: str, *, max_inflated: int = 1 << 30
) -> None:
    """Raise ``IncompleteDataset`` unless ``data`` (a data set, no file meta) is whole."""
    scan(data, transfer_syntax, max_inflated=max_inflated)


def _looks_like_vr(two: bytes | bytearray) -> bool:
    return all(0x41 <= b <= 0x5A for b in two)


def _inflate(data: bytes | bytearray, limit: int) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    try:
        out += inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise IncompleteDataset(f"deflated data set is corrupt: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise IncompleteDataset(f"deflated data set inflates beyond {limit} bytes")
    if not inflater.eof:
        raise IncompleteDataset("deflated data set ends before its zlib stream does")
    return bytes(out)


class _Walker:
    def __init__(
        self,
        data: bytes | bytearray,
        explicit: bool,
        little: bool,
        wanted: frozenset[int] = frozenset(),
    ) -> None:
        self.data = data
        self.explicit = explicit
        self.wanted = wanted
        self.values: dict[int, bytes] = {}
        self.pixel_at: int | None = None
        self.spans: list[tuple[int, int, int]] = []
        order = "<" if little else ">"
        self.u32 = struct.Struct(order + "I")
        self.tag = struct.Struct(order + "HH")
        # One unpack per element header: (group, element, VR, 2-byte length) when explicit,
        # (group, element, 4-byte length) when implicit. This loop runs for every element
        # of every received instance, so it avoids calls it can do without.
        self.explicit_header = struct.Struct(order + "HH2sH")
        self.implicit_header = struct.Struct(order + "HHI")

    def _need(self, pos: int, size: int, end: int, what: str) -> None:
        if pos + size > end:
            raise IncompleteDataset(f"{what} at byte {pos} needs {size} bytes, {end - pos} left")

    def _read_tag(self, pos: int) -> int:
        group, elem = self.tag.unpack_from(self.data, pos)
        return int(group) << 16 | int(elem)

    def elements(self, pos: int, end: int, depth: int, stop_at: int | None) -> int:
        """Walk elements from ``pos``; return the position after ``stop_at`` (a delimiter
        tag) or ``end``."""
        if depth > MAX_DEPTH:
            raise IncompleteDataset(f"sequences nested deeper than {MAX_DEPTH}")
        data = self.data
        explicit = self.explicit
        explicit_header = self.explicit_header.unpack_from
        implicit_header = self.implicit_header.unpack_from
        u32 = self.u32.unpack_from
        top = depth == 0
        wanted = self.wanted
        while pos < end:
            if pos + 8 > end:
                self._need(pos, 8, end, "element header")
            start = pos
            if explicit:
                group, elem, vr, length = explicit_header(data, pos)
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        self._need(pos, 12, end, "element header")
                    length = u32(data, pos + 8)[0]
                    pos += 12
                else:
                    pos += 8
            else:
                group, elem, length = implicit_header(data, pos)
                vr = b""
                pos += 8
            tag = group << 16 | elem
            if group == 0xFFFE:
                if stop_at is not None and tag == stop_at:
                    return start + 8
                raise IncompleteDataset(f"unexpected delimiter ({group:04X},{elem:04X})")
            if top and self.pixel_at is None and tag in _PIXEL_TAGS:
                self.pixel_at = start
            if length == _UNDEFINED:
                # An undefined-length UN holds implicit VR little endian (PS3.5 6.2.2).
                nested = self if not (explicit and vr == b"UN") else _Walker(data, False, True)
                pos = nested.items(pos, end, depth + 1)
            else:
                if pos + length > end:
                    self._need(pos, length, end, f"value of ({group:04X},{elem:04X})")
                if top and tag in wanted:
                    self.values[tag] = bytes(data[pos : pos + length])
                pos += length
            if top and self.pixel_at is None:
                self.spans.append((tag, start, pos))
        if stop_at is not None:
            raise IncompleteDataset("data ends before the item or sequence delimiter")
        return pos

    def items(self, pos: int, end: int, depth: int) -> int:
        """Walk the items of an undefined-length sequence (or pixel data fragments)."""
        while True:
            self._need(pos, 8, end, "item header")
            tag = self._read_tag(pos)
            length = int(self.u32.unpack_from(self.data, pos + 4)[0])
            pos += 8
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise IncompleteDataset(f"expected an item, found tag {tag:08X}")
            if length == _UNDEFINED:
                pos = self.elements(pos, end, depth + 1, stop_at=_ITEM_END)
            else:
                self._need(pos, length, end, "item value")
                pos += length
