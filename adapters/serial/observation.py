"""``Measurement`` -> FHIR R4 Observation, as a plain dict (no model validation on the hot
path; ``tests/unit/serial/test_observation.py`` proves the output valid against the
``fhir.resources`` models over generated inputs).

Ids are deterministic: the same raw message replayed gives the same Observation ids, so the
store upserts instead of duplicating. The patient comes from the caller (the device
normalizer resolves it from the attachment valid at the device time, see
``adapters.registry.associations``). A reading with no patient keeps its device reference,
has no ``subject`` and carries the tag ``urn:caregraph:tag|unassigned``, so the unassigned
readings are one search away: ``Observation?_tag=urn:caregraph:tag|unassigned``. An
unassigned reading whose device reported a patient id keeps it as a logical reference
(``subject.identifier``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adapters.ids import deterministic_id, ordered_id
from adapters.serial.measurement import Measurement

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
# Device alarms are no category of HL7's table; they get caregraph's own.
LOCAL_CATEGORY_SYSTEM = "urn:caregraph:observation-category"
_HL7_CATEGORIES = frozenset(
    {
        "social-history",
        "vital-signs",
        "imaging",
        "laboratory",
        "procedure",
        "survey",
        "exam",
        "therapy",
        "activity",
    }
)
VENDOR_SYSTEM_PREFIX = "urn:caregraph:device-code:"
READING_ID_SYSTEM = "urn:caregraph:device-reading"
DEVICE_ID_SYSTEM = "urn:caregraph:device"
TAG_SYSTEM = "urn:caregraph:tag"
UNASSIGNED = "unassigned"
_UNASSIGNED_META = {
    "tag": [
        {
            "system": TAG_SYSTEM,
            "code": UNASSIGNED,
            "display": "No patient attached to the device at the reading's device time",
        }
    ]
}


@functools.lru_cache(maxsize=4096)
def device_resource_id(device_id: str) -> str:
    """The FHIR Device id of a device known by ``device_id``; the registry must use it too.

    Cached: a gateway has few devices and every reading needs the id (uuid5 costs ~10 us)."""
    return deterministic_id("Device", device_id)


def observation_id(m: Measurement) -> str:
    """Deterministic Observation id: reading time, then device, raw message id and position
    in that message (time first, so the store's indexes grow at their end; see
    ``adapters.ids.ordered_id``)."""
    return ordered_id(reading_time(m), "device-reading", m.device_id, m.message_id, m.position)


def _instant(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reading_time(m: Measurement) -> datetime:
    """The time a reading is about: the device clock, or receipt when the device gave none."""
    return m.device_time or m.received_at


def observation_from_measurement(
    m: Measurement, subject: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Observation for one reading; ``effective`` is device time, ``issued`` receipt.

    ``subject`` is the patient Reference valid at device time; ``None`` marks the reading
    unassigned (tagged, no subject)."""
    coding: list[dict[str, str]] = []
    if m.mdc_code is not None:
        coding.append({"system": MDC_SYSTEM, "code": str(m.mdc_code), "display": m.label})
    if m.loinc is not None:
        coding.append({"system": LOINC_SYSTEM, "code": m.loinc})
    coding.append({"system": VENDOR_SYSTEM_PREFIX + m.protocol, "code": m.vendor_code})
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id(m),
        "identifier": [{"system": READING_ID_SYSTEM, "value": f"{m.message_id}#{m.position}"}],
        "status": m.status,
        "category": [
            {
                "coding": [
                    {
                        "system": CATEGORY_SYSTEM
                        if m.category in _HL7_CATEGORIES
                        else LOCAL_CATEGORY_SYSTEM,
                        "code": m.category,
                    }
                ]
            }
        ],
        "code": {"coding": coding, "text": m.label},
        "effectiveDateTime": _instant(reading_time(m)),
        "issued": _instant(m.received_at),
        "device": {
            "reference": f"Device/{device_resource_id(m.device_id)}",
            "identifier": {"system": DEVICE_ID_SYSTEM, "value": m.device_id},
        },
    }
    if subject is not None:
        obs["subject"] = dict(subject)
    else:
        obs["meta"] = {"tag": [dict(t) for t in _UNASSIGNED_META["tag"]]}
        if m.patient_hint:
            # a logical reference: kept for whoever assigns the reading later, but in no
            # patient's compartment until a Patient with this identifier is known
            ident = {"value": m.patient_hint}
            if m.patient_id_system:
                ident = {"system": m.patient_id_system, **ident}
            obs["subject"] = {
                "identifier": ident,
                "display": "patient id reported by the device; no single Patient has it",
            }
    if m.value is not None:
        quantity: dict[str, Any] = {"value": float(m.value)}
        if m.comparator is not None:
            quantity["comparator"] = m.comparator
        if m.unit is not None:
            quantity["unit"] = m.unit.display or m.unit.ucum
            if m.unit.mdc is not None or m.unit.ucum in _UCUM_SAFE:
                quantity["system"] = UCUM_SYSTEM
                quantity["code"] = m.unit.ucum
        obs["valueQuantity"] = quantity
    elif m.text is not None:
        obs["valueString"] = m.text
    else:
        reason = m.absent_reason or "unknown"
        obs["dataAbsentReason"] = {"coding": [{"system": ABSENT_SYSTEM, "code": reason}]}
    if m.specimen_id is not None:
        obs["specimen"] = {"display": m.specimen_id}
    return obs


# UCUM codes we emit without an MDC term; anything else an analyzer printed stays text only.
_UCUM_SAFE = frozenset({"mbar", "mL", "L", "L/min", "mmol/L", "mg/dL", "g/dL", "s", "%"})
