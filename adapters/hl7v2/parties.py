"""Who and where: Organization (sending facility), Patient (PID), Practitioner (XCN),
Location (PL, down to the bed) and Encounter (PV1).

Entity resources get ids from their business identifiers (a patient's identifier within
its authority, a bed within its ward), not from the message, so an A08 updates the Patient
an A01 created; resources that exist only in one message use ``Context.message_scoped_id``.
Entities carry no ``meta.source`` (the message's Provenance targets them instead), so the
same Patient or bed sent again is byte-identical and the store adds no version.
"""

from __future__ import annotations

from datetime import tzinfo
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from adapters import fhir_build as fb
from adapters.hl7v2.context import Context
from adapters.hl7v2.datatypes import (
    Options,
    cx_identifiers,
    hd_system,
    parse_date,
    parse_ts,
    xad_addresses,
    xcn_name,
    xpn_names,
    xtn_telecom,
)
from adapters.hl7v2.er7 import Delimiters, Segment, unescape
from adapters.hl7v2.errors import REQUIRED_FIELD_MISSING, TABLE_VALUE_NOT_FOUND, Hl7MappingError
from adapters.ids import deterministic_id

Json = fb.Json


OptionsKey = tuple[tzinfo, tuple[tuple[str, str], ...]]


def options_key(options: Options) -> OptionsKey:
    """``Options`` as a memo key (it holds a dict, so it is not hashable itself)."""
    return options.default_tz, tuple(sorted(options.authority_systems.items()))


def organization(ctx: Context) -> Json:
    """The sending facility (MSH-4) as an Organization; reference returned."""
    reps = ctx.message.msh.reps(4)
    resource = _organization_of(
        reps[0] if reps else "",
        ctx.message.delimiters,
        ctx.header.sending_application,
        ctx.facility,
        options_key(ctx.options),
    )
    return ctx.add(dict(resource))


@lru_cache(maxsize=1024)
def _organization_of(
    hd: str, d: Delimiters, sending_application: str, facility: str, site: OptionsKey
) -> Json:
    """``organization``'s resource from MSH-4's first repetition, memoized (one sender,
    one Organization, in every message). Callers copy the top level; nested values are
    shared and never mutated."""
    ns, uid, kind = ([unescape(p, d) for p in hd.split(d.component)] + ["", "", ""])[:3]
    name = ns or sending_application or "unknown"
    identifiers = []
    if uid:
        options = Options(site[0], dict(site[1]))
        identifiers.append(fb.identifier(hd_system("", uid, kind, options), uid))
    return fb.organization(
        deterministic_id("Organization", facility),
        name=name,
        identifiers=identifiers,
    )


_GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}


def patient_identifiers(ctx: Context, pid: Segment) -> list[Json]:
    return cx_identifiers(pid, 3, ctx.options, ctx.sender_system)


RESULTS_SCOPE = "results"
"""The id scope of Patients read from result messages (ORU), see ``patient``."""


def patient_id_for(identifiers: list[Json], scope: str | None = None) -> str | None:
    """The Patient id for a set of identifiers: the medical record number if typed MR,
    else the first; None when there is none."""
    if not identifiers:
        return None
    chosen = next(
        (i for i in identifiers if i.get("type", {}).get("coding", [{}])[0].get("code") == "MR"),
        identifiers[0],
    )
    parts = ("Patient", scope) if scope else ("Patient",)
    return deterministic_id(*parts, chosen.get("system", ""), chosen["value"])


def patient(ctx: Context, pid: Segment, org: Json, *, scope: str | None = None) -> Json | None:
    """A Patient from PID; reference returned, None when PID names no identifier.

    ``scope`` separates source records: result feeds (ORU) carry a thin PID (often just the
    MRN and a name), so their Patient gets its own id (``scope="results"``) instead of
    overwriting the demographics an ADT feed keeps current; linkage joins both to one
    golden record through the shared identifier.

    Raises:
        Hl7MappingError: a date or code that cannot be read (location names the field).
    """
    resource = _patient_of(
        pid.name,
        tuple(pid.fields),
        pid.delimiters,
        pid.occurrence,
        options_key(ctx.options),
        ctx.sender_system,
        tuple(org.items()),
        scope,
    )
    return None if resource is None else ctx.add(dict(resource))


@lru_cache(maxsize=2048)
def _patient_of(
    name: str,
    fields: tuple[str, ...],
    d: Delimiters,
    occurrence: int,
    site: OptionsKey,
    sender_system: str,
    org_items: tuple[tuple[str, Any], ...],
    scope: str | None,
) -> Json | None:
    """``patient``'s resource from everything it depends on, memoized: a result feed
    repeats one PID in every message (the mapping of that PID was a seventh of an ORU's).
    Errors are not memoized. Callers get a copy of the top level; nested values are
    shared and never mutated."""
    pid = Segment(name, list(fields), d, occurrence)
    options = Options(site[0], dict(site[1]))
    identifiers = cx_identifiers(pid, 3, options, sender_system)
    resource_id = patient_id_for(identifiers, scope)
    if resource_id is None:
        return None
    sex = pid.component(8).strip().upper()
    gender = _GENDER.get(sex) if sex else None
    if sex and gender is None:
        raise Hl7MappingError(
            f"administrative sex {sex!r} is not in table 0001", pid.where(8), TABLE_VALUE_NOT_FOUND
        )
    deceased: bool | str | None = None
    death = parse_ts(pid, 29, options)
    if death:
        deceased = death
    elif pid.field(30).strip().upper() in ("Y", "N"):
        deceased = pid.field(30).strip().upper() == "Y"
    return fb.patient(
        resource_id,
        identifiers=identifiers,
        names=xpn_names(pid, 5),
        gender=gender,
        birth_date=parse_date(pid, 7, options),
        addresses=xad_addresses(pid, 11),
        telecom=xtn_telecom(pid, 13, "home") + xtn_telecom(pid, 14, "work"),
        managing_organization=dict(org_items),
        deceased=deceased,
    )


def practitioner(ctx: Context, seg: Segment, n: int, rep: int = 0) -> Json | None:
    """A Practitioner from an XCN field; reference returned, None when the field is empty."""
    ident, ns, uid, name = xcn_name(seg, n, rep)
    if not ident and not name:
        return None
    identifiers = []
    if ident:
        system = hd_system(ns, uid, "ISO" if uid else "", ctx.options) or ctx.sender_system
        identifiers.append(fb.identifier(system, ident))
        resource_id = deterministic_id("Practitioner", system, ident)
    else:
        resource_id = ctx.message_scoped_id("Practitioner", seg.name, seg.occurrence, n, rep)
    resource = fb.practitioner(
        resource_id,
        identifiers=identifiers,
        names=[name] if name else [],
    )
    return ctx.add(resource)


def location(ctx: Context, seg: Segment, n: int, org: Json) -> Json | None:
    """Locations from a PL field (PV1-3): ward (PL.1), room (PL.2) and bed (PL.3), each
    ``partOf`` the one above; the most specific reference is returned."""
    reps = seg.reps(n)
    parent: Json | None = None
    for resource in _locations_of(
        reps[0] if reps else "", seg.delimiters, ctx.facility, tuple(org.items())
    ):
        parent = ctx.add(dict(resource))
    return parent


@lru_cache(maxsize=2048)
def _locations_of(
    pl: str, d: Delimiters, default_facility: str, org_items: tuple[tuple[str, Any], ...]
) -> tuple[Json, ...]:
    """``location``'s resources, ward first, from the first repetition of the PL field,
    memoized: a feed names the same bed in every message. Callers copy the top level;
    nested values are shared and never mutated."""
    comps = [unescape(c, d).strip() for c in pl.split(d.component)] + [""] * 9
    ward, room, bed = comps[0], comps[1], comps[2]
    facility = comps[3] or default_facility
    org = dict(org_items)
    out: list[Json] = []
    parent: Json | None = None
    path: list[str] = [facility]
    for value, kind in ((ward, "wa"), (room, "ro"), (bed, "bd")):
        if not value:
            continue
        path.append(f"{kind}:{value}")
        resource = fb.location(
            deterministic_id("Location", *path),
            name=value if kind == "wa" else " ".join(p.split(":", 1)[1] for p in path[1:]),
            physical_type=kind,
            identifiers=[fb.identifier(_location_system(facility), "/".join(path[1:]))],
            part_of=parent,
            managing_organization=org,
        )
        out.append(resource)
        parent = fb.reference("Location", resource["id"])
    return tuple(out)


def _location_system(facility: str) -> str:
    return "urn:caregraph:hl7v2:location:" + quote(facility, safe="")


# PV1-2 (table 0004) -> v3 ActCode
_CLASS = {
    "I": "IMP",
    "B": "IMP",
    "O": "AMB",
    "R": "AMB",
    "C": "AMB",
    "E": "EMER",
    "P": "PRENC",
}
_CLASS_DISPLAY = {
    "IMP": "inpatient encounter",
    "AMB": "ambulatory",
    "EMER": "emergency",
    "PRENC": "pre-admission",
}

# Trigger event -> Encounter status (before looking at a discharge time).
_STATUS = {
    "A01": "in-progress",
    "A02": "in-progress",
    "A03": "finished",
    "A04": "in-progress",
    "A05": "planned",
    "A08": "in-progress",
    "A11": "cancelled",
    "A13": "in-progress",
}


def encounter_reference(ctx: Context, pv1: Segment) -> Json | None:
    """The Encounter a result belongs to, by visit number (PV1-19), without emitting it:
    the ADT feed owns the Encounter's status and period, and a result message restating
    them would undo a discharge. None without a visit number."""
    visit_ids = cx_identifiers(pv1, 19, ctx.options, ctx.sender_system)
    if not visit_ids:
        return None
    first = visit_ids[0]
    return fb.reference("Encounter", _encounter_id(first))


def _encounter_id(visit: Json) -> str:
    return deterministic_id("Encounter", visit.get("system", ""), visit["value"])


def encounter(
    ctx: Context, pv1: Segment, subject: Json | None, org: Json
) -> tuple[Json | None, Json | None]:
    """The Encounter of a PV1 and its bed Location; (None, None) when PV1 says no visit
    (class N, as A28/A31 send) or is empty.

    Raises:
        Hl7MappingError: a patient class not in table 0004, or an unreadable time.
    """
    patient_class = pv1.component(2).strip().upper()
    if patient_class == "N" or (not patient_class and not pv1.field(19) and not pv1.field(3)):
        return None, None
    if patient_class and patient_class not in _CLASS and patient_class != "U":
        raise Hl7MappingError(
            f"patient class {patient_class!r} is not in table 0004",
            pv1.where(2),
            TABLE_VALUE_NOT_FOUND,
        )
    act = _CLASS.get(patient_class)
    class_code = (
        fb.coding(fb.ACT_CODE_SYSTEM, act, _CLASS_DISPLAY[act])
        if act
        else fb.coding("http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK", "unknown")
    )
    visit_ids = cx_identifiers(pv1, 19, ctx.options, ctx.sender_system)
    if visit_ids:
        resource_id = _encounter_id(visit_ids[0])
    elif subject is not None:
        # No visit number: one encounter per patient, admission time and sender.
        resource_id = deterministic_id(
            "Encounter", ctx.facility, subject["reference"], pv1.component(44)
        )
    else:
        raise Hl7MappingError(
            "PV1 has neither a visit number (PV1-19) nor a patient",
            pv1.where(19),
            REQUIRED_FIELD_MISSING,
        )
    start = parse_ts(pv1, 44, ctx.options)
    end = parse_ts(pv1, 45, ctx.options)
    status = _STATUS.get(ctx.header.trigger_event, "in-progress")
    if end and status == "in-progress" and ctx.header.trigger_event not in ("A13",):
        status = "finished"
    if ctx.header.trigger_event == "A13":
        end = None
    bed = location(ctx, pv1, 3, org)
    participants: list[tuple[str, Json]] = []
    for n, code in ((7, "ATND"), (17, "ADM"), (8, "REF")):
        for rep in range(len(pv1.reps(n))):
            who = practitioner(ctx, pv1, n, rep)
            if who is not None:
                participants.append((code, who))
    locations: list[tuple[Json, str | None]] = []
    if bed is not None:
        locations.append((bed, "completed" if status == "finished" else "active"))
    prior = location(ctx, pv1, 6, org) if ctx.header.trigger_event == "A02" else None
    if prior is not None and prior != bed:
        locations.append((prior, "completed"))
    resource = fb.encounter(
        resource_id,
        status=status,
        class_code=class_code,
        identifiers=visit_ids,
        subject=subject,
        period_=fb.period(start, end) or None,
        locations=locations,
        participants=participants,
        service_provider=org,
    )
    return ctx.add(resource), bed
