from __future__ import annotations

from datetime import UTC, date, time, timedelta, timezone

import pytest

from adapters.dicom.values import (
    administrative_gender,
    fhir_date_time,
    has_content,
    name_key,
    parse_date,
    parse_time,
    parse_utc_offset,
    uid,
)
from caregraph.errors import MappingError


@pytest.mark.parametrize("value", ["1.2.840.10008.1.1", "0", "1.2.3.04", "9" * 64])
def test_uids_accepted(value: str) -> None:
    assert uid(value, "(0020,000D)") == value


@pytest.mark.parametrize(
    "value",
    ["../../etc/passwd", "1.2/../3", "1.2.3.", ".1.2", "1..2", "1.2.a", "1 2", "9" * 65, ""],
)
def test_uids_rejected_with_location(value: str) -> None:
    with pytest.raises(MappingError) as info:
        uid(value, "(0020,000D)")
    assert info.value.location == "(0020,000D)"


def test_missing_uid_is_an_error() -> None:
    with pytest.raises(MappingError, match="missing"):
        uid(None, "(0008,0018)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20040119", date(2004, 1, 19)),
        ("2004.01.19", date(2004, 1, 19)),
        ("00000000", None),
        ("20041301", None),
        ("2004", None),
        ("", None),
        (None, None),
    ],
)
def test_dates(text: str | None, expected: date | None) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("07", time(7)),
        ("0727", time(7, 27)),
        ("072730", time(7, 27, 30)),
        ("072730.5", time(7, 27, 30, 500000)),
        ("07:27:30", time(7, 27, 30)),
        ("235960", time(23, 59, 59)),
        ("2560", None),
        ("ab", None),
        (None, None),
    ],
)
def test_times(text: str | None, expected: time | None) -> None:
    assert parse_time(text) == expected


def test_utc_offsets() -> None:
    assert parse_utc_offset("-0500") == timezone(-timedelta(hours=5))
    assert parse_utc_offset("+0530") == timezone(timedelta(hours=5, minutes=30))
    assert parse_utc_offset("+1500") is None
    assert parse_utc_offset("0500") is None


def test_date_time_keeps_the_time_only_with_a_zone() -> None:
    day, moment = date(2004, 1, 19), time(7, 27, 30)
    assert fhir_date_time(day, moment, None) == "2004-01-19"
    assert fhir_date_time(day, moment, UTC) == "2004-01-19T07:27:30+00:00"
    assert fhir_date_time(day, None, UTC) == "2004-01-19"
    assert fhir_date_time(None, moment, UTC) is None


def test_gender_placeholders_and_name_keys() -> None:
    assert [administrative_gender(v) for v in ("M", "f", "O", "", "X", None)] == [
        "male",
        "female",
        "other",
        None,
        None,
        None,
    ]
    assert not has_content("^^^^") and not has_content("----") and has_content("Doe^J")
    assert name_key("doe^john ^^") == name_key("DOE^JOHN") == "DOE^JOHN"
