"""The page read off ``idx_compound`` in date order (``QueryBuilder.compound_page``) gives
the same pages as the plain path, on SQLite and PostgreSQL, including the awkward cases:
several dates per resource (Timing events), several matching codings, equal dates,
deleted resources, other parameters beside the compound, and paging with offsets."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_store import combos
from fhir_store.search import QueryBuilder, Sql
from fhir_store.store import FhirStore

pytestmark = pytest.mark.integration


def _observation(i: int) -> dict[str, Any]:
    codings = [{"system": "http://loinc.org", "code": "8867-4"}]
    if i % 4 == 1:  # a second coding that `code=8867-4` (no system) also matches
        codings.append({"system": "urn:other", "code": "8867-4"})
    if i % 5 == 2:
        codings = [{"system": "http://loinc.org", "code": "8310-5"}]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{i:02d}",
        "status": "final" if i % 3 else "amended",
        "code": {"coding": codings},
        "subject": {"reference": f"Patient/p{i % 2}"},
    }
    if i % 6 == 3:  # several dates: the latest is the sort key, an earlier one may match too
        obs["effectiveTiming"] = {
            "event": [f"2024-03-{1 + i % 7:02d}T08:00:00Z", f"2024-01-{1 + i % 9:02d}T08:00:00Z"]
        }
    elif i % 7 == 4:
        obs["effectivePeriod"] = {"start": f"2024-02-{1 + i % 20:02d}"}  # open: hi is the end
    else:
        obs["effectiveDateTime"] = f"2024-02-{1 + i % 11:02d}T12:00:00Z"  # equal dates repeat
    return obs


@pytest.fixture
def filled(store: FhirStore) -> FhirStore:
    store.upsert_many([_observation(i) for i in range(60)])
    for gone in ("o04", "o10", "o33"):
        store.delete("Observation", gone)
    return store


SEARCHES: list[list[tuple[str, str]]] = [
    [("patient", p), ("code", c), ("date", d), ("_sort", "-date"), *more]
    for p in ("Patient/p0", "p1", "Patient/nobody")
    for c in ("8867-4", "http://loinc.org|8867-4", "urn:other|8867-4")
    for d in ("ge2024-01-03", "gt2024-02-05", "ge2024-02-28T00:00:00Z")
    for more in ([], [("status", "final")], [("_id:missing", "false"), ("status:not", "final")])
] + [
    # subject naming a Patient is the compound's patient (the console's vitals query)
    [(name, p), ("code", c), ("date", d), ("_sort", "-date")]
    for name, p in (("subject", "Patient/p0"), ("subject:Patient", "p1"))
    for c in ("8867-4", "http://loinc.org|8867-4,urn:other|8867-4")
    for d in ("ge2024-01-03", "gt2024-02-05")
]


def _pages(store: FhirStore, search: list[tuple[str, str]]) -> list[list[str]]:
    """Every page of the search, three at a time, as ids."""
    pages = []
    for offset in range(0, 40, 3):
        page = store.searching.search(
            "Observation", [*search, ("_count", "3"), ("_offset", str(offset))]
        )
        pages.append([m.id for m in page.matches])
        if not page.has_next:
            break
    return pages


def test_compound_page_equals_the_plain_path(
    filled: FhirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = 0
    real = QueryBuilder.compound_page

    def counting(*args: Any) -> Any:
        nonlocal taken
        found = real(*args)
        taken += found is not None
        return found

    monkeypatch.setattr(QueryBuilder, "compound_page", staticmethod(counting))
    fast = [_pages(filled, s) for s in SEARCHES]
    assert taken >= len(SEARCHES)  # every search here goes the compound-page way
    monkeypatch.setattr(QueryBuilder, "compound_page", staticmethod(lambda *a: None))
    sorted_plain = [_pages(filled, s) for s in SEARCHES]
    monkeypatch.setattr(combos, "COMPOUNDS", ())
    plain = [_pages(filled, s) for s in SEARCHES]
    assert fast == sorted_plain == plain
    ids = [i for pages in fast for page in pages for i in page]
    assert len(ids) > 150  # the comparison is not between empty results
    for pages in fast:  # an id repeats neither within a page nor across pages
        flat = [i for page in pages for i in page]
        assert len(flat) == len(set(flat))


def test_only_newest_first_on_the_compound_date_takes_it(filled: FhirStore) -> None:
    builder = filled.searching.builder
    base = [("patient", "p0"), ("code", "8867-4")]
    live_sql = Sql("r.res_type = ? AND r.deleted = 0", ["Observation"])
    for extra, expected in [
        ([("date", "ge2024-01-01"), ("_sort", "-date")], True),
        ([("date", "gt2024-01-01"), ("_sort", "-date")], True),
        ([("date", "ge2024-01-01"), ("_sort", "date")], False),  # oldest first: MIN(lo)
        ([("date", "ge2024-01-01")], False),
        ([("date", "ge2024-01-01"), ("_sort", "-date,_id")], False),
        ([("date", "lt2024-03-01"), ("_sort", "-date")], False),  # bounds lo, not hi
        ([("date", "2024-02"), ("_sort", "-date")], False),
    ]:
        query = builder.build("Observation", [*base, *extra])
        assert (builder.compound_page(query, live_sql) is not None) is expected, extra
