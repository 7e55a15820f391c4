"""Authorization over HTTP: tokens, scopes, the patient restriction on what is returned,
break-glass and its audit, against a real uvicorn and a real SQLite store."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.security.conftest import Api, observation

pytestmark = pytest.mark.integration

PATIENT_A = {"scope": "patient/*.cruds", "patient": "a1"}


def ids_in(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if "resource" in e
    }


def assert_denied(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_every_route_needs_a_token_but_the_probes(api: Api) -> None:
    with httpx.Client(base_url=api.base) as c:
        for path in (
            "/fhir/Observation",
            "/fhir/Observation/obs-a1",
            "/fhir/_history",
            "/linkage/review",
            "/app/",
            "/app/vitals.json",
            "/docs",
            "/openapi.json",
        ):
            assert_denied(c.get(path), 401)
        assert_denied(c.post("/fhir", json={"resourceType": "Bundle", "type": "batch"}), 401)
        bad = c.get("/fhir/Observation", headers={"Authorization": "Bearer not-a-jwt"})
        assert_denied(bad, 401)
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        assert c.get("/fhir/metadata", headers=api.token("user/*.rs")).status_code == 200
        assert c.get("/app/", headers=api.token("user/*.rs")).status_code == 200


def test_scopes_per_interaction(api: Api) -> None:
    with httpx.Client(base_url=api.base) as c:
        obs_only = api.token("user/Observation.rs")
        assert c.get("/fhir/Observation/obs-b", headers=obs_only).status_code == 200
        assert c.get("/fhir/Observation", headers=obs_only).status_code == 200
        assert_denied(c.get("/fhir/Patient/b", headers=obs_only), 403)
        assert_denied(
            c.post("/fhir/Observation", json=observation("x", "b"), headers=obs_only), 403
        )
        assert_denied(c.delete("/fhir/Observation/obs-b", headers=obs_only), 403)
        # _include of a type the token may not read is dropped from the result
        included = c.get(
            "/fhir/Observation", params={"_include": "Observation:subject"}, headers=obs_only
        ).json()
        assert ids_in(included) == {"Observation/obs-a1", "Observation/obs-a2", "Observation/obs-b"}
        # v1 aliases: read = rs, write = cud
        v1 = api.token("user/*.read")
        assert c.get("/fhir/Patient/b", headers=v1).status_code == 200
        assert_denied(
            c.put("/fhir/Observation/obs-b", json=observation("obs-b", "b"), headers=v1), 403
        )
        system = api.token("system/*.cruds")
        created = c.post("/fhir/Observation", json=observation("x", "b"), headers=system)
        assert created.status_code == 201
        # patient/ scopes without a patient claim grant nothing
        assert_denied(c.get("/fhir/Observation", headers=api.token("patient/*.rs")), 403)
        # the linkage routes are about Patients
        assert c.get("/linkage/review", headers=api.token("user/Patient.rs")).status_code == 200
        assert_denied(c.get("/linkage/review", headers=obs_only), 403)


def test_patient_token_sees_only_its_linked_compartment(api: Api) -> None:
    """The cross-patient matrix: with a token for patient A (identity a1, linked to a2),
    patient B's data is refused or absent through every route, and each refusal audited."""
    token = api.token(**PATIENT_A)
    mine = {"Observation/obs-a1", "Observation/obs-a2"}
    with httpx.Client(base_url=api.base, headers=token) as c:
        assert c.get("/fhir/Observation/obs-a1").status_code == 200
        assert c.get("/fhir/Observation/obs-a2").status_code == 200  # linked identity
        assert c.get("/fhir/Patient/a2").status_code == 200
        before = len(api.denials())
        denied = [
            c.get("/fhir/Observation/obs-b"),
            c.get("/fhir/Patient/b"),
            c.get("/fhir/Observation/obs-b/_history"),
            c.get("/fhir/Observation/obs-b/_history/1"),
            c.get("/fhir/Patient/b/$everything"),
            c.put("/fhir/Observation/obs-b", json=observation("obs-b", "a1")),
            c.delete("/fhir/Observation/obs-b"),
            c.delete("/fhir/Observation", params={"subject": "Patient/b"}),
            c.patch(
                "/fhir/Observation/obs-a1",
                json=[{"op": "replace", "path": "/subject/reference", "value": "Patient/b"}],
                headers={"Content-Type": "application/json-patch+json"},
            ),
            c.post("/fhir/Observation", json=observation("new", "b")),
            c.post("/fhir/Patient", json={"resourceType": "Patient", "id": "a1"}),
            c.put("/fhir/Observation/obs-a1", json=observation("obs-a1", "b")),
            c.get("/linkage/patients/b"),
            c.get("/linkage/review"),
            c.post("/fhir/$process-message", json={"resourceType": "Bundle", "type": "message"}),
            # sending patient B's record to a partner, or reading what was sent
            c.post(
                "/fhir/$send-transfer",
                json={
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "patient", "valueReference": {"reference": "Patient/b"}},
                        {"name": "partner", "valueString": "hospital-b"},
                    ],
                },
            ),
            c.get("/fhir/$outbox-status"),
            c.get("/graph/patients/b/record"),
            c.get("/graph/path", params={"from": "Patient/a1", "to": "Patient/b"}),
            c.post(
                "/fhir",
                json={
                    "resourceType": "Bundle",
                    "type": "batch",
                    "entry": [{"request": {"method": "GET", "url": "Observation/obs-b"}}],
                },
            ),
            c.post(
                "/fhir",
                json={
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "resource": observation("t", "b"),
                            "request": {"method": "POST", "url": "Observation"},
                        }
                    ],
                },
            ),
        ]
        for response in denied:
            assert_denied(response, 403)
        assert len(api.denials()) - before == len(denied)
        patients = api.store.searching.search("Patient", [("_count", "100")]).matches
        assert sorted(p.id for p in patients) == ["a1", "a2", "b"]  # nothing was written
        assert api.store.read("Observation", "obs-b").resource()["subject"] == {
            "reference": "Patient/b"
        }

        assert c.get("/graph/patients/a2/record").status_code == 200  # its own care graph

        searched = c.get("/fhir/Observation").json()
        assert ids_in(searched) == mine
        assert searched.get("total") in (None, 2)
        everything = c.get("/fhir/Patient/a1/$everything").json()
        assert "Observation/obs-b" not in ids_in(everything)
        assert "Observation/obs-a1" in ids_in(everything)
        revinclude = c.get("/fhir/Patient", params={"_revinclude": "Observation:subject"}).json()
        assert ids_in(revinclude) == {"Patient/a1", "Patient/a2", *mine}
        include = c.get("/fhir/Observation", params={"_include": "Observation:subject"}).json()
        assert ids_in(include) == {"Patient/a1", "Patient/a2", *mine}
        for history in ("/fhir/_history", "/fhir/Observation/_history"):
            seen = c.get(history).json()
            assert "Observation/obs-b" not in ids_in(seen)
            assert "total" not in seen or seen["total"] == len(seen.get("entry", []))
        count = c.get("/fhir/Observation", params={"_summary": "count"}).json()
        assert count.get("total") != 3
        # a conditional create that matches another patient's resource returns nothing of it
        matched = c.post(
            "/fhir/Observation",
            json=observation("dup", "a1"),
            headers={"If-None-Exist": "_id=obs-b"},
        )
        assert matched.status_code == 403
        # writes inside the compartment are allowed
        own = c.post("/fhir/Observation", json=observation("mine", "a2"))
        assert own.status_code == 201, own.text


def test_refusal_headers_do_not_echo_control_characters(api: Api) -> None:
    token = api.token(**PATIENT_A)
    response = httpx.get(
        f"{api.base}/fhir/Patient/x%0d%0aSet-Cookie:%20a=b%22/$everything", headers=token
    )
    assert_denied(response, 403)
    assert "set-cookie" not in response.headers
    challenge = response.headers["www-authenticate"]
    assert "Patient/x??Set-Cookie: a=b'" in challenge and "\r" not in challenge


def test_a_search_nested_in_a_batch_is_filtered(api: Api) -> None:
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Observation?_include=Observation:subject"}}
        ],
    }
    response = httpx.post(f"{api.base}/fhir", json=batch, headers=api.token("user/Observation.rs"))
    assert response.status_code == 200, response.text
    nested = response.json()["entry"][0]["resource"]
    assert nested["type"] == "searchset"
    assert ids_in(nested) == {"Observation/obs-a1", "Observation/obs-a2", "Observation/obs-b"}


def test_break_glass_is_allowed_flagged_and_audited(api: Api) -> None:
    clinician = api.token(
        "user/*.rs", patient="a1", fhir_user="Practitioner/dr-who", subject="dr-who"
    )
    with httpx.Client(base_url=api.base, headers=clinician) as c:
        assert_denied(c.get("/fhir/Observation/obs-b"), 403)
        response = c.get(
            "/fhir/Observation/obs-b", headers={"X-Break-Glass-Reason": "unconscious in ER"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-break-glass"] == "audited"
    events = [e for e in api.audit_events() if e.get("purposeOfEvent")]
    assert len(events) == 1
    event = events[0]
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    assert event["purposeOfEvent"][0]["text"] == "unconscious in ER"
    assert event["agent"][0]["who"] == {"reference": "Practitioner/dr-who"}
    assert event["outcome"] == "0"
    assert {"reference": "Observation/obs-b"} in [e.get("what") for e in event["entity"]]

    patient_user = api.token("patient/*.rs", patient="a1", fhir_user="Patient/a1")
    with httpx.Client(base_url=api.base, headers=patient_user) as c:
        refused = c.get("/fhir/Observation/obs-b", headers={"X-Break-Glass-Reason": "curious"})
        assert_denied(refused, 403)


def test_unlinking_takes_effect_at_once(api: Api) -> None:
    token = api.token(**PATIENT_A)
    with httpx.Client(base_url=api.base, headers=token) as c:
        assert c.get("/fhir/Observation/obs-a2").status_code == 200
        api.mpi.unlink("a2", api.mpi.golden_of("a1").golden_id, "test")
        assert_denied(c.get("/fhir/Observation/obs-a2"), 403)
