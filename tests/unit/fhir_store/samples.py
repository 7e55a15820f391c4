"""Small but varied resources of the served types, for indexing and search tests."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

SAMPLES: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "pat1",
        "active": True,
        "gender": "female",
        "birthDate": "1970-03-04",
        "deceasedBoolean": False,
        "meta": {
            "tag": [{"system": "urn:t", "code": "demo"}],
            "profile": ["http://example.org/StructureDefinition/p"],
        },
        "identifier": [
            {
                "system": "urn:mrn",
                "value": "111",
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
            }
        ],
        "name": [{"family": "Ångström", "given": ["Anna", "Maria"]}],
        "telecom": [{"system": "phone", "value": "+41 1"}, {"system": "email", "value": "a@x.ch"}],
        "address": [{"city": "Bern", "postalCode": "3000", "country": "CH", "use": "home"}],
        "managingOrganization": {"reference": "Organization/org1"},
        "generalPractitioner": [{"reference": "Practitioner/prac1"}],
    },
    {
        "resourceType": "Patient",
        "id": "pat2",
        "gender": "male",
        "birthDate": "1985",
        "deceasedDateTime": "2020-01-01T10:00:00+01:00",
        "name": [{"family": "Berger", "given": ["Bo"]}],
        "identifier": [{"system": "urn:mrn", "value": "222"}],
    },
    {
        "resourceType": "Organization",
        "id": "org1",
        "active": True,
        "name": "Inselspital",
        "alias": ["Insel"],
        "identifier": [{"system": "urn:oid:2.51.1.3", "value": "7601"}],
        "partOf": {"reference": "Organization/org0"},
    },
    {
        "resourceType": "Practitioner",
        "id": "prac1",
        "name": [{"family": "House", "given": ["G"]}],
        "identifier": [{"system": "urn:gln", "value": "76010"}],
    },
    {
        "resourceType": "PractitionerRole",
        "id": "role1",
        "practitioner": {"reference": "Practitioner/prac1"},
        "organization": {"reference": "Organization/org1"},
        "code": [{"coding": [{"system": "urn:roles", "code": "doctor"}]}],
    },
    {
        "resourceType": "Location",
        "id": "loc1",
        "name": "ICU bed 4",
        "status": "active",
        "managingOrganization": {"reference": "Organization/org1"},
        "partOf": {"reference": "Location/loc0"},
    },
    {
        "resourceType": "Encounter",
        "id": "enc1",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/pat1"},
        "period": {"start": "2024-01-01T08:00:00Z"},
        "length": {"value": 3, "unit": "d", "system": UCUM, "code": "d"},
        "location": [{"location": {"reference": "Location/loc1"}}],
        "participant": [
            {"individual": {"reference": "Practitioner/prac1"}},
            {"individual": {"identifier": {"system": "urn:gln", "value": "999"}}},
        ],
    },
    {
        "resourceType": "Device",
        "id": "dev1",
        "status": "active",
        "manufacturer": "Philips",
        "modelNumber": "MX450",
        "patient": {"reference": "Patient/pat1"},
        "deviceName": [{"name": "IntelliVue", "type": "model-name"}],
        "udiCarrier": [{"deviceIdentifier": "0884", "carrierHRF": "(01)0884"}],
        "url": "http://devices.example.org/mx450",
    },
    {
        "resourceType": "DeviceMetric",
        "id": "met1",
        "category": "measurement",
        "type": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "150456"}]},
        "source": {"reference": "Device/dev1"},
    },
    {
        "resourceType": "DeviceUseStatement",
        "id": "dus1",
        "status": "active",
        "subject": {"reference": "Patient/pat1"},
        "device": {"reference": "Device/dev1"},
    },
    {
        "resourceType": "Endpoint",
        "id": "ep1",
        "status": "active",
        "name": "PACS",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "dicom-wado-rs",
        },
        "payloadType": [{"text": "DICOM"}],
        "address": "https://pacs.example.org/wado",
    },
    {
        "resourceType": "ImagingStudy",
        "id": "img1",
        "status": "available",
        "subject": {"reference": "Patient/pat1"},
        "started": "2024-01-02T09:30:00Z",
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"}],
        "series": [
            {
                "uid": "1.2.3.4",
                "modality": {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "CT",
                },
                "instance": [
                    {
                        "uid": "1.2.3.4.5",
                        "sopClass": {
                            "system": "urn:ietf:rfc:3986",
                            "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2",
                        },
                    }
                ],
            }
        ],
    },
    {
        "resourceType": "Observation",
        "id": "obs1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/pat1"},
        "encounter": {"reference": "Encounter/enc1"},
        "device": {"reference": "Device/dev1"},
        "effectiveDateTime": "2024-01-01T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
    },
    {
        "resourceType": "Observation",
        "id": "obs2",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure"}]},
        "subject": {"reference": "Patient/pat1"},
        "effectivePeriod": {"start": "2024-01-02T10:00:00Z", "end": "2024-01-02T10:05:00Z"},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 80, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            },
        ],
    },
    {
        "resourceType": "Observation",
        "id": "obs3",
        "status": "preliminary",
        "code": {"coding": [{"system": LOINC, "code": "72166-2"}], "text": "Smoking status"},
        "subject": {"reference": "Patient/pat2"},
        "effectiveDateTime": "2023-06",
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "8517006"}],
            "text": "Ex-smoker",
        },
    },
    {
        "resourceType": "MessageHeader",
        "id": "mh1",
        "eventCoding": {"system": "urn:events", "code": "ORU"},
        "source": {"endpoint": "mllp://gateway"},
        "destination": [{"name": "caregraph", "endpoint": "urn:caregraph"}],
        "focus": [{"reference": "Observation/obs1"}],
    },
    {
        "resourceType": "Provenance",
        "id": "prov1",
        "target": [{"reference": "Patient/pat1"}, {"reference": "Observation/obs1"}],
        "recorded": "2024-01-01T10:00:01Z",
        "occurredDateTime": "2024-01-01T10:00:00Z",
        "agent": [{"who": {"reference": "Device/dev1"}}],
    },
    {
        "resourceType": "AuditEvent",
        "id": "aud1",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110100"},
        "action": "C",
        "recorded": "2024-01-01T10:00:02Z",
        "outcome": "0",
        "agent": [{"who": {"reference": "Patient/pat1"}, "requestor": False, "name": "Anna"}],
        "source": {"observer": {"reference": "Device/dev1"}},
        "entity": [{"what": {"reference": "Observation/obs1"}}],
    },
    {
        # The silence alert caregraph raises on a device (adapters/registry/alerts.py).
        "resourceType": "DetectedIssue",
        "id": "issue1",
        "status": "preliminary",
        "code": {"coding": [{"system": "urn:caregraph:device-alert", "code": "silent"}]},
        "severity": "high",
        "implicated": [{"reference": "Device/dev1"}],
        "identifiedPeriod": {"start": "2024-01-01T11:00:00Z"},
    },
]
