"""DICOM value representations turned into FHIR primitive values (pure, no I/O).

Dates and times: FHIR requires a time zone on any ``dateTime`` that carries a time, and a
DICOM header has one only when TimezoneOffsetFromUTC (0008,0201) is set. Without it, and
without a site default passed in by the caller, only the date is kept: a wrong instant is
worse than a coarse one.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from caregraph.errors import MappingError

# UI: components of digits separated by dots, at most 64 characters (PS3.5 6.2, 9.1).
# Leading zeros in components are not allowed by the standard but are common in the
# field; they are accepted because rejecting real studies helps nobody. What matters is
# that nothing else (no "/", "..", letters, spaces) gets through.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_TM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?")
_TZ = re.compile(r"([+-])(\d{2})(\d{2})")


def uid(value: str | None, where: str) -> str:
    """A valid DICOM UID, or ``MappingError``; the only gate for UIDs entering caregraph."""
    if value is None:
        raise MappingError("required UID is missing", where)
    if len(value) > 64 or not _UID.fullmatch(value):
        raise MappingError(f"not a DICOM UID: {value[:80]!r}", where)
    return value


def is_uid(value: str) -> bool:
    """True if ``value`` has the form of a DICOM UID."""
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def parse_date(value: str | None) -> date | None:
    """A DA value (``YYYYMMDD``, or the ACR-NEMA ``YYYY.MM.DD``); ``None`` if absent or
    not a real calendar date (dates like ``00000000`` occur in the field)."""
    if not value:
        return None
    m = _DA.fullmatch(value.strip())
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def parse_time(value: str | None) -> time | None:
    """A TM value (``HH``, ``HHMM``, ``HHMMSS.FFFFFF``, or the older ``HH:MM:SS``)."""
    if not value:
        return None
    m = _TM.fullmatch(value.strip())
    if not m:
        return None
    hour, minute, second = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    micro = int((m[4] or "0").ljust(6, "0"))
    if second == 60:  # a leap second, allowed by DICOM, not by datetime
        second = 59
    try:
        return time(hour, minute, second, micro)
    except ValueError:
        return None


def parse_utc_offset(value: str | None) -> tzinfo | None:
    """TimezoneOffsetFromUTC (``+hhmm`` / ``-hhmm``) as a fixed-offset tzinfo."""
    if not value:
        return None
    m = _TZ.fullmatch(value.strip())
    if not m:
        return None
    hours, minutes = int(m[2]), int(m[3])
    if hours > 14 or minutes > 59:
        return None
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if m[1] == "-" else offset)


def fhir_date_time(day: date | None, moment: time | None, tz: tzinfo | None) -> str | None:
    """A FHIR ``dateTime``: the full instant when a zone is known, else just the date."""
    if day is None:
        return None
    if moment is None or tz is None:
        return day.isoformat()
    stamp = datetime.combine(day, moment)
    offset = tz.utcoffset(stamp)
    if offset is None:
        return day.isoformat()
    spec = "microseconds" if moment.microsecond else "seconds"
    return stamp.replace(tzinfo=timezone(offset)).isoformat(timespec=spec)


def has_content(text: str) -> bool:
    """False for placeholders that fill a field without saying anything (``^^^^``, ``----``)."""
    return any(ch.isalnum() for ch in text)


def name_key(pn: str) -> str:
    """A normalized form of a person name, for deterministic ids: case and padding ignored."""
    parts = [" ".join(p.split()).upper() for p in pn.split("^")]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


_SEX = {"M": "male", "F": "female", "O": "other"}


def administrative_gender(value: str | None) -> str | None:
    """PatientSex (M, F, O) as FHIR ``administrative-gender``; ``None`` when not stated."""
    if value is None:
        return None
    return _SEX.get(value.strip().upper())
