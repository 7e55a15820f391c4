"""Draeger Medibus: golden ICC from the protocol description, hex checksums, payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fhir.resources.R4B.observation import Observation

from adapters.serial import codes
from adapters.serial import medibus as mb
from adapters.serial.errors import WireError
from adapters.serial.observation import observation_from_measurement

RECEIVED = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def test_icc_golden() -> None:
    # ESC 'Q' + "6C" (0x1B + 0x51 = 0x6C) + CR
    assert mb.encode_command(mb.ICC) == bytes.fromhex("1B 51 36 43 0D")
    assert mb.encode_response(mb.ICC) == bytes.fromhex("01 51") + b"52\r"  # 0x01 + 0x51


def test_checksum_covers_data_and_wraps() -> None:
    msg = mb.encode_response(mb.MEASURED_CP1, b"D6  14")
    body = bytes([0x01, 0x24]) + b"D6  14"
    assert msg == body + b"%02X" % (sum(body) % 256) + b"\r"
    assert mb.checksum(bytes([0xFF, 0x02])) == b"01"


def test_framer_splits_commands_and_responses() -> None:
    wire = mb.encode_command(mb.NOP) + mb.encode_response(mb.MEASURED_CP1, b"D6  14")
    cmd, resp = mb.Framer().feed(wire)
    assert isinstance(cmd, mb.Message) and cmd.is_command and cmd.cmd == mb.NOP
    assert isinstance(resp, mb.Message) and not resp.is_command and resp.data == b"D6  14"


def test_bad_checksum_garbage_and_restart_are_faults() -> None:
    good = mb.encode_response(mb.NOP)
    bad = good[:-3] + b"00\r"
    events = mb.Framer().feed(b"xyz" + bad + good[:3] + good)
    kinds = [getattr(e, "kind", "message") for e in events]
    assert kinds == ["garbage", "checksum", "framing", "message"]


def test_split_across_reads_and_expire() -> None:
    framer = mb.Framer()
    wire = mb.encode_response(mb.NOP)
    assert framer.feed(wire[:2]) == []
    (msg,) = framer.feed(wire[2:])
    assert isinstance(msg, mb.Message)
    framer.feed(wire[:3])
    (fault,) = framer.expire()
    assert isinstance(fault, mb.Fault) and fault.kind == "framing"


def test_measured_data_to_measurements() -> None:
    data = mb.encode_measured([(0xD6, "14"), (0x88, "480"), (0xB9, "7.2"), (0x42, "----")])
    assert data == b"D6  1488 480B9 7.242----"
    msg = mb.Message(False, mb.MEASURED_CP1, data, mb.encode_response(mb.MEASURED_CP1, data))
    ms = mb.measurements(msg, "vent", "m1", RECEIVED, RECEIVED)
    assert [(m.vendor_code, m.value, m.absent_reason) for m in ms] == [
        ("D6", Decimal(14), None),
        ("88", Decimal(480), None),
        ("B9", Decimal("7.2"), None),
        ("42", None, "error"),
    ]
    assert ms[0].mdc_code == codes.RESP_RATE.mdc and ms[0].unit == codes.RESP_PER_MIN
    assert ms[1].unit is not None and ms[1].unit.ucum == "mL"
    assert ms[3].mdc_code is None and ms[3].label == "Medibus 42"


def test_odd_measured_data_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        mb.decode_measured(b"D6  1")
    with pytest.raises(WireError):
        mb.decode_measured(b"ZZ  14")


def test_alarms_to_text_observations() -> None:
    data = mb.encode_alarms([mb.Alarm(3, 0x9B, "MV high"), mb.Alarm(2, 0x28, "etCO2 high")])
    assert data == b"39BMV high     228etCO2 high  "
    msg = mb.Message(False, mb.ALARMS_CP1, data, b"")
    ms = mb.measurements(msg, "vent", "m1", RECEIVED, None)
    assert [(m.vendor_code, m.text, m.category) for m in ms] == [
        ("9B", "MV high", "device-alarm"),
        ("28", "etCO2 high", "device-alarm"),
    ]
    obs = observation_from_measurement(ms[0])
    Observation.model_validate(obs)
    assert obs["valueString"] == "MV high"
    assert obs["category"][0]["coding"][0]["system"] == "urn:caregraph:observation-category"


def test_datetime_round_trip() -> None:
    when = datetime(2026, 11, 25, 18, 3, 25)
    assert mb.encode_datetime(when) == b"18:03:2525-NOV-26"
    assert mb.decode_datetime(b"18:03:2525-NOV-26") == when
    with pytest.raises(WireError):
        mb.decode_datetime(b"garbage")
