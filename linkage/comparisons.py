"""Comparisons: for each field, which agreement level two records reach.

A comparison maps a pair of records to one of a few ordered levels (best first, the last is
"else"), or to ``NULL`` when either side lacks the field; the Fellegi-Sunter model then gives
each level its own m and u probability. Levels rather than raw similarities keep the model
small enough to estimate by EM without labels, as Splink does.

Names agree phonetically when NYSIIS (stored, also a blocking key) or Metaphone agree:
Catherine / Kathryn differ in NYSIIS but not in Metaphone. Jaro-Winkler and the phonetic
keys come from ``jellyfish`` (Rust): about 0.2 us a call, so
scoring a hundred candidates stays well inside a millisecond of comparator time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jellyfish

from linkage.features import PatientFeatures

NULL = -1
"""The level of a pair where either side lacks the field: it adds no evidence either way."""

LevelFn = Callable[[PatientFeatures, PatientFeatures], int]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One field's comparison: ordered level labels and the function that picks one.

    ``tf_field`` names the feature whose value frequency adjusts the exact level: agreeing on
    a rare surname is stronger evidence than agreeing on "smith".
    """

    name: str
    levels: tuple[str, ...]
    level_of: LevelFn
    tf_field: str | None = None


def _jw(a: str, b: str) -> float:
    return jellyfish.jaro_winkler_similarity(a, b)


def _edits(a: str, b: str) -> int:
    return jellyfish.damerau_levenshtein_distance(a, b)


def _name_level(a: str, a_ph: str, b: str, b_ph: str, a_other: str, b_other: str) -> int:
    if not a or not b:
        return NULL
    if a == b:
        return 0
    level = _name_similarity(a, a_ph, b, b_ph)
    if level < 4:
        return level
    # Given and family names entered in each other's fields: common at registration desks.
    if a == b_other or b == a_other or (a_other and b_other and _close(a, b_other)):
        return 3
    return 4


# Names come from a small vocabulary next to the number of pairs a batch compares (a common
# name meets thousands of others): the comparators of a pair of names are worth remembering.
@functools.lru_cache(maxsize=1 << 20)
def _name_similarity(a: str, a_ph: str, b: str, b_ph: str) -> int:
    """Levels 1 and 2 of two different names, else 4 (the swapped check comes after)."""
    sim = _jw(a, b)
    if sim >= 0.92:
        return 1
    if sim >= 0.80 or (a_ph and a_ph == b_ph) or jellyfish.metaphone(a) == jellyfish.metaphone(b):
        return 2
    return 4


@functools.lru_cache(maxsize=1 << 20)
def _close(a: str, b: str) -> bool:
    return _jw(a, b) >= 0.92


_NAME_LEVELS = ("exact", "jaro_winkler>=0.92", "jaro_winkler>=0.80|phonetic", "swapped", "else")


def given_name(a: PatientFeatures, b: PatientFeatures) -> int:
    return _name_level(a.given, a.given_phonetic, b.given, b.given_phonetic, a.family, b.family)


def family_name(a: PatientFeatures, b: PatientFeatures) -> int:
    return _name_level(a.family, a.family_phonetic, b.family, b.family_phonetic, a.given, b.given)


def day_month_swapped(a: str, b: str) -> bool:
    """1980-03-07 vs 1980-07-03: the US/European order mix-up, a frequent registration error."""
    return a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]


def birth_date(a: PatientFeatures, b: PatientFeatures) -> int:
    x, y = a.birth_date, b.birth_date
    if not x or not y:
        return NULL
    if len(x) < 10 or len(y) < 10:
        # Partial dates: agreement on the year says little, disagreement says a lot.
        return NULL if x[:4] == y[:4] else 4
    if x == y:
        return 0
    if day_month_swapped(x, y):
        return 1
    distance = _edits(x.replace("-", ""), y.replace("-", ""))
    if distance <= 1:
        return 2
    if distance <= 2:
        return 3
    return 4


def sex(a: PatientFeatures, b: PatientFeatures) -> int:
    if not a.sex or not b.sex:
        return NULL
    return 0 if a.sex == b.sex else 1


def address(a: PatientFeatures, b: PatientFeatures) -> int:
    if not a.address or not b.address:
        return NULL
    if a.address == b.address:
        return 0
    sim = _jw(a.address, b.address)
    if sim >= 0.90:
        return 1
    if sim >= 0.75:
        return 2
    return 3


def city(a: PatientFeatures, b: PatientFeatures) -> int:
    if not a.city or not b.city:
        return NULL
    if a.city == b.city:
        return 0
    return _city_similarity(a.city, b.city)


@functools.lru_cache(maxsize=1 << 19)
def _city_similarity(a: str, b: str) -> int:
    return 1 if _jw(a, b) >= 0.88 else 2


def _exact_or_typo(x: str, y: str) -> int:
    if not x or not y:
        return NULL
    if x == y:
        return 0
    return 1 if _one_edit(x, y) else 2


def _one_edit(x: str, y: str) -> bool:
    """Damerau-Levenshtein distance of the strings is at most 1, without the distance: one
    edit leaves the strings equal but for one substitution, one adjacent transposition or
    one deleted character after their common prefix. A batch asks this of millions of
    identifier and postcode pairs; slice comparisons run in C (less than half the distance's
    time; a property test holds it to the distance)."""
    n, m = len(x), len(y)
    if n < m:
        x, y, n, m = y, x, m, n
    if n - m > 1:
        return False
    # p: the length of the common prefix, by binary search on slice comparisons.
    lo, hi = 0, m
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if x[:mid] == y[:mid]:
            lo = mid
        else:
            hi = mid - 1
    p = lo
    if n != m:
        return x[p + 1 :] == y[p:]
    return (
        p == n
        or x[p + 1 :] == y[p + 1 :]
        or (x[p + 2 :] == y[p + 2 :] and x[p] == y[p + 1] and x[p + 1] == y[p])
    )


def postcode(a: PatientFeatures, b: PatientFeatures) -> int:
    return _exact_or_typo(a.postcode, b.postcode)


def phone(a: PatientFeatures, b: PatientFeatures) -> int:
    return _exact_or_typo(a.phone, b.phone)


def email(a: PatientFeatures, b: PatientFeatures) -> int:
    if not a.email or not b.email:
        return NULL
    return 0 if a.email == b.email else 1


@functools.lru_cache(maxsize=65_536)
def _by_system(identifiers: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """Values per system; cached, since one record meets many candidates (callers must not
    mutate the result)."""
    systems: dict[str, set[str]] = {}
    for key in identifiers:
        system, _, value = key.partition("|")
        systems.setdefault(system, set()).add(value)
    return {k: frozenset(v) for k, v in systems.items()}


def identifier(a: PatientFeatures, b: PatientFeatures) -> int:
    """Best agreement over the identifier systems both records carry; NULL if they share none.

    Different institutions' local MRNs share no system, so they add no evidence; a national
    or insurance number both carry does.
    """
    if not a.identifiers or not b.identifiers:
        return NULL
    if len(a.identifiers) == 1 and len(b.identifiers) == 1:
        # The common case (one MRN each) without building the per-system sets.
        x_system, _, x = a.identifiers[0].partition("|")
        y_system, _, y = b.identifiers[0].partition("|")
        if x_system != y_system:
            return NULL
        if x == y:
            return 0
        return 1 if _one_edit(x, y) else 2
    xs, ys = _by_system(a.identifiers), _by_system(b.identifiers)
    best = NULL
    for system in xs.keys() & ys.keys():
        if xs[system] & ys[system]:
            return 0
        typo = any(_one_edit(x, y) for x in xs[system] for y in ys[system])
        level = 1 if typo else 2
        best = level if best == NULL else min(best, level)
    return best


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("given_name", _NAME_LEVELS, given_name, tf_field="given"),
    Comparison("family_name", _NAME_LEVELS, family_name, tf_field="family"),
    Comparison(
        "birth_date",
        ("exact", "day_month_swapped", "one_typo", "two_typos", "else"),
        birth_date,
    ),
    Comparison("sex", ("exact", "else"), sex),
    Comparison("address", ("exact", "jaro_winkler>=0.90", "jaro_winkler>=0.75", "else"), address),
    Comparison("city", ("exact", "jaro_winkler>=0.88", "else"), city, tf_field="city"),
    Comparison("postcode", ("exact", "one_typo", "else"), postcode, tf_field="postcode"),
    Comparison("phone", ("exact", "one_typo", "else"), phone),
    Comparison("email", ("exact", "else"), email),
    Comparison("identifier", ("exact", "one_typo", "else"), identifier),
)
"""The comparisons the default model uses, in the order of a comparison vector."""


def comparison_vector(
    a: PatientFeatures, b: PatientFeatures, comparisons: Sequence[Comparison] = COMPARISONS
) -> tuple[int, ...]:
    """The level of each comparison for the pair (``NULL`` where a side lacks the field)."""
    return tuple(c.level_of(a, b) for c in comparisons)
