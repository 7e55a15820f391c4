"""ASTM E1381 (low level, CLSI LIS1-A) and E1394 (records, CLSI LIS2-A2), without I/O.

Low level: the sender bids with ENQ, the receiver answers ACK (or NAK when busy); each frame
``STX FN text ETX|ETB C1 C2 CR LF`` is answered ACK, or NAK when its checksum or frame number
is wrong, and the sender retransmits it; EOT ends the transfer. FN is an ASCII digit that
runs 1..7 then 0. C1C2 is the modulo-256 sum of the bytes from FN through ETX/ETB, as two
uppercase hex digits. A frame carries at most 240 characters of text; a longer record is
split over ETB frames and its last frame ends in ETX.

Records: lines ending in CR. The header sets the delimiters: field ``|``, repeat ``\\``,
component ``^``, escape ``&`` by default (``H|\\^&|...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from decimal import Decimal, InvalidOperation

from adapters.serial import codes
from adapters.serial.errors import WireError
from adapters.serial.measurement import Measurement

ENQ, ACK, NAK, EOT = 0x05, 0x06, 0x15, 0x04
STX, ETX, ETB, CR, LF = 0x02, 0x03, 0x17, 0x0D, 0x0A
MAX_TEXT = 240
# Longest frame on the wire: STX FN 240 text ETX C1 C2 CR LF.
MAX_FRAME = MAX_TEXT + 7
PROTOCOL = "astm"
# E1381: these never occur in frame text (CR does: it ends each record).
_FORBIDDEN = frozenset({STX, ETX, ETB, LF, ENQ, ACK, NAK, EOT})
CONTENT_TYPE = "application/x-astm-e1381"


def checksum(body: bytes) -> bytes:
    """Two uppercase hex digits of the modulo-256 sum of ``body`` (FN through ETX/ETB)."""
    return b"%02X" % (sum(body) & 0xFF)


def encode_frame(number: int, text: bytes, final: bool) -> bytes:
    """One frame; ``number`` is taken modulo 8 (1..7, 0, 1, ...)."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"frame text is {len(text)} bytes, at most {MAX_TEXT}")
    if any(b in _FORBIDDEN for b in text):
        raise ValueError("frame text holds a link control character (STX, ETX, ETB, LF, ...)")
    body = bytes([0x30 + number % 8]) + text + bytes([ETX if final else ETB])
    return bytes([STX]) + body + checksum(body) + b"\r\n"


def encode_message(records: list[bytes], first_number: int = 1) -> list[bytes]:
    """Frames for a message: each record (CR appended) starts a frame, split at 240 chars."""
    frames: list[bytes] = []
    number = first_number
    for record in records:
        text = record + b"\r"
        for start in range(0, len(text), MAX_TEXT):
            chunk = text[start : start + MAX_TEXT]
            frames.append(encode_frame(number, chunk, start + MAX_TEXT >= len(text)))
            number += 1
    return frames


@dataclass(frozen=True, slots=True)
class Control:
    """A single control byte seen outside a frame: ENQ, ACK, NAK or EOT."""

    byte: int


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame whose checksum held."""

    number: int
    text: bytes
    final: bool
    raw: bytes


@dataclass(frozen=True, slots=True)
class Fault:
    """Bytes that were not a good frame: ``kind`` is ``checksum``, ``framing`` or
    ``garbage``; the driver counts it and, inside a frame, answers NAK."""

    kind: str
    raw: bytes


Event = Control | Frame | Fault


class Framer:
    """Splits a byte stream into control bytes, frames and faults; keeps partial input.

    Resync: bytes outside a frame that are no control byte are garbage; a new STX inside a
    frame abandons the partial frame (a framing fault) and starts over, so one lost byte
    costs one frame, never the rest of the stream.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._garbage = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        """Events completed by ``data``, in order."""
        self._buf += data
        events: list[Event] = []
        buf = self._buf
        i = 0
        n = len(buf)
        while i < n:
            b = buf[i]
            if b == STX:
                self._flush_garbage(events)
                end = self._frame_end(buf, i)
                if end is None:
                    break  # incomplete: wait for more bytes
                if end < 0:
                    # A new STX or an overlong frame before the trailer: drop what we have.
                    stop = -end
                    events.append(Fault("framing", bytes(buf[i:stop])))
                    i = stop
                    continue
                events.append(self._decode(bytes(buf[i:end])))
                i = end
            elif b in (ENQ, ACK, NAK, EOT):
                self._flush_garbage(events)
                events.append(Control(b))
                i += 1
            else:
                self._garbage.append(b)
                i += 1
        del buf[:i]
        if not buf:
            self._flush_garbage(events)
        return events

    @property
    def pending(self) -> bool:
        """Whether a partial frame is buffered."""
        return bool(self._buf)

    def expire(self) -> list[Event]:
        """Give up on a partial frame (called when the line went quiet mid-frame: a sender
        waits for our answer, so a frame that stops short lost a byte and needs a NAK)."""
        events: list[Event] = []
        self._flush_garbage(events)
        if self._buf:
            events.append(Fault("framing", bytes(self._buf)))
            self._buf.clear()
        return events

    def _flush_garbage(self, events: list[Event]) -> None:
        if self._garbage:
            events.append(Fault("garbage", bytes(self._garbage)))
            self._garbage.clear()

    @staticmethod
    def _frame_end(buf: bytearray, start: int) -> int | None:
        """Index after the frame's LF; ``None`` if incomplete; ``-k`` to drop up to ``k``."""
        limit = min(len(buf), start + MAX_FRAME)
        for j in range(start + 1, limit):
            c = buf[j]
            if c == STX:
                return -j
            if c in (ETX, ETB):
                # Trailer damaged: end the frame before the byte that broke it, so that
                # byte (maybe the next STX or an EOT) is read on its own.
                for k, want in ((j + 3, CR), (j + 4, LF)):
                    if k >= len(buf):
                        return None
                    if buf[k] != want:
                        return -k
                return j + 5
        if len(buf) >= start + MAX_FRAME:
            return -(start + 1)
        return None

    @staticmethod
    def _decode(raw: bytes) -> Frame | Fault:
        # raw = STX FN text ETX|ETB C1 C2 CR LF
        body = raw[1:-4]
        if len(body) < 2 or raw[-2:] != b"\r\n" or not 0x30 <= body[0] <= 0x37:
            return Fault("framing", raw)
        if raw[-4:-2] != checksum(body):
            return Fault("checksum", raw)
        return Frame(body[0] - 0x30, body[1:-1], body[-1] == ETX, raw)


# -- records (E1394) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    repeat: str = "\\"
    component: str = "^"
    escape: str = "&"


def message_text(frames: list[bytes]) -> bytes:
    """The record text of a message from its raw frames (ETB frames joined)."""
    text = bytearray()
    for raw in frames:
        event = Framer._decode(raw)
        if not isinstance(event, Frame):
            raise WireError(f"frame in a stored message fails its {event.kind} check")
        text += event.text
    return bytes(text)


def split_records(text: bytes) -> tuple[Delimiters, list[list[str]]]:
    """Records of a message as lists of fields; the delimiters come from the H record."""
    lines = [ln for ln in text.decode("latin-1").split("\r") if ln]
    if not lines or not lines[0].startswith("H") or len(lines[0]) < 5:
        raise WireError("an ASTM message starts with an H record", "H")
    h = lines[0]
    d = Delimiters(h[1], h[2], h[3], h[4])
    records = [ln.split(d.field) for ln in lines]
    # The H record's own second field is the delimiter definition, not data.
    return d, records


def parse_timestamp(text: str, tz: timezone = UTC) -> datetime | None:
    """``YYYYMMDD[HHMM[SS]]`` in the analyzer's local time (``tz``); ``None`` if empty/bad."""
    digits = text.strip()[:14]
    if len(digits) < 8 or not digits.isdigit():
        return None
    digits = digits.ljust(14, "0")
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=tz)
    except ValueError:
        return None


# Manufacturer test codes of common blood-gas analyzers -> metrics.
TEST_CODES: dict[str, codes.Metric] = {
    "PH": codes.PH,
    "PCO2": codes.PCO2,
    "PO2": codes.PO2,
    "NA": codes.NA,
    "NA+": codes.NA,
    "K": codes.K,
    "K+": codes.K,
    "CL": codes.CL,
    "CL-": codes.CL,
    "CA": codes.CA,
    "CA++": codes.CA,
    "GLU": codes.GLU,
    "LAC": codes.LACTATE,
    "HCT": codes.HCT,
    "THB": codes.HB,
    "HB": codes.HB,
    "HCO3": codes.HCO3,
    "HCO3-": codes.HCO3,
    "BE": codes.BE,
    "SO2": codes.SO2,
}

_STATUS = {"F": "final", "P": "preliminary", "C": "corrected", "X": "cancelled"}


def _field(rec: list[str], n: int) -> str:
    """Field ``n`` counted as the standard does (record type is field 1)."""
    return rec[n - 1] if len(rec) >= n else ""


def measurements(
    frames: list[bytes],
    device_id: str,
    message_id: str,
    received_at: datetime,
    tz: timezone = UTC,
) -> list[Measurement]:
    """Result records of one message as measurements (comments and orders give context).

    Raises:
        WireError: the frames do not form an ASTM message with a header.
    """
    raw = b"".join(frames)
    d, records = split_records(message_text(frames))
    header_time = parse_timestamp(_field(records[0], 14), tz)
    patient: str | None = None
    specimen: str | None = None
    out: list[Measurement] = []
    for rec in records:
        kind = rec[0][:1].upper()
        if kind == "P":
            patient = _field(rec, 3) or _field(rec, 4) or None
        elif kind == "O":
            specimen = _field(rec, 3).split(d.component)[0] or None
        elif kind == "R":
            out.append(
                _result(
                    rec,
                    d,
                    device_id,
                    message_id,
                    len(out),
                    received_at,
                    tz,
                    header_time,
                    patient,
                    specimen,
                    raw,
                )
            )
    return out


def _result(
    rec: list[str],
    d: Delimiters,
    device_id: str,
    message_id: str,
    position: int,
    received_at: datetime,
    tz: timezone,
    header_time: datetime | None,
    patient: str | None,
    specimen: str | None,
    raw: bytes,
) -> Measurement:
    test_id = _field(rec, 3)
    parts = test_id.split(d.component)
    test = (parts[3] if len(parts) > 3 and parts[3] else test_id.strip(d.component)).strip()
    metric = TEST_CODES.get(test.upper())
    value_text = _field(rec, 4).split(d.component)[0].strip()
    comparator: str | None = None
    if value_text[:2] in ("<=", ">="):
        comparator, value_text = value_text[:2], value_text[2:]
    elif value_text[:1] in ("<", ">"):
        comparator, value_text = value_text[:1], value_text[1:]
    value: Decimal | None
    try:
        value = Decimal(value_text.strip()) if value_text else None
        if value is not None and not value.is_finite():
            value = None
    except InvalidOperation:
        value = None
    units = _field(rec, 5)
    completed = parse_timestamp(_field(rec, 13), tz)
    return Measurement(
        device_id=device_id,
        protocol=PROTOCOL,
        vendor_code=test,
        label=metric.display if metric else test,
        value=value,
        absent_reason=None if value is not None else ("error" if value_text else "unknown"),
        unit=codes.unit_from_text(units) if value is not None else None,
        device_time=completed or header_time,
        received_at=received_at,
        message_id=message_id,
        position=position,
        mdc_code=metric.mdc if metric else None,
        loinc=metric.loinc if metric else None,
        comparator=comparator if value is not None else None,
        status=_STATUS.get(_field(rec, 9).strip()[:1].upper(), "final"),
        category="laboratory",
        specimen_id=specimen,
        patient_hint=patient,
        raw=raw,
    )
