"""Search features beyond the typed index tables, on SQLite and PostgreSQL: Location
``near``, ``_text``/``_content``, ``_include=*``, nested ``_has``, DetectedIssue, and what
is refused (``_query``, terminology modifiers, unknown parameters under strict handling)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from adapters.registry.alerts import silence_issue
from fhir_store.errors import InvalidSearch, NotSupported
from fhir_store.store import FhirStore
from tests.integration.fhir_store.conftest import Server
from tests.unit.fhir_store.samples import SAMPLES

pytestmark = pytest.mark.integration

FHIR = {"Content-Type": "application/fhir+json"}
BERN = (46.9480, 7.4474)
ZURICH = (47.3769, 8.5417)  # 95.5 km from Bern (great circle)
GENEVA = (46.2044, 6.1432)  # 129.6 km from Bern


def _location(res_id: str, position: tuple[float, float] | None, div: str) -> dict[str, Any]:
    loc: dict[str, Any] = {
        "resourceType": "Location",
        "id": res_id,
        "name": res_id,
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{div}</div>',
        },
    }
    if position:
        loc["position"] = {"latitude": position[0], "longitude": position[1]}
    return loc


EXTRA: list[dict[str, Any]] = [
    _location("bern", BERN, "Inselspital <b>Intensive</b> Care, Bern"),
    _location("zurich", ZURICH, "University Hospital Zurich, cardiac ward"),
    _location("geneva", GENEVA, "HUG Geneva, Cardiac intensive care"),
    _location("nowhere", None, "A ward without coordinates"),
    {
        "resourceType": "Encounter",
        "id": "enc-bern",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "location": [{"location": {"reference": "Location/bern"}}],
    },
    {
        "resourceType": "Encounter",
        "id": "enc-geneva",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "location": [{"location": {"reference": "Location/geneva"}}],
    },
    {
        "resourceType": "AuditEvent",
        "id": "aud-prov",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106"},
        "recorded": "2024-01-02T10:00:00Z",
        "agent": [{"who": {"reference": "Device/dev1"}, "requestor": False}],
        "source": {"observer": {"reference": "Device/dev1"}},
        "entity": [{"what": {"reference": "Provenance/prov1"}}],
    },
    silence_issue(
        "mon-7",
        "Device/dev1",
        datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        30,
        datetime(2024, 3, 1, 8, 1, tzinfo=UTC),
    ),
]


@pytest.fixture
def loaded(store: FhirStore) -> FhirStore:
    store.upsert_many([dict(s) for s in SAMPLES] + [dict(e) for e in EXTRA])
    return store


def ids(store: FhirStore, type_name: str, params: list[tuple[str, str]]) -> list[str]:
    return sorted(m.id for m in store.searching.search(type_name, params).matches)


NEAR_CASES: list[tuple[str, list[str]]] = [
    (f"{BERN[0]}|{BERN[1]}|10|km", ["bern"]),
    (f"{BERN[0]}|{BERN[1]}|90|km", ["bern"]),
    (f"{BERN[0]}|{BERN[1]}|100|km", ["bern", "zurich"]),
    (f"{BERN[0]}|{BERN[1]}|100", ["bern", "zurich"]),  # km by default
    (f"{BERN[0]}|{BERN[1]}|96000|m", ["bern", "zurich"]),
    (f"{BERN[0]}|{BERN[1]}|95000|m", ["bern"]),
    (f"{BERN[0]}|{BERN[1]}|60|[mi_i]", ["bern", "zurich"]),  # 96.6 km
    (f"{BERN[0]}|{BERN[1]}|58|[mi_i]", ["bern"]),  # 93.3 km
    (f"{BERN[0]}|{BERN[1]}|130|km", ["bern", "geneva", "zurich"]),
    (f"{BERN[0]}|{BERN[1]}", ["bern"]),  # the server's "near": 10 km
    (f"{BERN[0]}|{BERN[1]}||km", ["bern"]),
    (f"{ZURICH[0]}|{ZURICH[1]}|1", ["zurich"]),
    (f"{ZURICH[0]}|{ZURICH[1]}|1,{GENEVA[0]}|{GENEVA[1]}|1", ["geneva", "zurich"]),
    ("0|0|20000|km", ["bern", "geneva", "zurich"]),  # never the one without a position
    ("-33.87|151.21|100|km", []),
]


def test_near_finds_locations_within_the_distance(loaded: FhirStore) -> None:
    failures = []
    for value, expected in NEAR_CASES:
        got = ids(loaded, "Location", [("near", value)])
        if got != expected:
            failures.append(f"near={value}: got {got}, expected {expected}")
    assert not failures, "\n".join(failures)


def test_near_combines_with_other_parameters_chains_and_missing(loaded: FhirStore) -> None:
    near_bern = f"{BERN[0]}|{BERN[1]}|200"
    assert ids(loaded, "Location", [("near", near_bern), ("name", "ge")]) == ["geneva"]
    assert ids(loaded, "Encounter", [("location.near", f"{GENEVA[0]}|{GENEVA[1]}|5")]) == [
        "enc-geneva"
    ]
    assert ids(loaded, "Location", [("near:missing", "true")]) == ["loc1", "nowhere"]
    assert ids(loaded, "Location", [("near:missing", "false")]) == ["bern", "geneva", "zurich"]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("46.9", "latitude|longitude"),
        ("1|2|3|4|5", "latitude|longitude"),
        ("x|7", "latitude 'x' is not a number"),
        ("91|7", "latitude must lie"),
        ("46|181", "longitude"),
        ("46|7|-1", "negative"),
        ("46|7|nan", "finite"),
        ("46|7|5|parsec", "unit 'parsec'"),
    ],
)
def test_near_refuses_what_it_cannot_read(loaded: FhirStore, value: str, needle: str) -> None:
    with pytest.raises(InvalidSearch, match=needle):
        loaded.searching.search("Location", [("near", value)])
    with pytest.raises(InvalidSearch, match="modifier"):
        loaded.searching.search("Location", [("near:exact", "46|7")])


def test_near_and_composites_cannot_sort(loaded: FhirStore) -> None:
    with pytest.raises(InvalidSearch, match="cannot sort by special parameter near"):
        loaded.searching.search("Location", [("_sort", "near")])
    with pytest.raises(InvalidSearch, match="cannot sort by composite"):
        loaded.searching.search("Observation", [("_sort", "-code-value-quantity")])


def test_text_and_content_match_words_case_insensitively(loaded: FhirStore) -> None:
    assert ids(loaded, "Location", [("_text", "cardiac")]) == ["geneva", "zurich"]
    assert ids(loaded, "Location", [("_text", "CARDIAC intensive")]) == ["geneva"]
    assert ids(loaded, "Location", [("_text", "intensive")]) == ["bern", "geneva"]
    # a phrase: Bern's narrative has markup between the two words
    assert ids(loaded, "Location", [("_text", '"intensive care"')]) == ["geneva"]
    assert ids(loaded, "Location", [("_text", "bern,zurich")]) == ["bern", "zurich"]
    assert ids(loaded, "Location", [("_text", "cardiac"), ("_text", "hug")]) == ["geneva"]
    assert ids(loaded, "Location", [("_text", "100%")]) == []  # LIKE wildcards are literal
    assert ids(loaded, "Organization", [("_text", "insel")]) == []  # no narrative
    assert ids(loaded, "Organization", [("_content", "insel")]) == ["org1"]
    assert ids(loaded, "Observation", [("_content", "8867-4")]) == ["obs1"]
    assert ids(loaded, "Observation", [("_content", "8867-4 heart")]) == ["obs1"]
    assert ids(loaded, "Observation", [("_content", "8867-4 smoking")]) == []
    assert ids(loaded, "DetectedIssue", [("_content", "MON-7")]) == [EXTRA[-1]["id"]]
    with pytest.raises(InvalidSearch, match="empty"):
        loaded.searching.search("Location", [("_text", "  ")])
    with pytest.raises(InvalidSearch, match="modifier"):
        loaded.searching.search("Location", [("_content:exact", "x")])


def test_include_wildcards(loaded: FhirStore) -> None:
    def included(params: list[tuple[str, str]]) -> list[str]:
        page = loaded.searching.search("Observation", [("_id", "obs1"), *params])
        return sorted(f"{s.type}/{s.id}" for s in page.included)

    everything = ["Device/dev1", "Encounter/enc1", "Patient/pat1"]
    assert included([("_include", "*")]) == everything
    assert included([("_include", "Observation:*")]) == everything
    assert included([("_include", "Observation:*:Device")]) == ["Device/dev1"]
    assert included([("_include", "Patient:*")]) == []  # the matches are not Patients
    # iterate: from the Encounter on to its Location and Practitioner (not further: the
    # Location's own references are not asked for)
    assert included([("_include", "*"), ("_include:iterate", "Encounter:*")]) == [
        "Device/dev1",
        "Encounter/enc1",
        "Location/loc1",
        "Patient/pat1",
        "Practitioner/prac1",
    ]
    revs = loaded.searching.search("Patient", [("_id", "pat1"), ("_revinclude", "Observation:*")])
    assert sorted(s.id for s in revs.included) == ["obs1", "obs2"]
    every = loaded.searching.search("Device", [("_id", "dev1"), ("_revinclude", "*")])
    assert sorted(f"{s.type}/{s.id}" for s in every.included) == [
        "AuditEvent/aud-prov",
        "AuditEvent/aud1",
        f"DetectedIssue/{EXTRA[-1]['id']}",
        "DetectedIssue/issue1",
        "DeviceMetric/met1",
        "DeviceUseStatement/dus1",
        "Observation/obs1",
        "Provenance/prov1",
    ]
    for bad in ("Nope:*", "Observation:*:Nope", "*:subject"):
        with pytest.raises(InvalidSearch):
            loaded.searching.search("Observation", [("_include", bad)])


def test_has_nests_several_levels(loaded: FhirStore) -> None:
    # Patients with an Observation that a Provenance targets whose agent is dev1.
    two = "_has:Observation:patient:_has:Provenance:target:agent"
    assert ids(loaded, "Patient", [(two, "Device/dev1")]) == ["pat1"]
    assert ids(loaded, "Patient", [(two, "Device/nope")]) == []
    # ... and whose Provenance is itself the entity of an AuditEvent.
    three = "_has:Observation:patient:_has:Provenance:target:_has:AuditEvent:entity:_id"
    assert ids(loaded, "Patient", [(three, "aud-prov")]) == ["pat1"]
    assert ids(loaded, "Patient", [(three, "aud1")]) == []  # aud1's entity is an Observation
    devices = "_has:Observation:device:_has:AuditEvent:entity:patient"
    assert ids(loaded, "Device", [(devices, "Patient/pat1")]) == ["dev1"]
    assert ids(loaded, "Device", [(devices, "Patient/pat2")]) == []
    assert ids(loaded, "Patient", [("_has:Observation:patient:code:text", "smoking")]) == ["pat2"]
    with pytest.raises(InvalidSearch, match="not a reference"):
        loaded.searching.search(
            "Patient", [("_has:Observation:patient:_has:Provenance:when:x", "1")]
        )


def test_detected_issue_is_served_with_its_spec_parameters(loaded: FhirStore) -> None:
    issue_id = EXTRA[-1]["id"]
    assert "DetectedIssue" in loaded.registry.types
    assert set(loaded.registry.for_type("DetectedIssue")) >= {
        "identifier",
        "patient",
        "author",
        "code",
        "identified",
        "implicated",
        "status",
    }
    both = sorted([issue_id, "issue1"])
    assert ids(loaded, "DetectedIssue", [("implicated", "Device/dev1")]) == both
    assert ids(loaded, "DetectedIssue", [("implicated:Device.manufacturer", "phil")]) == both
    assert ids(loaded, "DetectedIssue", [("identifier", "nope")]) == []
    assert ids(loaded, "DetectedIssue", [("status", "final")]) == []
    # identifiedPeriods are open (not cleared): they overlap any later day
    assert ids(loaded, "DetectedIssue", [("identified", "ge2024-03-02")]) == both
    assert ids(loaded, "DetectedIssue", [("identified", "lt2024-03-01")]) == ["issue1"]
    assert ids(loaded, "DetectedIssue", [("status", "preliminary")]) == both  # open
    assert ids(loaded, "Device", [("_has:DetectedIssue:implicated:code", "silent")]) == ["dev1"]


def test_refused_terminology_modifiers_and_named_queries(loaded: FhirStore) -> None:
    for modifier in ("in", "not-in", "above", "below"):
        with pytest.raises(NotSupported, match="terminology service"):
            loaded.searching.search(
                "Observation", [(f"code:{modifier}", "http://hl7.org/fhir/ValueSet/x")]
            )
    # _query changes what the search means: refused under lenient handling too.
    with pytest.raises(NotSupported, match="named queries"):
        loaded.searching.search("Patient", [("_query", "current-high-risk")])


def test_unknown_and_unsupported_follow_handling(loaded: FhirStore) -> None:
    for name in (
        "_since",
        "_type",
        "_filter",
        "_list",
        "_contained",
        "shoe-size",
        "organization.shoe-size",  # a chain to a parameter no target type has
        "general-practitioner:Practitioner.shoe-size",
        "_has:Observation:patient:shoe-size",
    ):
        with pytest.raises(InvalidSearch, match="unknown"):
            loaded.searching.search("Patient", [(name, "x")], strict=True)
        page = loaded.searching.search("Patient", [(name, "x")])
        assert page.query.ignored == [name] and len(page.matches) == 2


def test_over_http(server: Server) -> None:
    server.store.upsert_many([dict(s) for s in SAMPLES] + [dict(e) for e in EXTRA])
    with httpx.Client(base_url=server.base) as c:
        r = c.get("/Location", params={"near": f"{BERN[0]}|{BERN[1]}|100|km", "_sort": "_id"})
        assert r.status_code == 200
        assert [e["resource"]["id"] for e in r.json()["entry"]] == ["bern", "zurich"]
        r = c.post("/Location/_search", data={"_text": "cardiac", "_include": "*"})
        assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == ["geneva", "zurich"]
        for params, needle in [
            ({"_query": "x"}, "named queries"),
            ({"code:in": "http://hl7.org/fhir/ValueSet/observation-codes"}, "ValueSet"),
            ({"near": "1|2|3|lightyear"}, "lightyear"),
        ]:
            r = c.get("/Observation" if "code:in" in params else "/Location", params=params)
            assert r.status_code == 400, r.text
            body = r.json()
            assert body["resourceType"] == "OperationOutcome"
            assert needle in body["issue"][0]["diagnostics"]
        strict = c.get("/Patient", params={"_since": "2020"}, headers={"Prefer": "handling=strict"})
        assert strict.status_code == 400 and "_since" in strict.text
        lenient = c.get(
            "/Patient", params={"_since": "2020"}, headers={"Prefer": "handling=lenient"}
        ).json()
        outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
        assert outcome[0]["resource"]["issue"][0]["expression"] == ["_since"]
        r = c.post("/DetectedIssue", json=dict(EXTRA[-1], id=None), headers=FHIR)
        assert r.status_code == 201, r.text
        found = c.get("/DetectedIssue", params={"implicated": "Device/dev1"}).json()
        assert found["total"] == 3


def test_capability_lists_what_search_supports(server: Server) -> None:
    cap = httpx.get(f"{server.base}/metadata").json()
    rest = cap["rest"][0]
    types = {r["type"]: r for r in rest["resource"]}
    assert "DetectedIssue" in types
    near = [p for p in types["Location"]["searchParam"] if p["name"] == "near"]
    assert near and near[0]["type"] == "special"
    assert {"_id", "_lastUpdated", "_text", "_content"} == {p["name"] for p in rest["searchParam"]}
    assert {"*", "Observation:*", "Observation:subject"} <= set(
        types["Observation"]["searchInclude"]
    )
    assert {"*", "Observation:*", "Observation:subject"} <= set(
        types["Patient"]["searchRevInclude"]
    )
    assert "_query" not in {p["name"] for r in rest["resource"] for p in r["searchParam"]}
    for resource in rest["resource"]:
        params = {p["name"] for p in resource["searchParam"]}
        assert params == set(server.store.registry.for_type(resource["type"]))


def test_fhirpy_client_sees_the_new_search_features(server: Server) -> None:
    from fhirpy import SyncFHIRClient
    from fhirpy.base.exceptions import OperationOutcome

    server.store.upsert_many([dict(s) for s in SAMPLES] + [dict(e) for e in EXTRA])
    client = SyncFHIRClient(server.base)
    near = client.resources("Location").search(near=f"{BERN[0]}|{BERN[1]}|100|km").sort("_id")
    assert [loc.id for loc in near.fetch()] == ["bern", "zurich"]
    assert client.resources("Location").search(_text="cardiac intensive").count() == 1
    assert client.resources("Organization").search(_content="insel").count() == 1
    raw = client.resources("Observation").search(_id="obs1", _include="*").fetch_raw()
    assert sorted(e["resource"]["resourceType"] for e in raw["entry"]) == [
        "Device",
        "Encounter",
        "Observation",
        "Patient",
    ]
    nested = client.resources("Patient").search(
        **{"_has:Observation:patient:_has:Provenance:target:agent": "Device/dev1"}
    )
    assert [p.id for p in nested.fetch()] == ["pat1"]
    assert client.resources("DetectedIssue").search(implicated="Device/dev1").count() == 2
    with pytest.raises(OperationOutcome, match="named queries"):
        client.resources("Patient").search(_query="x").fetch()


def test_escaped_separators_are_literal_in_tokens_and_strings(store: FhirStore) -> None:
    store.upsert_many(
        [
            {
                "resourceType": "Patient",
                "id": "odd",
                "identifier": [{"system": "urn:x", "value": "A|B,C"}],
                "name": [{"family": "Pipe|Comma,Name"}],
            },
            {"resourceType": "Patient", "id": "plain", "identifier": [{"value": "A"}]},
        ]
    )

    def ids(*params: tuple[str, str]) -> list[str]:
        return sorted(s.id for s in store.searching.search("Patient", list(params)).matches)

    assert ids(("identifier", "A\\|B\\,C")) == ["odd"]
    assert ids(("identifier", "urn:x|A\\|B\\,C")) == ["odd"]
    assert ids(("identifier", "A")) == ["plain"]
    assert ids(("family:exact", "Pipe\\|Comma\\,Name")) == ["odd"]
    assert ids(("family", "pipe\\|comma")) == ["odd"]
