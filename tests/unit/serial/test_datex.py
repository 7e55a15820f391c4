"""Datex-Ohmeda S/5 AS3: framing, escaping, checksum, header layout, sentinels."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.serial import codes, datex
from adapters.serial.errors import WireError

RECEIVED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ON = datex.GROUP_EXISTS | datex.GROUP_ACTIVE


def test_escaping_and_checksum_golden() -> None:
    record = bytes([0x01, 0x7E, 0x7D, 0x02])
    # checksum = 0x01 + 0x7E + 0x7D + 0x02 = 0xFE; escaped: 7E -> 7D 5E, 7D -> 7D 5D.
    assert datex.encode_frame(record) == bytes.fromhex("7E 01 7D5E 7D5D 02 FE 7E")


def test_checksum_byte_itself_is_escaped() -> None:
    record = bytes([0x3F, 0x3F])  # sums to 0x7E
    assert datex.encode_frame(record) == bytes.fromhex("7E 3F 3F 7D5E 7E")


def test_header_is_40_bytes_little_endian() -> None:
    req = datex.phdb_request(10, r_time=0x01020304)
    assert len(req) == 49  # header + dri_phdb_req, as the specification's r_len
    assert req[:2] == struct.pack("<h", 49)
    assert req[6:10] == bytes([0x04, 0x03, 0x02, 0x01])  # r_time
    # first subrecord descriptor: offset 0, type 0 (a request); then the list end 0xFF
    assert req[16:19] == b"\x00\x00\x00" and req[21] == 0xFF
    assert datex.decode_phdb_request(req) == 10


def test_request_round_trips_through_the_framer() -> None:
    (frame,) = datex.Framer().feed(datex.encode_frame(datex.phdb_request(5)))
    assert isinstance(frame, datex.Frame)
    assert datex.decode_phdb_request(frame.record) == 5


def test_bad_checksum_and_length_are_faults() -> None:
    wire = datex.encode_frame(datex.phdb_request(5))
    bad = wire[:-2] + bytes([wire[-2] ^ 1]) + wire[-1:]
    (fault,) = datex.Framer().feed(bad)
    assert isinstance(fault, datex.Fault) and fault.kind == "checksum"
    rec = bytearray(datex.phdb_request(5))
    rec[0] = 50  # r_len disagrees with the bytes
    (fault,) = datex.Framer().feed(datex.encode_frame(bytes(rec)))
    assert isinstance(fault, datex.Fault) and fault.kind == "framing"


def test_resync_after_garbage_between_frames() -> None:
    wire = datex.encode_frame(datex.phdb_request(5))
    events = datex.Framer().feed(b"\x11\x22" + wire + b"\x33\x44\x55" + wire)
    assert [type(e).__name__ for e in events] == ["Fault", "Frame", "Fault", "Frame"]


def test_resync_after_a_lost_opening_flag() -> None:
    wire = datex.encode_frame(datex.phdb_request(5))
    events = datex.Framer().feed(wire[1:] + wire)
    assert isinstance(events[-1], datex.Frame)


def _record(values: dict[str, int], groups: dict[int, int] | None = None) -> bytes:
    all_on = {0: ON, 16: ON, 72: ON, 86: ON, 118: ON, 132: ON}
    return datex.encode_phdb_record(1_780_000_000, values, all_on if groups is None else groups)


def test_displayed_values_scale_and_map() -> None:
    rec = _record(
        {
            "ecg.hr": 72,
            "nibp.sys": 12000,
            "t1.temp": 3685,
            "spo2.spo2": 9712,
            "co2.et": 512,
            "co2.rr": 14,
        }
    )
    ms = {m.vendor_code: m for m in datex.measurements(rec, "s5", "m", RECEIVED)}
    assert ms["ecg.hr"].value == Decimal(72) and ms["ecg.hr"].mdc_code == 147842
    assert ms["nibp.sys"].value == Decimal("120.00")
    assert ms["t1.temp"].value == Decimal("36.85") and ms["t1.temp"].unit == codes.DEGC
    assert ms["spo2.spo2"].value == Decimal("97.12")
    assert ms["co2.et"].value == Decimal("5.12") and ms["co2.et"].loinc is None
    assert ms["ecg.hr"].device_time == datetime.fromtimestamp(1_780_000_000, UTC)


def test_sentinels_become_absent_reasons_never_numbers() -> None:
    rec = _record(
        {
            "ecg.hr": -32767,
            "nibp.sys": -32766,
            "t1.temp": -32763,
            "spo2.spo2": -32762,
            "co2.et": -32764,
            "co2.rr": -32765,
        }
    )
    ms = {m.vendor_code: m for m in datex.measurements(rec, "s5", "m", RECEIVED)}
    assert {
        k: (m.value, m.absent_reason)
        for k, m in ms.items()
        if k in {"ecg.hr", "nibp.sys", "t1.temp", "spo2.spo2", "co2.et", "co2.rr"}
    } == {
        "ecg.hr": (None, "error"),
        "nibp.sys": (None, "temp-unknown"),
        "t1.temp": (None, "positive-infinity"),
        "spo2.spo2": (None, "error"),
        "co2.et": (None, "negative-infinity"),
        "co2.rr": (None, "unknown"),
    }


def test_inactive_groups_are_skipped() -> None:
    rec = _record({"ecg.hr": 60}, groups={0: ON, 118: datex.GROUP_EXISTS})
    ms = datex.measurements(rec, "s5", "m", RECEIVED)
    assert [m.vendor_code for m in ms] == ["ecg.hr"]


def test_truncated_subrecord_is_a_wire_error() -> None:
    rec = _record({"ecg.hr": 60})
    short = struct.pack("<h", len(rec) - 10) + rec[2:-10]
    with pytest.raises(WireError):
        datex.measurements(short, "s5", "m", RECEIVED)


def test_frames_sharing_one_flag() -> None:
    a = datex.encode_frame(datex.phdb_request(5))
    b = datex.encode_frame(datex.phdb_request(7))
    events = datex.Framer().feed(a + b[1:])  # b reuses a's closing flag as its opener
    assert [datex.decode_phdb_request(e.record) for e in events if isinstance(e, datex.Frame)] == [
        5,
        7,
    ]
