"""Record features: what the matcher compares, extracted once from a FHIR Patient dict.

Extraction is pure and cheap (a few microseconds), so features are computed when a record
arrives and stored beside it; comparisons never re-parse FHIR. Everything is normalized to
the form the comparators need: lower-case ASCII letters for names, digits for phone numbers,
``YYYY-MM-DD`` strings for dates, ``system|value`` strings for identifiers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import jellyfish

_NOT_LETTERS = re.compile(r"[^a-z]+")
_NOT_ALNUM_SPACE = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")
_NOT_DIGITS = re.compile(r"\D+")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?")

# Names that mean "we do not know who this is". A record carrying one is a placeholder: it
# never becomes a candidate and never attracts others, because two unknown patients sharing
# "john doe" are not the same person.
PLACEHOLDER_NAMES: frozenset[str] = frozenset(
    {
        "unknown",
        "unk",
        "doe",
        "john doe",
        "jane doe",
        "baby",
        "baby boy",
        "baby girl",
        "newborn",
        "anonymous",
        "patient",
        "test",
        "trauma",
        "unbekannt",
        "inconnu",
        "nn",
        "xxx",
    }
)


def fold(text: str) -> str:
    """Lower-case ASCII: accents stripped (é -> e), so transliterations compare equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    return decomposed.encode("ascii", "ignore").decode("ascii").lower()


def normalize_name(text: str | None) -> str:
    """Letters only: 'O'Brien-Smith' -> 'obriensmith' (punctuation and spaces are noise)."""
    if not text:
        return ""
    return _NOT_LETTERS.sub("", fold(text))


def normalize_text(text: str | None) -> str:
    """Words of letters and digits separated by one space (addresses, cities)."""
    if not text:
        return ""
    cleaned = _NOT_ALNUM_SPACE.sub(" ", fold(text))
    return _SPACES.sub(" ", cleaned).strip()


def phonetic(name: str) -> str:
    """A phonetic key (NYSIIS): tolerant of spelling variants, stricter than Soundex."""
    return jellyfish.nysiis(name) if name else ""


def normalize_date(text: str | None) -> str:
    """``YYYY-MM-DD`` (or a shorter prefix when the source gave only year or month)."""
    if not text:
        return ""
    m = _DATE.match(text.strip())
    if not m:
        return ""
    return "-".join(part for part in m.groups() if part)


@dataclass(frozen=True, slots=True)
class PatientFeatures:
    """The comparable content of one source Patient; empty strings mean "not known"."""

    given: str = ""
    family: str = ""
    given_phonetic: str = ""
    family_phonetic: str = ""
    birth_date: str = ""
    sex: str = ""
    address: str = ""
    city: str = ""
    postcode: str = ""
    phone: str = ""
    email: str = ""
    identifiers: tuple[str, ...] = field(default_factory=tuple)
    placeholder: bool = False

    @property
    def birth_year(self) -> str:
        return self.birth_date[:4]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, stored beside the record so candidates need no re-extraction."""
        # Not dataclasses.asdict: it deep-copies every field, a third of a batch's time.
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["identifiers"] = list(self.identifiers)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PatientFeatures:
        values = dict(data)
        values["identifiers"] = tuple(values.get("identifiers", ()))
        return cls(**values)


_FIELD_NAMES = tuple(f.name for f in fields(PatientFeatures))


def _official_name(names: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The name to match on: 'official', else 'usual', else the first without a bad use."""
    candidates = [n for n in names if n.get("use") not in ("old", "anonymous", "maiden")]
    for use in ("official", "usual"):
        for name in candidates:
            if name.get("use") == use:
                return name
    return candidates[0] if candidates else {}


def _current_address(addresses: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    usable = [a for a in addresses if a.get("use") not in ("old", "billing")]
    for address in usable:
        if address.get("use") == "home":
            return address
    return usable[0] if usable else {}


def _telecom(patient: Mapping[str, Any], system: str) -> str:
    for contact in patient.get("telecom") or ():
        if contact.get("system") == system and contact.get("value"):
            return str(contact["value"])
    return ""


def normalize_phone(text: str) -> str:
    """Digits only, last nine kept: drops country and trunk prefixes (+61 2 / 02)."""
    return _NOT_DIGITS.sub("", text)[-9:]


def identifier_keys(patient: Mapping[str, Any]) -> tuple[str, ...]:
    """``system|value`` for each identifier with both parts, sorted and deduplicated."""
    keys = set()
    for ident in patient.get("identifier") or ():
        system, value = ident.get("system"), ident.get("value")
        if system and value and ident.get("use") != "old":
            keys.add(f"{system}|{str(value).strip()}")
    return tuple(sorted(keys))


def is_placeholder(given: str, family: str, patient: Mapping[str, Any]) -> bool:
    """True for unknown / John Doe style patients (by name, or tagged as such by the source)."""
    for tag in (patient.get("meta") or {}).get("tag") or ():
        if tag.get("code") in ("placeholder", "unknown-patient"):
            return True
    names = _official_name(patient.get("name") or ())
    full = " ".join(
        fold(part) for part in [*(names.get("given") or ()), names.get("family") or ""] if part
    ).strip()
    if not given and not family:
        return True
    if full in PLACEHOLDER_NAMES:
        return True
    # "Doe" alone, or with John/Jane, is the classic placeholder; "Jane Doering" is not.
    return family in PLACEHOLDER_NAMES and given in ("", "john", "jane")


def extract(patient: Mapping[str, Any]) -> PatientFeatures:
    """Features of one FHIR R4 Patient resource (as a dict, the wire form)."""
    name = _official_name(patient.get("name") or ())
    givens = name.get("given") or ()
    given = normalize_name(givens[0] if givens else "")
    family = normalize_name(name.get("family"))
    address = _current_address(patient.get("address") or ())
    sex = patient.get("gender") or ""
    return PatientFeatures(
        given=given,
        family=family,
        given_phonetic=phonetic(given),
        family_phonetic=phonetic(family),
        birth_date=normalize_date(patient.get("birthDate")),
        sex="" if sex == "unknown" else str(sex),
        address=normalize_text(" ".join(str(line) for line in address.get("line") or ())),
        city=normalize_text(address.get("city")),
        postcode=normalize_text(address.get("postalCode")).replace(" ", ""),
        phone=normalize_phone(_telecom(patient, "phone")),
        email=_telecom(patient, "email").strip().lower(),
        identifiers=identifier_keys(patient),
        placeholder=is_placeholder(given, family, patient),
    )
