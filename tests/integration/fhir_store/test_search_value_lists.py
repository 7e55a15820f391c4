"""Several values of a reference or system|code token (``search._pairs_in``), and a bare
reference id, are index ranges, not a scan of every row of the parameter."""

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
        "code": {"coding": [{"system": "http://loinc.org", "code": f"c{n % 5}"}]},
        "device": {"reference": f"{'Device' if n % 2 else 'DeviceMetric'}/d{n % 10}"},
        "effectiveDateTime": f"2024-01-01T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
    }


def _plans(store: FhirStore, params: list[tuple[str, str]], monkeypatch: Any) -> list[str]:
    """The ids found, and the SQLite query plan of each search statement."""
    plans: list[str] = []
    execute = database.Transaction.execute

    def explain(tx: database.Transaction, sql: str, args: Any = ()) -> Any:
        if sql.startswith("SELECT r.res_id FROM resources r"):
            rows = execute(tx, "EXPLAIN QUERY PLAN " + sql, args).fetchall()
            plans.extend(str(r[3]) for r in rows)
        return execute(tx, sql, args)

    monkeypatch.setattr(database.Transaction, "execute", explain)
    store.searching.search("Observation", params)
    monkeypatch.undo()
    return plans


@pytest.mark.parametrize(
    ("params", "index", "expected"),
    [
        (
            [("device", "Device/d1,DeviceMetric/d2,Device/d4")],
            "idx_reference_target (res_type=? AND param=? AND target_id=?)",
            # d4 is a DeviceMetric's id, never a Device's
            {f"o{n}" for n in range(200) if n % 10 in (1, 2)},
        ),
        (
            [("code", "http://loinc.org|c1,http://loinc.org|c3,http://snomed.info/sct|c4")],
            "idx_token_code (res_type=? AND param=? AND code=?)",
            {f"o{n}" for n in range(200) if n % 5 in (1, 3)},
        ),
    ],
)
def test_several_values_range_the_index(
    store: FhirStore,
    params: list[tuple[str, str]],
    index: str,
    expected: set[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store.upsert_many([_reading(n) for n in range(200)])
    found = store.searching.search("Observation", [*params, ("_count", "500")])
    assert {m.id for m in found.matches} == expected
    if store.db.dialect == "sqlite":
        plans = _plans(store, [*params, ("_sort", "-date")], monkeypatch)
        assert any(index in line for line in plans), plans


def _referring(res_id: str, ref: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": res_id,
        "status": "final",
        "code": {"text": "hr"},
        "subject": {"reference": ref},
    }


def test_a_bare_reference_value_is_an_id_or_the_text_of_one_without(
    store: FhirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.upsert_many(
        [
            _referring("typed", "Patient/p1"),
            _referring("untyped", "p1"),
            _referring("other", "Patient/p2"),
            _referring("urn", "urn:uuid:0b5e3c1e-46f5-4d4f-9b0e-1a2b3c4d5e6f"),
            *(_referring(f"o{n}", f"Patient/q{n}") for n in range(100)),
        ]
    )

    def found(value: str) -> set[str]:
        page = store.searching.search("Observation", [("subject", value), ("_count", "500")])
        return {m.id for m in page.matches}

    urn = "urn:uuid:0b5e3c1e-46f5-4d4f-9b0e-1a2b3c4d5e6f"
    assert found("p1") == {"typed", "untyped"}
    assert found(urn) == {"urn"}
    assert found(f"p2,{urn}") == {"other", "urn"}
    assert found("urn:uuid:00000000-0000-0000-0000-000000000000") == set()
    if store.db.dialect == "sqlite":
        plans = _plans(store, [("subject", "p1")], monkeypatch)
        index = "idx_reference_target (res_type=? AND param=? AND target_id=?)"
        assert any(index in line for line in plans), plans
