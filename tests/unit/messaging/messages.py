"""Partner message Bundles as a partner hospital sends them, for unit and integration tests."""

from __future__ import annotations

from typing import Any

from messaging.events import CAREGRAPH_EVENTS, FHIR_EVENTS, V2_EVENTS

PARTNER = "https://hospital-b.example/fhir/$process-message"


def patient(res_id: str, family: str, given: str, born: str, mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": res_id,
        "identifier": [{"system": "urn:oid:1.2.3.4.hospital-b", "value": mrn}],
        "name": [{"family": family, "given": [given]}],
        "birthDate": born,
        "gender": "female",
    }


def encounter(res_id: str, subject: str, status: str = "in-progress") -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": res_id,
        "status": status,
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
        },
        "subject": {"reference": f"Patient/{subject}"},
    }


def heart_rate(res_id: str, subject: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": res_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": "2026-11-25T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min"},
    }


def device(res_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": res_id,
        "status": "inactive",
        "serialNumber": "SN-1",
        "deviceName": [{"name": "bedside monitor", "type": "model-name"}],
    }


def message(
    identifier: str,
    event: tuple[str, str],
    resources: list[dict[str, Any]],
    *,
    focus: list[str] | None = None,
    source: str = PARTNER,
) -> dict[str, Any]:
    system, code = event
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": f"hdr-{identifier}",
        "eventCoding": {"system": system, "code": code},
        "source": {"endpoint": source},
    }
    if focus:
        header["focus"] = [{"reference": ref} for ref in focus]
    return {
        "resourceType": "Bundle",
        "type": "message",
        "identifier": {"system": "urn:hospital-b:messages", "value": identifier},
        "timestamp": "2026-11-25T10:00:00Z",
        "entry": [
            {"fullUrl": f"urn:uuid:{header['id']}", "resource": header},
            *(
                {
                    "fullUrl": f"https://hospital-b.example/fhir/{r['resourceType']}/{r['id']}",
                    "resource": r,
                }
                for r in resources
            ),
        ],
    }


def transfer(identifier: str, pid: str = "p1", **demographics: str) -> dict[str, Any]:
    """A transfer (A02) with the patient, the encounter and two recent heart rates."""
    person = patient(
        pid,
        demographics.get("family", "Andersen"),
        demographics.get("given", "Anna"),
        demographics.get("born", "1970-01-01"),
        demographics.get("mrn", "B-77"),
    )
    return message(
        identifier,
        (V2_EVENTS, "A02"),
        [
            person,
            encounter("e1", pid),
            heart_rate("o1", pid, 72),
            heart_rate("o2", pid, 75),
        ],
        focus=["Encounter/e1"],
    )


LINK = (FHIR_EVENTS, "patient-link")
UNLINK = (FHIR_EVENTS, "patient-unlink")
DEVICE = (CAREGRAPH_EVENTS, "device-notify")
OBSERVATIONS = (FHIR_EVENTS, "observation-provide")
