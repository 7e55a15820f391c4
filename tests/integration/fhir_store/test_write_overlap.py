"""Large batches write on a thread of their own while the next chunk is indexed
(``store._Overlap``): the result must be the one the sequential path gives."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from caregraph.errors import StoreError
from fhir_store import store as store_module
from fhir_store.errors import ResourceNotFound
from fhir_store.indexing import COLUMNS
from fhir_store.records import loads
from fhir_store.schema import INDEX_TABLES, ROW_SPAN
from fhir_store.store import FhirStore, Pending


@pytest.fixture(autouse=True)
def overlap_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # every batch overlapped, in chunks small enough that one batch makes several
    monkeypatch.setattr(store_module, "OVERLAP_FROM", 1)
    monkeypatch.setattr(store_module, "INDEX_CHUNK", 7)


def obs(n: int, value: float, patient: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2024-01-01T10:{n % 60:02d}:00Z",
        "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def index_rows(store: FhirStore) -> set[tuple[str, tuple[Any, ...]]]:
    found = set()
    with store.db.transaction(write=False) as tx:
        for table in INDEX_TABLES:
            for row in tx.execute(
                f"SELECT r.rid, t.* FROM {table} t JOIN resources r"
                " ON r.res_type = t.res_type AND r.res_id = t.res_id"
                " WHERE t.res_type = 'Observation'"
            ).fetchall():
                rid, row_key, *rest = row
                assert row_key // ROW_SPAN == rid, (table, row)  # its resource's key range
                found.add((table, tuple(rest)))
    return found


def expected_rows(store: FhirStore, ids: list[str]) -> set[tuple[str, tuple[Any, ...]]]:
    """What the indexer makes of each current version, in the tables' column order."""
    expected = set()
    with store.db.transaction(write=False) as tx:
        columns = {
            table: [c[1] for c in tx.execute(f"PRAGMA table_info({table})").fetchall()]
            if store.db.dialect == "sqlite"
            else [
                r[0]
                for r in tx.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = ? ORDER BY ordinal_position",
                    (table,),
                ).fetchall()
            ]
            for table in INDEX_TABLES
        }
    columns = {table: [c for c in names if c != "row_key"] for table, names in columns.items()}
    for res_id in ids:
        content = loads(store.read("Observation", res_id).content)
        for table, rows in store.indexer.rows(content).items():
            names = COLUMNS[table]
            for row in rows:
                by_name = dict(zip(names, row, strict=True))
                expected.add((table, tuple(by_name[c] for c in columns[table])))
    return expected


def test_overlapped_batches_index_exactly_the_current_versions(store: FhirStore) -> None:
    store.upsert_many([obs(n, 60 + n) for n in range(30)])
    batch = [
        *(Pending("Observation", f"o{n}", obs(n, 100 + n, "p2"), "PUT") for n in range(10)),
        *(Pending("Observation", f"o{n}", obs(n, 60 + n), "PUT") for n in range(10, 15)),
        *(Pending("Observation", f"o{n}", None, "DELETE") for n in range(15, 18)),
        *(Pending("Observation", f"o{n}", obs(n, 60 + n), "PUT") for n in range(30, 45)),
        # two versions of one new resource, and a resource written then deleted
        Pending("Observation", "o45", obs(45, 1), "PUT"),
        Pending("Observation", "o45", obs(45, 2), "PUT"),
        Pending("Observation", "o46", obs(46, 1), "PUT"),
        Pending("Observation", "o46", None, "DELETE"),
    ]
    results = store.write(batch)
    assert [r.changed for r in results] == [True] * 10 + [False] * 5 + [True] * 22
    live = [f"o{n}" for n in (*range(15), *range(18, 46))]
    assert index_rows(store) == expected_rows(store, live)
    assert store.read("Observation", "o45").version == 2
    assert loads(store.read("Observation", "o3").content)["subject"]["reference"] == "Patient/p2"
    assert [h.version for h in store.searching.history("Observation", "o45").versions] == [2, 1]


def test_a_failing_overlapped_write_rolls_the_whole_batch_back(
    store: FhirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.upsert_many([obs(n, 60) for n in range(5)])
    before = index_rows(store)
    calls = 0
    real = store_module._copy_index

    def failing(tx: Any, rows: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StoreError("injected: the second chunk's index rows cannot be written")
        real(tx, rows)

    monkeypatch.setattr(store_module, "_copy_index", failing)
    with pytest.raises(StoreError, match="injected"):
        store.upsert_many([obs(n, 70) for n in range(30)])
    assert calls == 2
    assert store.read("Observation", "o0").version == 1
    for n in (5, 29):
        with pytest.raises(ResourceNotFound):
            store.read("Observation", f"o{n}")
    assert index_rows(store) == before


def test_concurrent_overlapped_batches_of_the_same_new_ids(store: FhirStore) -> None:
    """Two writers create the same 60 resources at once: one wins each id, the other's
    batch conflicts (PostgreSQL's primary key, in the writing thread), is retried and
    becomes version 2; no version is lost or doubled."""
    go = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(value: float) -> None:
        go.wait()
        try:
            store.upsert_many([obs(n, value) for n in range(60)])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(v,)) for v in (1.0, 2.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for n in range(60):
        history = store.searching.history("Observation", f"o{n}").versions
        assert sorted(h.version for h in history) == [1, 2]
    assert index_rows(store) == expected_rows(store, [f"o{n}" for n in range(60)])
