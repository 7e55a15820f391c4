"""The /graph routes and the graph's bus handler, over the small hospital of test_graph."""

from __future__ import annotations

import json

import orjson
import pytest
from fastapi import FastAPI

from bus.base import Message
from caregraph.errors import MappingError
from linkage.graph.api import build_router
from linkage.graph.handler import GRAPH_TYPES, GraphHandler
from linkage.graph.store import Graph
from tests.integration.linkage.test_graph import HOSPITAL, world
from tests.support.asgi import AsgiClient
from tests.unit.linkage.test_api import NURSE, allow

__all__ = ["world"]

pytestmark = pytest.mark.integration


@pytest.fixture
def client(world: tuple[Graph, str, str]) -> AsgiClient:
    app = FastAPI()
    app.include_router(build_router(world[0], allow))
    return AsgiClient(app, headers=NURSE)


def test_each_query_has_a_route(world: tuple[Graph, str, str], client: AsgiClient) -> None:
    _, golden, other = world
    devices = client.get(f"/graph/patients/{golden}/devices", params={"to": "2024-01-31"})
    assert {d["node"] for d in devices.json()} == {"Device/mon", "Device/pump", "Device/ct"}
    recall = client.get("/graph/devices/mon/patients", params={"from": "2024-01-02"})
    assert {p["node"] for p in recall.json()} == {f"Patient/{other}"}
    staff = client.get(f"/graph/patients/{golden}/staff").json()
    assert {s["node"] for s in staff} == {"Practitioner/dr1", "Practitioner/dr2"}
    cared = client.get("/graph/practitioners/dr2/patients").json()
    assert [p["node"] for p in cared] == [f"Patient/{golden}"]
    here = client.get("/graph/locations/icu/at", params={"time": "2024-02-01T12:00:00Z"}).json()
    assert {x["node"] for x in here} >= {f"Patient/{golden}", "Device/pump"}
    record = client.get(f"/graph/patients/{golden}/record").json()
    assert len(record["identities"]) == 2
    path = client.get("/graph/path", params={"a": "Patient/p3", "b": "Device/ct"}).json()
    assert len(path["path"]) == 3
    near = client.get("/graph/traverse", params={"node": "Device/mon", "depth": 1}).json()
    assert set(near["nodes"]) == {"Device/mon", "Patient/p1", "Patient/p3"}


def test_bad_input_is_a_400(client: AsgiClient) -> None:
    r = client.get("/graph/path", params={"a": "Nothing/1", "b": "Device/ct"})
    assert r.status_code == 400
    r = client.get("/graph/patients/p1/devices", params={"from": "last tuesday"})
    assert r.status_code == 400
    assert client.get("/openapi.json").json()["paths"]["/graph/traverse"]


def test_handler_writes_a_batch_and_skips_other_types(world: tuple[Graph, str, str]) -> None:
    graph, golden, _ = world
    graph.delete_resource("Observation", "o3")
    messages = [
        Message(f"fhir.{r['resourceType']}", 0, k, None, json.dumps(r).encode(), {}, 0)
        for k, r in enumerate([*HOSPITAL, {"resourceType": "Medication", "id": "m"}])
    ]
    GraphHandler(graph)(messages)
    assert ("Device/pump", "measured") in {
        (x.node, x.rel) for x in graph.devices_of_patient(golden)
    }
    assert "Observation" in GRAPH_TYPES and "Medication" not in GRAPH_TYPES
    with pytest.raises(MappingError):
        GraphHandler(graph)([Message("fhir.Encounter", 0, 0, None, b"{", {}, 0)])


def test_an_observation_sent_again_without_edges_loses_them(
    world: tuple[Graph, str, str],
) -> None:
    """The handler reads a reading that names no Device from its bytes (``edgeless_id``);
    its old edges go as for any update, and within a batch the last copy counts."""
    graph, golden, _ = world
    measured = {
        "resourceType": "Observation",
        "id": "o3",
        "subject": {"reference": "Patient/p2"},
        "device": {"reference": "Device/pump"},
        "effectiveDateTime": "2024-02-01T05:00:00Z",
    }
    reading = {**measured, "device": {"reference": "DeviceMetric/pump-spo2"}}

    def message(resource: dict[str, object], offset: int) -> Message:
        return Message("fhir.Observation", 0, offset, None, orjson.dumps(resource), {}, 0)

    def pump_measured() -> bool:
        return ("Device/pump", "measured") in {
            (x.node, x.rel) for x in graph.devices_of_patient(golden)
        }

    assert pump_measured()
    GraphHandler(graph)([message(measured, 0), message(reading, 1)])
    assert not pump_measured()
    GraphHandler(graph)([message(reading, 2), message(measured, 3)])
    assert pump_measured()
    GraphHandler(graph)([message(reading, 4)])
    assert not pump_measured()
