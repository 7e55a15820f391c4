"""Tokenizer, escapes and header: the edges of parsing."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.hl7v2 import Hl7MappingError, Hl7ParseError, UnsupportedMessage, parse
from adapters.hl7v2.er7 import (
    DEFAULT_DELIMITERS,
    Delimiters,
    Segment,
    escape,
    tokenize,
    unescape,
)
from adapters.hl7v2.header import decode, peek_header
from tests.unit.hl7v2.corpus import ADT_A01, ORU_PCD


def test_unescape_delimiters_hex_and_line_breaks() -> None:
    assert unescape(r"O\S\Brien \T\ Co \F\ x \R\ y \E\z") == "O^Brien & Co | x ~ y \\z"
    assert unescape(r"a\.br\b") == "a\nb"
    assert unescape(r"\H\bold\N\ text") == "bold text"
    assert unescape("\\XC3A9\\t\\X41\\") == "étA"
    assert unescape("unterminated \\F") == "unterminated \\F"
    assert unescape(r"\Q\unknown") == r"\Q\unknown"


@given(st.text())
def test_escape_round_trips(text: str) -> None:
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert unescape(escape(text)) == expected
    escaped = escape(text)
    assert "|" not in escaped and "^" not in escaped and "\r" not in escaped


def test_segments_and_components() -> None:
    message = tokenize(ADT_A01.decode())
    pid = message.first("PID")
    assert pid is not None
    assert pid.component(3, 1) == "MRN12345"
    assert pid.subcomponents(3, 4) == ["NORTH", "1.2.840.99999.1.2", "ISO"]
    assert pid.component(3, 1, rep=1) == "987654321"
    assert pid.component(99) == ""
    assert message.msh.field(1) == "|" and message.msh.field(2) == "^~\\&"
    assert message.msh.field(10) == "ADT0001"


def test_custom_delimiters_are_honoured() -> None:
    text = "MSH#*@!$#A#F#R#RF#20240101##ADT*A08#C1#P#2.5\rPID###42*** AUTH*MR##Doe*Jo\r"
    message = tokenize(text)
    assert message.delimiters == Delimiters("#", "*", "@", "!", "$")
    pid = message.first("PID")
    assert pid is not None and pid.component(5, 2) == "Jo"


@pytest.mark.parametrize(
    "text",
    [
        "MSH|^~\\\\|A\r",  # repeated character
        "MSH|^~|A|B\r",  # too few encoding characters
        "MSH|^~a&|A\r",  # alphanumeric delimiter
        "MSH|^~\\&|A\rpid|1\r",  # not a segment id
        "MSH|^~\\&|A\rMSH|^~\\&|B\r",  # batch
        "XYZ|whatever\r",
    ],
)
def test_malformed_messages_raise_parse_errors(text: str) -> None:
    with pytest.raises(Hl7ParseError) as info:
        tokenize(text)
    assert info.value.location


def test_the_input_that_hung_a_parser_is_answered_at_once() -> None:
    raw = b"MSH|^|||||||^A|||2.2\r^AA"
    started = time.perf_counter()
    with pytest.raises(UnsupportedMessage) as info:
        parse(raw)
    assert time.perf_counter() - started < 0.05
    assert info.value.location == "MSH[1]-12"
    with pytest.raises(Hl7ParseError):
        tokenize(raw.decode())  # and the tokenizer alone refuses it fast too


def test_parse_time_is_linear_for_large_garbage() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|X|P|2.5\r" + b"OBX|" + b"^~&" * 1_000_000
    started = time.perf_counter()
    parse(raw)
    assert time.perf_counter() - started < 2.0


def test_size_limit_is_an_unsupported_message() -> None:
    with pytest.raises(UnsupportedMessage):
        parse(ADT_A01 + b"NTE|" + b"x" * 5_000_000 + b"\r")


def test_peek_header_tolerates_bad_encoding_characters() -> None:
    header = peek_header(b"MSH|^^^^|APP|FAC|||20240101||ADT^A01|CTRL9|P|2.5\rPID|1")
    assert header is not None
    assert header.control_id == "CTRL9" and header.delimiters == DEFAULT_DELIMITERS
    assert peek_header(b"\x00\xff garbage") is None


def test_decode_honours_msh18() -> None:
    latin = "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|1|P|2.5||||||8859/1\rPID|||1||Müller\r"
    assert "Müller" in decode(latin.encode("latin-1"))
    utf8 = latin.replace("8859/1", "UNICODE UTF-8")
    assert "Müller" in decode(utf8.encode("utf-8"))
    with pytest.raises(Hl7MappingError, match="not valid"):
        decode(utf8.encode("latin-1"))


def test_pcd_header_is_recognised() -> None:
    header = peek_header(ORU_PCD)
    assert header is not None and header.is_pcd01 and header.enhanced_mode


_PIECES = st.text(alphabet="ab~^&|1 ", max_size=12)


@given(st.lists(_PIECES, min_size=1, max_size=6), st.sampled_from(["OBX", "MSH"]))
def test_component_is_the_component_of_components(fields: list[str], name: str) -> None:
    """``component`` skips building the lists ``components`` returns, and must still pick
    the same piece (MSH-1 and MSH-2 unsplit) for every field, repetition and position."""
    seg = Segment(name, [name, *fields], DEFAULT_DELIMITERS, 1)
    for n in range(len(fields) + 3):
        for rep in range(3):
            for c in range(1, 5):
                comps = seg.components(n, rep)
                expected = comps[c - 1] if c <= len(comps) else ""
                assert seg.component(n, c, rep) == expected, (n, c, rep)


def test_segment_ids_once_accepted_do_not_let_a_second_msh_or_a_bad_id_in() -> None:
    """``tokenize`` remembers the segment ids it accepted; a second MSH and ids that are
    not ids are refused however often the good ones came before."""
    good = "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|C1|P|2.5\rPID|||1\rZX1|a\r"
    for _ in range(2):
        assert [s.name for s in tokenize(good).segments] == ["MSH", "PID", "ZX1"]
    for bad, where in ((good + "MSH|^~\\&|A\r", "MSH[2]"), (good + "zx1|a\r", "zx1[4]")):
        for _ in range(2):
            with pytest.raises(Hl7ParseError) as info:
                tokenize(bad)
            assert str(info.value.location) == where
