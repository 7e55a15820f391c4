"""HL7 v2 coding-system names (table 0396) to the URIs FHIR uses for them."""

from __future__ import annotations

from urllib.parse import quote

from adapters.codes.loinc import LOINC_SYSTEM
from adapters.codes.mdc import MDC_SYSTEM

UCUM_SYSTEM = "http://unitsofmeasure.org"
SNOMED_SYSTEM = "http://snomed.info/sct"

# Names from HL7 table 0396 (and common variants) whose FHIR URI is well known.
KNOWN_SYSTEMS: dict[str, str] = {
    "LN": LOINC_SYSTEM,
    "LOINC": LOINC_SYSTEM,
    "MDC": MDC_SYSTEM,
    "SCT": SNOMED_SYSTEM,
    "SNM": SNOMED_SYSTEM,
    "SNOMED-CT": SNOMED_SYSTEM,
    "UCUM": UCUM_SYSTEM,
    "ISO+": "urn:iso:std:iso:2955",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "CPT": "http://www.ama-assn.org/go/cpt",
}

# The sender's own table name survives under this prefix when it has no known URI, so an
# unknown coding passes through intact and can be mapped later.
LOCAL_SYSTEM_PREFIX = "urn:caregraph:hl7v2:coding-system:"


def coding_system_uri(name: str) -> str | None:
    """The FHIR system URI for an HL7 v2 coding-system name; None when ``name`` is empty.

    ``HL7nnnn`` and ``99zzz``-style local names are kept (HL7 tables become their
    terminology.hl7.org code systems; anything else gets the local prefix).
    """
    name = name.strip()
    if not name:
        return None
    known = KNOWN_SYSTEMS.get(name.upper())
    if known:
        return known
    if name.upper().startswith("HL7") and name[3:].isdigit():
        return f"http://terminology.hl7.org/CodeSystem/v2-{name[3:].zfill(4)}"
    return LOCAL_SYSTEM_PREFIX + quote(name, safe="")


def is_known_system(name: str) -> bool:
    """True when ``name`` maps to a standard URI rather than the local prefix."""
    uri = coding_system_uri(name)
    return uri is not None and not uri.startswith(LOCAL_SYSTEM_PREFIX)
