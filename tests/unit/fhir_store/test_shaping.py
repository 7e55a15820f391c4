"""Pure shaping: _summary/_elements subsets and the Bundles' links."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

from fhir_store.records import Stored
from fhir_store.search import Query
from fhir_store.searching import HistoryPage, SearchPage
from fhir_store.shaping import bundle_text, history_bundle, shape

PATIENT = {
    "resourceType": "Patient",
    "id": "p",
    "meta": {"versionId": "1"},
    "text": {"status": "generated", "div": "<div/>"},
    "name": [{"family": "X"}],
    "communication": [{"language": {"text": "de"}}],
}


def test_summary_true_keeps_summary_elements_and_tags_subsetted() -> None:
    out = shape(PATIENT, "true", None)
    assert set(out) == {"resourceType", "id", "meta", "name"}
    assert out["meta"]["tag"][0]["code"] == "SUBSETTED"
    assert "tag" not in PATIENT["meta"]


def test_summary_data_text_and_elements() -> None:
    assert "text" not in shape(PATIENT, "data", None)
    assert set(shape(PATIENT, "text", None)) == {"resourceType", "id", "meta", "text"}
    assert set(shape(PATIENT, None, ["communication"])) == {
        "resourceType",
        "id",
        "meta",
        "communication",
    }
    assert shape(PATIENT, None, None) is PATIENT


def _query(**changes: object) -> Query:
    query = Query("Patient", [], [], 2, 2, "auto", None, None, [], [], [("family", "x")], [])
    query.snapshot = "2024-01-01T00:00:00.000000"
    for key, value in changes.items():
        setattr(query, key, value)
    return query


def test_search_bundle_links_carry_the_query_and_the_snapshot() -> None:
    stored = Stored("Patient", "p", 1, "2024-01-01T00:00:00.000000", False, json.dumps(PATIENT))
    page = SearchPage(_query(ignored=["shoe"]), [stored], [], None, True)
    bundle = json.loads(bundle_text("http://h/fhir", "http://h/fhir/Patient", page))
    links = {li["relation"]: dict(parse_qsl(urlsplit(li["url"]).query)) for li in bundle["link"]}
    assert links["next"] == {
        "family": "x",
        "_snapshot": "2024-01-01T00:00:00.000000",
        "_offset": "4",
    }
    assert links["previous"]["_offset"] == "0" and links["self"]["_offset"] == "2"
    assert "total" not in bundle
    assert bundle["entry"][0]["fullUrl"] == "http://h/fhir/Patient/p"
    assert bundle["entry"][-1]["search"]["mode"] == "outcome"


def test_history_bundle() -> None:
    versions = [
        Stored("Patient", "p", 2, "2024-01-02T00:00:00.000000", True, "", "DELETE"),
        Stored("Patient", "p", 1, "2024-01-01T00:00:00.000000", False, json.dumps(PATIENT), "POST"),
    ]
    page = HistoryPage(versions, 5, True, 0, 2, "2024-01-03T00:00:00.000000")
    bundle = history_bundle("http://h/fhir", "http://h/fhir/_history", [("_count", "2")], page)
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "DELETE", "url": "Patient/p"},
        {"method": "POST", "url": "Patient"},
    ]
    assert [e["response"]["status"] for e in bundle["entry"]] == ["204 No Content", "201 Created"]
    assert "resource" not in bundle["entry"][0] and bundle["total"] == 5
    nxt = next(li["url"] for li in bundle["link"] if li["relation"] == "next")
    assert "_snapshot=2024-01-03T00%3A00%3A00.000000" in nxt and "_offset=2" in nxt
