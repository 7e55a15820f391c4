"""Draeger Medibus (ventilators, anaesthesia machines), without I/O.

Both sides are masters: either may send a command ``ESC cmd [args] C1 C2 CR`` and the other
answers ``SOH cmd [data] C1 C2 CR`` (the command echoed). C1C2 is the modulo-256 sum of every
byte from ESC/SOH through the data, as two uppercase ASCII hex digits: ICC is
``1B 51 36 43 0D`` (0x1B + 0x51 = 0x6C). Text is 7-bit ASCII, so CR only ends a message.
Communication starts with ICC (0x51) and lapses when a side hears nothing for a few seconds:
NOP (0x30) keeps it alive. Measured data (0x24, codepage 1) are 6-character items
(2 hex digits of code, 4 characters of value); current alarms (0x27, codepage 1) are
15-character items (priority digit, 2 hex digits of code, 12 characters of phrase).
Sources: the Draeger Medibus protocol description; mdpnp OpenICE and xeonfusion
VSCaptureDrgVent (codes and units only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from adapters.serial import codes
from adapters.serial.errors import WireError
from adapters.serial.measurement import Measurement, Unit

PROTOCOL = "medibus"
CONTENT_TYPE = "application/x-draeger-medibus"
ESC, SOH, CR, CAN = 0x1B, 0x01, 0x0D, 0x18
MAX_MESSAGE = 4096

ICC = 0x51  # initialize communication
NOP = 0x30  # no operation (keep-alive)
STOP = 0x55  # stop communication
DEVICE_ID = 0x52
DATE_TIME = 0x28
MEASURED_CP1 = 0x24
ALARMS_CP1 = 0x27


def checksum(data: bytes) -> bytes:
    return b"%02X" % (sum(data) & 0xFF)


def encode_command(cmd: int, args: bytes = b"") -> bytes:
    body = bytes([ESC, cmd]) + args
    return body + checksum(body) + b"\r"


def encode_response(cmd: int, data: bytes = b"") -> bytes:
    body = bytes([SOH, cmd]) + data
    return body + checksum(body) + b"\r"


@dataclass(frozen=True, slots=True)
class Message:
    """A command (``ESC``) or a response (``SOH``) whose checksum held."""

    is_command: bool
    cmd: int
    data: bytes
    raw: bytes


@dataclass(frozen=True, slots=True)
class Fault:
    """``checksum``, ``framing`` (too short, cancelled, overlong) or ``garbage``."""

    kind: str
    raw: bytes


class Framer:
    """Bytes in, messages and faults out. Bytes before an ESC/SOH are garbage; an ESC or SOH
    inside a message starts a new one (the partial one is a framing fault)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> bool:
        return bool(self._buf)

    def expire(self) -> list[Message | Fault]:
        if not self._buf:
            return []
        raw = bytes(self._buf)
        self._buf.clear()
        return [Fault("framing", raw)]

    def feed(self, data: bytes) -> list[Message | Fault]:
        out: list[Message | Fault] = []
        buf = self._buf
        garbage = bytearray()
        for b in data:
            if b in (ESC, SOH):
                if garbage:
                    out.append(Fault("garbage", bytes(garbage)))
                    garbage.clear()
                if buf:
                    out.append(Fault("framing", bytes(buf)))
                buf.clear()
                buf.append(b)
            elif not buf:
                garbage.append(b)
            elif b == CR:
                buf.append(b)
                out.append(_decode(bytes(buf)))
                buf.clear()
            elif b == CAN:
                buf.append(b)
                out.append(Fault("framing", bytes(buf)))
                buf.clear()
            else:
                buf.append(b)
                if len(buf) > MAX_MESSAGE:
                    out.append(Fault("framing", bytes(buf)))
                    buf.clear()
        if garbage:
            out.append(Fault("garbage", bytes(garbage)))
        return out


def _decode(raw: bytes) -> Message | Fault:
    if len(raw) < 5:
        return Fault("framing", raw)
    body, check = raw[:-3], raw[-3:-1]
    if checksum(body) != check:
        return Fault("checksum", raw)
    return Message(raw[0] == ESC, raw[1], body[2:], raw)


# -- payloads ---------------------------------------------------------------------------


def encode_measured(items: list[tuple[int, str]]) -> bytes:
    return b"".join(b"%02X" % code + value.rjust(4)[:4].encode() for code, value in items)


def decode_measured(data: bytes) -> list[tuple[int, str]]:
    """(code, value text) pairs of a measured-data response.

    Raises:
        WireError: not a whole number of 6-character items, or a code not in hex.
    """
    if len(data) % 6:
        raise WireError(f"measured data of {len(data)} bytes is no run of 6-byte items")
    out = []
    for i in range(0, len(data), 6):
        try:
            code = int(data[i : i + 2], 16)
        except ValueError as exc:
            raise WireError(f"measured-data code {data[i : i + 2]!r} is not hex") from exc
        out.append((code, data[i + 2 : i + 6].decode("ascii", "replace")))
    return out


@dataclass(frozen=True, slots=True)
class Alarm:
    priority: int
    code: int
    phrase: str


def encode_alarms(alarms: list[Alarm]) -> bytes:
    return b"".join(
        b"%d%02X" % (a.priority, a.code) + a.phrase.ljust(12)[:12].encode() for a in alarms
    )


def decode_alarms(data: bytes) -> list[Alarm]:
    """Current alarms of an alarm response.

    Raises:
        WireError: not a whole number of 15-character items.
    """
    if len(data) % 15:
        raise WireError(f"alarm data of {len(data)} bytes is no run of 15-byte items")
    out = []
    for i in range(0, len(data), 15):
        item = data[i : i + 15]
        try:
            out.append(Alarm(int(item[:1]), int(item[1:3], 16), item[3:].decode("ascii").strip()))
        except (ValueError, UnicodeDecodeError) as exc:
            raise WireError(f"alarm item {item!r} is malformed") from exc
    return out


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def encode_datetime(when: datetime) -> bytes:
    """``HH:MM:SSDD-MMM-YY`` (the date/time response)."""
    return f"{when:%H:%M:%S}{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year % 100:02d}".encode()


def decode_datetime(data: bytes) -> datetime:
    """The device clock from a date/time response, as naive local time of the device.

    Raises:
        WireError: not ``HH:MM:SSDD-MMM-YY``.
    """
    text = data.decode("ascii", "replace")
    try:
        hh, mm, ss = int(text[0:2]), int(text[3:5]), int(text[6:8])
        day, month, year = int(text[8:10]), _MONTHS.index(text[11:14].upper()) + 1, int(text[15:17])
        return datetime(2000 + year, month, day, hh, mm, ss)
    except (ValueError, IndexError) as exc:
        raise WireError(f"date/time {text!r} is not HH:MM:SSDD-MMM-YY") from exc


@dataclass(frozen=True, slots=True)
class Code:
    metric: codes.Metric
    unit: Unit


def _v(ref: str, display: str) -> codes.Metric:
    return codes.Metric(None, ref, display)


# Codepage 1 measured-data codes and their units (Medibus description; OpenICE).
MEASURED: dict[int, Code] = {
    0x7D: Code(codes.PEAK_PRESSURE, codes.MBAR),
    0x73: Code(_v("", "Mean airway pressure"), codes.MBAR),
    0x74: Code(_v("", "Plateau pressure"), codes.MBAR),
    0x78: Code(codes.PEEP, codes.MBAR),
    0x88: Code(codes.TIDAL_VOLUME, codes.MILLILITRE),
    0xB9: Code(codes.MINUTE_VOLUME, codes.LITRE_PER_MIN),
    0xD6: Code(codes.RESP_RATE, codes.RESP_PER_MIN),
    0xB5: Code(_v("", "Spontaneous respiratory rate"), codes.RESP_PER_MIN),
    0xF0: Code(codes.FIO2, codes.PERCENT),
    0xEB: Code(codes.SPO2, codes.PERCENT),
    0xE1: Code(codes.PULSE_RATE, codes.BEAT_PER_MIN),
    0xE6: Code(codes.ETCO2, codes.MMHG),
    0xDB: Code(codes.Metric(codes.ETCO2.mdc, codes.ETCO2.ref_id, "End-tidal CO2"), codes.PERCENT),
}


def measurements(
    message: Message,
    device_id: str,
    message_id: str,
    received_at: datetime,
    device_time: datetime | None,
) -> list[Measurement]:
    """Readings of a measured-data or alarm response; other messages give none.

    Raises:
        WireError: a response whose items are malformed.
    """
    if message.is_command:
        return []
    out: list[Measurement] = []
    if message.cmd == MEASURED_CP1:
        for code, text in decode_measured(message.data):
            known = MEASURED.get(code)
            value: Decimal | None
            try:
                value = Decimal(text.strip())
                if not value.is_finite():
                    value = None
            except InvalidOperation:
                value = None
            out.append(
                Measurement(
                    device_id=device_id,
                    protocol=PROTOCOL,
                    vendor_code=f"{code:02X}",
                    label=known.metric.display if known else f"Medibus {code:02X}",
                    value=value,
                    absent_reason=None if value is not None else "error",
                    unit=known.unit if known and value is not None else None,
                    device_time=device_time,
                    received_at=received_at,
                    message_id=message_id,
                    position=len(out),
                    mdc_code=known.metric.mdc if known else None,
                    loinc=known.metric.loinc if known else None,
                    raw=message.raw,
                )
            )
    elif message.cmd == ALARMS_CP1:
        for alarm in decode_alarms(message.data):
            out.append(
                Measurement(
                    device_id=device_id,
                    protocol=PROTOCOL + "-alarm",
                    vendor_code=f"{alarm.code:02X}",
                    label=f"Alarm priority {alarm.priority}",
                    value=None,
                    absent_reason=None,
                    unit=None,
                    device_time=device_time,
                    received_at=received_at,
                    message_id=message_id,
                    position=len(out),
                    category="device-alarm",
                    text=alarm.phrase,
                    raw=message.raw,
                )
            )
    return out


def to_utc(local: datetime, offset_minutes: int) -> datetime:
    """A device's naive local time as an aware UTC time."""
    return local.replace(tzinfo=timezone(timedelta(minutes=offset_minutes))).astimezone(UTC)
