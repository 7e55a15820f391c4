"""DIMSE on the wire, pure: P-DATA-TF values, command sets, and the responses the gateway
sends (PS3.7 chapter 9 and Annex E, PS3.8 9.3.5).

pynetdicom does all of this through pydicom data sets; on the C-STORE path that costs more
than storing the instance, so the gateway decodes the request's command set (a handful
of implicit VR little endian elements) and encodes its responses here.
``tests/unit/dicom/test_dimse.py`` checks the bytes against pynetdicom's encoder.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from caregraph.errors import MappingError

AFFECTED_SOP_CLASS_UID = 0x00000002
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
MESSAGE_ID_BEING_RESPONDED_TO = 0x00000120
PRIORITY = 0x00000700
COMMAND_DATA_SET_TYPE = 0x00000800
STATUS = 0x00000900
ERROR_COMMENT = 0x00000902
AFFECTED_SOP_INSTANCE_UID = 0x00001000
REMAINING_SUB_OPERATIONS = 0x00001020
COMPLETED_SUB_OPERATIONS = 0x00001021
FAILED_SUB_OPERATIONS = 0x00001022
WARNING_SUB_OPERATIONS = 0x00001023

NO_DATA_SET = 0x0101
HAS_DATA_SET = 0x0001
_US = frozenset({COMMAND_FIELD, MESSAGE_ID, MESSAGE_ID_BEING_RESPONDED_TO, PRIORITY})
_US |= {COMMAND_DATA_SET_TYPE, STATUS, REMAINING_SUB_OPERATIONS, COMPLETED_SUB_OPERATIONS}
_US |= {FAILED_SUB_OPERATIONS, WARNING_SUB_OPERATIONS}
_ELEMENT = struct.Struct("<HHI")
_PDV = struct.Struct(">IBB")


class CommandError(MappingError):
    """A command set or P-DATA value that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class Fragment:
    """One presentation data value: its context, what it carries, and its bytes."""

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes


def split_p_data(body: bytes) -> Iterator[Fragment]:
    """The PDVs of a P-DATA-TF PDU body (after the 6-byte PDU header)."""
    pos = 0
    while pos < len(body):
        if pos + 6 > len(body):
            raise CommandError("P-DATA-TF ends inside a PDV header")
        length, context_id, control = _PDV.unpack_from(body, pos)
        if length < 2 or pos + 4 + length > len(body):
            raise CommandError(f"PDV length {length} does not fit the PDU")
        yield Fragment(
            context_id,
            bool(control & 0x01),
            bool(control & 0x02),
            body[pos + 6 : pos + 4 + length],
        )
        pos += 4 + length


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded command set: element tag -> raw value bytes."""

    elements: dict[int, bytes]

    def us(self, tag: int) -> int:
        value = self.elements.get(tag)
        if value is None or len(value) != 2:
            raise CommandError(f"command element ({tag >> 16:04X},{tag & 0xFFFF:04X}) missing")
        return int(struct.unpack("<H", value)[0])

    def uid(self, tag: int) -> str:
        value = self.elements.get(tag)
        if value is None:
            raise CommandError(f"command element ({tag >> 16:04X},{tag & 0xFFFF:04X}) missing")
        # latin-1 maps every byte, so whatever the peer sent can be echoed back unchanged
        # in the response; the gateway validates the UID itself.
        return value.decode("latin-1").rstrip("\0 ")

    @property
    def field(self) -> int:
        return self.us(COMMAND_FIELD)

    @property
    def has_data_set(self) -> bool:
        return self.us(COMMAND_DATA_SET_TYPE) != NO_DATA_SET


def decode_command(data: bytes) -> Command:
    """A command set (always implicit VR little endian, PS3.7 6.3.1)."""
    elements: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise CommandError("command set ends inside an element header")
        group, elem, length = _ELEMENT.unpack_from(data, pos)
        pos += 8
        if group != 0x0000 or pos + length > len(data):
            raise CommandError(f"not a command element: ({group:04X},{elem:04X})")
        elements[elem] = data[pos : pos + length]
        pos += length
    return Command(elements)


def _even(raw: bytes, pad: bytes) -> bytes:
    return raw + pad if len(raw) % 2 else raw


def encode_command(values: dict[int, int | str]) -> bytes:
    """A command set with its group length; ints are US, except where a tag says
    otherwise, strings are UI (null padded) or, for Error Comment, LO (space padded)."""
    body = bytearray()
    for tag in sorted(values):
        value = values[tag]
        if tag in _US:
            raw = struct.pack("<H", int(value))
        elif tag == ERROR_COMMENT:
            raw = _even(str(value).encode("ascii", "replace"), b" ")
        else:
            raw = _even(str(value).encode("latin-1", "replace"), b"\0")
        body += _ELEMENT.pack(0x0000, tag & 0xFFFF, len(raw)) + raw
    return _ELEMENT.pack(0x0000, 0x0000, 4) + struct.pack("<I", len(body)) + bytes(body)


def response(
    field: int,
    message_id: int,
    sop_class_uid: str,
    status: int,
    *,
    sop_instance_uid: str | None = None,
    error_comment: str | None = None,
    has_data_set: bool = False,
    sub_operations: tuple[int, int, int, int] | None = None,
) -> bytes:
    """The command set of a response (``field`` is the request's, the 0x8000 bit is set);
    ``sub_operations`` are a C-GET's (remaining, completed, failed, warning) counts."""
    values: dict[int, int | str] = {
        AFFECTED_SOP_CLASS_UID: sop_class_uid,
        COMMAND_FIELD: field | 0x8000,
        MESSAGE_ID_BEING_RESPONDED_TO: message_id,
        COMMAND_DATA_SET_TYPE: HAS_DATA_SET if has_data_set else NO_DATA_SET,
        STATUS: status,
    }
    if sop_instance_uid is not None:
        values[AFFECTED_SOP_INSTANCE_UID] = sop_instance_uid
    if error_comment:
        values[ERROR_COMMENT] = error_comment[:64]
    if sub_operations is not None:
        remaining, completed, failed, warning = sub_operations
        if status in (0xFF00, 0xFF01):  # Remaining is sent only while pending
            values[REMAINING_SUB_OPERATIONS] = remaining
        values[COMPLETED_SUB_OPERATIONS] = completed
        values[FAILED_SUB_OPERATIONS] = failed
        values[WARNING_SUB_OPERATIONS] = warning
    return encode_command(values)


def store_request(message_id: int, sop_class_uid: str, sop_instance_uid: str) -> bytes:
    """The command set of a C-STORE-RQ (medium priority, a data set follows)."""
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: sop_class_uid,
            COMMAND_FIELD: 0x0001,
            MESSAGE_ID: message_id,
            PRIORITY: 0x0000,
            COMMAND_DATA_SET_TYPE: HAS_DATA_SET,
            AFFECTED_SOP_INSTANCE_UID: sop_instance_uid,
        }
    )


def p_data_pdus(context_id: int, command: bytes, data_set: bytes | None, max_pdu: int) -> bytes:
    """P-DATA-TF PDUs for a message, one PDV each, fragments sized for the peer's maximum
    PDU length (``0``: no limit)."""
    limit = max_pdu - 6 if max_pdu else 1 << 30  # a PDV header is 6 bytes of the PDU body
    out = bytearray()
    for payload, command_bit in ((command, 0x01), (data_set, 0x00)):
        if payload is None:
            continue
        chunks = [payload[i : i + limit] for i in range(0, len(payload), limit)] or [b""]
        for n, chunk in enumerate(chunks):
            control = command_bit | (0x02 if n == len(chunks) - 1 else 0x00)
            pdv = _PDV.pack(len(chunk) + 2, context_id, control) + chunk
            out += struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv
    return bytes(out)
