from __future__ import annotations

from datetime import UTC, datetime

from adapters.hl7v2 import normalize
from fhir_store.dates import HIGHEST, LOWEST
from linkage.graph.edges import (
    AT_LOCATION,
    ATTACHED_TO,
    CARED_BY,
    HAS_ENCOUNTER,
    IMAGED,
    LOCATED_AT,
    MEASURED,
    MEMBER_OF,
    PERFORMED,
    PROVIDED,
    TREATED_AT,
    Edge,
    edges_of,
    ref,
)
from tests.unit.hl7v2.corpus import pcd01


def test_references_are_typed_and_versionless() -> None:
    assert ref({"reference": "Patient/1"}, "Patient") == "Patient/1"
    assert ref({"reference": "http://x/fhir/Patient/1/_history/2"}, "Patient") == "Patient/1"
    assert ref({"reference": "Group/1"}, "Patient") is None
    assert ref({"display": "no reference"}, "Patient") is None


def test_encounter_edges_and_derived_patient_edges() -> None:
    enc = {
        "resourceType": "Encounter",
        "id": "e1",
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2024-01-01T08:00:00Z", "end": "2024-01-03"},
        "location": [{"location": {"reference": "Location/ward"}}],
        "participant": [
            {
                "individual": {"reference": "Practitioner/dr"},
                "period": {"start": "2024-01-02T09:00:00+01:00"},
            }
        ],
        "serviceProvider": {"reference": "Organization/h"},
    }
    edges = edges_of(enc)
    lo, hi = "2024-01-01T08:00:00.000000", "2024-01-03T23:59:59.999999"
    assert Edge("Patient/p1", HAS_ENCOUNTER, "Encounter/e1", lo, hi) in edges
    assert Edge("Encounter/e1", AT_LOCATION, "Location/ward", lo, hi) in edges
    assert Edge("Patient/p1", LOCATED_AT, "Location/ward", lo, hi) in edges
    # The participant's own period, in UTC; the encounter's end where it gives none.
    assert Edge("Patient/p1", CARED_BY, "Practitioner/dr", "2024-01-02T08:00:00.000000", hi) in (
        edges
    )
    assert Edge("Patient/p1", TREATED_AT, "Organization/h", lo, hi) in edges


def test_observation_edges_need_a_patient_and_a_time() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "subject": {"reference": "Patient/p1"},
        "device": {"reference": "Device/mon"},
        "performer": [{"reference": "Practitioner/dr"}, {"reference": "Organization/x"}],
        "effectiveDateTime": "2024-01-01T09:00:00Z",
    }
    at = ("2024-01-01T09:00:00.000000", "2024-01-01T09:00:00.999999")
    assert edges_of(obs) == [
        Edge("Device/mon", MEASURED, "Patient/p1", *at),
        Edge("Practitioner/dr", PERFORMED, "Patient/p1", *at),
    ]
    assert edges_of({**obs, "effectiveDateTime": None}) == []
    assert edges_of({**obs, "subject": {"reference": "Group/g"}}) == []


def test_devices_roles_imaging_provenance() -> None:
    device = {"resourceType": "Device", "id": "pump", "patient": {"reference": "Patient/p"}}
    assert edges_of(device) == [Edge("Device/pump", ATTACHED_TO, "Patient/p", LOWEST, HIGHEST)]
    role = {
        "resourceType": "PractitionerRole",
        "id": "r",
        "practitioner": {"reference": "Practitioner/dr"},
        "organization": {"reference": "Organization/h"},
        "period": {"start": "2020-01-01"},
    }
    assert edges_of(role) == [
        Edge("Practitioner/dr", MEMBER_OF, "Organization/h", "2020-01-01T00:00:00.000000", HIGHEST)
    ]
    study = {
        "resourceType": "ImagingStudy",
        "id": "s",
        "subject": {"reference": "Patient/p"},
        "started": "2024-03-01T10:00:00Z",
        "series": [{"performer": [{"actor": {"reference": "Device/ct"}}]}],
    }
    assert [e.src for e in edges_of(study) if e.rel == IMAGED] == ["Device/ct"]
    prov = {
        "resourceType": "Provenance",
        "id": "v",
        "recorded": "2024-03-01T10:00:00Z",
        "target": [{"reference": "Patient/p"}],
        "agent": [{"who": {"reference": "Organization/partner"}}],
    }
    assert [(e.src, e.rel, e.dst) for e in edges_of(prov)] == [
        ("Organization/partner", PROVIDED, "Patient/p")
    ]


def test_provenance_of_results_links_the_patient_not_each_reading() -> None:
    """A monitor's message names eleven targets; the graph gets one edge, to the patient."""
    message = pcd01("G1", 10, eui64="0123456789ABCD01")
    resources = normalize(message, received_at=datetime(2024, 3, 5, tzinfo=UTC)).resources
    (provenance,) = [r for r in resources if r["resourceType"] == "Provenance"]
    (patient,) = [r for r in resources if r["resourceType"] == "Patient"]
    assert len(provenance["target"]) == 11
    assert [(e.rel, e.dst) for e in edges_of(provenance)] == [
        (PROVIDED, f"Patient/{patient['id']}")
    ]


def test_resources_without_edges() -> None:
    assert edges_of({"resourceType": "Medication", "id": "m"}) == []
    assert edges_of({"resourceType": "Encounter"}) == []  # no id
