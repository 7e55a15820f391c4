"""Several values of a reference or system|code token are index ranges, not a scan of
every row of the parameter (``search._pairs_in``)."""

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
