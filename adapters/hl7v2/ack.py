"""HL7 v2 acknowledgements (ACK), pure: what to answer, and its bytes.

Outcomes are a table, not exceptions (``ACK_TABLE``): caregraph decides AA / AE / AR, and
the sender's MSH-15/16 decide whether and how that is said:

- Original mode (MSH-15 and MSH-16 empty): an application ACK, ``MSA-1`` = AA, AE or AR,
  on the same connection, once the message was mapped and is durable.
- Enhanced mode, MSH-15 valued: an accept (commit) ACK on the connection, CA / CE / CR,
  when MSH-15 asks for it (AL always, NE never, ER on error, SU on success): CA = durable
  on the bus; CE/CR = not accepted (and then never processed, so no application ACK).
  When MSH-16 asks for it too, the application ACK (AA / AE / AR) follows as a message of
  its own (``build_application_ack``), built by the normalizer once the FHIR resources
  are durable (or the message failed to map), and delivered to the sender's return
  address over a separate MLLP connection (``devices.mllp.returns``): that ACK is itself
  a message, which the original sender commit-accepts (its MSH-15 is AL).
- MSH-15 empty but MSH-16 valued: the application ACK on the connection, when MSH-16 asks
  for it (the listener maps the message in full before answering, so the outcome is the
  application's).

The ERR segment names segment, occurrence and field: ERR-2 (ERL) and ERR-3 (table 0357)
from v2.5 on, ERR-1 (ELD) before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final, Literal

from adapters.hl7v2.er7 import DEFAULT_DELIMITERS, Delimiters, escape
from adapters.hl7v2.errors import APPLICATION_ERROR, Hl7MappingError, Location
from adapters.hl7v2.header import Header, peek_header
from caregraph.errors import MappingError

AckCode = Literal["AA", "AE", "AR"]

# caregraph outcome -> (original-mode code, enhanced accept code, meaning)
ACK_TABLE: Final[dict[str, tuple[str, str, str]]] = {
    "AA": ("AA", "CA", "accepted: durable on the bus"),
    "AE": ("AE", "CE", "error in content: fix and resend"),
    "AR": ("AR", "CR", "rejected: out of scope, or caregraph cannot store it now"),
}
ERROR_TEXT: Final[dict[str, str]] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "104": "Value too long",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "207": "Application internal error",
}
DEFAULT_VERSION = "2.5.1"
APPLICATION = "CAREGRAPH"


@dataclass(frozen=True, slots=True)
class AckError:
    """What goes into ERR: a text, a table 0357 code, and where (segment/field)."""

    text: str
    code: str = APPLICATION_ERROR
    location: Location | None = None
    severity: Literal["E", "W", "I"] = "E"

    @classmethod
    def from_exception(cls, exc: MappingError) -> AckError:
        if isinstance(exc, Hl7MappingError):
            return cls(str(exc), exc.code, exc.where)
        return cls(str(exc))


def ack_code(header: Header | None, outcome: AckCode) -> str:
    """MSA-1 for ``outcome``: CA/CE/CR in enhanced mode (MSH-15 valued), else AA/AE/AR."""
    original, accept, _ = ACK_TABLE[outcome]
    return accept if header is not None and header.accept_ack_type else original


def ack_wanted(header: Header | None, outcome: AckCode) -> bool:
    """Whether the sender asked to hear about ``outcome`` (always true in original mode)."""
    if header is None:
        return True
    condition = header.accept_ack_type or header.application_ack_type
    if condition == "NE":
        return False
    if condition == "ER":
        return outcome != "AA"
    if condition == "SU":
        return outcome == "AA"
    return True


def application_ack_wanted(header: Header | None, outcome: AckCode) -> bool:
    """Whether a separate application ACK goes to the return address: enhanced mode with
    an accept ACK (MSH-15 valued) and MSH-16 asking to hear about ``outcome``."""
    if header is None or not header.accept_ack_type:
        return False
    condition = header.application_ack_type
    if condition == "AL":
        return True
    if condition == "ER":
        return outcome != "AA"
    if condition == "SU":
        return outcome == "AA"
    return False  # NE, empty (table 0155 says nothing more), or a value outside the table


def ack_control_id(header: Header | None, raw: bytes = b"") -> str:
    """A control id for the ACK, derived from what it answers (so answering the same message
    twice gives the same bytes); at most 20 characters, as v2.3-2.6 allow."""
    basis = header.dedup_key.encode() if header is not None else raw
    return "CG" + hashlib.sha256(basis).hexdigest()[:18].upper()


@lru_cache(maxsize=64)
def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (2, 5, 1)


def build_ack(
    source: bytes | Header | None,
    code: AckCode,
    error: AckError | None = None,
    *,
    at: datetime | None = None,
    application: str = APPLICATION,
    separate: bool = False,
) -> bytes:
    """The ACK for a message (its raw bytes or its parsed header; None when not even an MSH
    could be read), as ER7 bytes without MLLP framing.

    The ACK uses the sender's delimiters and version when they can be read, else the
    defaults (v2.5.1); MSA-2 echoes MSH-10; ``error`` becomes an ERR segment.
    ``separate=True`` makes the enhanced-mode application ACK (``build_application_ack``).
    """
    raw = source if isinstance(source, bytes) else b""
    header = peek_header(source) if isinstance(source, bytes) else source
    when = (at or datetime.now(UTC)).astimezone(UTC)
    d: Delimiters = header.delimiters if header is not None else DEFAULT_DELIMITERS
    fields = list(header.raw_fields) if header is not None else []

    def orig(n: int) -> str:
        return fields[n] if n < len(fields) else ""

    version = _ack_version(header.version if header is not None else "")
    event = header.trigger_event if header is not None else ""
    msh = [
        "MSH",
        d.encoding_characters,
        orig(5) or _escaped(application, d),
        orig(6),
        orig(3),
        orig(4),
        when.strftime("%Y%m%d%H%M%S+0000"),
        "",
        _message_type(event, version, d),
        ("CGA" + ack_control_id(header, raw)[3:]) if separate else ack_control_id(header, raw),
        orig(11) or "P",
        _escaped(version, d),
    ]
    if separate:
        # A message in its own right: the original sender answers it with an accept ACK
        # (MSH-15 AL) and never with an application ACK (MSH-16 NE).
        msh += ["", "", "AL", "NE"]
    msa = ["MSA", code if separate else ack_code(header, code), orig(10)]
    if error is not None and _version_tuple(version) < (2, 4):
        msa.append(escape(error.text[:80], d))  # MSA-3 text message (withdrawn in v2.4)
    segments = [d.field.join(msh), d.field.join(msa)]
    if error is not None:
        segments.append(_err(error, version, d))
    codec = header.text_codec if header is not None else "utf-8"
    return ("\r".join(segments) + "\r").encode(codec, errors="replace")


@lru_cache(maxsize=64)
def _ack_version(version: str) -> str:
    """MSH-12 of an ACK: the sender's version when it reads as one, else the default."""
    version = version or DEFAULT_VERSION
    if version[:2] != "2." or not all(p.isdigit() for p in version.split(".")):
        return DEFAULT_VERSION
    return version


@lru_cache(maxsize=256)
def _escaped(value: str, d: Delimiters) -> str:
    """``escape`` of the few values every ACK of a sender repeats (application, version)."""
    return escape(value, d)


@lru_cache(maxsize=256)
def _message_type(event: str, version: str, d: Delimiters) -> str:
    """MSH-9 of an ACK: ``ACK^<event>`` and, from v2.4 on, ``^ACK`` (the structure)."""
    if not event:
        return "ACK"
    structure = d.component + "ACK" if _version_tuple(version) >= (2, 4) else ""
    return f"ACK{d.component}{escape(event, d)}{structure}"


def build_application_ack(
    header: Header, code: AckCode, error: AckError | None = None, *, at: datetime | None = None
) -> bytes:
    """The enhanced-mode application ACK for an accepted message: MSA-1 AA / AE / AR (not
    the accept codes), MSA-2 its MSH-10, ERR for an error; its own MSH-10 (``CGA`` + 17
    characters, derived from the message, so a repeat builds the same bytes) and
    MSH-15 AL / MSH-16 NE. MSH-5/6 name the original sender: where it is routed back to.
    """
    return build_ack(header, code, error, at=at, separate=True)


def _err(error: AckError, version: str, d: Delimiters) -> str:
    loc = error.location
    name = ERROR_TEXT.get(error.code, ERROR_TEXT[APPLICATION_ERROR])
    text = escape(error.text[:200], d)
    if _version_tuple(version) >= (2, 5):
        erl = ""
        if loc is not None:
            parts = [loc.segment, str(loc.occurrence)]
            if loc.field is not None:
                parts += [str(loc.field), str(loc.repetition)]
                if loc.component is not None:
                    parts.append(str(loc.component))
            erl = d.component.join(escape(p, d) for p in parts)
        code = d.component.join([error.code, escape(name, d), "HL70357"])
        # ERR-1 empty, ERR-2 location, ERR-3 code, ERR-4 severity, ERR-5..7, ERR-8 user message
        return d.field.join(["ERR", "", erl, code, error.severity, "", "", "", text])
    # v2.3/2.4: ERR-1 ELD = segment ^ sequence ^ field position ^ code&text&table
    s = d.subcomponent
    code = s.join([error.code, escape(name, d), "HL70357"])
    if loc is None:
        eld = d.component.join(["", "", "", code])
    else:
        eld = d.component.join(
            [
                escape(loc.segment, d),
                str(loc.occurrence),
                str(loc.field) if loc.field is not None else "",
                code,
            ]
        )
    return d.field.join(["ERR", eld])
