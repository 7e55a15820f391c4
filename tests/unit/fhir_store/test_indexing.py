"""Indexing over samples of every served type: valid FHIR, and the skip check loses nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_store.indexing import Indexer
from fhir_store.searchparams import default_registry
from tests.unit.fhir_store.samples import SAMPLES


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
