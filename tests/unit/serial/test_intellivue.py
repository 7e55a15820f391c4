"""IntelliVue MIB/RS232: golden frame from the guide's example, FCS-16, escaping, messages."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.serial import codes
from adapters.serial import intellivue as iv
from adapters.serial.errors import WireError

# Payload E1 00 00 02 (an SPpdu) framed: PROTOCOLS.md / the Programming Guide.
GOLDEN = bytes.fromhex("C0 11 01 00 04 E1 00 00 02 52 60 C1")
RECEIVED = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def test_golden_frame() -> None:
    assert iv.encode_frame(bytes.fromhex("E1000002")) == GOLDEN
    (frame,) = iv.Framer().feed(GOLDEN)
    assert isinstance(frame, iv.Frame) and frame.user_data == bytes.fromhex("E1000002")


def test_fcs16_is_ppp() -> None:
    # RFC 1662: running the FCS over data plus its complemented FCS (low byte first)
    # leaves the "good FCS" constant 0xF0B8.
    data = b"\x11\x01\x00\x04\xe1\x00\x00\x02"
    fcs = iv.fcs16(data) ^ 0xFFFF
    assert fcs == 0x6052
    assert iv.fcs16(data + bytes([fcs & 0xFF, fcs >> 8])) == 0xF0B8


def test_escaping_of_c0_c1_7d() -> None:
    payload = bytes([0xC0, 0xC1, 0x7D, 0x01])
    wire = iv.encode_frame(payload)
    inner = wire[1:-1]
    assert 0xC0 not in inner and 0xC1 not in inner
    assert bytes([0x7D, 0xE0, 0x7D, 0xE1, 0x7D, 0x5D]) in inner
    (frame,) = iv.Framer().feed(wire)
    assert isinstance(frame, iv.Frame) and frame.user_data == payload


def test_abort_sequence_and_bad_fcs_are_faults() -> None:
    aborted = GOLDEN[:6] + bytes([0x7D, 0xC1])
    (fault,) = iv.Framer().feed(aborted)
    assert isinstance(fault, iv.Fault) and fault.kind == "framing"
    bad = GOLDEN[:-2] + bytes([GOLDEN[-2] ^ 1, 0xC1])
    (fault,) = iv.Framer().feed(bad)
    assert isinstance(fault, iv.Fault) and fault.kind == "checksum"


def test_resync_after_garbage_and_lost_eof() -> None:
    framer = iv.Framer()
    events = framer.feed(b"\x01\x02" + GOLDEN[:-1] + GOLDEN + b"\xff")
    kinds = [getattr(e, "kind", "frame") for e in events]
    assert kinds == ["garbage", "framing", "frame", "garbage"]


def test_float_type() -> None:
    assert iv.decode_float(0xFF000048) == Decimal("7.2")  # exponent -1, mantissa 72
    assert iv.decode_float(0x00000048) == Decimal(72)
    assert iv.decode_float(0x01FFFFFF) == Decimal(-10)  # mantissa -1, exponent 1
    assert iv.decode_float(iv.FLOAT_NAN) == "not-a-number"
    assert iv.decode_float(iv.FLOAT_PINF) == "positive-infinity"
    assert iv.decode_float(iv.FLOAT_NINF) == "negative-infinity"
    assert iv.decode_float(iv.FLOAT_NRES) == "error"
    for text in ("36.6", "120", "-4.25", "0.01", "97"):
        assert iv.decode_float(iv.encode_float(Decimal(text))) == Decimal(text)


def test_abs_time_is_bcd() -> None:
    when = datetime(2026, 5, 1, 7, 59, 30, 250000, tzinfo=UTC)
    raw = iv.encode_abs_time(when)
    assert raw == bytes.fromhex("2026050107593025")
    assert iv.decode_abs_time(raw) == when
    assert iv.decode_abs_time(b"\xff" * 8) is None


def test_time_anchor_handles_wrap() -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    anchor = iv.TimeAnchor(0xFFFFFF00, t0)
    # 0x100 ticks after the anchor, past the u32 wrap: 256 * 125 us = 32 ms later.
    assert anchor.at(0x00000000) == t0 + timedelta(microseconds=256 * 125)
    assert anchor.at(0xFFFFFF00 - 8000) == t0 - timedelta(seconds=1)
    assert iv.TimeAnchor.parse(anchor.header()) == anchor


def test_mds_create_event_round_trip() -> None:
    t0 = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    msg = iv.mds_create_event(9, 4242, t0, b"\x00\x09\xfb\x01\x02\x03")
    assert msg[:4] == bytes.fromhex("E1000002")
    create = iv.decode_mds_create(iv.decode_operation(msg))
    assert create is not None and create.invoke_id == 9
    assert create.anchor == iv.TimeAnchor(4242, t0)
    assert create.system_id == b"\x00\x09\xfb\x01\x02\x03"


def test_poll_request_layout() -> None:
    msg = iv.poll_request(invoke_id=3, poll_number=7)
    # SPpdu, ROapdus(ROIV), ROIV(invoke 3, CONFIRMED_ACTION), ActionArgument(MDS, scope 0,
    # NOM_ACT_POLL_MDIB_DATA), PollMdibDataReq(7, NOM_PART_OBJ/NOM_MOC_VMO_METRIC_NU, grp)
    assert msg.hex() == ("e10000020001001c000300070016002100000000000000000c1600080007000100060803")


def test_poll_reply_to_measurements() -> None:
    t0 = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    objects = [
        iv.NumericObject(1, 0x24182, (iv.NuObs(0x4182, 0, 0x0AA0, iv.encode_float(Decimal(72))),)),
        iv.NumericObject(
            2,
            0x24A04,
            (
                iv.NuObs(0x4A05, 0, 0x0F20, iv.encode_float(Decimal(120))),
                iv.NuObs(0x4A06, 0, 0x0F20, iv.encode_float(Decimal(80))),
                iv.NuObs(0x4A07, iv.STATE_INVALID, 0x0F20, iv.encode_float(Decimal(93))),
            ),
        ),
        iv.NumericObject(3, 0x24B48, (iv.NuObs(0x4B48, 0, 0x17A0, iv.FLOAT_NAN),)),
    ]
    msg = iv.poll_reply(5, 1, 8000 * 10, None, objects)
    anchor = iv.TimeAnchor(0, t0)
    ms = iv.measurements(msg, "mon", "m1", RECEIVED, anchor)
    assert [(m.vendor_code, m.value, m.absent_reason) for m in ms] == [
        ("0x4182", Decimal(72), None),
        ("0x4A05", Decimal(120), None),
        ("0x4A06", Decimal(80), None),
        ("0x4A07", None, "error"),
        ("0x4B48", None, "not-a-number"),
    ]
    hr = ms[0]
    assert hr.mdc_code == codes.HEART_RATE.mdc == 147842
    assert hr.unit == codes.BEAT_PER_MIN and hr.unit.mdc == 264864
    assert hr.device_time == t0 + timedelta(seconds=10)
    assert ms[1].mdc_code == 150021 and ms[1].unit is not None and ms[1].unit.ucum == "mm[Hg]"


def test_truncated_poll_reply_is_a_wire_error() -> None:
    msg = iv.poll_reply(5, 1, 0, None, [])
    broken = msg[:4] + struct.pack(">HH", 2, len(msg) - 8 - 3) + msg[8:-3]
    with pytest.raises(WireError):
        iv.measurements(broken, "mon", "m1", RECEIVED, None)


def test_association_request_layout_matches_the_guide() -> None:
    aarq = iv.association_request()
    # The Programming Guide's AARQ opens with these bytes: session type, LI 0xEC (236),
    # the session parameters, then 0xC1 with presentation LI 0xDC (220) and BER 31 80.
    assert aarq[:20] == bytes.fromhex("0D EC 05 08 13 01 00 16 01 02 80 00 14 02 00 02 C1 DC 31 80")
    assert len(aarq) == 2 + 0xEC
    assert aarq.endswith(bytes(16))  # end-of-contents octets of the indefinite lengths
    offer = iv.decode_user_info(aarq)
    assert offer == iv.UserInfo(iv.SYST_CLIENT, 8000, 1000, 1000)
    assert iv.decode_user_info(iv.association_response()).system_type == iv.SYST_SERVER


def test_release_request_golden() -> None:
    assert iv.release_request() == bytes.fromhex(
        "09 18 C1 16 61 80 30 80 02 01 01 A0 80 62 80 80 01 00 00 00 00 00 00 00 00 00"
    )
    assert iv.session_type(iv.release_response()) == iv.DN_SPDU


def test_broken_association_pdu_is_a_wire_error() -> None:
    aarq = iv.association_request()
    with pytest.raises(WireError):
        iv.decode_user_info(aarq[:-20])  # session LI no longer matches
    with pytest.raises(WireError):
        iv.decode_user_info(aarq.replace(bytes.fromhex("BE 80 28 80"), bytes(4)))
    assert iv.session_type(iv.association_refuse()) == iv.RF_SPDU


def test_extended_poll_request_and_linked_reply() -> None:
    req = iv.extended_poll_request(invoke_id=4, poll_number=9, period_ticks=20 * 8000)
    parsed = iv.decode_poll_request(iv.decode_operation(req))
    assert parsed == iv.PollRequest(4, 9, True, 160000)
    single = iv.decode_poll_request(iv.decode_operation(iv.poll_request(5, 10)))
    assert single == iv.PollRequest(5, 10, False, 0)

    t0 = datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    obj = iv.NumericObject(1, 0x24182, (iv.NuObs(0x4182, 0, 0x0AA0, iv.encode_float(Decimal(88))),))
    linked = iv.poll_reply(4, 9, 8000, None, [obj], sequence_no=3, linked_state=iv.RORLS_FIRST)
    op = iv.decode_operation(linked)
    assert op.ro_type == iv.ROLRS_APDU
    reply = iv.decode_poll_reply(op)
    assert reply is not None and (reply.poll_number, reply.rel_ticks) == (9, 8000)
    ms = iv.measurements(linked, "mon", "m", RECEIVED, iv.TimeAnchor(0, t0))
    assert [(m.vendor_code, m.value) for m in ms] == [("0x4182", Decimal(88))]
    assert ms[0].device_time == t0 + timedelta(seconds=1)
    final = iv.poll_reply(4, 9, 16000, None, [obj], sequence_no=4)
    assert iv.decode_operation(final).ro_type == iv.RORS_APDU
