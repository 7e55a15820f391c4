"""FHIR resources -> graph edges. Pure: no I/O.

A node is ``Type/id``. An edge goes from ``src`` to ``dst`` with a relation name and a
validity window ``[valid_from, valid_to]`` in fixed-width UTC text (``fhir_store.dates``),
so time-window queries are string comparisons on an index. Every edge remembers the
resource it came from (``via``): storing a resource again replaces exactly its edges, so a
redelivered or updated resource never leaves stale edges behind.

Besides the edges a resource states (Encounter -> Location), the builders add the derived
patient edges the queries need (Patient -located_at-> Location for the same period), so every
question is one indexed lookup per hop instead of a join through encounters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_store.dates import HIGHEST, LOWEST, date_range

Resource = Mapping[str, Any]

# Relations, directed src -> dst.
HAS_ENCOUNTER = "has_encounter"  # Patient -> Encounter
AT_LOCATION = "at_location"  # Encounter -> Location
PARTICIPANT = "participant"  # Encounter -> Practitioner
SERVICE_PROVIDER = "service_provider"  # Encounter -> Organization
LOCATED_AT = "located_at"  # Patient | Device -> Location
CARED_BY = "cared_by"  # Patient -> Practitioner (encounter participant, general practitioner)
TREATED_AT = "treated_at"  # Patient -> Organization (encounter service provider)
MEASURED = "measured"  # Device -> Patient (an Observation the device made)
PERFORMED = "performed"  # Practitioner -> Patient (performer of an Observation)
ATTACHED_TO = "attached_to"  # Device -> Patient (Device.patient, DeviceUseStatement)
OWNED_BY = "owned_by"  # Device -> Organization
IMAGED = "imaged"  # Device | Practitioner | Organization -> Patient (ImagingStudy)
MEMBER_OF = "member_of"  # Practitioner -> Organization (PractitionerRole)
WORKS_AT = "works_at"  # Practitioner -> Location (PractitionerRole)
PART_OF = "part_of"  # Location | Organization -> Organization
REGISTERED_AT = "registered_at"  # Patient -> Organization (managingOrganization)
PROVIDED = "provided"  # Organization -> an entity (Provenance: a partner sent it)

DEVICE_PATIENT_RELATIONS = (MEASURED, ATTACHED_TO, IMAGED)
STAFF_PATIENT_RELATIONS = (CARED_BY, PERFORMED, IMAGED)


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    rel: str
    dst: str
    valid_from: str = LOWEST
    valid_to: str = HIGHEST

    def to_json(self) -> dict[str, str]:
        return {
            "src": self.src,
            "rel": self.rel,
            "dst": self.dst,
            "from": self.valid_from,
            "to": self.valid_to,
        }


def node(kind: str, ident: str) -> str:
    return f"{kind}/{ident}"


def ref(value: Any, *kinds: str) -> str | None:
    """``Type/id`` of a Reference whose type is one of ``kinds`` (relative or absolute)."""
    if not isinstance(value, Mapping):
        return None
    text = value.get("reference")
    if not isinstance(text, str):
        return None
    parts = text.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2 or parts[-2] not in kinds:
        return None
    return f"{parts[-2]}/{parts[-1]}"


def window(period: Any, fallback: tuple[str, str] = (LOWEST, HIGHEST)) -> tuple[str, str]:
    """``[start, end]`` of a Period; a missing end is open (still going on)."""
    if not isinstance(period, Mapping):
        return fallback
    start, end = fallback
    try:
        if period.get("start"):
            start = date_range(str(period["start"]))[0]
        if period.get("end"):
            end = date_range(str(period["end"]))[1]
    except ValueError:
        return fallback
    return start, end


def instant(text: Any) -> tuple[str, str] | None:
    """The interval a dateTime names (a day for a date), or None if absent or invalid."""
    if not isinstance(text, str):
        return None
    try:
        return date_range(text)
    except ValueError:
        return None


def _encounter(r: Resource) -> list[Edge]:
    enc = node("Encounter", r["id"])
    patient = ref(r.get("subject"), "Patient")
    lo, hi = window(r.get("period"))
    out: list[Edge] = []
    if patient:
        out.append(Edge(patient, HAS_ENCOUNTER, enc, lo, hi))
    for loc in r.get("location") or ():
        target = ref(loc.get("location"), "Location")
        if target:
            a, b = window(loc.get("period"), (lo, hi))
            out.append(Edge(enc, AT_LOCATION, target, a, b))
            if patient:
                out.append(Edge(patient, LOCATED_AT, target, a, b))
    for part in r.get("participant") or ():
        who = ref(part.get("individual"), "Practitioner")
        if who:
            a, b = window(part.get("period"), (lo, hi))
            out.append(Edge(enc, PARTICIPANT, who, a, b))
            if patient:
                out.append(Edge(patient, CARED_BY, who, a, b))
    provider = ref(r.get("serviceProvider"), "Organization")
    if provider:
        out.append(Edge(enc, SERVICE_PROVIDER, provider, lo, hi))
        if patient:
            out.append(Edge(patient, TREATED_AT, provider, lo, hi))
    return out


def _effective(r: Resource) -> tuple[str, str] | None:
    for key in ("effectiveDateTime", "effectiveInstant", "issued"):
        found = instant(r.get(key))
        if found:
            return found
    if isinstance(r.get("effectivePeriod"), Mapping):
        return window(r["effectivePeriod"])
    return None


def _observation(r: Resource) -> list[Edge]:
    patient = ref(r.get("subject"), "Patient")
    if not patient:
        return []
    device = ref(r.get("device"), "Device")
    staff = [who for p in r.get("performer") or () if (who := ref(p, "Practitioner"))]
    if not device and not staff:
        return []  # a monitor's reading names a DeviceMetric: no edge, so no time to parse
    when = _effective(r)
    if when is None:
        return []
    out = [Edge(device, MEASURED, patient, *when)] if device else []
    out.extend(Edge(who, PERFORMED, patient, *when) for who in staff)
    return out


def _device(r: Resource) -> list[Edge]:
    dev = node("Device", r["id"])
    out: list[Edge] = []
    patient = ref(r.get("patient"), "Patient")
    if patient:
        out.append(Edge(dev, ATTACHED_TO, patient))
    owner = ref(r.get("owner"), "Organization")
    if owner:
        out.append(Edge(dev, OWNED_BY, owner))
    location = ref(r.get("location"), "Location")
    if location:
        out.append(Edge(dev, LOCATED_AT, location))
    return out


def _device_use(r: Resource) -> list[Edge]:
    patient = ref(r.get("subject"), "Patient")
    device = ref(r.get("device"), "Device")
    if not patient or not device:
        return []
    when = (
        window(r.get("timingPeriod"))
        if isinstance(r.get("timingPeriod"), Mapping)
        else instant(r.get("timingDateTime")) or (LOWEST, HIGHEST)
    )
    return [Edge(device, ATTACHED_TO, patient, *when)]


def _imaging_study(r: Resource) -> list[Edge]:
    patient = ref(r.get("subject"), "Patient")
    if not patient:
        return []
    when = instant(r.get("started")) or (LOWEST, HIGHEST)
    actors: dict[str, None] = {}
    for series in r.get("series") or ():
        for performer in series.get("performer") or ():
            actor = ref(performer.get("actor"), "Practitioner", "Device", "Organization")
            if actor:
                actors[actor] = None
    referrer = ref(r.get("referrer"), "Practitioner")
    out = [Edge(actor, IMAGED, patient, *when) for actor in actors]
    if referrer:
        out.append(Edge(patient, CARED_BY, referrer, *when))
    return out


def _practitioner_role(r: Resource) -> list[Edge]:
    who = ref(r.get("practitioner"), "Practitioner")
    if not who:
        return []
    lo, hi = window(r.get("period"))
    out: list[Edge] = []
    org = ref(r.get("organization"), "Organization")
    if org:
        out.append(Edge(who, MEMBER_OF, org, lo, hi))
    for loc in r.get("location") or ():
        target = ref(loc, "Location")
        if target:
            out.append(Edge(who, WORKS_AT, target, lo, hi))
    return out


def _location(r: Resource) -> list[Edge]:
    org = ref(r.get("managingOrganization"), "Organization")
    return [Edge(node("Location", r["id"]), PART_OF, org)] if org else []


def _organization(r: Resource) -> list[Edge]:
    parent = ref(r.get("partOf"), "Organization")
    return [Edge(node("Organization", r["id"]), PART_OF, parent)] if parent else []


def _patient(r: Resource) -> list[Edge]:
    me = node("Patient", r["id"])
    out: list[Edge] = []
    org = ref(r.get("managingOrganization"), "Organization")
    if org:
        out.append(Edge(me, REGISTERED_AT, org))
    for gp in r.get("generalPractitioner") or ():
        who = ref(gp, "Practitioner")
        if who:
            out.append(Edge(me, CARED_BY, who))
    return out


#: What a Provenance's PROVIDED edges may point at: the graph's entities, not readings. A
#: results message's Provenance targets every Observation it carried, and an edge to each
#: (eleven a second per monitored bed) would make a node per reading that no query asks
#: about: who provided a result is ``Provenance?target=Observation/<id>`` in the store. The
#: edge to the patient (and encounter) is kept: that is the institution the graph links.
ENTITY_TYPES = (
    "Patient",
    "Practitioner",
    "Organization",
    "Location",
    "Device",
    "Encounter",
    "ImagingStudy",
)


def _provenance(r: Resource) -> list[Edge]:
    at = instant(r.get("recorded")) or (LOWEST, HIGHEST)
    partners = [ref(a.get("who"), "Organization") for a in r.get("agent") or ()]
    targets = [ref(t, *ENTITY_TYPES) for t in r.get("target") or ()]
    return [Edge(p, PROVIDED, t, *at) for p in partners if p for t in targets if t]


BUILDERS: dict[str, Callable[[Resource], list[Edge]]] = {
    "Encounter": _encounter,
    "Observation": _observation,
    "Device": _device,
    "DeviceUseStatement": _device_use,
    "ImagingStudy": _imaging_study,
    "PractitionerRole": _practitioner_role,
    "Location": _location,
    "Organization": _organization,
    "Patient": _patient,
    "Provenance": _provenance,
}
"""The resource types that make edges; others make none."""


def edges_of(resource: Resource) -> list[Edge]:
    """The edges one resource states or implies (deduplicated, in a stable order)."""
    build = BUILDERS.get(str(resource.get("resourceType")))
    if build is None or not resource.get("id"):
        return []
    return list(dict.fromkeys(build(resource)))


def via_of(resource: Resource) -> str:
    return node(str(resource["resourceType"]), str(resource["id"]))


def edges_of_many(resources: Iterable[Resource]) -> list[tuple[str, list[Edge]]]:
    return [(via_of(r), edges_of(r)) for r in resources if r.get("id")]
