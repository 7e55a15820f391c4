"""FHIR instants in and out of the registry: always timezone-aware, always UTC on the wire,
so periods written by the CLI, a FHIR client and the device clocks compare correctly."""

from __future__ import annotations

from datetime import UTC, datetime

from caregraph.errors import MappingError


def instant(when: datetime) -> str:
    """A FHIR ``instant``/``dateTime`` in UTC with milliseconds (what Observations use)."""
    if when.tzinfo is None:
        raise ValueError("a registry time must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(text: object, where: str) -> datetime:
    """A FHIR dateTime with a time and a zone; a bare date is its midnight UTC.

    Raises:
        MappingError: not a date-time, or a time without a zone (ambiguous for a period
            compared with device clocks).
    """
    if not isinstance(text, str):
        raise MappingError(f"{text!r} is not a dateTime", where)
    value = text.replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MappingError(f"{text!r} is not a FHIR dateTime", where) from exc
    if len(value) == 10:  # YYYY-MM-DD
        return parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is None:
        raise MappingError(f"{text!r} has a time but no zone", where)
    return parsed
