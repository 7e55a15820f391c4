"""One DICOM instance's header -> the FHIR resources it tells about (pure, no I/O).

Resources and how they are linked::

    ImagingStudy --subject--> Patient            (PatientID + IssuerOfPatientID)
                 --referrer--> Practitioner      (ReferringPhysicianName)
                 series.performer:
                   PRF  --> Practitioner         (PerformingPhysicianName)
                   SPRF --> Practitioner         (OperatorsName)
                   DEV  --> Device               (the modality)
    Device --owner--> Organization               (InstitutionName)

Ids are deterministic (``adapters.ids``) and derived from what identifies each thing in
DICOM, never from the message: the study from its Study Instance UID, the patient from
issuer + PatientID, the device from manufacturer + model + serial number (or station name
and institution when there is no serial), a practitioner from institution + name. A re-sent
instance therefore upserts the same resources, and instances of one study sent from two
modalities land on one ImagingStudy.

DICOM carries staff only as names, so two people with one name at one institution become
one Practitioner here; telling them apart is the linkage service's job, not a guess made
at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any
from urllib.parse import quote

import adapters.fhir_build as fb
from adapters.dicom import tags
from adapters.dicom.header import DicomHeader, JsonDataset, tag_label
from adapters.dicom.modality import modality_coding
from adapters.dicom.values import (
    administrative_gender,
    fhir_date_time,
    has_content,
    is_uid,
    name_key,
    parse_date,
    parse_time,
    parse_utc_offset,
    uid,
)
from adapters.ids import deterministic_id
from caregraph.errors import MappingError

Json = dict[str, Any]

SOURCE = "dicom"
DICOM_UID_SYSTEM = "urn:dicom:uid"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# An issuer with neither an OID nor a configured URI keeps its text under this prefix, so
# two issuers never share a system and the original value can be mapped later.
LOCAL_ISSUER_PREFIX = "urn:caregraph:dicom:issuer:"


@dataclass(frozen=True, slots=True)
class MappingOptions:
    """Site settings the header alone cannot supply.

    ``default_timezone``: the zone of the modalities' clocks, used when a header has no
    TimezoneOffsetFromUTC; without either, times are dropped and only dates are kept.
    ``issuer_systems``: IssuerOfPatientID text -> identifier system URI (e.g. the hospital's
    MRN system, shared with the HL7 feed so the patient index can match them).
    ``default_patient_id_system``: the system for a PatientID that comes without issuer.
    """

    default_timezone: tzinfo | None = None
    issuer_systems: Mapping[str, str] = field(default_factory=dict)
    default_patient_id_system: str | None = None


@dataclass(frozen=True, slots=True)
class InstanceResources:
    """What one instance contributes; ``study`` is an ImagingStudy fragment to merge."""

    study: Json
    patient: Json
    practitioners: tuple[Json, ...]
    organization: Json | None
    device: Json | None

    def all(self) -> list[Json]:
        """Every resource, referenced ones first."""
        out = [self.patient, *self.practitioners]
        out += [r for r in (self.organization, self.device) if r is not None]
        out.append(self.study)
        return out


def imaging_study_id(study_uid: str) -> str:
    """The ImagingStudy id for a Study Instance UID (same for every instance of it)."""
    return deterministic_id(SOURCE, "ImagingStudy", study_uid)


def patient_identifier_system(header: DicomHeader, options: MappingOptions) -> str | None:
    """The identifier system of PatientID: the issuer's universal id when the header gives
    one (ISO OID or URI), a configured mapping of the issuer text, the OID the text is, or
    the text under a local prefix; the site default when there is no issuer at all."""
    for item in header.sequence(tags.ISSUER_OF_PATIENT_ID_QUALIFIERS_SEQUENCE):
        entity = item.text(tags.UNIVERSAL_ENTITY_ID)
        kind = (item.text(tags.UNIVERSAL_ENTITY_ID_TYPE) or "").upper()
        if entity and kind == "ISO" and is_uid(entity):
            return f"urn:oid:{entity}"
        if entity and kind == "URI":
            return entity
    issuer = header.text(tags.ISSUER_OF_PATIENT_ID)
    if issuer is None:
        return options.default_patient_id_system
    if issuer in options.issuer_systems:
        return options.issuer_systems[issuer]
    if is_uid(issuer):
        return f"urn:oid:{issuer}"
    return LOCAL_ISSUER_PREFIX + quote(issuer, safe="")


def _human_name(pn: str) -> Json:
    parts = [p.strip() for p in pn.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    text = " ".join(p for p in (prefix, given, middle, family, suffix) if p)
    return fb.human_name(
        family=family or None,
        given=[g for g in (given, *middle.split()) if g],
        prefix=[prefix] if prefix else [],
        suffix=[suffix] if suffix else [],
        text=text,
    )


def _patient(header: DicomHeader, study_uid: str, options: MappingOptions) -> Json:
    patient_id = header.text(tags.PATIENT_ID)
    system = patient_identifier_system(header, options)
    if patient_id is not None:
        resource_id = deterministic_id(SOURCE, "Patient", system or "", patient_id)
        issuer = header.text(tags.ISSUER_OF_PATIENT_ID)
        identifiers = [
            fb.identifier(
                system,
                patient_id,
                type_code=fb.codeable_concept([fb.coding(V2_0203, "MR")]),
                assigner={"display": issuer} if issuer else None,
            )
        ]
    else:
        # No PatientID (Type 2, may be empty): the study is the only handle on this person.
        resource_id = deterministic_id(SOURCE, "Patient", "study", study_uid)
        identifiers = []
    birth = parse_date(header.text(tags.PATIENT_BIRTH_DATE))
    return fb.patient(
        resource_id,
        identifiers=identifiers,
        names=[_human_name(n) for n in header.person_names(tags.PATIENT_NAME) if has_content(n)],
        gender=administrative_gender(header.text(tags.PATIENT_SEX)),
        birth_date=birth.isoformat() if birth else None,
    )


def _practitioners(header: DicomHeader, tag: str, institution: str) -> list[Json]:
    return [
        fb.practitioner(
            deterministic_id(SOURCE, "Practitioner", institution.upper(), name_key(pn)),
            names=[_human_name(pn)],
        )
        for pn in header.person_names(tag)
        if has_content(pn)
    ]


def _reference(resource: Json) -> Json:
    return fb.reference(resource["resourceType"], resource["id"])


def _performer(function: str, display: str, actor: Json) -> Json:
    return {
        "function": fb.codeable_concept([fb.coding(PARTICIPATION, function, display)]),
        "actor": _reference(actor),
    }


def _device(
    header: DicomHeader, modality: Json, organization: Json | None, institution: str
) -> Json | None:
    manufacturer = header.text(tags.MANUFACTURER)
    model = header.text(tags.MANUFACTURER_MODEL_NAME)
    serial = header.text(tags.DEVICE_SERIAL_NUMBER)
    station = header.text(tags.STATION_NAME)
    if not any((manufacturer, model, serial, station)):
        return None
    if serial:
        key: tuple[str, ...] = ("serial", manufacturer or "", model or "", serial)
    else:
        key = ("station", manufacturer or "", model or "", station or "", institution.upper())
    return fb.device(
        deterministic_id(SOURCE, "Device", *key),
        device_type=fb.codeable_concept([modality]),
        manufacturer=manufacturer,
        serial_number=serial,
        names=[(n, t) for n, t in ((model, "model-name"), (station, "user-friendly-name")) if n],
        owner=_reference(organization) if organization else None,
    )


def map_instance(data: JsonDataset, options: MappingOptions | None = None) -> InstanceResources:
    """Map one instance's header (DICOM JSON, pixel data left out) to FHIR resources.

    Raises ``MappingError`` (naming the tag) when the header lacks what an ImagingStudy
    needs: valid Study, Series and SOP Instance UIDs, a SOP Class UID and a Modality.
    """
    options = options or MappingOptions()
    header = DicomHeader(data)
    study_uid = uid(header.text(tags.STUDY_INSTANCE_UID), tag_label(tags.STUDY_INSTANCE_UID))
    series_uid = uid(header.text(tags.SERIES_INSTANCE_UID), tag_label(tags.SERIES_INSTANCE_UID))
    sop_uid = uid(header.text(tags.SOP_INSTANCE_UID), tag_label(tags.SOP_INSTANCE_UID))
    sop_class = uid(header.text(tags.SOP_CLASS_UID), tag_label(tags.SOP_CLASS_UID))
    modality_code = header.text(tags.MODALITY)
    if modality_code is None:
        raise MappingError("Modality is missing", tag_label(tags.MODALITY))
    modality = modality_coding(modality_code)
    tz = parse_utc_offset(header.text(tags.TIMEZONE_OFFSET_FROM_UTC)) or options.default_timezone

    institution = header.text(tags.INSTITUTION_NAME) or ""
    organization = (
        fb.organization(
            deterministic_id(SOURCE, "Organization", " ".join(institution.upper().split())),
            name=institution,
        )
        if has_content(institution)
        else None
    )
    patient = _patient(header, study_uid, options)
    referrers = _practitioners(header, tags.REFERRING_PHYSICIAN_NAME, institution)
    performing = _practitioners(header, tags.PERFORMING_PHYSICIAN_NAME, institution)
    operators = _practitioners(header, tags.OPERATORS_NAME, institution)
    device = _device(header, modality, organization, institution)

    performers = [_performer("PRF", "performer", p) for p in performing]
    performers += [_performer("SPRF", "secondary performer", p) for p in operators]
    if device is not None:
        performers.append(_performer("DEV", "device", device))

    instance = fb.clean(
        {
            "uid": sop_uid,
            "sopClass": fb.coding("urn:ietf:rfc:3986", f"urn:oid:{sop_class}"),
            "number": header.integer(tags.INSTANCE_NUMBER),
        }
    )
    series = fb.clean(
        {
            "uid": series_uid,
            "number": header.integer(tags.SERIES_NUMBER),
            "modality": modality,
            "description": header.text(tags.SERIES_DESCRIPTION),
            "numberOfInstances": 1,
            "started": fhir_date_time(
                parse_date(header.text(tags.SERIES_DATE)),
                parse_time(header.text(tags.SERIES_TIME)),
                tz,
            ),
            "performer": performers,
            "instance": [instance],
        }
    )
    accession = header.text(tags.ACCESSION_NUMBER)
    study = fb.clean(
        {
            "resourceType": "ImagingStudy",
            "id": imaging_study_id(study_uid),
            "identifier": [
                fb.identifier(DICOM_UID_SYSTEM, f"urn:oid:{study_uid}"),
                fb.identifier(
                    None,
                    accession,
                    type_code=fb.codeable_concept([fb.coding(V2_0203, "ACSN")]),
                )
                if accession
                else None,
            ],
            "status": "available",
            "modality": [modality],
            "subject": _reference(patient),
            "started": fhir_date_time(
                parse_date(header.text(tags.STUDY_DATE)),
                parse_time(header.text(tags.STUDY_TIME)),
                tz,
            ),
            "referrer": _reference(referrers[0]) if referrers else None,
            "numberOfSeries": 1,
            "numberOfInstances": 1,
            "description": header.text(tags.STUDY_DESCRIPTION),
            "series": [series],
        }
    )
    practitioners = {p["id"]: p for p in (*referrers, *performing, *operators)}
    return InstanceResources(
        study=study,
        patient=patient,
        practitioners=tuple(practitioners.values()),
        organization=organization,
        device=device,
    )
