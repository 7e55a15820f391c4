"""Philips IntelliVue Data Export over MIB/RS232, without I/O.

Transport frame (Data Export Interface Programming Guide, "MIB/RS232"): ``BOF 0xC0``, a
header ``0x11 0x01`` (protocol id, message type) and the 2-byte big-endian user-data length,
the user data, the FCS, ``EOF 0xC1``. The FCS is PPP's FCS-16 (RFC 1662) over header and data,
sent complemented, low byte first. ``0xC0 0xC1 0x7D`` inside are sent as ``0x7D, b ^ 0x20``;
``0x7D 0xC1`` aborts the frame.

User data is the LAN protocol unchanged: a session PDU for association (AARQ 0x0D, AARE 0x0E,
refuse 0x0C, release 0x09/0x0A, abort 0x19) or, for data export, the 4-byte ``SPpdu``
(``0xE100``, presentation context) + ``ROapdus`` + ``ROIV``/``RORS``/``ROER``/``ROLRS`` +
the command. All integers are big-endian. Times: ``RelativeTime`` counts 1/8 ms ticks (u32,
wraps after ~6.2 days); ``AbsoluteTime`` is 8 BCD bytes (century, year, month, day, hour,
minute, second, hundredths), anchored to a relative time by the MDS create event report.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from adapters.serial import codes
from adapters.serial.errors import WireError
from adapters.serial.measurement import Measurement, Unit

PROTOCOL = "intellivue"
CONTENT_TYPE = "application/x-intellivue-mib"

BOF, EOF, ESC = 0xC0, 0xC1, 0x7D
HEADER = b"\x11\x01"
MAX_USER_DATA = 8192  # the guide's largest MIB frame is far smaller; bound what we buffer

# Session PDU types (first byte of association user data).
CN_SPDU, AC_SPDU, RF_SPDU, FN_SPDU, DN_SPDU, AB_SPDU = 0x0D, 0x0E, 0x0C, 0x09, 0x0A, 0x19
SESSION_ID = 0xE100
PRESENTATION_CONTEXT = 2
# Remote operation types and commands.
ROIV_APDU, RORS_APDU, ROER_APDU, ROLRS_APDU = 1, 2, 3, 5
CMD_EVENT_REPORT, CMD_CONFIRMED_EVENT_REPORT, CMD_CONFIRMED_ACTION = 0, 1, 7
# Nomenclature.
NOM_PART_OBJ = 1
NOM_MOC_VMO_METRIC_NU = 6  # VSCaptureMP and LNhealth; one public Go port says 0x24: wrong
NOM_MOC_VMS_MDS = 33
NOM_NOTI_MDS_CREAT = 3334
NOM_ACT_POLL_MDIB_DATA = 3094
NOM_ACT_POLL_MDIB_DATA_EXT = 0xF13B
NOM_ATTR_TIME_PD_POLL = 0xF13E
# Linked result states (ROLRS): the monitor splits an extended poll's updates into parts.
RORLS_FIRST, RORLS_NOT_FIRST_NOT_LAST, RORLS_LAST = 1, 2, 3
NOM_ATTR_GRP_METRIC_VAL_OBS = 0x0803
NOM_ATTR_ID_LABEL = 0x0924
NOM_ATTR_NU_CMPD_VAL_OBS = 0x094B
NOM_ATTR_NU_VAL_OBS = 0x0950
NOM_ATTR_SYS_ID = 0x0984
NOM_ATTR_TIME_ABS = 0x0987
NOM_ATTR_TIME_REL = 0x098F
NOM_ATTR_TIME_STAMP_ABS = 0x0990
NOM_ATTR_TIME_STAMP_REL = 0x0991
TICKS_PER_SECOND = 8000
# FLOAT-Type special values (exponent 0).
FLOAT_NAN, FLOAT_NRES, FLOAT_PINF, FLOAT_NINF = 0x007FFFFF, 0x00800000, 0x007FFFFE, 0x00800002
# MeasurementState bits.
STATE_INVALID, STATE_QUESTIONABLE, STATE_UNAVAILABLE = 0x8000, 0x4000, 0x2000
STATE_CALIBRATION, STATE_TEST, STATE_DEMO = 0x1000, 0x0800, 0x0400


# -- FCS and transport framing ----------------------------------------------------------


def _fcs_table() -> list[int]:
    table = []
    for b in range(256):
        v = b
        for _ in range(8):
            v = (v >> 1) ^ 0x8408 if v & 1 else v >> 1
        table.append(v)
    return table


_FCS_TABLE = _fcs_table()


def fcs16(data: bytes, fcs: int = 0xFFFF) -> int:
    """PPP FCS-16 (RFC 1662), not yet complemented; 0xF0B8 over data+FCS means good."""
    t = _FCS_TABLE
    for b in data:
        fcs = (fcs >> 8) ^ t[(fcs ^ b) & 0xFF]
    return fcs


def _escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in (BOF, EOF, ESC):
            out += bytes((ESC, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def encode_frame(user_data: bytes) -> bytes:
    """The wire bytes of one frame carrying ``user_data``."""
    body = HEADER + struct.pack(">H", len(user_data)) + user_data
    fcs = fcs16(body) ^ 0xFFFF
    return bytes([BOF]) + _escape(body + bytes((fcs & 0xFF, fcs >> 8))) + bytes([EOF])


@dataclass(frozen=True, slots=True)
class Frame:
    user_data: bytes
    raw: bytes


@dataclass(frozen=True, slots=True)
class Fault:
    """``checksum`` (FCS), ``framing`` (length, header, abort, overlong) or ``garbage``."""

    kind: str
    raw: bytes


class Framer:
    """Bytes in, frames and faults out. Bytes outside BOF..EOF are garbage; a BOF inside a
    frame restarts it (the partial one is a framing fault), so one lost EOF costs one frame."""

    def __init__(self) -> None:
        self._in_frame = False
        self._raw = bytearray()
        self._garbage = 0

    @property
    def pending(self) -> bool:
        return self._in_frame

    def expire(self) -> list[Frame | Fault]:
        if not self._in_frame:
            return []
        self._in_frame = False
        return [Fault("framing", bytes(self._raw))]

    def feed(self, data: bytes) -> list[Frame | Fault]:
        out: list[Frame | Fault] = []
        raw = self._raw
        start = 0
        n = len(data)
        while start < n:
            if not self._in_frame:
                i = data.find(BOF, start)
                if i < 0:
                    out.append(Fault("garbage", data[start:]))
                    break
                if i > start:
                    out.append(Fault("garbage", data[start:i]))
                self._in_frame = True
                raw.clear()
                raw.append(BOF)
                start = i + 1
                continue
            j_eof = data.find(EOF, start)
            j_bof = data.find(BOF, start)
            if j_bof >= 0 and (j_eof < 0 or j_bof < j_eof):
                raw += data[start:j_bof]
                out.append(Fault("framing", bytes(raw)))
                self._in_frame = False
                start = j_bof
                continue
            if j_eof < 0:
                raw += data[start:]
                if len(raw) > 2 * MAX_USER_DATA + 16:
                    out.append(Fault("framing", bytes(raw)))
                    self._in_frame = False
                break
            raw += data[start : j_eof + 1]
            self._in_frame = False
            out.append(_decode(bytes(raw)))
            start = j_eof + 1
        return out


def _decode(raw: bytes) -> Frame | Fault:
    inner = raw[1:-1]
    if inner.endswith(bytes([ESC])):
        return Fault("framing", raw)  # 0x7D 0xC1: the sender aborted the frame
    body = bytearray()
    it = iter(inner)
    for b in it:
        if b == ESC:
            nxt = next(it, None)
            if nxt is None:
                return Fault("framing", raw)
            body.append(nxt ^ 0x20)
        else:
            body.append(b)
    if len(body) < 6:
        return Fault("framing", raw)
    if fcs16(bytes(body)) != 0xF0B8:
        return Fault("checksum", raw)
    length = int.from_bytes(body[2:4], "big")
    if bytes(body[:2]) != HEADER or length != len(body) - 6:
        return Fault("framing", raw)
    return Frame(bytes(body[4:-2]), raw)


# -- data types -------------------------------------------------------------------------


def decode_float(raw: int) -> Decimal | str:
    """FLOAT-Type (8-bit exponent, 24-bit mantissa, both signed) -> a Decimal, or a
    data-absent reason for the special values."""
    mantissa = raw & 0xFFFFFF
    exponent = (raw >> 24) & 0xFF
    if exponent == 0:
        special = {
            FLOAT_NAN: "not-a-number",
            FLOAT_NRES: "error",
            FLOAT_PINF: "positive-infinity",
            FLOAT_NINF: "negative-infinity",
            0x00800001: "error",
        }.get(raw)
        if special is not None:
            return special
    if mantissa & 0x800000:
        mantissa -= 0x1000000
    if exponent & 0x80:
        exponent -= 0x100
    return Decimal(mantissa).scaleb(exponent)


def encode_float(value: Decimal) -> int:
    """The FLOAT-Type for ``value`` (exact if it has at most 7 significant digits)."""
    sign, digits, exponent = value.normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)) or "0")
    while mantissa > 0x7FFFFF:
        mantissa //= 10
        exponent += 1
    if sign:
        mantissa = -mantissa
    return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)


def _bcd(b: int) -> int:
    return (b >> 4) * 10 + (b & 0x0F)


def _to_bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def decode_abs_time(raw: bytes) -> datetime | None:
    """AbsoluteTime (8 BCD bytes) in the monitor's clock; ``None`` if unset (0xFF...)."""
    if len(raw) != 8 or raw[0] == 0xFF:
        return None
    try:
        return datetime(
            _bcd(raw[0]) * 100 + _bcd(raw[1]),
            _bcd(raw[2]),
            _bcd(raw[3]),
            _bcd(raw[4]),
            _bcd(raw[5]),
            _bcd(raw[6]),
            _bcd(raw[7]) * 10000,
            tzinfo=UTC,
        )
    except ValueError:
        return None


def encode_abs_time(when: datetime) -> bytes:
    w = when.astimezone(UTC)
    return bytes(
        _to_bcd(v)
        for v in (
            w.year // 100,
            w.year % 100,
            w.month,
            w.day,
            w.hour,
            w.minute,
            w.second,
            w.microsecond // 10000,
        )
    )


@dataclass(frozen=True, slots=True)
class TimeAnchor:
    """A relative time and the absolute time it was at (from the MDS create event)."""

    rel_ticks: int
    abs_time: datetime

    def at(self, rel_ticks: int) -> datetime:
        """The absolute time of ``rel_ticks``; the u32 counter may have wrapped once."""
        delta = (rel_ticks - self.rel_ticks) & 0xFFFFFFFF
        if delta > 0x80000000:  # earlier than the anchor, not ~3 days later
            delta -= 0x100000000
        return self.abs_time + timedelta(microseconds=delta * 125)

    def header(self) -> str:
        return f"{self.rel_ticks}@{self.abs_time.isoformat()}"

    @classmethod
    def parse(cls, text: str) -> TimeAnchor:
        rel, _, when = text.partition("@")
        return cls(int(rel), datetime.fromisoformat(when))


# -- attribute lists --------------------------------------------------------------------


def encode_attributes(avas: Iterable[tuple[int, bytes]]) -> bytes:
    items = list(avas)
    body = b"".join(struct.pack(">HH", aid, len(v)) + v for aid, v in items)
    return struct.pack(">HH", len(items), len(body)) + body


def decode_attributes(data: bytes, offset: int) -> tuple[dict[int, bytes], int]:
    """An AttributeList at ``offset``: ({id: value}, offset after it)."""
    if offset + 4 > len(data):
        raise WireError("attribute list header runs past the message")
    count, length = struct.unpack_from(">HH", data, offset)
    end = offset + 4 + length
    if end > len(data):
        raise WireError("attribute list runs past the message")
    avas: dict[int, bytes] = {}
    pos = offset + 4
    for _ in range(count):
        if pos + 4 > end:
            raise WireError("attribute header runs past its list")
        aid, alen = struct.unpack_from(">HH", data, pos)
        if pos + 4 + alen > end:
            raise WireError(f"attribute 0x{aid:04X} runs past its list")
        avas[aid] = data[pos + 4 : pos + 4 + alen]
        pos += 4 + alen
    return avas, end


# -- messages ---------------------------------------------------------------------------


def _li(n: int) -> bytes:
    """LengthInformation of the session/presentation layers: 1 byte, or 0xFF + 2 bytes."""
    return bytes([n]) if n < 255 else b"\xff" + struct.pack(">H", n)


def _asn_length(n: int) -> bytes:
    """A BER definite length."""
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return b"\x82" + struct.pack(">H", n)


# Association PDUs as the Programming Guide lays them out: session header (type, LI), session
# parameters, 0xC1 + LI, then a fixed ISO presentation/ACSE header (BER, indefinite lengths),
# the ASN.1 length and the MDSE user information, then end-of-contents zero octets closing
# the indefinite lengths. Only the user information varies.
_SESSION_PARAMS = bytes.fromhex("05 08 13 01 00 16 01 02 80 00 14 02 00 02")
_OID_MDSE = "2A 86 48 CE 14 02 01 00 00 00"  # the Philips/MDIB object identifier prefix
_AARQ_PRESENTATION = bytes.fromhex(
    "31 80 A0 80 80 01 01 00 00 A2 80 A0 03 00 00 01 A4 80 30 80 02 01 01 06 04 52 01 00 01"
    " 30 80 06 02 51 01 00 00 00 00 30 80 02 01 02 06 0C "
    + _OID_MDSE
    + " 01 01 30 80 06 0C "
    + _OID_MDSE
    + " 02 01 00 00 00 00 00 00 61 80 30 80 02 01 01 A0 80 60 80 A1 80 06 0C "
    + _OID_MDSE
    + " 03 01 00 00 BE 80 28 80 06 0C "
    + _OID_MDSE
    + " 01 01 02 01 02 81"
)
_AARE_PRESENTATION = bytes.fromhex(
    "31 80 A0 80 80 01 01 00 00 A2 80 A0 03 00 00 01 A5 80 30 80 80 01 00 81 02 51 01 00 00"
    " 30 80 80 01 00 81 0C " + _OID_MDSE + " 02 01 00 00 00 00 61 80 30 80 02 01 01 A0 80"
    " 61 80 A1 80 06 0C " + _OID_MDSE + " 03 01 00 00 A2 03 02 01 00 A3 05 A1 03 02 01 00"
    " BE 80 28 80 02 01 02 81"
)
_ASSOC_TRAILER = bytes(16)
_RELEASE_REQUEST = bytes.fromhex("61 80 30 80 02 01 01 A0 80 62 80 80 01 00 00 00 00 00")
_RELEASE_RESPONSE = bytes.fromhex("61 80 30 80 02 01 01 A0 80 63 80 80 01 00 00 00 00 00")
_RELEASE_TRAILER = bytes(4)
# Where the presentation header ends and the user information's ASN.1 length begins.
_USER_INFO_MARK = bytes.fromhex("BE 80 28 80")

SYST_CLIENT, SYST_SERVER = 0x80000000, 0x00800000
NOM_POLL_PROFILE_SUPPORT = 1
NOM_ATTR_POLL_PROFILE_EXT = 0xF001


def _session_pdu(kind: int, params: bytes, presentation: bytes) -> bytes:
    body = params + bytes([0xC1]) + _li(len(presentation)) + presentation
    return bytes([kind]) + _li(len(body)) + body


@dataclass(frozen=True, slots=True)
class UserInfo:
    """The MDSE user information of an association PDU (what each side offers)."""

    system_type: int
    min_poll_period_ticks: int
    max_mtu_rx: int
    max_mtu_tx: int


def _user_info(system_type: int, min_poll_period_ticks: int = TICKS_PER_SECOND) -> bytes:
    ext = struct.pack(">I", 0x80000000 | 0x40000000) + encode_attributes([])  # 1 s periods
    poll_profile = struct.pack(
        ">IIIIII",
        0x80000000,  # POLL_PROFILE_REV_0
        min_poll_period_ticks,
        1000,  # max_mtu_rx
        1000,  # max_mtu_tx
        0xFFFFFFFF,  # max_bw_tx
        0x60000000,  # P_OPT_DYN_CREATE_OBJECTS | P_OPT_DYN_DELETE_OBJECTS
    ) + encode_attributes([(NOM_ATTR_POLL_PROFILE_EXT, ext)])
    return (
        struct.pack(">IIIII", 0x80000000, 0x40000000, 0, system_type, 0x20000000)
        + encode_attributes([])
        + encode_attributes([(NOM_POLL_PROFILE_SUPPORT, poll_profile)])
    )


def _association(kind: int, presentation_header: bytes, system_type: int) -> bytes:
    info = _user_info(system_type)
    presentation = presentation_header + _asn_length(len(info)) + info + _ASSOC_TRAILER
    return _session_pdu(kind, _SESSION_PARAMS, presentation)


def association_request() -> bytes:
    """AARQ as a client (SYST_CLIENT), offering the poll profile with 1 s polls."""
    return _association(CN_SPDU, _AARQ_PRESENTATION, SYST_CLIENT)


def association_response() -> bytes:
    """AARE as the monitor (SYST_SERVER) accepting."""
    return _association(AC_SPDU, _AARE_PRESENTATION, SYST_SERVER)


def association_refuse() -> bytes:
    """The monitor refusing an association (session parameter 0x32: reason)."""
    return bytes([RF_SPDU, 3, 0x32, 1, 0x00])


def release_request() -> bytes:
    return _session_pdu(FN_SPDU, b"", _RELEASE_REQUEST + _RELEASE_TRAILER)


def release_response() -> bytes:
    return _session_pdu(DN_SPDU, b"", _RELEASE_RESPONSE + _RELEASE_TRAILER)


def decode_user_info(user_data: bytes) -> UserInfo:
    """The MDSE user information of an AARQ/AARE.

    Raises:
        WireError: lengths that do not add up, or no user information where it belongs.
    """
    if len(user_data) < 2:
        raise WireError("association PDU truncated", "session header")
    pos = 1
    if user_data[pos] == 0xFF:
        length = struct.unpack_from(">H", user_data, pos + 1)[0]
        pos += 3
    else:
        length, pos = user_data[pos], pos + 1
    if pos + length != len(user_data):
        raise WireError("session length does not match the PDU", "session header")
    mark = user_data.find(_USER_INFO_MARK, pos)
    start = user_data.find(b"\x81", mark + len(_USER_INFO_MARK)) if mark >= 0 else -1
    if start < 0:
        raise WireError("no MDSE user information in the association PDU", "presentation")
    pos = start + 1
    first = user_data[pos] if pos < len(user_data) else 0
    if first < 0x80:
        info_len, pos = first, pos + 1
    else:
        width = first & 0x7F
        info_len = int.from_bytes(user_data[pos + 1 : pos + 1 + width], "big")
        pos += 1 + width
    info = user_data[pos : pos + info_len]
    if len(info) != info_len or info_len < 28:
        raise WireError("MDSE user information truncated", "MDSEUserInfoStd")
    system_type = struct.unpack_from(">I", info, 12)[0]
    _, after_options = decode_attributes(info, 20)
    profiles, _ = decode_attributes(info, after_options)
    poll = profiles.get(NOM_POLL_PROFILE_SUPPORT, b"")
    if len(poll) < 16:
        raise WireError("no poll profile in the user information", "PollProfileSupport")
    _, period, mtu_rx, mtu_tx = struct.unpack_from(">IIII", poll, 0)
    return UserInfo(system_type, period, mtu_rx, mtu_tx)


def session_type(user_data: bytes) -> int | None:
    """The session PDU type, or ``None`` for a data export (``SPpdu``) message."""
    if len(user_data) >= 2 and user_data[0] == 0xE1 and user_data[1] == 0x00:
        return None
    return user_data[0] if user_data else -1


def _sp(ro_type: int, apdu: bytes) -> bytes:
    return (
        struct.pack(">HH", SESSION_ID, PRESENTATION_CONTEXT)
        + struct.pack(">HH", ro_type, len(apdu))
        + apdu
    )


def _managed_object(obj_class: int, handle: int = 0, context: int = 0) -> bytes:
    return struct.pack(">HHH", obj_class, context, handle)


def mds_create_event(invoke_id: int, rel_ticks: int, abs_time: datetime, system_id: bytes) -> bytes:
    """The monitor's MDS Create Event Report (confirmed), with its absolute/relative time."""
    attrs = encode_attributes(
        [
            (NOM_ATTR_SYS_ID, struct.pack(">H", len(system_id)) + system_id),
            (NOM_ATTR_TIME_ABS, encode_abs_time(abs_time)),
            (NOM_ATTR_TIME_REL, struct.pack(">I", rel_ticks & 0xFFFFFFFF)),
        ]
    )
    info = _managed_object(NOM_MOC_VMS_MDS) + attrs
    arg = (
        _managed_object(NOM_MOC_VMS_MDS)
        + struct.pack(">IHH", rel_ticks & 0xFFFFFFFF, NOM_NOTI_MDS_CREAT, len(info))
        + info
    )
    roiv = struct.pack(">HHH", invoke_id, CMD_CONFIRMED_EVENT_REPORT, len(arg)) + arg
    return _sp(ROIV_APDU, roiv)


def mds_create_result(invoke_id: int, rel_ticks: int) -> bytes:
    """Our answer to the MDS create event report (required before polling)."""
    result = _managed_object(NOM_MOC_VMS_MDS) + struct.pack(
        ">IHH", rel_ticks & 0xFFFFFFFF, NOM_NOTI_MDS_CREAT, 0
    )
    rors = struct.pack(">HHH", invoke_id, CMD_CONFIRMED_EVENT_REPORT, len(result)) + result
    return _sp(RORS_APDU, rors)


def poll_request(invoke_id: int, poll_number: int) -> bytes:
    """A single poll for every numeric's observed values."""
    req = struct.pack(
        ">HHHH", poll_number, NOM_PART_OBJ, NOM_MOC_VMO_METRIC_NU, NOM_ATTR_GRP_METRIC_VAL_OBS
    )
    arg = (
        _managed_object(NOM_MOC_VMS_MDS)
        + struct.pack(">IHH", 0, NOM_ACT_POLL_MDIB_DATA, len(req))
        + req
    )
    roiv = struct.pack(">HHH", invoke_id, CMD_CONFIRMED_ACTION, len(arg)) + arg
    return _sp(ROIV_APDU, roiv)


@dataclass(frozen=True, slots=True)
class NuObs:
    """One numeric observed value as on the wire."""

    physio_id: int
    state: int
    unit_code: int
    value: int  # FLOAT-Type bits


@dataclass(frozen=True, slots=True)
class NumericObject:
    handle: int
    label: int
    values: tuple[NuObs, ...]


def _nu(n: NuObs) -> bytes:
    return struct.pack(">HHHI", n.physio_id, n.state, n.unit_code, n.value)


def poll_reply(
    invoke_id: int,
    poll_number: int,
    rel_ticks: int,
    abs_time: datetime | None,
    objects: Iterable[NumericObject],
    *,
    sequence_no: int | None = None,
    linked_state: int | None = None,
) -> bytes:
    """The monitor's poll result: one context with an observation per numeric object.

    With ``sequence_no`` it is an extended poll result (PollMdibDataReplyExt); with
    ``linked_state`` it travels as a linked result (ROLRS) instead of a final RORS.
    """
    polls = []
    for obj in objects:
        avas: list[tuple[int, bytes]] = [(NOM_ATTR_ID_LABEL, struct.pack(">I", obj.label))]
        if len(obj.values) == 1:
            avas.append((NOM_ATTR_NU_VAL_OBS, _nu(obj.values[0])))
        else:
            cmpd = b"".join(_nu(v) for v in obj.values)
            avas.append(
                (NOM_ATTR_NU_CMPD_VAL_OBS, struct.pack(">HH", len(obj.values), len(cmpd)) + cmpd)
            )
        polls.append(struct.pack(">H", obj.handle) + encode_attributes(avas))
    poll_info = b"".join(polls)
    context = struct.pack(">HHH", 0, len(polls), len(poll_info)) + poll_info
    abs_raw = encode_abs_time(abs_time) if abs_time is not None else b"\xff" * 8
    head = struct.pack(">H", poll_number)
    if sequence_no is not None:
        head += struct.pack(">H", sequence_no & 0xFFFF)
    reply = (
        head
        + struct.pack(">I", rel_ticks & 0xFFFFFFFF)
        + abs_raw
        + struct.pack(">HHH", NOM_PART_OBJ, NOM_MOC_VMO_METRIC_NU, NOM_ATTR_GRP_METRIC_VAL_OBS)
        + struct.pack(">HH", 1, len(context))
        + context
    )
    action = NOM_ACT_POLL_MDIB_DATA if sequence_no is None else NOM_ACT_POLL_MDIB_DATA_EXT
    result = _managed_object(NOM_MOC_VMS_MDS) + struct.pack(">HH", action, len(reply)) + reply
    apdu = struct.pack(">HHH", invoke_id, CMD_CONFIRMED_ACTION, len(result)) + result
    if linked_state is None:
        return _sp(RORS_APDU, apdu)
    return _sp(ROLRS_APDU, bytes([linked_state, (sequence_no or 0) & 0xFF]) + apdu)


def extended_poll_request(invoke_id: int, poll_number: int, period_ticks: int) -> bytes:
    """An extended poll: the monitor sends numeric updates itself for ``period_ticks``."""
    ext = encode_attributes([(NOM_ATTR_TIME_PD_POLL, struct.pack(">I", period_ticks))])
    req = (
        struct.pack(
            ">HHHH", poll_number, NOM_PART_OBJ, NOM_MOC_VMO_METRIC_NU, NOM_ATTR_GRP_METRIC_VAL_OBS
        )
        + ext
    )
    arg = (
        _managed_object(NOM_MOC_VMS_MDS)
        + struct.pack(">IHH", 0, NOM_ACT_POLL_MDIB_DATA_EXT, len(req))
        + req
    )
    roiv = struct.pack(">HHH", invoke_id, CMD_CONFIRMED_ACTION, len(arg)) + arg
    return _sp(ROIV_APDU, roiv)


@dataclass(frozen=True, slots=True)
class PollRequest:
    """A poll request as the monitor reads it."""

    invoke_id: int
    poll_number: int
    extended: bool
    period_ticks: int  # extended polls only; 0 for single polls


def decode_poll_request(op: Operation) -> PollRequest | None:
    """The single or extended poll request in ``op``, or ``None``.

    Raises:
        WireError: an action argument too short for a poll request.
    """
    if op.ro_type != ROIV_APDU or op.command != CMD_CONFIRMED_ACTION:
        return None
    body = op.body
    if len(body) < 14:
        raise WireError("action argument truncated", "ActionArgument")
    action, length = struct.unpack_from(">HH", body, 10)
    if action not in (NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT):
        return None
    req = body[14 : 14 + length]
    if len(req) < 8:
        raise WireError("poll request truncated", "PollMdibDataReq")
    poll_number = struct.unpack_from(">H", req, 0)[0]
    if action == NOM_ACT_POLL_MDIB_DATA:
        return PollRequest(op.invoke_id, poll_number, False, 0)
    avas, _ = decode_attributes(req, 8)
    raw = avas.get(NOM_ATTR_TIME_PD_POLL, b"")
    period = struct.unpack(">I", raw)[0] if len(raw) == 4 else 0
    return PollRequest(op.invoke_id, poll_number, True, period)


# -- decoding data export messages -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operation:
    """The remote-operation envelope of a data export message."""

    ro_type: int
    invoke_id: int
    command: int
    body: bytes  # the argument/result after the envelope


def decode_operation(user_data: bytes) -> Operation:
    """Split ``SPpdu + ROapdus + ROIV/RORS/ROLRS/ROER``.

    Raises:
        WireError: not a data export message, or lengths that do not add up.
    """
    if len(user_data) < 8 or session_type(user_data) is not None:
        raise WireError("not a data export message", "SPpdu")
    ro_type, ro_len = struct.unpack_from(">HH", user_data, 4)
    apdu = user_data[8:]
    if ro_len != len(apdu):
        raise WireError(f"ROapdus length {ro_len} but {len(apdu)} bytes follow", "ROapdus")
    if ro_type == ROLRS_APDU:
        apdu = apdu[2:]  # linked id (state, count)
    if ro_type == ROER_APDU:
        invoke_id, error, _ = struct.unpack_from(">HHH", apdu, 0)
        return Operation(ro_type, invoke_id, error, apdu[6:])
    if len(apdu) < 6:
        raise WireError("remote operation header truncated", "ROapdus")
    invoke_id, command, length = struct.unpack_from(">HHH", apdu, 0)
    if length != len(apdu) - 6:
        raise WireError(f"operation length {length} but {len(apdu) - 6} bytes", "ROIV/RORS")
    return Operation(ro_type, invoke_id, command, apdu[6:])


@dataclass(frozen=True, slots=True)
class MdsCreate:
    invoke_id: int
    anchor: TimeAnchor | None
    system_id: bytes


def decode_mds_create(op: Operation) -> MdsCreate | None:
    """The MDS create event report in ``op``, or ``None`` if ``op`` is something else."""
    if op.ro_type != ROIV_APDU or op.command not in (CMD_EVENT_REPORT, CMD_CONFIRMED_EVENT_REPORT):
        return None
    if len(op.body) < 14:
        raise WireError("event report truncated", "EventReportArgument")
    _, _, _, event_time, event_type, _ = struct.unpack_from(">HHHIHH", op.body, 0)
    if event_type != NOM_NOTI_MDS_CREAT:
        return None
    avas, _ = decode_attributes(op.body, 14 + 6)
    abs_time = decode_abs_time(avas.get(NOM_ATTR_TIME_ABS, b""))
    rel_raw = avas.get(NOM_ATTR_TIME_REL)
    rel = struct.unpack(">I", rel_raw)[0] if rel_raw and len(rel_raw) == 4 else event_time
    sys_raw = avas.get(NOM_ATTR_SYS_ID, b"")
    system_id = sys_raw[2:] if len(sys_raw) >= 2 else b""
    anchor = TimeAnchor(rel, abs_time) if abs_time is not None else None
    return MdsCreate(op.invoke_id, anchor, system_id)


@dataclass(frozen=True, slots=True)
class PollReply:
    invoke_id: int
    poll_number: int
    rel_ticks: int
    abs_time: datetime | None
    objects: tuple[NumericObject, ...] = field(default=())


def decode_poll_reply(op: Operation) -> PollReply | None:
    """The numerics of a poll result, or ``None`` if ``op`` is no poll result.

    Raises:
        WireError: a poll result whose lists do not add up.
    """
    if op.ro_type not in (RORS_APDU, ROLRS_APDU) or op.command != CMD_CONFIRMED_ACTION:
        return None
    body = op.body
    if len(body) < 10:
        raise WireError("action result truncated", "ActionResult")
    action_type, length = struct.unpack_from(">HH", body, 6)
    if action_type not in (NOM_ACT_POLL_MDIB_DATA, NOM_ACT_POLL_MDIB_DATA_EXT):
        return None
    reply = body[10 : 10 + length]
    # The extended reply carries a sequence number after the poll number.
    skip = 2 if action_type == NOM_ACT_POLL_MDIB_DATA_EXT else 0
    if len(reply) != length or length < 24 + skip:
        raise WireError("poll reply truncated", "PollMdibDataReply")
    poll_number = struct.unpack_from(">H", reply, 0)[0]
    reply = reply[skip:]
    rel = struct.unpack_from(">I", reply, 2)[0]
    abs_time = decode_abs_time(reply[6:14])
    n_ctx, ctx_len = struct.unpack_from(">HH", reply, 20)
    pos, end = 24, 24 + ctx_len
    if end > len(reply):
        raise WireError("poll info list runs past the reply", "PollInfoList")
    objects: list[NumericObject] = []
    for _ in range(n_ctx):
        if pos + 6 > end:
            raise WireError("context poll truncated", "SingleContextPoll")
        _, n_obs, obs_len = struct.unpack_from(">HHH", reply, pos)
        pos += 6
        obs_end = pos + obs_len
        if obs_end > end:
            raise WireError("observation list runs past its context", "ObservationPoll")
        for _ in range(n_obs):
            if pos + 2 > obs_end:
                raise WireError("observation truncated", "ObservationPoll")
            handle = struct.unpack_from(">H", reply, pos)[0]
            avas, pos = decode_attributes(reply, pos + 2)
            if pos > obs_end:
                raise WireError("observation runs past its context", "ObservationPoll")
            objects.append(_numeric(handle, avas))
        pos = obs_end
    return PollReply(op.invoke_id, poll_number, rel, abs_time, tuple(objects))


def _numeric(handle: int, avas: dict[int, bytes]) -> NumericObject:
    label_raw = avas.get(NOM_ATTR_ID_LABEL, b"")
    label = struct.unpack(">I", label_raw)[0] if len(label_raw) == 4 else 0
    values: list[NuObs] = []
    single = avas.get(NOM_ATTR_NU_VAL_OBS)
    if single is not None:
        if len(single) != 10:
            raise WireError("NuObsValue is 10 bytes", "NOM_ATTR_NU_VAL_OBS")
        values.append(NuObs(*struct.unpack(">HHHI", single)))
    cmpd = avas.get(NOM_ATTR_NU_CMPD_VAL_OBS)
    if cmpd is not None:
        if len(cmpd) < 4:
            raise WireError("compound value truncated", "NOM_ATTR_NU_CMPD_VAL_OBS")
        count, length = struct.unpack_from(">HH", cmpd, 0)
        if length != count * 10 or len(cmpd) != 4 + length:
            raise WireError("compound value lengths do not add up", "NOM_ATTR_NU_CMPD_VAL_OBS")
        for i in range(count):
            values.append(NuObs(*struct.unpack_from(">HHHI", cmpd, 4 + 10 * i)))
    return NumericObject(handle, label, tuple(values))


# -- to measurements --------------------------------------------------------------------

# Philips physiological ids (partition SCADA) -> metrics.
METRICS: dict[int, codes.Metric] = {
    16770: codes.HEART_RATE,  # NOM_ECG_CARD_BEAT_RATE
    19384: codes.SPO2,  # NOM_PULS_OXIM_SAT_O2
    18466: codes.PULSE_RATE,  # NOM_PLETH_PULS_RATE
    18442: codes.PULSE_RATE,  # NOM_PULS_RATE
    18949: codes.NIBP_SYS,
    18950: codes.NIBP_DIA,
    18951: codes.NIBP_MEAN,
    18965: codes.ABP_SYS,
    18966: codes.ABP_DIA,
    18967: codes.ABP_MEAN,
    20490: codes.RESP_RATE,  # NOM_RESP_RATE
    20498: codes.AWAY_RESP_RATE,  # NOM_AWAY_RESP_RATE
    19272: codes.TEMP,  # NOM_TEMP
    20656: codes.ETCO2,  # NOM_AWAY_CO2_ET
}

# Philips NOM_DIM_* (partition DIM) -> units.
UNITS: dict[int, Unit] = {
    0x0AA0: codes.BEAT_PER_MIN,
    0x0AE0: codes.RESP_PER_MIN,
    0x0220: codes.PERCENT,
    0x0F20: codes.MMHG,
    0x0F03: codes.KPA,
    0x17A0: codes.DEGC,
    0x0200: codes.DIMLESS,
}


def _state_reason(state: int) -> str | None:
    if state & STATE_INVALID:
        return "error"
    if state & (STATE_UNAVAILABLE | STATE_CALIBRATION):
        return "temp-unknown"
    return None


def measurements(
    user_data: bytes,
    device_id: str,
    message_id: str,
    received_at: datetime,
    anchor: TimeAnchor | None,
    raw: bytes = b"",
) -> list[Measurement]:
    """Numerics of one poll result frame; other frames give none.

    Device time: the reply's relative time through the MDS anchor; else the reply's own
    absolute time; else unknown.

    Raises:
        WireError: a poll result whose structure is broken.
    """
    if session_type(user_data) is not None:
        return []
    reply = decode_poll_reply(decode_operation(user_data))
    if reply is None:
        return []
    device_time = anchor.at(reply.rel_ticks) if anchor is not None else reply.abs_time
    out: list[Measurement] = []
    for obj in reply.objects:
        for nu in obj.values:
            metric = METRICS.get(nu.physio_id)
            decoded = decode_float(nu.value)
            reason = _state_reason(nu.state)
            value: Decimal | None = None
            if reason is None:
                if isinstance(decoded, str):
                    reason = decoded
                else:
                    value = decoded
            questionable = nu.state & (STATE_QUESTIONABLE | STATE_TEST | STATE_DEMO)
            out.append(
                Measurement(
                    device_id=device_id,
                    protocol=PROTOCOL,
                    vendor_code=f"0x{nu.physio_id:04X}",
                    label=metric.display if metric else f"IntelliVue 0x{nu.physio_id:04X}",
                    value=value,
                    absent_reason=reason,
                    unit=UNITS.get(nu.unit_code) if value is not None else None,
                    device_time=device_time,
                    received_at=received_at,
                    message_id=message_id,
                    position=len(out),
                    mdc_code=metric.mdc if metric else codes.mdc(codes.PART_SCADA, nu.physio_id),
                    loinc=metric.loinc if metric else None,
                    status="preliminary" if questionable else "final",
                    raw=raw,
                )
            )
    return out
