"""ACKs: codes, ERR locations, original vs enhanced mode; checked with hl7apy, the
reference parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from adapters.hl7v2 import Hl7MappingError, Location, UnsupportedMessage, normalize
from adapters.hl7v2.ack import AckError, ack_code, ack_wanted, build_ack
from adapters.hl7v2.header import peek_header
from tests.unit.hl7v2 import corpus

AT = datetime(2024, 3, 5, 8, 0, tzinfo=UTC)


def segments(ack: bytes) -> dict[str, list[str]]:
    assert ack.endswith(b"\r") and b"\n" not in ack
    return {line[:3]: line.split("|") for line in ack.decode().split("\r") if line}


def test_aa_echoes_control_id_and_swaps_sender_and_receiver() -> None:
    ack = build_ack(corpus.ADT_A01, "AA", at=AT)
    seg = segments(ack)
    assert seg["MSA"][1:3] == ["AA", "ADT0001"]
    assert seg["MSH"][2:6] == ["CAREGRAPH", "HOSP", "ADTSYS", "NORTH^1.2.840.99999.1^ISO"]
    assert seg["MSH"][6] == "20240305080000+0000"
    assert seg["MSH"][8] == "ACK^A01^ACK" and seg["MSH"][11] == "2.5.1"
    assert "ERR" not in seg
    # the reference parser accepts it, strictly
    parsed = parse_message(ack.decode(), validation_level=VALIDATION_LEVEL.STRICT)
    assert parsed.msa.msa_1.value == "AA"
    assert parsed.msa.msa_2.value == "ADT0001"


def test_same_message_same_ack() -> None:
    assert build_ack(corpus.ADT_A01, "AA", at=AT) == build_ack(corpus.ADT_A01, "AA", at=AT)
    other = build_ack(corpus.ADT_A01.replace(b"ADT0001", b"ADT0002"), "AA", at=AT)
    assert segments(other)["MSH"][9] != segments(build_ack(corpus.ADT_A01, "AA", at=AT))["MSH"][9]


def test_ae_names_segment_field_and_code_v25() -> None:
    raw = corpus.ORU_LAB.replace(b"|105|", b"|1O5|")
    with pytest.raises(Hl7MappingError) as info:
        normalize(raw, received_at=AT)
    ack = build_ack(raw, "AE", AckError.from_exception(info.value), at=AT)
    seg = segments(ack)
    assert seg["MSA"][1] == "AE"
    assert seg["ERR"][2] == "OBX^1^5^1"
    assert seg["ERR"][3] == "102^Data type error^HL70357"
    assert seg["ERR"][4] == "E"
    parsed = parse_message(ack.decode(), validation_level=VALIDATION_LEVEL.STRICT)
    assert parsed.err.err_2.err_2_1.value == "OBX"
    assert parsed.err.err_3.err_3_1.value == "102"


def test_ar_for_unsupported_version_in_v23_style() -> None:
    raw = corpus.adt("A01", "OLD1", version="2.3")
    error = AckError("no", "203", Location("MSH", 1, 12))
    seg = segments(build_ack(raw, "AR", error, at=AT))
    assert seg["MSA"][1:4] == ["AR", "OLD1", "no"]
    assert seg["ERR"][1] == "MSH^1^12^203&Unsupported version id&HL70357"
    assert seg["MSH"][8] == "ACK^A01"  # no message structure before v2.4


def test_error_text_is_escaped() -> None:
    ack = build_ack(corpus.ADT_A01, "AE", AckError("a|b^c\rd"), at=AT)
    assert segments(ack)["ERR"][8] == "a\\F\\b\\S\\c\\.br\\d"


def test_ack_for_garbage_has_no_control_id_but_is_well_formed() -> None:
    ack = build_ack(b"\x00\xffnot hl7", "AR", AckError("not HL7"), at=AT)
    seg = segments(ack)
    assert seg["MSA"][1:3] == ["AR", ""]
    parse_message(ack.decode(), validation_level=VALIDATION_LEVEL.TOLERANT)


def test_ack_for_the_hanging_input() -> None:
    raw = b"MSH|^|||||||^A|||2.2\r^AA"
    with pytest.raises(UnsupportedMessage) as info:
        normalize(raw, received_at=AT)
    seg = segments(build_ack(raw, "AR", AckError.from_exception(info.value), at=AT))
    assert seg["MSA"][1] == "AR"
    assert seg["MSH"][1] == "^~\\&"  # its one encoding character cannot be replied with


@pytest.mark.parametrize(
    ("msh15", "msh16", "outcome", "code", "wanted"),
    [
        ("", "", "AA", "AA", True),
        ("", "", "AE", "AE", True),
        ("AL", "NE", "AA", "CA", True),
        ("AL", "NE", "AR", "CR", True),
        ("ER", "", "AA", "CA", False),
        ("ER", "", "AE", "CE", True),
        ("SU", "", "AE", "CE", False),
        ("NE", "AL", "AA", "CA", False),
        ("", "AL", "AA", "AA", True),
        ("", "ER", "AA", "AA", False),
    ],
)
def test_original_and_enhanced_modes(
    msh15: str, msh16: str, outcome: str, code: str, wanted: bool
) -> None:
    raw = corpus.msg(corpus.msh("ADT^A08^ADT_A01", "M1", extra=f"|||{msh15}|{msh16}"), "PID|||1")
    header = peek_header(raw)
    assert header is not None
    assert ack_code(header, outcome) == code  # type: ignore[arg-type]
    assert ack_wanted(header, outcome) is wanted  # type: ignore[arg-type]
    assert segments(build_ack(raw, outcome, at=AT))["MSA"][1] == code  # type: ignore[arg-type]


def test_sender_delimiters_are_reused() -> None:
    raw = b"MSH#*@!$#APP#FAC#CG#H#20240101##ADT*A08#C1#P#2.5\rPID###42\r"
    ack = build_ack(raw, "AE", AckError("x#y"), at=AT).decode()
    assert ack.startswith("MSH#*@!$#CG#H#APP#FAC#")
    assert "MSA#AE#C1" in ack and "x!F!y" in ack


@pytest.mark.parametrize("codec", ["utf-8", "latin-1"])
def test_echoed_fields_keep_their_bytes(codec: str) -> None:
    raw = "MSH|^~\\&|APP|Klinikum Süd|CG|H|20240101||ADT^A08|Ü1|P|2.5\rPID|||1\r".encode(codec)
    ack = build_ack(raw, "AA", at=AT)
    assert "|Klinikum Süd|".encode(codec) in ack
    assert "MSA|AA|Ü1".encode(codec) in ack


def test_memoized_header_and_ack_parts_follow_each_message() -> None:
    """The sender's constant MSH fields and the ACK's MSH-9/12 are memoized
    (``header._sender_fields``, ``ack._message_type``): what changes from one message to
    the next (MSH-7, MSH-10, the event, the version) must still show in each."""
    first = peek_header(corpus.pcd01("MEMO-A", 1))
    second = peek_header(corpus.pcd01("MEMO-B", 1).replace(b"20240305083000+0100", b"2025"))
    assert first is not None and second is not None
    assert (first.control_id, second.control_id) == ("MEMO-A", "MEMO-B")
    assert (first.message_time, second.message_time) == ("20240305083000+0100", "2025")
    assert first.sending_facility == second.sending_facility == "ICU-NORTH"
    for version, msh9 in (("2.3", "ACK^A08"), ("2.4", "ACK^A08^ACK"), ("9.9", "ACK^A08^ACK")):
        raw = corpus.adt("A08", f"V{version}", version=version)
        for _ in range(2):
            seg = segments(build_ack(raw, "AA", at=AT))
            assert seg["MSH"][8] == msh9 and seg["MSA"][2] == f"V{version}"
            assert seg["MSH"][11] == (version if version != "9.9" else "2.5.1")
