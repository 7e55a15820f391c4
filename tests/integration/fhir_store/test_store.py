"""FhirStore on both engines: versioning, idempotent batches, and search pushed to SQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fhir_store import store as store_module
from fhir_store.errors import InvalidResource, ResourceGone, ResourceNotFound, VersionConflict
from fhir_store.records import content_hash, legacy_content_hash
from fhir_store.schema import ROW_SPAN
from fhir_store.store import FhirStore

pytestmark = pytest.mark.integration


def obs(oid: str, patient: str, code: str, when: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def ids(page: Any) -> list[str]:
    return [m.id for m in page.matches]


def test_versioning_identical_content_and_if_match(store: FhirStore) -> None:
    created = store.create({"resourceType": "Patient", "name": [{"family": "Test"}]})
    pid = created.stored.id
    assert created.created and created.stored.version == 1
    body = created.stored.resource()
    assert body["meta"]["versionId"] == "1"
    same = store.update("Patient", pid, body)
    assert not same.changed and same.stored.version == 1
    body["gender"] = "female"
    assert store.update("Patient", pid, body, if_match=1).stored.version == 2
    with pytest.raises(VersionConflict, match="stale"):
        store.update("Patient", pid, {**body, "gender": "male"}, if_match=1)
    assert store.vread("Patient", pid, 1).resource().get("gender") is None
    assert store.read("Patient", pid).resource()["gender"] == "female"
    assert store.delete("Patient", pid)
    with pytest.raises(ResourceGone):
        store.read("Patient", pid)
    with pytest.raises(ResourceNotFound):
        store.read("Patient", "nope")
    page = store.searching.history("Patient", pid)
    history, total = page.versions, page.total
    assert [h.version for h in history] == [3, 2, 1] and total == 3 and history[0].deleted


def test_upsert_many_redelivery_adds_no_version(store: FhirStore) -> None:
    batch = [obs(f"o{i}", "p1", "8867-4", f"2024-01-0{i + 1}T10:00:00Z", 60 + i) for i in range(5)]
    store.upsert_many(batch)
    store.upsert_many(batch)
    assert all(store.read("Observation", f"o{i}").version == 1 for i in range(5))
    changed = [*batch[:4], {**batch[4], "status": "amended"}]
    store.upsert_many(changed)
    assert store.read("Observation", "o4").version == 2
    total = store.searching.history("Observation").total
    assert total == 6
    page = store.searching.search("Observation", [("status", "amended")])
    assert ids(page) == ["o4"]
    assert ids(store.searching.search("Observation", [("status", "final")])) == [
        f"o{i}" for i in range(4)
    ]


def test_hashes_written_before_orjson_still_make_identical_content_a_no_op(
    store: FhirStore,
) -> None:
    # 1e-05 is spelled differently by json (the old hash's text) and orjson (the new).
    resource = obs("legacy", "p1", "8867-4", "2024-01-01T10:00:00Z", 1e-05)
    assert content_hash(resource) != legacy_content_hash(resource)
    store.upsert_many([resource])
    with store.db.transaction() as tx:
        tx.execute(
            "UPDATE resources SET content_hash = ? WHERE res_type = 'Observation'"
            " AND res_id = 'legacy'",
            (legacy_content_hash(resource),),
        )
    store.upsert_many([resource])
    assert store.read("Observation", "legacy").version == 1
    store.upsert_many([{**resource, "status": "amended"}])
    assert store.read("Observation", "legacy").version == 2


def _history_texts(store: FhirStore, res_id: str) -> dict[int, str]:
    with store.db.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT version, content FROM history WHERE res_type = 'Observation' AND res_id = ?",
            (res_id,),
        ).fetchall()
    return {int(r[0]): r[1] for r in rows}


def test_each_version_is_stored_once_and_every_version_reads_back(store: FhirStore) -> None:
    first = obs("h1", "p1", "8867-4", "2024-01-01T10:00:00Z", 60)
    second = {**first, "status": "amended"}
    third = {**first, "status": "corrected"}
    store.upsert_many([first])
    assert _history_texts(store, "h1") == {1: ""}  # in resources only
    store.upsert_many([second, third])  # two versions in one batch
    store.delete("Observation", "h1")
    store.upsert_many([first])
    texts = _history_texts(store, "h1")
    assert texts[5] == "" and texts[4] == ""  # current, and the deletion
    assert all(texts[v] for v in (1, 2, 3))
    statuses = {v: store.vread("Observation", "h1", v).resource()["status"] for v in (1, 2, 3, 5)}
    assert statuses == {1: "final", 2: "amended", 3: "corrected", 5: "final"}
    with pytest.raises(ResourceGone):
        store.vread("Observation", "h1", 4)
    versions = store.searching.history("Observation", "h1").versions
    assert [
        (h.version, h.resource()["meta"]["versionId"] if h.content else None) for h in versions
    ] == [
        (5, "5"),
        (4, None),
        (3, "3"),
        (2, "2"),
        (1, "1"),
    ]
    at = store.history_at("Observation", "h1", ("0000", "9999"))
    assert [h.resource()["status"] for h in at.versions if not h.deleted] == [
        "final",
        "corrected",
        "amended",
        "final",
    ]


def test_history_rows_written_with_their_content_still_read_and_update(store: FhirStore) -> None:
    """Stores written by earlier releases kept the current version's content in history."""
    store.upsert_many([obs("old", "p1", "8867-4", "2024-01-01T10:00:00Z", 60)])
    text = store.read("Observation", "old").content
    with store.db.transaction() as tx:
        tx.execute("UPDATE history SET content = ? WHERE res_id = 'old'", (text,))
    assert store.vread("Observation", "old", 1).content == text
    store.upsert_many([obs("old", "p1", "8867-4", "2024-01-01T10:00:00Z", 61)])
    assert _history_texts(store, "old") == {1: text, 2: ""}
    assert store.vread("Observation", "old", 1).content == text
    assert store.vread("Observation", "old", 2).resource()["valueQuantity"]["value"] == 61


def test_search_basics(store: FhirStore) -> None:
    store.upsert_many(
        [
            {
                "resourceType": "Patient",
                "id": "p1",
                "name": [{"family": "Müller", "given": ["Ann"]}],
                "birthDate": "1980-05-02",
                "identifier": [{"system": "urn:mrn", "value": "M1"}],
            },
            {
                "resourceType": "Patient",
                "id": "p2",
                "name": [{"family": "Miller"}],
                "birthDate": "1990",
                "identifier": [{"system": "urn:mrn", "value": "M2"}],
            },
            obs("a", "p1", "8867-4", "2024-01-01T10:00:00Z", 60),
            obs("b", "p1", "8867-4", "2024-01-02T10:00:00Z", 80),
            obs("c", "p1", "8310-5", "2024-01-03T10:00:00Z", 37),
            obs("d", "p2", "8867-4", "2024-01-04T10:00:00Z", 90),
        ]
    )
    s = store.searching.search
    assert ids(s("Patient", [("family", "muller")])) == ["p1"]
    assert ids(s("Patient", [("family", "m")])) == ["p1", "p2"]
    assert ids(s("Patient", [("family:exact", "Miller")])) == ["p2"]
    assert ids(s("Patient", [("birthdate", "1980")])) == ["p1"]
    assert ids(s("Patient", [("birthdate", "lt1985")])) == ["p1"]
    assert ids(s("Patient", [("identifier", "urn:mrn|M2")])) == ["p2"]
    assert ids(
        s("Observation", [("patient", "Patient/p1"), ("code", "http://loinc.org|8867-4")])
    ) == ["a", "b"]
    assert ids(
        s("Observation", [("code", "8867-4,8310-5"), ("date", "ge2024-01-02"), ("_sort", "-date")])
    ) == ["d", "c", "b"]
    assert ids(s("Observation", [("value-quantity", "gt70")])) == ["b", "d"]
    assert ids(s("Observation", [("value-quantity", "80|http://unitsofmeasure.org|/min")])) == ["b"]
    assert ids(s("Observation", [("code-value-quantity", "http://loinc.org|8867-4$gt85")])) == ["d"]
    assert ids(s("Observation", [("subject:Patient.identifier", "urn:mrn|M2")])) == ["d"]
    assert ids(s("Patient", [("_has:Observation:patient:code", "8310-5")])) == ["p1"]
    assert ids(s("Observation", [("code:not", "8867-4")])) == ["c"]
    page = s("Observation", [("code", "8310-5"), ("_include", "Observation:subject")])
    assert [i.id for i in page.included] == ["p1"]
    page = s("Patient", [("_id", "p2"), ("_revinclude", "Observation:subject")])
    assert [i.id for i in page.included] == ["d"]
    page = s("Observation", [("_count", "2"), ("_sort", "date")])
    assert ids(page) == ["a", "b"] and page.has_next and page.total is None
    page = s("Observation", [("_count", "2"), ("_sort", "date"), ("_total", "accurate")])
    assert page.total == 4
    assert s("Observation", [("_count", "0")]).total == 4


def test_concurrent_updates_have_one_winner_per_version(store: FhirStore) -> None:
    store.upsert_many([{"resourceType": "Device", "id": "d1", "status": "active"}])
    errors: list[BaseException] = []

    def bump(n: int) -> None:
        try:
            for k in range(5):
                store.update(
                    "Device",
                    "d1",
                    {"resourceType": "Device", "id": "d1", "manufacturer": f"t{n}-{k}"},
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    page = store.searching.history("Device", "d1", count=100)
    history, total = page.versions, page.total
    assert sorted(h.version for h in history) == list(range(1, total + 1))
    assert total == 21


def test_a_resource_keeps_its_number_and_its_rows_stay_in_its_key_range(
    store: FhirStore,
) -> None:
    """Updates, a delete and a re-create reindex a resource within its own ``row_key``
    range: the search finds exactly its current version, never a row left from before."""
    store.upsert_many([obs("a", "p1", "1111-1", "2024-01-01T10:00:00Z", 1)])
    store.upsert_many([obs("b", "p1", "1111-1", "2024-01-01T10:00:00Z", 1)])

    def number(res_id: str) -> int:
        with store.db.transaction(write=False) as tx:
            rid = tx.execute(
                "SELECT rid FROM resources WHERE res_type = 'Observation' AND res_id = ?",
                (res_id,),
            ).fetchone()[0]
            keys = tx.execute(
                "SELECT row_key FROM idx_token WHERE res_type = 'Observation' AND res_id = ?",
                (res_id,),
            ).fetchall()
        assert all(k[0] // ROW_SPAN == rid for k in keys)
        return int(rid)

    first, other = number("a"), number("b")
    assert other > first
    store.upsert_many([obs("a", "p2", "2222-2", "2024-01-02T10:00:00Z", 2)])
    assert number("a") == first
    assert ids(store.searching.search("Observation", [("code", "1111-1")])) == ["b"]
    assert ids(store.searching.search("Observation", [("code", "2222-2")])) == ["a"]
    store.delete("Observation", "a")
    assert ids(store.searching.search("Observation", [("code", "2222-2")])) == []
    store.upsert_many([obs("a", "p3", "3333-3", "2024-01-03T10:00:00Z", 3)])
    assert number("a") == first
    found = store.searching.search("Observation", [("patient", "p3"), ("code", "3333-3")])
    assert ids(found) == ["a"]
    assert ids(store.searching.search("Observation", [("patient", "p2")])) == []


def test_a_resource_with_more_index_rows_than_its_key_range_is_refused(
    store: FhirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "ROW_SPAN", 3)
    many = {
        "resourceType": "Patient",
        "id": "many",
        "identifier": [{"system": "urn:x", "value": str(n)} for n in range(4)],
    }
    refused = r"Patient/many has \d+ search index entries in idx_token; .* at most 3"
    with pytest.raises(InvalidResource, match=refused):
        store.upsert_many([many])
    with pytest.raises(ResourceNotFound):
        store.read("Patient", "many")
