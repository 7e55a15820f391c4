"""Blocking: the few keys under which a record is filed, so a new record meets few candidates.

Two records are compared only if they share at least one key. Each rule is cheap to index
(an equality on a string column) and catches matches the others miss: an exact birth date
misses a mistyped birth date, which the phonetic name key catches, and so on. The keys are
unioned, so recall is that of the best rule for each pair.

``depends_on`` names the comparisons a rule forces to agree; EM training on pairs found by a
rule must not estimate those comparisons (every blocked pair agrees on them, match or not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from linkage.features import PatientFeatures


@dataclass(frozen=True, slots=True)
class BlockingRule:
    name: str
    keys_of: Callable[[PatientFeatures], list[str]]
    depends_on: tuple[str, ...]

    def keys(self, f: PatientFeatures) -> list[str]:
        return [f"{self.name}:{k}" for k in self.keys_of(f)]


def _birth_date(f: PatientFeatures) -> list[str]:
    # Day and month sorted, so 1980-03-07 and 1980-07-03 share the key (day/month swaps).
    d = f.birth_date
    if len(d) < 10:
        return []
    day_month = "".join(sorted((d[5:7], d[8:10])))
    return [f"{d[:4]}{day_month}"]


def _names(f: PatientFeatures) -> list[str]:
    # Sorted, so a record with given and family names swapped shares the key.
    if not f.given_phonetic or not f.family_phonetic:
        return []
    return ["|".join(sorted((f.given_phonetic, f.family_phonetic)))]


def _family_year(f: PatientFeatures) -> list[str]:
    if not f.family_phonetic or not f.birth_year:
        return []
    return [f"{f.family_phonetic}|{f.birth_year}"]


def _given_postcode(f: PatientFeatures) -> list[str]:
    if not f.given_phonetic or not f.postcode:
        return []
    return [f"{f.given_phonetic}|{f.postcode}"]


def _identifiers(f: PatientFeatures) -> list[str]:
    return list(f.identifiers)


def _phone(f: PatientFeatures) -> list[str]:
    return [f.phone] if len(f.phone) >= 6 else []


def _email(f: PatientFeatures) -> list[str]:
    return [f.email] if f.email else []


BIRTH_DATE = BlockingRule("dob", _birth_date, ("birth_date",))
NAMES = BlockingRule("names", _names, ("given_name", "family_name"))
FAMILY_YEAR = BlockingRule("fy", _family_year, ("family_name", "birth_date"))
GIVEN_POSTCODE = BlockingRule("gp", _given_postcode, ("given_name", "postcode"))
IDENTIFIERS = BlockingRule("id", _identifiers, ("identifier",))
PHONE = BlockingRule("tel", _phone, ("phone",))
EMAIL = BlockingRule("mail", _email, ("email",))

RULES: tuple[BlockingRule, ...] = (
    BIRTH_DATE,
    NAMES,
    FAMILY_YEAR,
    GIVEN_POSTCODE,
    IDENTIFIERS,
    PHONE,
    EMAIL,
)
"""The rules the MPI files every record under."""

TRAINING_RULES: tuple[BlockingRule, ...] = (BIRTH_DATE, NAMES)
"""Rules whose pairs train m by EM: between them every comparison is estimated at least once."""


def blocking_keys(f: PatientFeatures, rules: Sequence[BlockingRule] = RULES) -> list[str]:
    """Every key of the record (none for a placeholder: it must attract no candidates)."""
    if f.placeholder:
        return []
    keys: list[str] = []
    for rule in rules:
        keys.extend(rule.keys(f))
    return keys
