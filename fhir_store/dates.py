"""FHIR date, dateTime and instant values as UTC ranges, for indexing and for search.

A FHIR date has a precision ("2020", "2020-03", "2020-03-04T10:00+01:00"): it means the whole
interval it names. Both the indexed value and the searched value become ``[lo, hi]`` (hi the
last microsecond inside), written as fixed-width UTC text so string order is time order on
SQLite and PostgreSQL alike. Values without a zone are taken as UTC (the server's zone).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
LOWEST = "0001-01-01T00:00:00.000000"
HIGHEST = "9999-12-31T23:59:59.999999"

_PATTERN = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_TICK = timedelta(microseconds=1)


def _fmt(moment: datetime) -> str:
    return moment.strftime(FORMAT).rjust(len(LOWEST), "0")


def date_range(text: str) -> tuple[str, str]:
    """``(lo, hi)`` in UTC for a FHIR date/dateTime/instant string.

    Raises:
        ValueError: ``text`` is not a FHIR date, dateTime or instant.
    """
    match = _PATTERN.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a FHIR date or dateTime: {text!r}")
    g = match.groupdict()
    year = int(g["y"])
    try:
        if g["m"] is None:
            lo, hi = datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999)
        elif g["d"] is None:
            month = int(g["m"])
            last = calendar.monthrange(year, month)[1]
            lo = datetime(year, month, 1)
            hi = datetime(year, month, last, 23, 59, 59, 999999)
        elif g["H"] is None:
            lo = datetime(year, int(g["m"]), int(g["d"]))
            hi = lo + timedelta(days=1) - _TICK
        else:
            fraction = g["f"] or ""
            micro = int((fraction + "000000")[:6])
            lo = datetime(
                year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"] or 0), micro
            )
            if g["S"] is None:
                step = timedelta(minutes=1)
            elif not fraction:
                step = timedelta(seconds=1)
            else:
                step = timedelta(microseconds=max(1, 10 ** (6 - min(len(fraction), 6))))
            hi = lo + step - _TICK
            zone = g["tz"]
            if zone and zone != "Z":
                sign = 1 if zone[0] == "+" else -1
                offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * sign
                lo, hi = _shift(lo, -offset), _shift(hi, -offset)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid date: {text!r} ({exc})") from exc
    return _fmt(lo), _fmt(hi)


def _shift(moment: datetime, by: timedelta) -> datetime:
    try:
        return moment + by
    except OverflowError:
        return datetime.min if by < timedelta(0) else datetime.max


def now_instant() -> tuple[str, str]:
    """The current time as (column text, FHIR instant for ``meta.lastUpdated``)."""
    moment = datetime.now(UTC).replace(tzinfo=None)
    column = _fmt(moment)
    return column, column + "Z"


def column_to_instant(column: str) -> str:
    """Stored column text back to a FHIR instant."""
    return column + "Z"


def http_date(column: str) -> str:
    """Stored column text as an HTTP date, for ``Last-Modified``."""
    moment = datetime.strptime(column, FORMAT).replace(tzinfo=UTC)
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
