"""The REST API, black box over HTTP against a real uvicorn, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request

from fhir_store.api import build_router
from fhir_store.store import FhirStore
from tests.integration.fhir_store.conftest import Server, serving
from tests.support.services import serve_app as serving_app

pytestmark = pytest.mark.integration

FHIR = {"Content-Type": "application/fhir+json"}


def patient(family: str, mrn: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family}],
        "identifier": [{"system": "urn:mrn", "value": mrn}],
    }


def assert_outcome(response: httpx.Response, status: int, needle: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    if needle:
        assert needle in response.text
    return dict(body)


def test_crud_versioning_and_headers(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        r = c.post("/Patient", json=patient("Doe", "1"), headers=FHIR)
        assert r.status_code == 201
        pid = r.json()["id"]
        assert r.headers["location"].endswith(f"/fhir/Patient/{pid}/_history/1")
        assert r.headers["etag"] == 'W/"1"'
        assert "GMT" in r.headers["last-modified"]
        body = c.get(f"/Patient/{pid}").json()
        same = c.put(f"/Patient/{pid}", json=body, headers=FHIR)
        assert same.status_code == 200 and same.headers["etag"] == 'W/"1"'
        body["gender"] = "female"
        r = c.put(f"/Patient/{pid}", json=body, headers={**FHIR, "If-Match": 'W/"1"'})
        assert r.headers["etag"] == 'W/"2"'
        stale = c.put(
            f"/Patient/{pid}",
            json={**body, "gender": "male"},
            headers={**FHIR, "If-Match": 'W/"1"'},
        )
        assert_outcome(stale, 412, "stale")
        assert c.get(f"/Patient/{pid}/_history/1").json()["meta"]["versionId"] == "1"
        hist = c.get(f"/Patient/{pid}/_history").json()
        assert hist["type"] == "history" and hist["total"] == 2
        created = c.put(
            "/Patient/client-id", json={**patient("X", "2"), "id": "client-id"}, headers=FHIR
        )
        assert created.status_code == 201
        assert c.delete(f"/Patient/{pid}").status_code == 204
        assert_outcome(c.get(f"/Patient/{pid}"), 410)
        assert_outcome(c.get("/Patient/nope"), 404)
        assert_outcome(c.get("/Alien/1"), 404)


def test_bad_input_is_4xx_outcome_and_nothing_written(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        assert_outcome(
            c.post("/Patient", content=b"{not json", headers=FHIR), 400, "not valid JSON"
        )
        assert_outcome(c.post("/Patient", json={"resourceType": "Observation"}, headers=FHIR), 400)
        bad = c.post(
            "/Patient", json={"resourceType": "Patient", "birthDate": "soon"}, headers=FHIR
        )
        out = assert_outcome(bad, 400)
        assert out["issue"][0]["expression"] == ["Patient.birthDate"]
        ref = {"resourceType": "Patient", "managingOrganization": {"reference": "no such ref"}}
        assert_outcome(c.post("/Patient", json=ref, headers=FHIR), 400, "managingOrganization")
        deep: Any = {}
        for _ in range(5000):
            deep = {"a": deep}
        text = '{"resourceType":"Patient","extension":' + "[" * 3000 + "]" * 3000 + "}"
        assert_outcome(c.post("/Patient", content=text.encode(), headers=FHIR), 400)
        within_orjson = {"resourceType": "Patient", "id": "p", "extension": [_deep_extension(200)]}
        assert_outcome(c.put("/Patient/p", json=within_orjson, headers=FHIR), 400, "nested")
        big = b'{"resourceType":"Patient","x":"' + b"a" * (3 * 1024 * 1024) + b'"}'
        assert_outcome(c.post("/Patient", content=big, headers=FHIR), 413)
        assert_outcome(c.get("/Patient", params={"birthdate": "notadate"}), 400, "birthdate")
        assert_outcome(c.get("/Patient", params={"_count": "x"}), 400)
        strict = c.get("/Patient", params={"nonsense": "1"}, headers={"Prefer": "handling=strict"})
        assert_outcome(strict, 400, "nonsense")
        lenient = c.get("/Patient", params={"nonsense": "1"})
        assert lenient.status_code == 200
        assert c.get("/Patient").json()["total"] == 0


def test_a_50_mb_body_is_refused_with_413_and_the_server_goes_on(store: FhirStore) -> None:
    """At the router's default limit, as ``caregraph up`` mounts it: a body that says its
    size is refused before it is read, one sent in chunks once it passes the limit."""
    app = FastAPI()
    app.include_router(build_router(store, lambda: None))
    fifty_mb = b'{"resourceType":"Patient","x":"' + b"a" * (50 * 1024 * 1024) + b'"}'

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(fifty_mb), 1024 * 1024):
            yield fifty_mb[start : start + 1024 * 1024]

    with serving_app(app) as base, httpx.Client(base_url=f"{base}/fhir", timeout=60) as c:
        assert_outcome(c.post("/Patient", content=fifty_mb, headers=FHIR), 413, "larger than")
        assert_outcome(c.post("/Patient", content=chunked(), headers=FHIR), 413, "larger than")
        assert c.get("/Patient").json()["total"] == 0
        assert c.post("/Patient", json=patient("After", "m-50"), headers=FHIR).status_code == 201


def test_search_paging_include_and_post_search(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        ids = []
        for i in range(5):
            r = c.post("/Patient", json=patient(f"Fam{i}", f"m{i}"), headers=FHIR)
            ids.append(r.json()["id"])
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{ids[0]}"},
            "effectiveDateTime": "2024-01-01T00:00:00Z",
        }
        c.post("/Observation", json=obs, headers=FHIR)
        page = c.get("/Patient", params={"_count": "2", "_sort": "family"}).json()
        assert "total" not in page  # not the last page: counting is asked for explicitly
        page = c.get(
            "/Patient", params={"_count": "2", "_sort": "family", "_total": "accurate"}
        ).json()
        assert page["total"] == 5
        assert [e["resource"]["name"][0]["family"] for e in page["entry"]] == ["Fam0", "Fam1"]
        seen = []
        url: str | None = next(li["url"] for li in page["link"] if li["relation"] == "self")
        while url:
            page = c.get(url).json()
            seen += [e["resource"]["id"] for e in page["entry"]]
            url = next((li["url"] for li in page["link"] if li["relation"] == "next"), None)
        assert len(seen) == 5 and set(seen) == set(ids)
        found = c.post(
            "/Observation/_search",
            data={"code": "http://loinc.org|8867-4", "_include": "Observation:subject"},
        )
        kinds = [
            (e["resource"]["resourceType"], e["search"]["mode"]) for e in found.json()["entry"]
        ]
        assert kinds == [("Observation", "match"), ("Patient", "include")]
        summary = c.get("/Patient", params={"_summary": "count"}).json()
        assert summary["total"] == 5 and summary["entry"] == []
        elements = c.get("/Patient", params={"_elements": "identifier", "_count": "1"}).json()
        res = elements["entry"][0]["resource"]
        assert "name" not in res and "identifier" in res
        everything = c.get(f"/Patient/{ids[0]}/$everything").json()
        assert sorted(e["resource"]["resourceType"] for e in everything["entry"]) == [
            "Observation",
            "Patient",
        ]


def test_conditional_interactions_and_patch(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        first = c.post(
            "/Patient",
            json=patient("A", "c1"),
            headers={**FHIR, "If-None-Exist": "identifier=urn:mrn|c1"},
        )
        again = c.post(
            "/Patient",
            json=patient("A", "c1"),
            headers={**FHIR, "If-None-Exist": "identifier=urn:mrn|c1"},
        )
        assert first.status_code == 201 and again.status_code == 200
        assert first.json()["id"] == again.json()["id"]
        pid = first.json()["id"]
        upd = c.put(
            "/Patient",
            params={"identifier": "urn:mrn|c1"},
            json={**patient("B", "c1")},
            headers=FHIR,
        )
        assert upd.status_code == 200 and upd.json()["id"] == pid
        patch = [{"op": "replace", "path": "/name/0/family", "value": "Patched"}]
        r = c.patch(
            f"/Patient/{pid}", json=patch, headers={"Content-Type": "application/json-patch+json"}
        )
        assert r.status_code == 200 and r.json()["name"][0]["family"] == "Patched"
        bad = [{"op": "replace", "path": "/nothing/here", "value": 1}]
        assert_outcome(
            c.patch(
                f"/Patient/{pid}", json=bad, headers={"Content-Type": "application/json-patch+json"}
            ),
            422,
        )
        assert c.delete("/Patient", params={"identifier": "urn:mrn|c1"}).status_code == 204
        assert_outcome(c.get(f"/Patient/{pid}"), 410)


def test_transaction_is_atomic_and_rewrites_urn_references(server: Server) -> None:
    tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": patient("Tx", "t1"),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "hr"},
                    "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    with httpx.Client(base_url=server.base) as c:
        r = c.post("", json=tx, headers=FHIR)
        assert r.status_code == 200, r.text
        locations = [e["response"]["location"] for e in r.json()["entry"]]
        pid = locations[0].split("/")[1]
        oid = locations[1].split("/")[1]
        assert c.get(f"/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{pid}"
        broken = {
            **tx,
            "entry": [
                tx["entry"][0],
                {
                    **tx["entry"][1],
                    "resource": {
                        "resourceType": "Observation",
                        "status": "not-a-status-but-ok",
                        "code": 5,
                    },
                },
            ],
        }
        assert_outcome(c.post("", json=broken, headers=FHIR), 400, "Bundle.entry[1]")
        assert c.get("/Patient", params={"identifier": "urn:mrn|t1"}).json()["total"] == 1
        cond = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "x"},
                        "subject": {"reference": "Patient?identifier=urn:mrn|t1"},
                    },
                    "request": {"method": "POST", "url": "Observation"},
                }
            ],
        }
        r = c.post("", json=cond, headers=FHIR)
        oid2 = r.json()["entry"][0]["response"]["location"].split("/")[1]
        assert c.get(f"/Observation/{oid2}").json()["subject"]["reference"] == f"Patient/{pid}"


def test_metadata_lists_what_is_supported(server: Server) -> None:
    cap = httpx.get(f"{server.base}/metadata").json()
    assert cap["fhirVersion"] == "4.0.1"
    types = {r["type"]: r for r in cap["rest"][0]["resource"]}
    assert len(types) == 16  # the 15 and DetectedIssue, which caregraph writes
    params = {p["name"]: p["type"] for p in types["Observation"]["searchParam"]}
    assert params["code-value-quantity"] == "composite" and params["patient"] == "reference"
    near = {p["name"]: p["type"] for p in types["Location"]["searchParam"]}["near"]
    assert near == "special"


def test_next_links_stay_correct_while_writes_go_on(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        for i in range(6):
            c.put(f"/Device/m{i}", json={"resourceType": "Device", "id": f"m{i}"}, headers=FHIR)
        page = c.get("/Device", params={"_count": "2", "_total": "accurate"}).json()
        assert page["total"] == 6
        seen = [e["resource"]["id"] for e in page["entry"]]
        # New devices whose ids sort before every page, arriving while the client pages.
        for i in range(3):
            c.put(f"/Device/a{i}", json={"resourceType": "Device", "id": f"a{i}"}, headers=FHIR)
        url = next((li["url"] for li in page["link"] if li["relation"] == "next"), None)
        while url:
            page = c.get(url).json()
            seen += [e["resource"]["id"] for e in page["entry"]]
            url = next((li["url"] for li in page["link"] if li["relation"] == "next"), None)
        assert seen == [f"m{i}" for i in range(6)]
        assert c.get("/Device").json()["total"] == 9


def test_history_levels_since_and_count(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        c.put("/Device/h1", json={"resourceType": "Device", "id": "h1"}, headers=FHIR)
        c.put(
            "/Device/h1",
            json={"resourceType": "Device", "id": "h1", "status": "active"},
            headers=FHIR,
        )
        c.put(
            "/Endpoint/e1",
            json={
                "resourceType": "Endpoint",
                "id": "e1",
                "status": "active",
                "connectionType": {"code": "hl7-fhir-rest"},
                "payloadType": [{"text": "any"}],
                "address": "http://x",
            },
            headers=FHIR,
        )
        system = c.get("/_history").json()
        assert system["total"] == 3
        assert [e["request"]["method"] for e in system["entry"]] == ["PUT", "PUT", "PUT"]
        device = c.get("/Device/_history", params={"_count": "1"}).json()
        assert device["total"] == 2 and len(device["entry"]) == 1
        assert any(li["relation"] == "next" for li in device["link"])
        assert c.get("/_history", params={"_since": "2999-01-01"}).json()["total"] == 0
        assert_outcome(c.get("/_history", params={"_since": "whenever"}), 400, "_since")
        # Pages of a history stay put while versions are written.
        first = c.get("/Device/_history", params={"_count": "1"}).json()
        c.put(
            "/Device/h1",
            json={"resourceType": "Device", "id": "h1", "status": "inactive"},
            headers=FHIR,
        )
        c.post("/Device", json={"resourceType": "Device"}, headers=FHIR)
        nxt = next(li["url"] for li in first["link"] if li["relation"] == "next")
        second = c.get(nxt).json()
        assert [e["resource"]["meta"]["versionId"] for e in first["entry"] + second["entry"]] == [
            "2",
            "1",
        ]
        methods = [e["request"]["method"] for e in c.get("/Device/_history").json()["entry"]]
        assert methods == ["POST", "PUT", "PUT", "PUT"]


def test_summary_and_read_shaping(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        body = {
            **patient("Sum", "s1"),
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
            },
            "communication": [{"language": {"text": "de"}}],
        }
        pid = c.post("/Patient", json=body, headers=FHIR).json()["id"]
        summary = c.get(f"/Patient/{pid}", params={"_summary": "true"}).json()
        assert "name" in summary and "communication" not in summary and "text" not in summary
        assert summary["meta"]["tag"][0]["code"] == "SUBSETTED"
        data = c.get("/Patient", params={"_summary": "data"}).json()["entry"][0]["resource"]
        assert "text" not in data and "communication" in data
        full = c.get(f"/Patient/{pid}")
        assert "communication" in full.json()
        assert (
            c.get(f"/Patient/{pid}", headers={"If-None-Match": full.headers["etag"]}).status_code
            == 304
        )


def test_concurrent_if_match_updates_have_one_winner(server: Server) -> None:
    import concurrent.futures

    with httpx.Client(base_url=server.base) as c:
        c.put("/Device/race", json={"resourceType": "Device", "id": "race"}, headers=FHIR)

    def attempt(n: int) -> int:
        with httpx.Client(base_url=server.base) as c:
            return c.put(
                "/Device/race",
                json={"resourceType": "Device", "id": "race", "manufacturer": f"w{n}"},
                headers={**FHIR, "If-Match": 'W/"1"'},
            ).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(attempt, range(6)))
    assert codes == [200] + [412] * 5
    hist = httpx.get(f"{server.base}/Device/race/_history").json()
    assert sorted(int(e["resource"]["meta"]["versionId"]) for e in hist["entry"]) == [1, 2]


def _valid(body: dict[str, Any]) -> None:
    from fhir.resources.R4B import get_fhir_model_class

    get_fhir_model_class(body["resourceType"]).model_validate(body)


def test_batch_reports_each_entry_and_responses_are_valid_fhir(server: Server) -> None:
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient("Ok", "b1"), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": {"resourceType": "Patient", "birthDate": "bad"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {"request": {"method": "GET", "url": "Patient?identifier=urn:mrn|b1"}},
            {"request": {"method": "DELETE", "url": "Patient/none-such"}},
            {"request": {"method": "GET", "url": "Patient/none-such"}},
        ],
    }
    with httpx.Client(base_url=server.base) as c:
        r = c.post("", json=batch, headers=FHIR)
        assert r.status_code == 200, r.text
        body = r.json()
        _valid(body)
        statuses = [e["response"]["status"] for e in body["entry"]]
        assert statuses[0] == "201 Created" and statuses[1] == "400"
        assert statuses[2] == "200 OK" and statuses[3] == "204 No Content" and statuses[4] == "404"
        assert body["entry"][2]["resource"]["total"] == 1
        assert "Patient.birthDate" in str(body["entry"][1]["response"]["outcome"])
        _valid(c.get("/metadata").json())
        _valid(c.get("/Patient", params={"_count": "1"}).json())
        _valid(c.get("/_history").json())
        ok = c.post("/Patient/$validate", json=patient("V", "v1"), headers=FHIR).json()
        assert ok["issue"][0]["severity"] == "information"
        bad = c.post(
            "/Patient/$validate", json={"resourceType": "Patient", "gender": 3}, headers=FHIR
        ).json()
        assert bad["issue"][0]["severity"] == "error" and bad["issue"][0]["expression"] == [
            "Patient.gender"
        ]
        assert c.get("/Patient", params={"identifier": "urn:mrn|v1"}).json()["total"] == 0
        assert_outcome(
            c.post("", json={"resourceType": "Bundle", "type": "collection"}, headers=FHIR),
            400,
            "transaction or batch",
        )
        assert_outcome(c.get("/no/such/interaction/here"), 404)


HOSTILE_BUNDLES: list[Any] = [
    {"resourceType": "Bundle", "type": "transaction", "entry": [1, "x", None]},
    {"resourceType": "Bundle", "type": "transaction", "entry": {"not": "a list"}},
    {"resourceType": "Bundle", "type": "transaction", "entry": [{"request": "GET"}]},
    {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "PUT", "url": "Patient/x", "ifMatch": "banana"},
                "resource": {"resourceType": "Patient", "id": "x"},
            }
        ],
    },
    {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": [1]}],
    },
    {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "PUT", "url": "Patient/"},
                "resource": {"resourceType": "Patient"},
            }
        ],
    },
    {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": "Patient"}}],
    },
    {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "PATCH", "url": "Patient/x"}}],
    },
    {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Alien"}, "resource": {"resourceType": "Alien"}}
        ],
    },
    {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient?identifier=nobody"},
                },
            }
        ],
    },
    {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [1, {"request": {"method": "GET", "url": "Patient?birthdate=never"}}],
    },
    [],
    "bundle",
    3,
]


def _deep_extension(levels: int) -> dict[str, Any]:
    """An extension nested ``levels`` deep (two JSON levels each): well under orjson's
    1,024-level limit, far over the store's 64."""
    deep: dict[str, Any] = {"url": "urn:x", "valueString": "leaf"}
    for _ in range(levels):
        deep = {"url": "urn:x", "extension": [deep]}
    return deep


# Nesting too deep inside a Bundle: the Bundle's parts and its resources are bounded
# separately, so both places are tried, after an entry that would be written.
FINE_ENTRY = {
    "request": {"method": "PUT", "url": "Patient/fine"},
    "resource": {"resourceType": "Patient", "id": "fine"},
}
DEEP_ENTRY = {
    "request": {"method": "POST", "url": "Patient"},
    "resource": {"resourceType": "Patient", "extension": [_deep_extension(200)]},
}
DEEP_TRANSACTION = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [FINE_ENTRY, DEEP_ENTRY],
}
DEEP_BATCH = {"resourceType": "Bundle", "type": "batch", "entry": [DEEP_ENTRY]}
DEEP_OUTSIDE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [{**FINE_ENTRY, "extension": [_deep_extension(200)]}],
}
HOSTILE_BUNDLES += [DEEP_TRANSACTION, DEEP_BATCH, DEEP_OUTSIDE]


def test_nesting_in_bundles_is_refused_where_it_is(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        out = assert_outcome(c.post("", json=DEEP_TRANSACTION, headers=FHIR), 400, "nested deeper")
        assert out["issue"][0]["expression"][0].startswith("Bundle.entry[1].resource")
        assert_outcome(c.post("", json=DEEP_OUTSIDE, headers=FHIR), 400, "nested deeper")
        answer = c.post("", json=DEEP_BATCH, headers=FHIR).json()
        assert answer["entry"][0]["response"]["status"] == "400"
        assert "nested deeper" in str(answer["entry"][0]["response"]["outcome"])


def test_transaction_rolls_back_when_a_later_entry_conflicts(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        c.put("/Device/v", json={"resourceType": "Device", "id": "v"}, headers=FHIR)
        tx = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "request": {"method": "POST", "url": "Patient"},
                    "resource": patient("Roll", "r1"),
                },
                {
                    "request": {"method": "PUT", "url": "Device/v", "ifMatch": 'W/"7"'},
                    "resource": {"resourceType": "Device", "id": "v", "status": "active"},
                },
            ],
        }
        assert_outcome(c.post("", json=tx, headers=FHIR), 412, "stale")
        assert c.get("/Patient").json()["total"] == 0
        assert c.get("/Device/v").json()["meta"]["versionId"] == "1"


def test_every_route_goes_through_authorize_and_its_refusal_is_an_outcome(
    store: FhirStore,
) -> None:
    seen: list[str] = []

    def authorize(request: Request) -> None:
        seen.append(f"{request.method} {request.url.path}")
        if request.headers.get("authorization") != "Bearer ok":
            raise HTTPException(401, "no token", headers={"WWW-Authenticate": "Bearer"})

    routes = build_router(store, authorize).routes
    with serving(store, authorize) as base, httpx.Client() as client:
        root = base.removesuffix("/fhir")
        for route in routes:
            path = getattr(route, "path", "")
            for method in sorted(getattr(route, "methods", ())):
                url = path.replace("{type_name}", "Patient").replace("{res_id}", "x")
                url = url.replace("{version}", "1").replace("{rest:path}", "anything")
                r = client.request(method, root + url)
                assert r.status_code == 401, (method, url, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                if method != "HEAD":
                    assert r.json()["issue"][0]["code"] == "security"
        assert len(seen) >= 20
        ok = client.get(f"{base}/metadata", headers={"Authorization": "Bearer ok"})
        assert ok.status_code == 200
