"""The care-graph queries on a small hospital, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhir_store.database import open_database
from linkage.graph.edges import ATTACHED_TO, CARED_BY, IMAGED, MEASURED, PERFORMED
from linkage.graph.store import Graph, MpiIdentity
from linkage.mpi import Mpi
from linkage.sql import SqlRepository
from tests.unit.linkage.factories import patient

pytestmark = pytest.mark.integration


def r(kind: str, ident: str) -> dict[str, str]:
    return {"reference": f"{kind}/{ident}"}


def obs(oid: str, device: str, pid: str, at: str, performer: str | None = None) -> dict[str, Any]:
    o: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "subject": r("Patient", pid),
        "device": r("Device", device),
        "effectiveDateTime": at,
    }
    if performer:
        o["performer"] = [r("Practitioner", performer)]
    return o


HOSPITAL: list[dict[str, Any]] = [
    {
        "resourceType": "Encounter",
        "id": "e1",
        "subject": r("Patient", "p1"),
        "period": {"start": "2024-01-01T08:00:00Z", "end": "2024-01-03T10:00:00Z"},
        "location": [{"location": r("Location", "ward")}],
        "participant": [{"individual": r("Practitioner", "dr1")}],
        "serviceProvider": r("Organization", "h"),
    },
    {
        "resourceType": "Encounter",
        "id": "e2",
        "subject": r("Patient", "p2"),
        "period": {"start": "2024-02-01T00:00:00Z"},
        "location": [
            {
                "location": r("Location", "icu"),
                "period": {"start": "2024-02-01T00:00:00Z", "end": "2024-02-02T00:00:00Z"},
            }
        ],
        "participant": [{"individual": r("Practitioner", "dr2")}],
    },
    {
        "resourceType": "Encounter",
        "id": "e3",
        "subject": r("Patient", "p3"),
        "period": {"start": "2024-01-02T00:00:00Z", "end": "2024-01-02T12:00:00Z"},
        "location": [{"location": r("Location", "ward")}],
        "participant": [{"individual": r("Practitioner", "dr1")}],
    },
    obs("o1", "mon", "p1", "2024-01-01T09:00:00Z", performer="dr1"),
    obs("o2", "mon", "p3", "2024-01-02T10:00:00Z"),
    obs("o3", "pump", "p2", "2024-02-01T05:00:00Z"),
    {
        "resourceType": "Device",
        "id": "pump",
        "patient": r("Patient", "p2"),
        "location": r("Location", "icu"),
        "owner": r("Organization", "h"),
    },
    {
        "resourceType": "PractitionerRole",
        "id": "role1",
        "practitioner": r("Practitioner", "dr1"),
        "organization": r("Organization", "h"),
        "location": [r("Location", "ward")],
    },
    {
        "resourceType": "ImagingStudy",
        "id": "ct-study",
        "subject": r("Patient", "p1"),
        "started": "2024-01-02T14:00:00Z",
        "referrer": r("Practitioner", "dr2"),
        "series": [{"performer": [{"actor": r("Device", "ct")}]}],
    },
]


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[Graph, str, str]]:
    """The graph, the golden id of p1+p2 (one person from two sources), and p3's."""
    db = open_database(database_url)
    try:
        mpi = Mpi(SqlRepository.open(db))
        golden = mpi.ingest(patient(pid="p1", identifiers=[("urn:a", "1")])).golden_id
        assert mpi.ingest(patient(pid="p2", identifiers=[("urn:b", "2")])).golden_id == golden
        other = mpi.ingest(patient("Zygmunt", "Kowalski", "1951-12-30", pid="p3")).golden_id
        graph = Graph.open(db, MpiIdentity(mpi))
        graph.put_resources(HOSPITAL)
        yield graph, golden, other
    finally:
        db.close()


def pairs(relations: list[Any]) -> set[tuple[str, str]]:
    return {(x.node, x.rel) for x in relations}


JAN = ("2024-01-01T00:00:00.000000", "2024-01-31T23:59:59.999999")


def test_devices_of_a_patient_across_identities(world: tuple[Graph, str, str]) -> None:
    graph, golden, _ = world
    assert pairs(graph.devices_of_patient(golden)) == {
        ("Device/mon", MEASURED),
        ("Device/pump", MEASURED),
        ("Device/pump", ATTACHED_TO),
        ("Device/ct", IMAGED),
    }
    # In January: the pump's measurement (February) is out, its open attachment is in.
    assert pairs(graph.devices_of_patient(golden, *JAN)) == {
        ("Device/mon", MEASURED),
        ("Device/pump", ATTACHED_TO),
        ("Device/ct", IMAGED),
    }
    assert pairs(graph.devices_of_patient("p1")) == pairs(graph.devices_of_patient(golden))


def test_device_recall_lists_golden_patients(world: tuple[Graph, str, str]) -> None:
    graph, golden, other = world
    assert {x.node for x in graph.patients_of_device("mon")} == {
        f"Patient/{golden}",
        f"Patient/{other}",
    }
    day = ("2024-01-02T00:00:00.000000", "2024-01-02T23:59:59.999999")
    [only] = graph.patients_of_device("mon", *day)
    assert only.node == f"Patient/{other}" and only.count == 1


def test_staff_and_their_patients(world: tuple[Graph, str, str]) -> None:
    graph, golden, other = world
    assert pairs(graph.staff_of_patient(golden)) == {
        ("Practitioner/dr1", CARED_BY),
        ("Practitioner/dr1", PERFORMED),
        ("Practitioner/dr2", CARED_BY),
    }
    assert {x.node for x in graph.patients_of_practitioner("dr1")} == {
        f"Patient/{golden}",
        f"Patient/{other}",
    }
    assert {x.node for x in graph.patients_of_practitioner("dr2")} == {f"Patient/{golden}"}


def test_everything_at_a_location_at_a_time(world: tuple[Graph, str, str]) -> None:
    graph, golden, other = world
    nodes = {x.node for x in graph.at_location("ward", "2024-01-02T11:00:00.000000")}
    assert nodes == {
        f"Patient/{golden}",
        f"Patient/{other}",
        "Encounter/e1",
        "Encounter/e3",
        "Practitioner/dr1",
    }
    later = {x.node for x in graph.at_location("ward", "2024-01-05T00:00:00.000000")}
    assert later == {"Practitioner/dr1"}


def test_linked_record(world: tuple[Graph, str, str]) -> None:
    graph, golden, _ = world
    record = graph.linked_record(golden)
    assert sorted(record["identities"]) == ["Patient/p1", "Patient/p2"]
    assert {e["node"] for e in record["encounters"]} == {"Encounter/e1", "Encounter/e2"}
    assert {o["node"] for o in record["organizations"]} == {"Organization/h"}
    assert {d["node"] for d in record["devices"]} == {"Device/mon", "Device/pump", "Device/ct"}


def test_shortest_path_and_traversal(world: tuple[Graph, str, str]) -> None:
    graph, _, _ = world
    path = graph.shortest_path("Patient/p3", "Device/ct")
    assert path is not None and len(path) == 3
    assert graph.shortest_path("Patient/p3", "Device/nowhere") is None
    via_hub = graph.shortest_path("Patient/p1", "Device/pump")  # both belong to hospital h
    assert via_hub is not None and [e.dst for e in via_hub] == ["Organization/h"] * 2
    near = graph.traverse("Device/mon", depth=1)
    assert set(near.nodes) == {"Device/mon", "Patient/p1", "Patient/p3"}
    wide = graph.traverse("Location/icu", rels=["located_at", "attached_to"], depth=2)
    assert "Patient/p2" in wide.nodes and "Device/pump" in wide.nodes


def test_storing_a_resource_again_replaces_its_edges(world: tuple[Graph, str, str]) -> None:
    graph, golden, _ = world
    assert graph.put_resources(HOSPITAL) == graph.put_resources(HOSPITAL)
    moved = {**HOSPITAL[0], "location": [{"location": r("Location", "icu")}]}
    graph.put_resources([moved])
    assert "Encounter/e1" not in {
        x.node for x in graph.at_location("ward", "2024-01-02T11:00:00.000000")
    }
    graph.delete_resource("Observation", "o1")
    assert ("Device/mon", MEASURED) not in pairs(graph.devices_of_patient(golden))
