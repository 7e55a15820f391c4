"""The shape cache of validation decides exactly as a full fhir.resources validation does.

Each sample (and a bench-like Observation) is learned; then every leaf of it is replaced by
values of the same JSON type that are valid or not for the field (a bad date, an empty
string, a code with a space at the end, a negative positiveInt, ...), and the cached
answer must be the full validation's, for every mutant.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_store.errors import InvalidResource
from fhir_store.searchparams import default_registry
from fhir_store.validation import ShapeCache, validate_resource
from tests.unit.fhir_store.samples import SAMPLES

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "obs-1",
    "meta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z"},
    "status": "final",
    "category": [{"coding": [{"system": "http://x", "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "HR"}]},
    "subject": {"reference": "Patient/p"},
    "effectiveDateTime": "2023-11-14T22:14:20Z",
    "issued": "2023-11-14T22:14:20.123+01:00",
    "valueQuantity": {"value": 60, "unit": "/min", "system": "http://u", "code": "/min"},
    "component": [{"code": {"text": "c"}, "valueInteger": 3}],
}

STRINGS = [
    "",
    " ",
    "x",
    "final",
    "bogus value",
    "trailing ",
    "2020",
    "2020-02-30",
    "2020-13-01",
    "2020-01-01T25:00:00Z",
    "2020-01-01T10:00:00",
    "2020-01-01T10:00:00.123456789+01:00",
    "http://example.org/x",
    "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7",
    "Patient/p",
    "not a uri with spaces",
    "-1",
    "1.5",
    "abc-123.DEF",
    "a" * 70,
]
NUMBERS: list[Any] = [0, -1, 1, 2**40, 1.5, -0.5, 1e300]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key != "resourceType":
                yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*path, i))
    else:
        yield path, value


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(doc)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def _mutants(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path, leaf in _paths(resource):
        if path == ("id",):
            continue  # the store checks ids itself
        if isinstance(leaf, bool):
            options: list[Any] = [not leaf]
        elif isinstance(leaf, str):
            options = STRINGS
        elif isinstance(leaf, int | float):
            options = NUMBERS
        else:
            options = []
        for option in options:
            yield _set(resource, path, option)


def _full(resource: dict[str, Any]) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("resource", [*SAMPLES, OBSERVATION], ids=lambda r: r["id"])
def test_known_shapes_decide_as_the_full_validation(resource: dict[str, Any]) -> None:
    cache = ShapeCache()
    served = default_registry().types
    if resource["resourceType"] not in served:
        pytest.skip("not a served type")
    assert cache.valid(resource) is None
    validate_resource(resource, served, shapes=cache)
    assert cache.valid(resource) is True  # learned: the mutants below take the fast path
    checked = rejected = fast_hits = 0
    for mutant in _mutants(resource):
        try:
            validate_resource(mutant, served, shapes=cache)
            cached = True
        except InvalidResource:
            cached = False
        try:
            validate_resource(mutant, served, shapes=None)
            uncached = True
        except InvalidResource:
            uncached = False
        assert cached == uncached, mutant
        fast = cache.valid(mutant)
        full = _full(mutant)
        assert fast is None or fast == full, mutant
        fast_hits += fast is True
        checked += 1
        rejected += not full
    assert checked and rejected and fast_hits  # the mutants do test something


def test_a_new_shape_is_validated_in_full_and_errors_keep_their_element() -> None:
    cache = ShapeCache()
    served = default_registry().types
    validate_resource(OBSERVATION, served, shapes=cache)
    bad = _set(OBSERVATION, ("effectiveDateTime",), "2020-13-01")
    with pytest.raises(InvalidResource) as caught:
        validate_resource(bad, served, shapes=cache)
    assert caught.value.issues[0][0] == "Observation.effectiveDateTime"
    extra = {**OBSERVATION, "valueString": "two values"}  # a choice given twice
    assert cache.valid(extra) is None
    with pytest.raises(InvalidResource):
        validate_resource(extra, served, shapes=cache)
    assert cache.valid(extra) is None  # invalid shapes are never learned


def test_the_cache_is_bounded() -> None:
    cache = ShapeCache(limit=2)
    served = default_registry().types
    for n in range(5):
        validate_resource(
            {**OBSERVATION, "id": "o", "note": [{"text": "x"}] * (n + 1)}, served, shapes=cache
        )
    assert len(cache._shapes) <= 2
    validate_resource(OBSERVATION, served, shapes=cache)
    for n in range(100):  # leaves that passed are remembered, up to 16 per shape allowed
        assert cache.valid({**OBSERVATION, "id": f"o{n}"}) is not None
    assert 0 < len(cache._passed) <= 32


def test_a_value_that_passed_for_one_field_is_checked_again_for_another() -> None:
    cache = ShapeCache()
    served = default_registry().types
    validate_resource(OBSERVATION, served, shapes=cache)
    text = _set(OBSERVATION, ("component", 0, "code", "text"), "soon")
    assert cache.valid(text) is True
    when = _set(OBSERVATION, ("effectiveDateTime",), "soon")
    assert cache.valid(when) is None
    with pytest.raises(InvalidResource, match="effectiveDateTime"):
        validate_resource(when, served, shapes=cache)
