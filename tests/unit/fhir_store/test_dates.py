from __future__ import annotations

import pytest

from fhir_store.dates import date_range, http_date


@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [
        ("2020", "2020-01-01T00:00:00.000000", "2020-12-31T23:59:59.999999"),
        ("2020-02", "2020-02-01T00:00:00.000000", "2020-02-29T23:59:59.999999"),
        ("2021-02-03", "2021-02-03T00:00:00.000000", "2021-02-03T23:59:59.999999"),
        ("2021-02-03T10:00", "2021-02-03T10:00:00.000000", "2021-02-03T10:00:59.999999"),
        ("2021-02-03T10:00:05Z", "2021-02-03T10:00:05.000000", "2021-02-03T10:00:05.999999"),
        ("2021-02-03T10:00:05.25Z", "2021-02-03T10:00:05.250000", "2021-02-03T10:00:05.259999"),
        ("2021-01-01T00:30:00+01:00", "2020-12-31T23:30:00.000000", "2020-12-31T23:30:00.999999"),
    ],
)
def test_precision_becomes_a_utc_range(text: str, lo: str, hi: str) -> None:
    assert date_range(text) == (lo, hi)


@pytest.mark.parametrize(
    "bad", ["", "20", "2020-13", "2020-02-30", "yesterday", "2020-01-01T25:00"]
)
def test_invalid_dates_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        date_range(bad)


def test_http_date() -> None:
    assert http_date("2021-02-03T10:00:05.250000") == "Wed, 03 Feb 2021 10:00:05 GMT"
