"""The SQL a search becomes: IN lists, not OR chains; values always bound, never inlined."""

from __future__ import annotations

import pytest

from fhir_store.search import QueryBuilder, split_values
from fhir_store.searchparams import default_registry


def build(type_name: str, params: list[tuple[str, str]]) -> str:
    query = QueryBuilder(default_registry()).build(type_name, params)
    return " AND ".join(w.text for w in query.where)


def test_token_or_values_become_in_lists() -> None:
    codes = ",".join(f"c{i}" for i in range(50))
    sql = build("Observation", [("code", codes)])
    assert sql.count("code IN (") == 1 and " OR " not in sql
    pairs = ",".join(f"s|c{i}" for i in range(20))
    sql = build("Observation", [("code", pairs)])
    assert sql.count("(system, code) IN (") == 1 and " OR " not in sql


def test_one_token_value_is_an_equality_not_a_one_item_list() -> None:
    # SQLite reads an IN list as several index ranges and then sorts what an equality
    # would have delivered in index order.
    assert build("Observation", [("code", "c1")]).count("code = ?") == 1
    assert "(system = ? AND code = ?)" in build("Observation", [("code", "s|c1")])
    assert "system = ?" in build("Observation", [("code", "s|")])
    assert " IN (?)" not in build("Observation", [("code", "c1"), ("code", "s|c2")])


def test_values_are_bound_parameters() -> None:
    query = QueryBuilder(default_registry()).build("Patient", [("family", "O'Brien; DROP")])
    assert "O'Brien" not in query.where[0].text
    assert "o'brien; drop%" in query.where[0].params


def test_repetition_is_and() -> None:
    query = QueryBuilder(default_registry()).build(
        "Observation", [("date", "ge2020"), ("date", "lt2021")]
    )
    assert len(query.where) == 2


def test_escaped_commas() -> None:
    assert split_values(r"a\,b,c") == ["a,b", "c"]


@pytest.mark.parametrize("subject", ["Device/1", "1"])
def test_ranks_drive_from_references(subject: str) -> None:
    # a subject that may not be a Patient: the compound (patient, code, date) cannot answer
    query = QueryBuilder(default_registry()).build(
        "Observation", [("date", "ge2020"), ("code", "x"), ("subject", subject)]
    )
    assert [w.rank for w in query.where] == [2, 1, 0]
    assert all(w.exists and w.exists.startswith("EXISTS") for w in query.where)


def test_patient_code_date_together_use_the_compound_index() -> None:
    query = QueryBuilder(default_registry()).build(
        "Observation",
        [
            ("date", "ge2020"),
            ("code", "http://loinc.org|8867-4"),
            ("patient", "Patient/1"),
            ("status", "final"),
        ],
    )
    assert len(query.where) == 2
    compound = next(w for w in query.where if w.rank == -1)
    assert "idx_compound" in compound.text and "(system = ? AND code = ?)" in compound.text
    assert compound.params[:3] == ["Observation", "patient|code|date", "1"]
    assert [name for name, _ in query.used] == ["date", "code", "patient", "status"]
