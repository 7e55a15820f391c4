"""A patient's linked record, written through the FHIR API like any client would.

The demo's serial monitors produce Observations without a patient (the bed association
is not built yet) and HL7 patients appear only once the MLLP gateway is in the demo, so
the console tests seed one patient of their own: two source records from two institutions
(sharing a national identifier, so the linkage role links them and publishes their golden
record, as it does for every Patient written over REST), an ICU encounter with staff, a
monitor, an imaging study, and half an hour of vital signs that keeps growing while a test
runs. Everything is a PUT with a fixed id inside one transaction, so seeding twice is
harmless; ``seed`` waits for the golden record and returns its id.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

GOLDEN_TAG = "https://caregraph.dev/fhir/CodeSystem/linkage|golden"
NATIONAL_ID = {"system": "urn:oid:2.16.840.1.113883.3.999.9", "value": "NID-CONSOLE-7"}
SOURCE_IDS = ("console-src-genhosp", "console-src-partner")
DEVICE_ID = "console-monitor-1"
FAMILY = "Quellwasser"
MRN = "MRN-CONSOLE-7"
BIRTH_DATE = "1961-04-12"

# (LOINC, MDC, unit (UCUM), mean, amplitude)
VITALS = (
    ("8867-4", 147842, "/min", 82.0, 9.0),
    ("59408-5", 150456, "%", 96.0, 2.0),
    ("8480-6", 150021, "mm[Hg]", 124.0, 8.0),
    ("8462-4", 150022, "mm[Hg]", 79.0, 5.0),
    ("9279-1", 151562, "/min", 17.0, 3.0),
    ("8310-5", 150364, "Cel", 37.1, 0.3),
)


def _instant(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def _patient(pid: str, system: str, value: str, given: str, source: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"source": source},
        "identifier": [{"system": system, "value": value}, NATIONAL_ID],
        "name": [{"family": FAMILY, "given": [given]}],
        "gender": "female",
        "birthDate": BIRTH_DATE,
        "managingOrganization": {"reference": "Organization/console-org-genhosp"},
    }


def vital_observations(now: datetime, minutes: int = 30, step_s: int = 30) -> list[dict[str, Any]]:
    """Readings every ``step_s`` seconds over the last ``minutes``, for the source patient."""
    out = []
    start = now - timedelta(minutes=minutes)
    n = minutes * 60 // step_s
    for i in range(n + 1):
        t = start + timedelta(seconds=i * step_s)
        stamp = int(t.timestamp())
        for loinc, mdc, unit, mean, amp in VITALS:
            value = round(mean + amp * math.sin(stamp / 300 + mdc % 7), 1)
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"console-obs-{mdc}-{stamp}",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "observation-category",
                                    "code": "vital-signs",
                                }
                            ]
                        }
                    ],
                    "code": {
                        "coding": [
                            {"system": "http://loinc.org", "code": loinc},
                            {"system": "urn:iso:std:iso:11073:10101", "code": str(mdc)},
                        ]
                    },
                    "subject": {"reference": f"Patient/{SOURCE_IDS[0]}"},
                    "device": {"reference": f"Device/{DEVICE_ID}"},
                    "effectiveDateTime": _instant(t),
                    "issued": _instant(t),
                    "valueQuantity": {
                        "value": value,
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": unit,
                    },
                }
            )
    return out


def record_bundle(now: datetime) -> dict[str, Any]:
    """The whole linked record as one transaction Bundle."""
    resources: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "console-org-genhosp", "name": "General Hospital"},
        {"resourceType": "Organization", "id": "console-org-partner", "name": "Partner Clinic"},
        {
            "resourceType": "Practitioner",
            "id": "console-dr-visser",
            "name": [{"family": "Visser", "given": ["Marta"], "prefix": ["Dr"]}],
        },
        {"resourceType": "Location", "id": "console-icu-04", "name": "ICU bed 04"},
        _patient(SOURCE_IDS[0], "urn:oid:2.16.840.1.113883.3.999.1", MRN, "Ilse", "GENHOSP"),
        _patient(
            SOURCE_IDS[1], "urn:oid:2.16.840.1.113883.3.999.2", "P-4411", "Ilse M.", "PARTNER"
        ),
        {
            "resourceType": "Encounter",
            "id": "console-enc-icu",
            "status": "in-progress",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "IMP",
                "display": "inpatient encounter",
            },
            "subject": {"reference": f"Patient/{SOURCE_IDS[0]}"},
            "participant": [
                {
                    "type": [{"text": "attending"}],
                    "individual": {"reference": "Practitioner/console-dr-visser"},
                }
            ],
            "period": {"start": _instant(now - timedelta(days=2))},
            "location": [{"location": {"reference": "Location/console-icu-04"}}],
            "serviceProvider": {"reference": "Organization/console-org-genhosp"},
        },
        {
            "resourceType": "Encounter",
            "id": "console-enc-partner",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            },
            "subject": {"reference": f"Patient/{SOURCE_IDS[1]}"},
            "period": {
                "start": _instant(now - timedelta(days=40)),
                "end": _instant(now - timedelta(days=40, hours=-2)),
            },
            "serviceProvider": {"reference": "Organization/console-org-partner"},
        },
        {
            "resourceType": "Device",
            "id": DEVICE_ID,
            "identifier": [{"system": "urn:caregraph:device", "value": DEVICE_ID}],
            "status": "active",
            "deviceName": [{"name": "ICU monitor 4", "type": "user-friendly-name"}],
            "type": {"text": "Patient monitor"},
            "patient": {"reference": f"Patient/{SOURCE_IDS[0]}"},
            "location": {"display": "ICU bed 04"},
        },
        {
            "resourceType": "ImagingStudy",
            "id": "console-ct-1",
            "status": "available",
            "subject": {"reference": f"Patient/{SOURCE_IDS[1]}"},
            "started": _instant(now - timedelta(days=40)),
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
            "description": "CT chest",
            "numberOfSeries": 1,
            "numberOfInstances": 2,
            "series": [
                {
                    "uid": "1.2.826.0.1.3680043.8.498.1",
                    "number": 1,
                    "modality": {
                        "system": "http://dicom.nema.org/resources/ontology/DCM",
                        "code": "CT",
                    },
                    "description": "Axial 1 mm",
                    "numberOfInstances": 2,
                    "instance": [
                        {
                            "uid": f"1.2.826.0.1.3680043.8.498.1.{i}",
                            "sopClass": {
                                "system": "urn:ietf:rfc:3986",
                                "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2",
                            },
                            "number": i,
                        }
                        for i in (1, 2)
                    ],
                }
            ],
        },
        *vital_observations(now),
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_put(r) for r in resources]}


def seed(client: httpx.Client, now: datetime | None = None, timeout_s: float = 60.0) -> str:
    """POST the record to ``client`` (base URL: the FHIR API) and wait until the golden
    record linking both sources is stored; its id. Raises on any failure."""
    bundle = record_bundle(now or datetime.now(UTC))
    response = client.post("", json=bundle, headers={"Content-Type": "application/fhir+json"})
    response.raise_for_status()
    deadline = time.monotonic() + timeout_s
    while True:
        found = client.get(
            "/Patient", params={"_tag": GOLDEN_TAG, "link": f"Patient/{SOURCE_IDS[1]}"}
        )
        found.raise_for_status()
        for entry in found.json().get("entry", []):
            golden = entry["resource"]
            members = {link["other"]["reference"] for link in golden.get("link", [])}
            if members >= {f"Patient/{s}" for s in SOURCE_IDS}:
                return str(golden["id"])
        if time.monotonic() > deadline:
            raise TimeoutError("linkage published no golden record linking both sources")
        time.sleep(0.25)


def add_reading(client: httpx.Client, when: datetime) -> None:
    """One more heart-rate reading: what a live chart must pick up."""
    obs = vital_observations(when, minutes=0)[0]
    response = client.put(f"/Observation/{obs['id']}", json=obs)
    response.raise_for_status()
