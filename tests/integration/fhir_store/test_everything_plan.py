"""``Patient/[id]/$everything`` finds its members through the reference index and reads
their rows by key; it never tests every resource of the store (``Searching.everything``)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_store import database
from fhir_store.store import FhirStore

pytestmark = pytest.mark.integration


def _reading(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/p{n % 10}"},
    }


def test_everything_reads_members_by_key(store: FhirStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.upsert_many(
        [
            *({"resourceType": "Patient", "id": f"p{n}"} for n in range(10)),
            *(_reading(n) for n in range(300)),
            {
                "resourceType": "Encounter",
                "id": "e1",
                "status": "finished",
                "class": {"code": "IMP"},
                "subject": {"reference": "Patient/p3"},
            },
        ]
    )
    plans: list[str] = []
    execute = database.Transaction.execute

    def explain(tx: database.Transaction, sql: str, args: Any = ()) -> Any:
        if store.db.dialect == "sqlite" and "idx_reference x" in sql:
            plans.extend(str(r[3]) for r in execute(tx, "EXPLAIN QUERY PLAN " + sql, args))
        return execute(tx, sql, args)

    monkeypatch.setattr(database.Transaction, "execute", explain)
    page = store.searching.everything("p3", [("_count", "100")])
    monkeypatch.undo()
    found = {(m.type, m.id) for m in page.matches}
    assert found == {
        ("Patient", "p3"),
        ("Encounter", "e1"),
        *(("Observation", f"o{n}") for n in range(3, 300, 10)),
    }
    assert page.total == len(found)
    if store.db.dialect == "sqlite":
        assert plans, "the $everything statements were not seen"
        assert not [line for line in plans if line.startswith("SCAN r")], plans
