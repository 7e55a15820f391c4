from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from linkage.api import MATCH_GRADE_URL, build_router
from linkage.identity import IdentityIndex
from linkage.mpi import Mpi
from tests.support.asgi import AsgiClient

from .factories import patient


def allow() -> None:
    return None


NURSE = {"X-Caregraph-Actor": "nurse.kim"}


@pytest.fixture
def client(mpi: Mpi, identity: IdentityIndex) -> AsgiClient:
    app = FastAPI()
    app.include_router(build_router(mpi, allow, identity=identity))
    return AsgiClient(app, headers=NURSE)


def params(resource: dict[str, Any], **extra: Any) -> dict[str, Any]:
    parameter: list[dict[str, Any]] = [{"name": "resource", "resource": resource}]
    if "count" in extra:
        parameter.append({"name": "count", "valueInteger": extra["count"]})
    if "certain" in extra:
        parameter.append({"name": "onlyCertainMatches", "valueBoolean": extra["certain"]})
    return {"resourceType": "Parameters", "parameter": parameter}


def test_patient_match_returns_a_searchset_with_scores_and_grades(
    mpi: Mpi, client: AsgiClient
) -> None:
    a = mpi.ingest(patient(pid="a1"))
    mpi.ingest(patient("Zygmunt", "Kowalski", "1951-12-30", pid="z1", city="Basel"))
    r = client.post("/fhir/Patient/$match", json=params(patient(given="Ana"), count=5))
    assert r.status_code == 200 and r.headers["content-type"] == "application/fhir+json"
    bundle = r.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    [entry] = bundle["entry"]
    assert entry["fullUrl"].endswith(f"/fhir/Patient/{a.golden_id}")
    assert entry["resource"]["id"] == a.golden_id
    assert entry["search"]["mode"] == "match" and entry["search"]["score"] > 0.99
    assert entry["search"]["extension"] == [{"url": MATCH_GRADE_URL, "valueCode": "certain"}]


def test_patient_match_refuses_what_is_not_parameters_with_a_patient(client: AsgiClient) -> None:
    r = client.post("/fhir/Patient/$match", json={"resourceType": "Patient"})
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    r = client.post("/fhir/Patient/$match", json=params(patient(), count=0))
    assert r.status_code == 400


def test_review_link_and_history_over_http(mpi: Mpi, client: AsgiClient) -> None:
    a = mpi.ingest(patient(pid="a1"))
    mpi.ingest(patient(pid="a2", birth_date="1975-11-23", postcode="3999"))
    [item] = client.get("/linkage/review").json()
    assert (item["kind"], item["source_id"]) == ("possible_match", "a2")
    assert item["explanation"]["fields"]
    r = client.post("/linkage/links", json={"source_id": "a2", "golden_id": a.golden_id})
    assert r.status_code == 200 and r.json()["origin"] == "MANUAL"
    assert client.get("/linkage/review").json() == []
    record = client.get("/linkage/patients/a2").json()
    assert record["golden"]["golden_id"] == a.golden_id
    assert {m["source_id"] for m in record["golden"]["members"]} == {"a1", "a2"}
    events = client.get("/linkage/history", params={"source_id": "a2"}).json()
    assert [e["action"] for e in events] == ["auto-link", "link"]
    assert events[-1]["actor"] == "nurse.kim"


def test_merge_and_unmerge_over_http(mpi: Mpi, client: AsgiClient) -> None:
    a = mpi.ingest(patient(pid="a1"))
    z = mpi.ingest(patient("Zygmunt", "Kowalski", "1951-12-30", pid="z1", city="Basel"))
    body = {"from_golden": a.golden_id, "into_golden": z.golden_id, "reason": "A40 by hand"}
    assert client.post("/linkage/merges", json=body).status_code == 200
    assert client.get(f"/linkage/golden/{a.golden_id}").json()["replaced_by"] == z.golden_id
    r = client.post("/linkage/unmerges", json={"golden_id": a.golden_id})
    assert r.status_code == 200
    assert client.get(f"/linkage/golden/{a.golden_id}").json()["active"] is True


def test_errors_carry_their_status(mpi: Mpi, client: AsgiClient) -> None:
    a = mpi.ingest(patient(pid="a1"))
    assert client.get("/linkage/patients/nobody").status_code == 404
    r = client.post("/linkage/unlinks", json={"source_id": "a1", "golden_id": "other"})
    assert r.status_code == 409 and "not other" in r.json()["detail"]
    r = client.post("/linkage/merges", json={"from_golden": a.golden_id})
    assert r.status_code == 422


def test_json_match_explains_each_candidate(mpi: Mpi, client: AsgiClient) -> None:
    mpi.ingest(patient(pid="a1"))
    [c] = client.post("/linkage/match", json=patient(given="Ana")).json()
    assert c["grade"] == "certain" and c["best_source_id"] == "a1"
    comparisons = {f["comparison"] for f in c["explanation"]["fields"]}
    assert {"given_name", "family_name", "birth_date"} <= comparisons


def test_openapi_documents_the_linkage_routes(client: AsgiClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/linkage/review", "/linkage/merges", "/fhir/Patient/$match"} <= set(paths)


def test_identity_routes(identity: IdentityIndex, client: AsgiClient) -> None:
    for k in range(2):
        identity.ingest(
            {"resourceType": "Device", "id": f"d{k}", "udiCarrier": [{"deviceIdentifier": "X"}]}
        )
    body = client.get("/linkage/identity/Device/d1").json()
    assert body["rule"] == "udi-di:X" and {m["source_id"] for m in body["members"]} == {"d0", "d1"}
    assert client.get("/linkage/identity/Device").json() == []
    assert client.get("/linkage/identity/Location/l1").status_code == 404
    assert client.get("/linkage/identity/Device/nope").status_code == 404


def test_identity_manual_decisions_over_http(identity: IdentityIndex, client: AsgiClient) -> None:
    a = identity.ingest(
        {
            "resourceType": "Practitioner",
            "id": "p1",
            "name": [{"family": "House", "given": ["Greg"]}],
            "identifier": [{"system": "urn:npi", "value": "1"}],
        }
    )
    b = identity.ingest(
        {
            "resourceType": "Practitioner",
            "id": "p2",
            "name": [{"family": "House", "given": ["Greg"]}],
        }
    )
    assert b.link.state == "POSSIBLE_MATCH"
    body = {"source_id": "p2", "entity_id": a.link.entity_id, "reason": "same GLN on paper"}
    r = client.post("/linkage/identity/Practitioner/links", json=body)
    assert r.status_code == 200
    assert (r.json()["origin"], r.json()["state"]) == ("MANUAL", "MATCH")
    record = client.get("/linkage/identity/Practitioner/p2").json()
    assert record["origin"] == "MANUAL" and len(record["members"]) == 2
    history = client.get("/linkage/identity/Practitioner/p2/history").json()
    assert [(e["action"], e["actor"]) for e in history] == [
        ("auto-link", "identity"),
        ("link", "nurse.kim"),
    ]
    r = client.post("/linkage/identity/Practitioner/unlinks", json=body)
    own = r.json()["entity_id"]
    assert r.status_code == 200 and own != a.link.entity_id
    assert client.get("/linkage/identity/Practitioner/p2").json()["no_match"] == [a.link.entity_id]
    merge = {"from_entity": own, "into_entity": a.link.entity_id}
    event = client.post("/linkage/identity/Practitioner/merges", json=merge).json()["event_id"]
    merged = client.get(f"/linkage/entities/Practitioner/{own}").json()
    assert merged["merged_into"] == a.link.entity_id and merged["members"] == []
    assert [e["id"] for e in merged["history"] if e["action"] == "merge"] == [event]
    r = client.post("/linkage/identity/Practitioner/unmerges", json={"entity_id": own})
    assert r.status_code == 200
    back = client.get(f"/linkage/entities/Practitioner/{own}").json()
    assert back["merged_into"] is None and [m["source_id"] for m in back["members"]] == ["p2"]


def test_identity_decision_errors_carry_their_status(
    identity: IdentityIndex, client: AsgiClient
) -> None:
    identity.ingest(
        {"resourceType": "Device", "id": "d1", "udiCarrier": [{"deviceIdentifier": "X"}]}
    )
    body = {"source_id": "d1", "entity_id": "elsewhere"}
    assert client.post("/linkage/identity/Device/unlinks", json=body).status_code == 409
    assert client.post("/linkage/identity/Device/links", json=body).status_code == 404
    assert client.post("/linkage/identity/Location/links", json=body).status_code == 404
    r = client.post("/linkage/identity/Device/unmerges", json={"entity_id": "elsewhere"})
    assert r.status_code == 409 and "not merged" in r.json()["detail"]
    assert client.get("/linkage/entities/Device/elsewhere").status_code == 404
    assert client.post("/linkage/identity/Device/merges", json={}).status_code == 422
