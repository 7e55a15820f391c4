"""Errors of the HL7 v2 adapter, under ``caregraph.errors``.

    CaregraphError
    └── MappingError            content that cannot be mapped           -> ACK AE
        ├── Hl7ParseError       not well-formed ER7 (framing inside the text, MSH, delimiters)
        └── UnsupportedMessage  a message type, event or version out of scope -> ACK AR

Each carries ``location`` (``"OBX[3]-5"``: segment, its occurrence, field) and an HL7 table
0357 error code, so the ACK builder can write an ERR segment without guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

from caregraph.errors import MappingError

# HL7 table 0357 (message error condition codes) used here.
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
VALUE_TOO_LONG = "104"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION_ID = "203"
APPLICATION_ERROR = "207"


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a message: segment id, its 1-based occurrence, field, component, repetition."""

    segment: str
    occurrence: int = 1
    field: int | None = None
    component: int | None = None
    repetition: int = 1

    def __str__(self) -> str:
        text = f"{self.segment}[{self.occurrence}]"
        if self.field is not None:
            text += f"-{self.field}"
            if self.component is not None:
                text += f".{self.component}"
        return text


class Hl7MappingError(MappingError):
    """Content that cannot be mapped, with a structured location and a table 0357 code."""

    def __init__(
        self, message: str, where: Location | None = None, code: str = DATA_TYPE_ERROR
    ) -> None:
        super().__init__(message, str(where) if where else None)
        self.where = where
        self.code = code


class Hl7ParseError(Hl7MappingError):
    """The bytes are not a well-formed ER7 message."""


class UnsupportedMessage(Hl7MappingError):
    """The message type, trigger event, processing id or version is out of scope (ACK AR)."""
