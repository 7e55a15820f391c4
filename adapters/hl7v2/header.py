"""The MSH header: decoding the bytes, reading who sent what, and deciding what is in scope.

``peek_header`` is deliberately forgiving (it must find MSH-10 even in a message that will
be rejected, so the ACK can name it); ``check_supported`` is the strict gate for AR.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from functools import lru_cache
from typing import TypedDict

from adapters.hl7v2.er7 import Delimiters, Er7Message, parse_msh, unescape
from adapters.hl7v2.errors import (
    APPLICATION_ERROR,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    UNSUPPORTED_PROCESSING_ID,
    UNSUPPORTED_VERSION_ID,
    Hl7MappingError,
    Hl7ParseError,
    Location,
    UnsupportedMessage,
)

SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)
ADT_EVENTS = frozenset(
    {"A01", "A02", "A03", "A04", "A05", "A08", "A11", "A13", "A28", "A31", "A40"}
)
SUPPORTED_TYPES: dict[str, frozenset[str]] = {"ADT": ADT_EVENTS, "ORU": frozenset({"R01"})}
PROCESSING_IDS = frozenset({"P", "T", "D"})

# MSH-18 values (HL7 table 0211) -> Python codecs. Empty means the sender did not say:
# the standard's default is ASCII, but UTF-8 and then Latin-1 are tried so real feeds pass.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/5": "iso8859-5",
    "8859/7": "iso8859-7",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
}


@dataclass(frozen=True, slots=True)
class Header:
    """What MSH says, unescaped. Empty strings for absent fields."""

    delimiters: Delimiters
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_time: str
    message_type: str
    trigger_event: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str
    charset: str
    profiles: tuple[str, ...]
    raw_fields: tuple[str, ...]
    text_codec: str = "utf-8"
    """How the header line was decoded; replies are encoded the same way, so fields echoed
    back (MSH-3..6, MSH-10) are byte for byte what the sender wrote."""

    @property
    def enhanced_mode(self) -> bool:
        """Enhanced acknowledgement mode: the sender filled MSH-15 or MSH-16."""
        return bool(self.accept_ack_type or self.application_ack_type)

    @property
    def dedup_key(self) -> str:
        """Sender and control id: what makes a message "the same message again"."""
        return "\x1f".join((self.sending_application, self.sending_facility, self.control_id))

    @property
    def is_pcd01(self) -> bool:
        """IHE PCD-01 (Device Enterprise Communication) by its MSH-21 profile."""
        return any("IHE_PCD_001" in p or "PCD_DEC_001" in p for p in self.profiles)


def _fields_to_header(
    delimiters: Delimiters, fields: list[str], text_codec: str = "utf-8"
) -> Header:
    def f(n: int) -> str:
        return fields[n] if n < len(fields) else ""

    return Header(
        delimiters=delimiters,
        message_time=_comp(f(7), 1, delimiters),
        control_id=_whole(f(10), delimiters),
        raw_fields=tuple(fields),
        text_codec=text_codec,
        **_sender_fields(
            delimiters, f(3), f(4), f(5), f(6), f(9), f(11), f(12), f(15), f(16), f(18), f(21)
        ),
    )


def _comp(field: str, c: int, d: Delimiters) -> str:
    parts = field.split(d.repetition)[0].split(d.component)
    return unescape(parts[c - 1], d).strip() if c <= len(parts) else ""


def _whole(field: str, d: Delimiters) -> str:
    return unescape(field.split(d.repetition)[0], d).strip()


class _SenderFields(TypedDict):
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    trigger_event: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str
    charset: str
    profiles: tuple[str, ...]


@lru_cache(maxsize=1024)
def _sender_fields(
    d: Delimiters,
    msh3: str,
    msh4: str,
    msh5: str,
    msh6: str,
    msh9: str,
    msh11: str,
    msh12: str,
    msh15: str,
    msh16: str,
    msh18: str,
    msh21: str,
) -> _SenderFields:
    """The ``Header`` members a sender writes the same in every message (all but MSH-7 and
    MSH-10), memoized on the fields as written. Callers spread the dict, never change it."""
    return {
        "sending_application": _whole(msh3, d),
        "sending_facility": _whole(msh4, d),
        "receiving_application": _whole(msh5, d),
        "receiving_facility": _whole(msh6, d),
        "message_type": _comp(msh9, 1, d).upper(),
        "trigger_event": _comp(msh9, 2, d).upper(),
        "processing_id": _comp(msh11, 1, d).upper(),
        "version": _comp(msh12, 1, d),
        "accept_ack_type": _comp(msh15, 1, d).upper(),
        "application_ack_type": _comp(msh16, 1, d).upper(),
        "charset": _comp(msh18, 1, d).upper(),
        "profiles": tuple(unescape(p, d) for p in msh21.split(d.repetition) if p.strip()),
    }


def header_of(message: Er7Message, text_codec: str = "utf-8") -> Header:
    """The header of a tokenized message (``text_codec``: what its bytes were read with)."""
    return _fields_to_header(message.delimiters, message.msh.fields, text_codec)


def _first_line(raw: bytes) -> bytes:
    end = len(raw)
    for sep in (b"\r", b"\n"):
        i = raw.find(sep, 0, end)
        if i >= 0:
            end = i
    return raw[:end]


def peek_header(raw: bytes) -> Header | None:
    """The header of ``raw`` if its first line looks like an MSH at all, else None.

    Tolerates bad encoding characters (falls back to the default ones) so a rejected
    message can still be answered with its own control id.
    """
    first = _first_line(raw[:65536])
    try:
        line, codec = first.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        line, codec = first.decode("latin-1"), "latin-1"  # every byte is a character
    if not line.startswith("MSH") or len(line) < 5:
        return None
    try:
        delimiters, fields = parse_msh(line)
    except Hl7ParseError:
        field_sep = line[3]
        if field_sep.isalnum() or field_sep.isspace():
            return None
        delimiters = Delimiters(field=field_sep)
        fields = ["MSH", field_sep, *line[4:].split(field_sep)]
    return _fields_to_header(delimiters, fields, codec)


def decode(raw: bytes, header: Header | None = None) -> str:
    """The text of a message in the character set MSH-18 declares; ``header`` is
    ``peek_header(raw)`` when the caller has read it already.

    Raises:
        UnsupportedMessage: MSH-18 names a character set caregraph does not read (AR).
        Hl7MappingError: the bytes are not valid in the declared character set (AE).
    """
    if header is None:
        header = peek_header(raw)
    charset = header.charset if header else ""
    if not charset:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    codec = CHARSETS.get(charset)
    if codec is None:
        raise UnsupportedMessage(
            f"character set {charset!r} is not supported",
            Location("MSH", 1, 18),
            APPLICATION_ERROR,
        )
    codecs.lookup(codec)
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise Hl7MappingError(
            f"bytes not valid in {charset} at offset {exc.start}", Location("MSH", 1, 18)
        ) from exc


def check_supported(header: Header) -> None:
    """Raise ``UnsupportedMessage`` (ACK AR) unless caregraph maps this kind of message."""
    if header.version not in SUPPORTED_VERSIONS:
        raise UnsupportedMessage(
            f"HL7 version {header.version or '(empty)'} is not supported (2.3 to 2.8)",
            Location("MSH", 1, 12),
            UNSUPPORTED_VERSION_ID,
        )
    events = SUPPORTED_TYPES.get(header.message_type)
    if events is None:
        raise UnsupportedMessage(
            f"message type {header.message_type or '(empty)'} is not supported",
            Location("MSH", 1, 9, 1),
            UNSUPPORTED_MESSAGE_TYPE,
        )
    if header.trigger_event not in events:
        raise UnsupportedMessage(
            f"event {header.message_type}^{header.trigger_event} is not supported",
            Location("MSH", 1, 9, 2),
            UNSUPPORTED_EVENT_CODE,
        )
    if header.processing_id and header.processing_id not in PROCESSING_IDS:
        raise UnsupportedMessage(
            f"processing id {header.processing_id!r} is not supported",
            Location("MSH", 1, 11),
            UNSUPPORTED_PROCESSING_ID,
        )
    if not header.control_id:
        raise Hl7MappingError("MSH-10 (message control id) is empty", Location("MSH", 1, 10), "101")
