"""ASTM E1381/E1394 codec: golden bytes from CLSI LIS1-A's header example, computed sums."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.serial import astm
from adapters.serial.errors import WireError
from adapters.serial.measurement import local_zone

# <STX>1H|\^&|||ANALYZER^1|||||||P|1<CR><ETX>AF<CR><LF> (PROTOCOLS.md; sum of '1'..ETX = 0xAF)
GOLDEN = bytes.fromhex(
    "02 31 48 7C 5C 5E 26 7C 7C 7C 41 4E 41 4C 59 5A 45 52 5E 31 7C 7C 7C 7C 7C 7C 7C 50 7C"
    " 31 0D 03 41 46 0D 0A"
)
RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_golden_frame_encodes_byte_for_byte() -> None:
    assert astm.encode_frame(1, b"H|\\^&|||ANALYZER^1|||||||P|1\r", final=True) == GOLDEN


def test_checksum_is_sum_from_frame_number_through_etx() -> None:
    body = GOLDEN[1 : GOLDEN.index(0x03) + 1]
    assert sum(body) % 256 == 0xAF
    assert astm.checksum(body) == b"AF"
    assert astm.checksum(b"\x00\x0f") == b"0F"  # two uppercase digits, zero padded


def test_golden_frame_decodes() -> None:
    (event,) = astm.Framer().feed(GOLDEN)
    assert isinstance(event, astm.Frame)
    assert (event.number, event.final, event.raw) == (1, True, GOLDEN)
    assert event.text == b"H|\\^&|||ANALYZER^1|||||||P|1\r"


def test_frame_numbers_run_1_to_7_then_0() -> None:
    frames = astm.encode_message([b"R|%d|^^^X|1" % i for i in range(10)])
    assert [f[1] - 0x30 for f in frames] == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2]


def test_long_record_splits_into_etb_frames_of_240() -> None:
    record = b"R|1|^^^X|" + b"9" * 500
    frames = astm.encode_message([record])
    assert [f[-5] for f in frames] == [astm.ETB, astm.ETB, astm.ETX]
    assert all(len(f) <= astm.MAX_FRAME for f in frames)
    assert astm.message_text(frames) == record + b"\r"


def test_bad_checksum_is_a_fault_not_a_frame() -> None:
    bad = GOLDEN[:-4] + b"AE\r\n"
    (event,) = astm.Framer().feed(bad)
    assert isinstance(event, astm.Fault) and event.kind == "checksum"


def test_resync_after_garbage_and_a_truncated_frame() -> None:
    framer = astm.Framer()
    truncated = GOLDEN[:10]
    events = framer.feed(b"\xff\x00zz" + truncated + GOLDEN + bytes([astm.EOT]))
    kinds = [type(e).__name__ + ":" + getattr(e, "kind", "") for e in events]
    assert kinds == ["Fault:garbage", "Fault:framing", "Frame:", "Control:"]


def test_frame_split_across_reads() -> None:
    framer = astm.Framer()
    assert framer.feed(GOLDEN[:7]) == []
    assert framer.pending
    (event,) = framer.feed(GOLDEN[7:])
    assert isinstance(event, astm.Frame)


def test_expire_turns_a_stalled_partial_frame_into_a_fault() -> None:
    framer = astm.Framer()
    framer.feed(GOLDEN[:-1])  # LF lost
    (event,) = framer.expire()
    assert isinstance(event, astm.Fault) and event.kind == "framing"
    assert not framer.pending


def test_damaged_trailer_does_not_swallow_the_next_control_byte() -> None:
    events = astm.Framer().feed(GOLDEN[:-2] + bytes([astm.EOT]))
    assert isinstance(events[0], astm.Fault)
    assert events[-1] == astm.Control(astm.EOT)


MESSAGE = [
    b"H|\\^&|||SIM-BG^1.0|||||||P|LIS2-A2|20260102030000",
    b"P|1||PID7||Doe^Jane",
    b"O|1|SPEC1^A||^^^BG|R|20260102030000",
    b"R|1|^^^pH|7.41||7.35^7.45|N||F||||20260102030405",
    b"R|2|^^^pCO2|39.5|mmHg||N||F||||20260102030405",
    b"R|3|^^^Lac|>15.0|mmol/L||H||P||||20260102030405",
    b"R|4|^^^XYZ|***|U/L||||F",
    b"R|5|^^^Na||mmol/L||||F",
    b"L|1|N",
]


def test_records_to_measurements() -> None:
    frames = astm.encode_message(MESSAGE)
    ms = astm.measurements(frames, "bg-1", "msg-1", RECEIVED, local_zone(60))
    assert [m.vendor_code for m in ms] == ["pH", "pCO2", "Lac", "XYZ", "Na"]
    ph, pco2, lac, xyz, na = ms
    assert ph.value == Decimal("7.41") and ph.loinc == "2744-1" and ph.unit is not None
    assert ph.device_time == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert pco2.unit is not None and pco2.unit.ucum == "mm[Hg]"
    assert (lac.comparator, lac.value, lac.status) == (">", Decimal("15.0"), "preliminary")
    assert xyz.value is None and xyz.absent_reason == "error" and xyz.mdc_code is None
    assert na.value is None and na.absent_reason == "unknown"
    assert {m.specimen_id for m in ms} == {"SPEC1"} and ph.patient_hint == "PID7"
    assert [m.position for m in ms] == [0, 1, 2, 3, 4]
    assert ph.raw == b"".join(frames)


def test_message_without_header_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        astm.measurements(astm.encode_message([b"R|1|^^^pH|7.4"]), "d", "m", RECEIVED)


def test_timestamps() -> None:
    assert astm.parse_timestamp("20260102") == datetime(2026, 1, 2, tzinfo=UTC)
    assert astm.parse_timestamp("2026010212") == datetime(2026, 1, 2, 12, tzinfo=UTC)
    assert astm.parse_timestamp("20261341") is None
    assert astm.parse_timestamp("") is None
