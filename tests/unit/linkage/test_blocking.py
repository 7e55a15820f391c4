from __future__ import annotations

from linkage.blocking import blocking_keys
from linkage.features import extract

from .factories import patient


def test_day_month_swap_and_name_swap_share_keys() -> None:
    a = set(blocking_keys(extract(patient("Anna", "Meier", "1980-03-07"))))
    swapped_date = set(blocking_keys(extract(patient("X", "Y", "1980-07-03"))))
    swapped_names = set(blocking_keys(extract(patient("Meier", "Anna", "1999-01-01"))))
    assert a & swapped_date
    assert a & swapped_names


def test_identifiers_are_keys() -> None:
    keys = blocking_keys(extract(patient(identifiers=[("urn:ssn", "42")])))
    assert "id:urn:ssn|42" in keys


def test_placeholders_have_no_keys() -> None:
    assert blocking_keys(extract(patient("John", "Doe"))) == []
