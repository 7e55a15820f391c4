"""GE Datex-Ohmeda S/5 Computer Interface (AS3 / DRI), without I/O.

Transport: ``0x7E``, the record, a 1-byte checksum (sum of the record's bytes, modulo 256),
``0x7E``. Inside, ``0x7E`` is sent as ``0x7D 0x5E`` and ``0x7D`` as ``0x7D 0x5D`` (bit 5
cleared). Line: 19200 baud, 8E1, RTS/CTS.

Record (little-endian, packed): a 40-byte header (``r_len``, ``r_nbr``, ``dri_level``,
``plug_id``, ``r_time`` as Unix seconds of the monitor's clock, ``n_subnet``, two reserved,
``r_maintype``, eight subrecord descriptors ``(offset i16, type u8)`` ended by type 0xFF),
then the subrecords. A physiological (``DRI_MT_PHDB``) record holds ``dri_phdb`` subrecords
of 278 bytes: ``time`` u32, 270 bytes of class data, ``marker``, a reserved byte and
``cl_drilvl_subt``. Each measurement group starts with a status u32 (bit 0 exists, bit 1
active) and a label u16. Values are i16 scaled (pressures, temperatures, SpO2, gases in
1/100); values at or below -32001 are sentinels, never numbers.
Sources: the S/5 Computer Interface Specification; xeonfusion/VSCapture (layout only).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timezone
from decimal import Decimal

from adapters.serial import codes
from adapters.serial.errors import WireError
from adapters.serial.measurement import Measurement, Unit

PROTOCOL = "datex"
CONTENT_TYPE = "application/x-datex-as3"
FLAG, ESC = 0x7E, 0x7D
MAX_RECORD = 1490  # header + the largest record the interface sends (1450 data bytes)

HEADER = struct.Struct("<hBBHIBBHh")  # 16 bytes, then 8 x (h, B)
SR_DESC = struct.Struct("<hB")
HEADER_LEN = HEADER.size + 8 * SR_DESC.size  # 40
DRI_MT_PHDB = 0
DRI_PH_DISPL = 1
DRI_EOL_SUBR_LIST = 0xFF
PHDB_LEN = 278
PHDB_REQ = struct.Struct("<BhIh")  # phdb_rcrd_type, tx_ival (s), phdb_class_bf, reserved

# Sentinels: the S/5 specification's "special values".
DATA_INVALID_LIMIT = -32001
SENTINELS = {
    -32767: "error",  # DATA_INVALID
    -32766: "temp-unknown",  # DATA_NOT_UPDATED
    -32765: "unknown",  # DATA_DISCONT
    -32764: "negative-infinity",  # DATA_UNDER_RANGE
    -32763: "positive-infinity",  # DATA_OVER_RANGE
    -32762: "error",  # DATA_NOT_CALIBRATED: no FHIR code closer than "error"
}


def checksum(record: bytes) -> int:
    return sum(record) & 0xFF


def _escape(data: bytes) -> bytes:
    return data.replace(bytes([ESC]), b"\x7d\x5d").replace(bytes([FLAG]), b"\x7d\x5e")


def encode_frame(record: bytes) -> bytes:
    return bytes([FLAG]) + _escape(record + bytes([checksum(record)])) + bytes([FLAG])


@dataclass(frozen=True, slots=True)
class Frame:
    record: bytes
    raw: bytes


@dataclass(frozen=True, slots=True)
class Fault:
    """``checksum``, ``framing`` (bad escape, length mismatch, overlong) or ``garbage``."""

    kind: str
    raw: bytes


class Framer:
    """Bytes in, frames and faults out. ``0x7E`` both closes a frame and may open the next
    (a sender may share one flag between frames), so every flag ends what came before it:
    a good record is a frame; bytes between frames, or left by a lost flag, are garbage or a
    checksum/framing fault, and the frame after them is found all the same."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._open = False

    @property
    def pending(self) -> bool:
        return self._open and bool(self._buf)

    def expire(self) -> list[Frame | Fault]:
        if not self.pending:
            return []
        raw = bytes([FLAG]) + bytes(self._buf)
        self._buf.clear()
        return [Fault("framing", raw)]

    def feed(self, data: bytes) -> list[Frame | Fault]:
        out: list[Frame | Fault] = []
        pos = 0
        n = len(data)
        while pos < n:
            j = data.find(FLAG, pos)
            if not self._open:
                if j < 0:
                    out.append(Fault("garbage", data[pos:]))
                    break
                if j > pos:
                    out.append(Fault("garbage", data[pos:j]))
                self._open = True
                self._buf.clear()
                pos = j + 1
                continue
            if j < 0:
                self._buf += data[pos:]
                if len(self._buf) > 2 * MAX_RECORD + 2:
                    out.append(Fault("framing", bytes(self._buf)))
                    self._buf.clear()
                    self._open = False
                break
            self._buf += data[pos:j]
            pos = j + 1
            if not self._buf:
                continue  # two flags in a row: the second opens the frame
            body = bytes(self._buf)
            self._buf.clear()
            event = _decode(body)
            if isinstance(event, Fault) and len(body) < HEADER_LEN:
                # Too short for a record: bytes between frames, not a damaged frame.
                event = Fault("garbage", body)
            out.append(event)
        return out


def _decode(body: bytes) -> Frame | Fault:
    raw = bytes([FLAG]) + body + bytes([FLAG])
    unescaped = bytearray()
    i = 0
    while i < len(body):
        b = body[i]
        if b == ESC:
            if i + 1 >= len(body):
                return Fault("framing", raw)
            unescaped.append(body[i + 1] | 0x20)
            i += 2
        else:
            unescaped.append(b)
            i += 1
    if len(unescaped) < HEADER_LEN + 1:
        return Fault("framing", raw)
    record, check = bytes(unescaped[:-1]), unescaped[-1]
    if checksum(record) != check:
        return Fault("checksum", raw)
    r_len = struct.unpack_from("<h", record, 0)[0]
    if r_len != len(record):
        return Fault("framing", raw)
    return Frame(record, raw)


# -- records ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    r_len: int
    r_nbr: int
    dri_level: int
    plug_id: int
    r_time: int
    r_maintype: int
    subrecords: tuple[tuple[int, int], ...]  # (offset from data start, type)


def encode_header(
    data_len: int,
    maintype: int,
    subrecords: list[tuple[int, int]],
    r_time: int,
    r_nbr: int = 0,
    dri_level: int = 0,
) -> bytes:
    descs = [*subrecords, (0, DRI_EOL_SUBR_LIST)][:8]
    descs += [(0, 0)] * (8 - len(descs))
    head = HEADER.pack(HEADER_LEN + data_len, r_nbr, dri_level, 0, r_time, 0, 0, 0, maintype)
    return head + b"".join(SR_DESC.pack(off, typ) for off, typ in descs)


def decode_header(record: bytes) -> Header:
    """The header of a record.

    Raises:
        WireError: shorter than a header.
    """
    if len(record) < HEADER_LEN:
        raise WireError("record shorter than its 40-byte header", "datex_hdr")
    r_len, r_nbr, level, plug, r_time, _, _, _, maintype = HEADER.unpack_from(record, 0)
    subs: list[tuple[int, int]] = []
    for k in range(8):
        off, typ = SR_DESC.unpack_from(record, HEADER.size + k * SR_DESC.size)
        if typ == DRI_EOL_SUBR_LIST:
            break
        subs.append((off, typ))
    return Header(r_len, r_nbr, level, plug, r_time, maintype, tuple(subs))


def phdb_request(interval_s: int, r_time: int = 0) -> bytes:
    """A displayed-values transmission request (basic class) every ``interval_s``; 0 stops."""
    body = PHDB_REQ.pack(DRI_PH_DISPL, interval_s, 0, 0)
    return encode_header(len(body), DRI_MT_PHDB, [(0, 0)], r_time) + body


def decode_phdb_request(record: bytes) -> int | None:
    """The interval of a displayed-values request, or ``None`` if ``record`` is not one."""
    head = decode_header(record)
    if head.r_maintype != DRI_MT_PHDB or not head.subrecords or head.subrecords[0][1] != 0:
        return None
    data = record[HEADER_LEN:]
    if len(data) < PHDB_REQ.size:
        raise WireError("PHDB request truncated", "dri_phdb_req")
    kind, interval, _, _ = PHDB_REQ.unpack_from(data, 0)
    return int(interval) if kind == DRI_PH_DISPL else None


@dataclass(frozen=True, slots=True)
class Field:
    """One value of the basic class: where it sits, how it scales, what it is."""

    name: str
    group_offset: int  # of the group's header within the class data
    value_offset: int  # of the i16 within the class data
    scale: Decimal
    metric: codes.Metric
    unit: Unit


_C = Decimal("0.01")
_1 = Decimal(1)
# etCO2 arrives in % of the gas, not as a partial pressure: same MDC term, no LOINC.
_ETCO2_PCT = replace(codes.ETCO2, loinc=None)
BASIC_FIELDS: tuple[Field, ...] = (
    Field("ecg.hr", 0, 6, _1, codes.HEART_RATE, codes.BEAT_PER_MIN),
    Field("p1.sys", 16, 22, _C, codes.ABP_SYS, codes.MMHG),
    Field("p1.dia", 16, 24, _C, codes.ABP_DIA, codes.MMHG),
    Field("p1.mean", 16, 26, _C, codes.ABP_MEAN, codes.MMHG),
    Field("nibp.sys", 72, 78, _C, codes.NIBP_SYS, codes.MMHG),
    Field("nibp.dia", 72, 80, _C, codes.NIBP_DIA, codes.MMHG),
    Field("nibp.mean", 72, 82, _C, codes.NIBP_MEAN, codes.MMHG),
    Field("t1.temp", 86, 92, _C, codes.TEMP, codes.DEGC),
    Field("spo2.spo2", 118, 124, _C, codes.SPO2, codes.PERCENT),
    Field("spo2.pr", 118, 126, _1, codes.PULSE_RATE, codes.BEAT_PER_MIN),
    Field("co2.et", 132, 138, _C, _ETCO2_PCT, codes.PERCENT),
    Field("co2.rr", 132, 142, _1, codes.AWAY_RESP_RATE, codes.RESP_PER_MIN),
)
GROUP_EXISTS, GROUP_ACTIVE = 0x1, 0x2
BASIC_LEN = 270


def encode_phdb(time_s: int, values: dict[str, int], groups: dict[int, int]) -> bytes:
    """A displayed-values subrecord: raw i16 ``values`` by field name, ``groups`` status by
    group offset (groups not listed are absent)."""
    data = bytearray(BASIC_LEN)
    for off, status in groups.items():
        struct.pack_into("<IH", data, off, status, 0)
    for f in BASIC_FIELDS:
        struct.pack_into("<h", data, f.value_offset, values.get(f.name, -32767))
    return struct.pack("<I", time_s) + bytes(data) + struct.pack("<BBH", 0, 0, 0)


def encode_phdb_record(time_s: int, values: dict[str, int], groups: dict[int, int]) -> bytes:
    sub = encode_phdb(time_s, values, groups)
    return encode_header(len(sub), DRI_MT_PHDB, [(0, DRI_PH_DISPL)], time_s) + sub


def device_time_of(time_s: int, tz: timezone = UTC) -> datetime:
    """A Datex time (Unix seconds counted on the monitor's local wall clock) as aware time."""
    return datetime.fromtimestamp(time_s, UTC).replace(tzinfo=tz)


def _value(raw: int, scale: Decimal) -> tuple[Decimal | None, str | None]:
    if raw <= DATA_INVALID_LIMIT:
        return None, SENTINELS.get(raw, "unknown")
    return Decimal(raw) * scale, None


def measurements(
    record: bytes,
    device_id: str,
    message_id: str,
    received_at: datetime,
    tz: timezone = UTC,
    raw: bytes = b"",
) -> list[Measurement]:
    """Displayed values of a physiological record; other records give none.

    Raises:
        WireError: a subrecord that runs past the record.
    """
    head = decode_header(record)
    if head.r_maintype != DRI_MT_PHDB:
        return []
    out: list[Measurement] = []
    data = record[HEADER_LEN:]
    for offset, sr_type in head.subrecords:
        if sr_type != DRI_PH_DISPL:
            continue
        if offset < 0 or offset + PHDB_LEN > len(data):
            raise WireError("displayed-values subrecord runs past the record", "dri_phdb")
        sub = data[offset : offset + PHDB_LEN]
        time_s = struct.unpack_from("<I", sub, 0)[0] or head.r_time
        cls = (struct.unpack_from("<H", sub, 276)[0] >> 8) & 0x0F
        if cls != 0:
            continue  # only the basic class is mapped
        device_time = device_time_of(time_s, tz)
        phys = sub[4 : 4 + BASIC_LEN]
        for f in BASIC_FIELDS:
            status = struct.unpack_from("<I", phys, f.group_offset)[0]
            if status & (GROUP_EXISTS | GROUP_ACTIVE) != GROUP_EXISTS | GROUP_ACTIVE:
                continue
            value, reason = _value(struct.unpack_from("<h", phys, f.value_offset)[0], f.scale)
            out.append(
                Measurement(
                    device_id=device_id,
                    protocol=PROTOCOL,
                    vendor_code=f.name,
                    label=f.metric.display,
                    value=value,
                    absent_reason=reason,
                    unit=f.unit if value is not None else None,
                    device_time=device_time,
                    received_at=received_at,
                    message_id=message_id,
                    position=len(out),
                    mdc_code=f.metric.mdc,
                    loinc=f.metric.loinc,
                    raw=raw,
                )
            )
    return out
