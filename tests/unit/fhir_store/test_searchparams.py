"""The shipped search parameters: derived from the spec, compiled, and indexing what they say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_store.fhirpath import FhirPathError, Node, compile_expression
from fhir_store.indexing import Indexer, tokens
from fhir_store.searchparams import default_registry
from fhir_store.tools.derive_search_params import OUTPUT, SERVED_TYPES, derive

# The spec's files sit in shared/ beside the repository (on developers' machines and in CI).
FOLDER = Path(__file__).resolve().parents[3].parent / "shared/fhir-r4"
SPEC = FOLDER / "search-parameters.json"
COMPARTMENT = FOLDER / "compartmentdefinition-patient.json"


@pytest.mark.skipif(
    not SPEC.exists(), reason="the spec's search-parameters.json is not beside the repo"
)
def test_shipped_data_is_what_the_script_derives() -> None:
    derived = derive(
        json.loads(SPEC.read_text(encoding="utf-8")),
        json.loads(COMPARTMENT.read_text(encoding="utf-8")),
    )
    assert json.loads(OUTPUT.read_text(encoding="utf-8")) == derived


def test_every_served_type_has_its_spec_parameters() -> None:
    registry = default_registry()
    assert registry.types == SERVED_TYPES
    observation = registry.for_type("Observation")
    assert observation["code-value-quantity"].components[1].type == "quantity"
    assert observation["patient"].expression == "Observation.subject.where(resolve() is Patient)"
    assert {"_id", "_lastUpdated", "_tag", "_profile"} <= set(registry.for_type("Endpoint"))
    assert registry.not_supported == ()  # Location.near (special) is searched too
    assert registry.for_type("Location")["near"].type == "special"
    assert registry.for_type("DetectedIssue")["implicated"].type == "reference"


def test_expressions_outside_the_subset_are_refused() -> None:
    with pytest.raises(FhirPathError):
        compile_expression("Observation.value.descendants()")
    with pytest.raises(FhirPathError):
        compile_expression("Observation.value +")


def test_patient_where_and_choice_types() -> None:
    indexer = Indexer(default_registry())
    rows = indexer.rows(
        {
            "resourceType": "Patient",
            "id": "p",
            "deceasedDateTime": "2020-01-01",
            "telecom": [{"system": "email", "value": "a@b.org"}, {"system": "phone", "value": "5"}],
            "name": [{"family": "Ölz", "given": ["Eva"]}],
        }
    )
    token = {(r[2], r[4]) for r in rows["idx_token"]}
    assert ("email", "a@b.org") in token and ("phone", "5") in token
    assert ("email", "5") not in token
    assert ("deceased", "true") in token
    assert (
        "Patient",
        "p",
        "death-date",
        "2020-01-01T00:00:00.000000",
        "2020-01-01T23:59:59.999999",
    ) in rows["idx_date"]
    assert ("Patient", "p", "family", "olz", "Ölz") in rows["idx_string"]


def test_observation_subject_where_resolve_only_for_patients() -> None:
    indexer = Indexer(default_registry())
    device_subject = indexer.rows(
        {
            "resourceType": "Observation",
            "id": "o",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Device/d"},
        }
    )
    params = {r[2] for r in device_subject["idx_reference"]}
    assert params == {"subject"}


def test_tokens_of_each_shape() -> None:
    assert tokens(Node(True)) == [("", "true", None)]
    assert tokens(Node({"system": "s", "value": "v"})) == [("s", "v", None)]
    assert tokens(Node({"coding": [{"system": "s", "code": "c", "display": "Héart"}]})) == [
        ("s", "c", "heart")
    ]


def test_patient_compartment_is_the_specs() -> None:
    compartment = default_registry().patient_compartment
    assert compartment["Observation"] == ("subject", "performer")
    assert compartment["Patient"] == ("link",)
    assert "Device" not in compartment


def test_rows_shared_are_those_the_schema_6_migration_removed() -> None:
    """A change to what is shared needs a migration of its own: version 6 is shipped."""
    from fhir_store.schema import _SHARED_AT_6
    from fhir_store.search import _TABLE

    registry = default_registry()
    derived = {
        (t, _TABLE[registry.get(t, code).type], code, s.params, s.target_type)  # type: ignore[union-attr]
        for t in registry.types
        for code, s in registry.shared(t).items()
    }
    assert derived == set(_SHARED_AT_6)
    observation = registry.shared("Observation")
    assert observation["combo-code"].params == ("code", "component-code")
    assert (observation["patient"].params, observation["patient"].target_type) == (
        ("subject",),
        "Patient",
    )
