from __future__ import annotations

import jellyfish
import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkage.comparisons import (
    NULL,
    _one_edit,
    birth_date,
    family_name,
    given_name,
    identifier,
    postcode,
)
from linkage.features import extract

from .factories import patient


def f(**kwargs: object):  # type: ignore[no-untyped-def]
    return extract(patient(**kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("Catherine", "Catherine", 0),
        ("Catherine", "Catherina", 1),
        ("Catherine", "Kathryn", 2),
        ("Anna", "Zygmunt", 4),
    ],
)
def test_given_name_levels(a: str, b: str, level: int) -> None:
    assert given_name(f(given=a), f(given=b)) == level


def test_swapped_given_and_family_have_their_own_level() -> None:
    a, b = f(given="Anna", family="Meier"), f(given="Meier", family="Anna")
    assert given_name(a, b) == 3
    assert family_name(a, b) == 3


def test_missing_names_are_null() -> None:
    assert given_name(f(given=None), f()) == NULL


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        ("1980-03-07", "1980-03-07", 0),
        ("1980-03-07", "1980-07-03", 1),
        ("1980-03-07", "1980-03-08", 2),
        ("1980-03-07", "1908-03-07", 2),  # transposed digits: one Damerau edit
        ("1980-03-07", "1981-04-07", 3),
        ("1980-03-07", "1975-11-23", 4),
        ("1980", "1980-03-07", NULL),
        ("1980", "1975-03-07", 4),
    ],
)
def test_birth_date_levels(a: str, b: str, level: int) -> None:
    assert birth_date(f(birth_date=a), f(birth_date=b)) == level


def test_identifier_compares_only_shared_systems() -> None:
    a = f(identifiers=[("urn:ssn", "123456"), ("urn:mrn:a", "1")])
    assert identifier(a, f(identifiers=[("urn:mrn:b", "1")])) == NULL
    assert identifier(a, f(identifiers=[("urn:ssn", "123456")])) == 0
    assert identifier(a, f(identifiers=[("urn:ssn", "123455")])) == 1
    assert identifier(a, f(identifiers=[("urn:ssn", "999999")])) == 2


def test_postcode_typo() -> None:
    assert postcode(f(postcode="3001"), f(postcode="3010")) == 1
    assert postcode(f(postcode="3001"), f(postcode="8000")) == 2


@pytest.mark.parametrize(
    ("x", "y", "level"),
    [
        ("123456", "123456", 0),
        ("123456", "123465", 1),  # a transposition
        ("123456", "12356", 1),  # a digit dropped
        ("123456", "1234", 2),  # lengths two apart: never one edit
        ("123456", "654321", 2),
    ],
)
def test_one_identifier_each_is_compared_as_in_the_general_case(x: str, y: str, level: int) -> None:
    one, other = f(identifiers=[("urn:ssn", x)]), f(identifiers=[("urn:ssn", y)])
    assert identifier(one, other) == level
    # With a second identifier of an unshared system the general path answers the same.
    more = f(identifiers=[("urn:ssn", x), ("urn:mrn:a", "7")])
    assert identifier(more, other) == level
    assert identifier(one, f(identifiers=[("urn:mrn:b", y)])) == NULL


@st.composite
def _near(draw: st.DrawFn) -> tuple[str, str]:
    """A short string and a copy with up to two random edits (over a tiny alphabet, so
    repeated characters make the ambiguous cases common)."""
    x = draw(st.text(alphabet="ab1", max_size=7))
    y = list(x)
    for _ in range(draw(st.integers(0, 2))):
        op, k = draw(st.integers(0, 3)), draw(st.integers(0, len(y)))
        if op == 0:
            y.insert(k, draw(st.sampled_from("ab1c")))
        elif op == 1 and k < len(y):
            del y[k]
        elif op == 2 and k < len(y):
            y[k] = draw(st.sampled_from("ab1c"))
        elif op == 3 and k + 1 < len(y):
            y[k], y[k + 1] = y[k + 1], y[k]
    return x, "".join(y)


@given(_near())
def test_one_edit_is_a_damerau_levenshtein_distance_of_at_most_one(pair: tuple[str, str]) -> None:
    x, y = pair
    assert _one_edit(x, y) == (jellyfish.damerau_levenshtein_distance(x, y) <= 1)
    assert _one_edit(y, x) == _one_edit(x, y)
