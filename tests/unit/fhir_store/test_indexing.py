"""Indexing over samples of every served type: valid FHIR, and the skip check loses nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_store.dates import date_range
from fhir_store.indexing import Indexer, instant_range, normalize
from fhir_store.searchparams import default_registry
from tests.unit.fhir_store.samples import SAMPLES
from tests.unit.fhir_store.test_fhirpath_differential import _variants


@pytest.mark.parametrize("resource", SAMPLES, ids=lambda r: r["id"])
def test_samples_are_valid_fhir(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("resource", SAMPLES, ids=lambda r: r["id"])
def test_skipping_absent_parameters_changes_no_row(resource: dict[str, Any]) -> None:
    indexer = Indexer(default_registry())
    fast = indexer.rows(resource)
    full = indexer.rows(resource, skip=False)
    assert fast == full
    assert fast  # every sample is findable by something


def test_every_served_type_has_a_sample() -> None:
    assert {s["resourceType"] for s in SAMPLES} == set(default_registry().types)


def test_composites_pair_each_component_code_with_its_own_value() -> None:
    rows = Indexer(default_registry()).rows(next(s for s in SAMPLES if s["id"] == "obs2"))
    pairs = {(r[2], r[4], r[7]) for r in rows["idx_composite"]}
    assert ("component-code-value-quantity", "8480-6", 120.0) in pairs
    assert ("component-code-value-quantity", "8462-4", 80.0) in pairs
    assert ("component-code-value-quantity", "8480-6", 80.0) not in pairs


@pytest.mark.parametrize(
    "text",
    [
        "2023-11-14T22:14:20Z",
        "0001-01-01T00:00:00Z",
        "2024-02-29T23:59:59Z",
        "2023-02-29T10:00:00Z",
        "2023-13-01T10:00:00Z",
        "2023-01-01T24:00:00Z",
        "2023-01-01T10:60:00Z",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "2023-11-14T22:14:20+01:00",
        "2023-11-14T22:14:20.5Z",
        "2023-11-14",
        "2023-11-14T22:14Z",
    ],
)
def test_instant_range_is_date_range(text: str) -> None:
    try:
        expected: object = date_range(text)
    except ValueError:
        expected = ValueError
    try:
        got: object = instant_range(text)
    except ValueError:
        got = ValueError
    assert got == expected


def test_normalize_folds_case_and_accents() -> None:
    assert normalize("Ölz Straße") == "olz strasse"
    assert normalize("HEART Rate") == "heart rate"


def test_grouped_and_memoized_rows_are_the_rows_of_every_parameter() -> None:
    # One indexer for all: the second and third resource of a kind hit the memos.
    indexer = Indexer(default_registry())
    checked = 0
    for resource in _variants():
        for res_id in ("first", "second", "first"):
            copy = {**resource, "id": res_id}
            assert indexer.rows(copy) == indexer.rows(copy, skip=False), resource
            checked += 1
    plan = indexer._plans["Observation"]
    hits = sum(g.hits for groups in plan.by_name.values() for g in groups)
    assert checked > 100 and hits > 100


def test_a_union_not_evaluated_keeps_its_of_type_rows_and_aliases_feed_compounds() -> None:
    # combo-code is not evaluated on the fast path: its :of-type rows (the one kind a union
    # keeps under its own code) are copied from code's and component-code's. Identifier-
    # shaped codes are not valid FHIR; they are what makes :of-type rows at all.
    def typed(value: str, code: str) -> dict[str, Any]:
        return {"value": value, "type": {"coding": [{"system": "s", "code": code}]}}

    resource = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": typed("x", "c"),
        "component": [{"code": typed("y", "d")}],
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2024-01-01T00:00:00Z",
    }
    indexer = Indexer(default_registry())
    fast = indexer.rows(resource)
    assert fast == indexer.rows(resource, skip=False)
    of_type = {(r[2], r[3], r[4]) for r in fast["idx_token"] if r[2].endswith(":of-type")}
    assert ("combo-code:of-type", "s|c", "x") in of_type
    assert ("combo-code:of-type", "s|d", "y") in of_type
    # patient's row is subject's (dropped), and the compound still finds the patient
    assert {r[2] for r in fast["idx_reference"]} == {"subject"}
    assert {r[3] for r in fast["idx_compound"]} == {"p"}


def test_layouts_follow_each_resources_own_keys_and_their_order() -> None:
    # One indexer: a layout worked out for one key tuple must not serve another.
    indexer = Indexer(default_registry())
    base = next(s for s in SAMPLES if s["resourceType"] == "Observation")
    period = {k: v for k, v in base.items() if not k.startswith("effective")}
    period["effectivePeriod"] = {"start": "2021-01-01", "end": "2021-01-02"}
    reordered = dict(reversed(list(base.items())))
    fewer = {k: v for k, v in base.items() if k not in ("subject", "code")}
    for resource in (base, period, reordered, fewer, base, period):
        assert indexer.rows(resource) == indexer.rows(resource, skip=False), resource
    assert len(indexer._plans["Observation"].layouts) == 4


def test_a_group_whose_values_never_repeat_stops_memoizing() -> None:
    indexer = Indexer(default_registry())
    base = next(s for s in SAMPLES if s["resourceType"] == "Observation")
    for n in range(5001):
        minute = f"{n // 60 % 24:02d}:{n % 60:02d}"
        day = 1 + n // 1440
        indexer.rows(
            {**base, "id": f"o{n}", "effectiveDateTime": f"2020-01-{day:02d}T{minute}:00Z"}
        )
    groups = indexer._plans["Observation"].by_name["effective"]
    assert [g.memo for g in groups] == [None]
    assert indexer._plans["Observation"].by_name["code"][0].memo  # codes repeat: kept
    late = {**base, "id": "late", "effectiveDateTime": "2021-06-01T10:00:00Z"}
    assert indexer.rows(late) == indexer.rows(late, skip=False)


@pytest.mark.parametrize("resource", SAMPLES, ids=lambda r: r["id"])
def test_shared_rows_read_back_as_each_parameters_own(resource: dict[str, Any]) -> None:
    """What a search reads for a parameter that shares rows (its own, plus the others'
    restricted as ``param_rows`` restricts them) is every row it would have on its own."""
    registry = default_registry()
    stored = Indexer(registry).rows(resource)
    alone = Indexer(registry, share=False).rows(resource)
    for code, share in registry.shared(resource["resourceType"]).items():
        for table in set(stored) | set(alone):
            read = {r for r in stored.get(table, ()) if r[2] == code} | {
                (r[0], r[1], code, *r[3:])
                for r in stored.get(table, ())
                if r[2] in share.params and share.target_type in (None, r[3])
            }
            assert read == {r for r in alone.get(table, ()) if r[2] == code}, (code, table)


def test_a_vital_sign_stores_no_row_twice() -> None:
    vital = next(s for s in SAMPLES if s["id"] == "obs2")
    rows = Indexer(default_registry()).rows(vital)
    params = {r[2] for part in rows.values() for r in part}
    assert {"code", "subject", "component-code-value-quantity", "component-code"} <= params
    assert not params & {"combo-code", "patient", "combo-code-value-quantity"}


def test_a_reference_typed_only_by_its_type_element_keeps_its_own_row() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"text": "x"},
        "subject": {
            "reference": "urn:uuid:7d0ae9a5-5a35-4a4b-9a83-2b1f8d4c2a11",
            "type": "Patient",
        },
    }
    rows = Indexer(default_registry()).rows(obs)["idx_reference"]
    assert {r[2] for r in rows} == {"subject", "patient"}
