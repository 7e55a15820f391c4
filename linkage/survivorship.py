"""Survivorship: which source supplies each field of the golden Patient.

Per field, the value comes from the member that has the field and ranks highest by
(trust of its source, most recent update, source id as a stable tie-break): a trusted
registration system beats a modality's DICOM header, and among equals the latest wins.
Identifiers are the union of all members' (each is a true fact about the person). The
golden record is rebuilt from its members every time they change, so merge and unmerge
never lose data: the sources are the truth, the golden record a view of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from linkage.links import SourceRecord

GOLDEN_TAG_SYSTEM = "https://caregraph.dev/fhir/CodeSystem/linkage"
GOLDEN_TAG = {"system": GOLDEN_TAG_SYSTEM, "code": "golden", "display": "Golden record"}


def is_golden(resource: Mapping[str, Any]) -> bool:
    """True for a golden Patient (tagged so): it must never be ingested as a source."""
    tags = (resource.get("meta") or {}).get("tag") or ()
    return any(t.get("system") == GOLDEN_TAG_SYSTEM and t.get("code") == "golden" for t in tags)


SURVIVING_FIELDS: tuple[str, ...] = (
    "name",
    "gender",
    "birthDate",
    "deceasedBoolean",
    "deceasedDateTime",
    "address",
    "telecom",
    "maritalStatus",
    "communication",
)
"""Fields taken whole from the best member that has them (a name is not mixed from two)."""


@dataclass(frozen=True, slots=True)
class GoldenView:
    """The golden Patient and, per field, the source Patient it came from."""

    resource: dict[str, Any]
    provenance: dict[str, str]


def _rank(record: SourceRecord, trust: Mapping[str, int]) -> tuple[int, datetime, str]:
    return (trust.get(record.source, 0), record.updated_at, record.source_id)


def build_golden(
    golden_id: str,
    members: Sequence[SourceRecord],
    trust: Mapping[str, int] | None = None,
    replaced_by: str | None = None,
) -> GoldenView:
    """The golden Patient of ``members`` (the MATCH members); ``trust``: source -> rank."""
    ranked = sorted(members, key=lambda r: _rank(r, trust or {}), reverse=True)
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": golden_id,
        "meta": {"tag": [dict(GOLDEN_TAG)]},
        "active": replaced_by is None and bool(members),
    }
    provenance: dict[str, str] = {}
    for field in SURVIVING_FIELDS:
        for record in ranked:
            value = record.resource.get(field)
            if value not in (None, "", []):
                resource[field] = value
                provenance[field] = record.source_id
                break
    identifiers: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for record in ranked:
        for ident in record.resource.get("identifier") or ():
            key = (str(ident.get("system", "")), str(ident.get("value", "")))
            if key not in seen:
                seen.add(key)
                identifiers.append(ident)
    if identifiers:
        resource["identifier"] = identifiers
    links = [
        {"other": {"reference": f"Patient/{r.source_id}"}, "type": "seealso"}
        for r in sorted(members, key=lambda r: r.source_id)
    ]
    if replaced_by is not None:
        links.insert(0, {"other": {"reference": f"Patient/{replaced_by}"}, "type": "replaced-by"})
    if links:
        resource["link"] = links
    return GoldenView(resource, provenance)
