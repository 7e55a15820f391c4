"""A fast ER7 tokenizer: segments, fields, repetitions, components, subcomponents.

hl7apy stays the reference parser, but it costs about 17 ms for an ORU^R01 with 10 OBX; this
costs tens of microseconds because it only splits strings, lazily, on the delimiters MSH
declares. ``tests/unit/hl7v2/test_er7_differential.py`` proves over a corpus that it yields
exactly the field, component and subcomponent values hl7apy yields. Values come back still
escaped, as hl7apy returns them; ``unescape`` decodes them.

The work is linear in the input size with no backtracking, so no input can hang it (the
message ``MSH|^|||||||^A|||2.2\\r^AA`` once hung another parser); callers bound the size.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from adapters.hl7v2.errors import (
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    Hl7ParseError,
    Location,
)

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_ACCEPTED_IDS: set[str] = set()
"""Segment ids ``tokenize`` has accepted after MSH: the few a feed uses, checked once
(a set membership instead of a regex per segment); at most 26 x 36 x 36 of them."""


class Delimiters(NamedTuple):
    """The separators MSH-1 and MSH-2 declare (``truncation`` exists from v2.7 on).

    A named tuple rather than a frozen dataclass: the delimiters are part of the key of
    every memoized mapping step, dozens of lookups per message, and a tuple hashes
    without calling back into Python."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written back in replies."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


DEFAULT_DELIMITERS = Delimiters()


@lru_cache(maxsize=64)
def _check_delimiters(field_sep: str, enc: str) -> Delimiters:
    """The delimiters of MSH-1/MSH-2, memoized (every message of a feed declares the same
    ones, and both ``peek_header`` and ``tokenize`` read them); a refusal is not cached."""
    where = Location("MSH", 1, 2)
    if len(enc) not in (4, 5):
        raise Hl7ParseError(
            f"MSH-2 must hold 4 or 5 encoding characters, not {enc!r}", where, "102"
        )
    chars = field_sep + enc
    if len(set(chars)) != len(chars):
        raise Hl7ParseError(f"the delimiters {chars!r} repeat a character", where, "102")
    for ch in chars:
        if ch.isalnum() or ch.isspace() or not ch.isprintable():
            raise Hl7ParseError(f"{ch!r} cannot be a delimiter", where, "102")
    return Delimiters(field_sep, enc[0], enc[1], enc[2], enc[3], enc[4:])


class Segment:
    """One segment. ``fields[n]`` is field ``n`` (``fields[0]`` the segment id); for MSH,
    ``fields[1]`` is the field separator and ``fields[2]`` the encoding characters, so the
    numbering matches the standard for every segment."""

    __slots__ = ("delimiters", "fields", "name", "occurrence")

    def __init__(
        self, name: str, fields: list[str], delimiters: Delimiters, occurrence: int
    ) -> None:
        self.name = name
        self.fields = fields
        self.delimiters = delimiters
        self.occurrence = occurrence

    def __repr__(self) -> str:
        return f"Segment({self.delimiters.field.join(self.fields)!r})"

    def where(self, field: int | None = None, component: int | None = None) -> Location:
        """The location of a field of this segment, for errors."""
        return Location(self.name, self.occurrence, field, component)

    def field(self, n: int) -> str:
        """Field ``n`` as written (all repetitions), or ``""``."""
        return self.fields[n] if n < len(self.fields) else ""

    def reps(self, n: int) -> list[str]:
        """The repetitions of field ``n``; ``[]`` when empty. MSH-1/2 never split."""
        value = self.field(n)
        if not value:
            return []
        if self.name == "MSH" and n <= 2:
            return [value]
        return value.split(self.delimiters.repetition)

    def components(self, n: int, rep: int = 0) -> list[str]:
        """The components of repetition ``rep`` (0-based) of field ``n``."""
        reps = self.reps(n)
        if rep >= len(reps):
            return []
        if self.name == "MSH" and n <= 2:
            return [reps[rep]]
        return reps[rep].split(self.delimiters.component)

    def component(self, n: int, c: int = 1, rep: int = 0) -> str:
        """Component ``c`` (1-based) of repetition ``rep`` of field ``n``, or ``""``.

        ``components(n, rep)[c - 1]`` without building the lists it does not need: the
        mappers ask for single components many times per segment."""
        fields = self.fields
        if n >= len(fields):
            return ""
        value = fields[n]
        if not value:
            return ""
        if n <= 2 and self.name == "MSH":
            comps = self.components(n, rep)  # MSH-1 and MSH-2 are never split
            return comps[c - 1] if c <= len(comps) else ""
        d = self.delimiters
        if rep == 0:
            value = value.split(d.repetition, 1)[0]
        else:
            reps = value.split(d.repetition)
            if rep >= len(reps):
                return ""
            value = reps[rep]
        if c == 1:
            return value.split(d.component, 1)[0]
        comps = value.split(d.component)
        return comps[c - 1] if c <= len(comps) else ""

    def subcomponents(self, n: int, c: int = 1, rep: int = 0) -> list[str]:
        """The subcomponents of component ``c`` of field ``n``."""
        value = self.component(n, c, rep)
        if not value:
            return []
        return value.split(self.delimiters.subcomponent)

    def tree(self) -> list[list[list[list[str]]]]:
        """Everything, fully split: field -> repetition -> component -> subcomponent."""
        out: list[list[list[list[str]]]] = []
        for n in range(len(self.fields)):
            out.append(
                [
                    [
                        [s for s in (comp.split(self.delimiters.subcomponent))]
                        for comp in self.components(n, r)
                    ]
                    for r in range(len(self.reps(n)))
                ]
            )
        return out


class Er7Message:
    """A tokenized message: its delimiters and its segments in order."""

    __slots__ = ("delimiters", "segments")

    def __init__(self, delimiters: Delimiters, segments: list[Segment]) -> None:
        self.delimiters = delimiters
        self.segments = segments

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        """The first segment called ``name``."""
        for seg in self.segments:
            if seg.name == name:
                return seg
        return None

    def all(self, name: str) -> list[Segment]:
        """Every segment called ``name``, in order."""
        return [seg for seg in self.segments if seg.name == name]


def split_segments(text: str) -> list[str]:
    """Segment strings: CR terminates (the standard); LF and CRLF are tolerated because
    real senders use them; blank lines are dropped."""
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return [s for s in text.split("\r") if s]


def parse_msh(line: str) -> tuple[Delimiters, list[str]]:
    """The delimiters and fields of an MSH line (fields numbered as in ``Segment``)."""
    if not line.startswith("MSH") or len(line) < 8:
        raise Hl7ParseError(
            "a message must start with an MSH segment", Location("MSH"), REQUIRED_FIELD_MISSING
        )
    field_sep = line[3]
    rest = line[4:].split(field_sep)
    delimiters = _check_delimiters(field_sep, rest[0])
    return delimiters, ["MSH", field_sep, *rest]


def tokenize(text: str) -> Er7Message:
    """Split ``text`` (decoded) into segments and fields.

    Raises:
        Hl7ParseError: no MSH first, bad delimiters, or a segment id that is not one.
    """
    lines = split_segments(text)
    if not lines:
        raise Hl7ParseError("empty message", Location("MSH"), REQUIRED_FIELD_MISSING)
    delimiters, msh_fields = parse_msh(lines[0])
    counts: dict[str, int] = {"MSH": 1}
    segments = [Segment("MSH", msh_fields, delimiters, 1)]
    field_sep = delimiters.field
    for index, line in enumerate(lines[1:], start=2):
        fields = line.split(field_sep)
        name = fields[0]
        if name not in _ACCEPTED_IDS:
            if not _SEGMENT_ID.match(name):
                raise Hl7ParseError(
                    f"segment {index} does not start with a segment id: {name[:10]!r}",
                    Location(name[:3] if name[:3].isalnum() else "???", index),
                    SEGMENT_SEQUENCE_ERROR,
                )
            if name == "MSH":
                raise Hl7ParseError(
                    "a second MSH: batches are not accepted here",
                    Location("MSH", 2),
                    SEGMENT_SEQUENCE_ERROR,
                )
            _ACCEPTED_IDS.add(name)
        counts[name] = occurrence = counts.get(name, 0) + 1
        segments.append(Segment(name, fields, delimiters, occurrence))
    return Er7Message(delimiters, segments)


_FORMATTING = frozenset({"H", "N"})


def unescape(value: str, d: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Decode HL7 escape sequences: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\``, ``\\Xhh..\\``
    (hex bytes, decoded as UTF-8 or else Latin-1), ``\\.br\\`` (line break); highlighting
    (``\\H\\``, ``\\N\\``) and character-set switches are dropped. An unterminated or
    unknown sequence is kept as written rather than guessed at."""
    esc = d.escape
    if esc not in value:
        return value
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch != esc:
            j = value.find(esc, i)
            if j < 0:
                out.append(value[i:])
                break
            out.append(value[i:j])
            i = j
            continue
        end = value.find(esc, i + 1)
        if end < 0:
            out.append(value[i:])
            break
        seq = value[i + 1 : end]
        replacement = _escape_sequence(seq, d)
        out.append(esc + seq + esc if replacement is None else replacement)
        i = end + 1
    return "".join(out)


def _escape_sequence(seq: str, d: Delimiters) -> str | None:
    simple = {
        "F": d.field,
        "S": d.component,
        "T": d.subcomponent,
        "R": d.repetition,
        "E": d.escape,
        "P": d.truncation,
    }
    if seq in simple:
        return simple[seq]
    if seq in _FORMATTING:
        return ""
    if seq == ".br":
        return "\n"
    if seq[:1] == "X" and len(seq) % 2 == 1:
        try:
            data = bytes.fromhex(seq[1:])
        except ValueError:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    if seq[:1] in ("C", "M") and all(c in "0123456789ABCDEFabcdef" for c in seq[1:]):
        return ""
    return None


def escape(value: str, d: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Encode text for a field: delimiters become escape sequences, CR/LF become ``\\.br\\``."""
    e = d.escape
    out = value.replace(e, f"{e}E{e}")
    for ch, code in (
        (d.field, "F"),
        (d.component, "S"),
        (d.subcomponent, "T"),
        (d.repetition, "R"),
    ):
        out = out.replace(ch, f"{e}{code}{e}")
    if d.truncation:
        out = out.replace(d.truncation, f"{e}P{e}")
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{e}.br{e}")
