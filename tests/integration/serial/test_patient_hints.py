"""Patient ids reported by analyzers resolve to the one source Patient that carries them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caregraph.patient_hints import PatientHints
from fhir_store.database import open_database
from fhir_store.store import FhirStore
from linkage.survivorship import GOLDEN_TAG

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FhirStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite3"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    db = open_database(url)
    yield FhirStore(db)
    db.close()


def _patient(pid: str, *values: str, golden: bool = False) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": f"urn:oid:1.2.{i}", "value": v} for i, v in enumerate(values)],
    }
    if golden:
        resource["meta"] = {"tag": [dict(GOLDEN_TAG)]}
    return resource


def test_one_source_patient_resolves_golden_copies_do_not_count(store: FhirStore) -> None:
    store.upsert_many(
        [
            _patient("ward-7", "MRN7"),
            _patient("gold-7", "MRN7", golden=True),  # survivorship copies identifiers
            _patient("dup-a", "SHARED"),
            _patient("dup-b", "SHARED"),
        ]
    )
    hints = PatientHints(store)
    assert hints("MRN7") == {"reference": "Patient/ward-7"}
    assert hints("SHARED") is None  # ambiguous: never a guess
    assert hints("UNKNOWN") is None


def test_search_syntax_in_a_reported_id_is_escaped(store: FhirStore) -> None:
    store.upsert_many([_patient("odd", "A|B,C")])
    assert PatientHints(store)("A|B,C") == {"reference": "Patient/odd"}


def test_answers_are_cached_and_a_late_admission_is_found_after_the_miss_expires(
    store: FhirStore,
) -> None:
    now = [0.0]
    hints = PatientHints(store, missing_ttl_s=10, clock=lambda: now[0])
    assert hints("LATE") is None
    store.upsert_many([_patient("late", "LATE")])
    assert hints("LATE") is None and hints.searches == 1  # the miss is still cached
    now[0] = 11
    assert hints("LATE") == {"reference": "Patient/late"}
    assert hints("LATE") == {"reference": "Patient/late"} and hints.searches == 2


def test_a_registered_system_matches_only_identifiers_of_that_system(store: FhirStore) -> None:
    mrn, account = "urn:oid:1.2.0", "urn:oid:1.2.1"  # _patient's first and second systems
    store.upsert_many(
        [
            _patient("by-mrn", "12345"),
            _patient("by-account", "OTHER", "12345"),  # 12345 as its account number
            _patient("gold", "12345", golden=True),
            _patient("odd-system", "X1"),
        ]
    )
    hints = PatientHints(store)
    assert hints("12345") is None  # any system: two source Patients, no guess
    assert hints("12345", mrn) == {"reference": "Patient/by-mrn"}
    assert hints("12345", account) == {"reference": "Patient/by-account"}
    assert hints("12345", "urn:oid:9.9") is None
    assert hints("X1", "urn:oid:1.2") is None  # a prefix of the system is another system
    # answers are cached per system: the narrowed and the open question do not mix
    assert hints("12345") is None and hints("12345", mrn) == {"reference": "Patient/by-mrn"}
    assert hints.searches == 5


def test_search_syntax_in_a_registered_system_is_escaped(store: FhirStore) -> None:
    odd = {
        "resourceType": "Patient",
        "id": "odd",
        "identifier": [{"system": "urn:a|b", "value": "7"}],
    }
    store.upsert_many([odd])
    assert PatientHints(store)("7", "urn:a|b") == {"reference": "Patient/odd"}
