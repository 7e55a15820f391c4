"""History ``_at`` and PATCH entries (JSON Patch in a Binary) in batch and transaction Bundles,
over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest

from tests.integration.fhir_store.conftest import Server

pytestmark = pytest.mark.integration

FHIR = {"Content-Type": "application/fhir+json"}


def binary_patch(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(json.dumps(operations).encode()).decode(),
    }


def patch_entry(url: str, operations: list[dict[str, Any]], **request: str) -> dict[str, Any]:
    return {
        "resource": binary_patch(operations),
        "request": {"method": "PATCH", "url": url, **request},
    }


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def put_patient(c: httpx.Client, pid: str, family: str) -> dict[str, Any]:
    body = {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}
    r = c.put(f"/Patient/{pid}", json=body, headers=FHIR)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def test_history_at_lists_the_versions_current_in_the_period(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        stamps = []
        for family in ("One", "Two", "Three"):
            stamps.append(put_patient(c, "p", family)["meta"]["lastUpdated"])
            time.sleep(0.01)
        put_patient(c, "other", "Else")
        assert c.delete("/Patient/p").status_code == 204

        def versions(params: dict[str, str], path: str = "/Patient/p/_history") -> list[str]:
            r = c.get(path, params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            found = [e["response"]["etag"] for e in body["entry"]]
            assert "_count" in params or body["total"] == len(found)
            return found

        # at the instant version 2 was written, version 2 was current (and only it)
        assert versions({"_at": stamps[1]}) == ['W/"2"']
        # a whole day: every version of p, the deletion too
        day = stamps[0][:10]
        assert versions({"_at": day}) == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
        # before p existed: nothing
        assert versions({"_at": "2001"}) == []
        # long after: only what is current now, here the deletion
        assert versions({"_at": "2999"}) == ['W/"4"']
        # type level: the other Patient's only version is current now as well
        assert versions({"_at": "2999"}, "/Patient/_history") == ['W/"4"', 'W/"1"']
        paged = c.get("/Patient/_history", params={"_at": "2999", "_count": "1"}).json()
        assert [e["response"]["etag"] for e in paged["entry"]] == ['W/"4"']
        assert paged["total"] == 2 and [k["relation"] for k in paged["link"]] == ["self", "next"]
        r = c.get("/Patient/p/_history", params={"_at": "yesterday"})
        assert r.status_code == 400 and "_at" in r.text


def test_patch_entries_in_a_transaction(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        put_patient(c, "p1", "Before")
        put_patient(c, "p2", "Other")
        tx = bundle(
            "transaction",
            patch_entry(
                "Patient/p1", [{"op": "replace", "path": "/name/0/family", "value": "After"}]
            ),
            patch_entry(
                "Patient/p2",
                [{"op": "add", "path": "/gender", "value": "female"}],
                ifMatch='W/"1"',
            ),
        )
        r = c.post("", json=tx, headers=FHIR)
        assert r.status_code == 200, r.text
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert statuses == ["200 OK", "200 OK"]
        assert c.get("/Patient/p1").json()["name"][0]["family"] == "After"
        p2 = c.get("/Patient/p2").json()
        assert p2["gender"] == "female" and p2["meta"]["versionId"] == "2"
        history = c.get("/Patient/p1/_history").json()
        assert history["entry"][0]["request"]["method"] == "PATCH"

        # one failing patch (a test op) undoes the whole transaction
        failing = bundle(
            "transaction",
            patch_entry("Patient/p1", [{"op": "replace", "path": "/name/0/family", "value": "X"}]),
            patch_entry("Patient/p2", [{"op": "test", "path": "/gender", "value": "male"}]),
        )
        r = c.post("", json=failing, headers=FHIR)
        assert r.status_code == 422, r.text
        assert "patch operation 0" in r.text
        assert c.get("/Patient/p1").json()["name"][0]["family"] == "After"
        # a stale ifMatch is a 412, and nothing is written
        stale = bundle(
            "transaction",
            patch_entry(
                "Patient/p1", [{"op": "add", "path": "/gender", "value": "male"}], ifMatch='W/"1"'
            ),
        )
        r = c.post("", json=stale, headers=FHIR)
        assert r.status_code == 412, r.text
        assert "gender" not in c.get("/Patient/p1").json()


def test_patch_entries_in_a_batch_and_their_errors(server: Server) -> None:
    with httpx.Client(base_url=server.base) as c:
        put_patient(c, "p1", "Before")
        not_binary = {
            "resource": {"resourceType": "Patient"},
            "request": {"method": "PATCH", "url": "Patient/p1"},
        }
        not_base64 = {
            "resource": {
                "resourceType": "Binary",
                "contentType": "application/json-patch+json",
                "data": "%%%",
            },
            "request": {"method": "PATCH", "url": "Patient/p1"},
        }
        batch = bundle(
            "batch",
            patch_entry("Patient/p1", [{"op": "add", "path": "/active", "value": True}]),
            patch_entry("Patient/nope", [{"op": "add", "path": "/active", "value": True}]),
            patch_entry("Patient/p1", [{"op": "replace", "path": "/id", "value": "other"}]),
            patch_entry("Patient/p1", [{"op": "add", "path": "/birthDate", "value": "not-a-date"}]),
            not_binary,
            not_base64,
            patch_entry("Patient?name=Before", [{"op": "add", "path": "/gender", "value": "male"}]),
        )
        r = c.post("", json=batch, headers=FHIR)
        assert r.status_code == 200, r.text
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert statuses == ["200 OK", "404", "422", "400", "400", "400", "200 OK"]
        current = c.get("/Patient/p1").json()
        assert current["active"] is True and current["gender"] == "male"
        assert current["meta"]["versionId"] == "3"
