"""The compiled FHIRPath evaluator gives exactly what the first, plain one gives.

Every shipped expression (components of composites too) is evaluated by both over every
sample, every sample with one element removed, and hand-made resources that probe the
corners: choice elements of every kind, a literal key that looks like a choice stem,
lists where single values are expected, and scalars where objects are expected. (Keys
that are not FHIR, such as ``valueQUANTITY``, are left out: ``as T`` looks up the one
spelling valid FHIR has, which the validation in front of the store guarantees.)
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from fhir_store.fhirpath import Node, compile_expression
from fhir_store.searchparams import default_registry
from tests.unit.fhir_store import reference_fhirpath
from tests.unit.fhir_store.samples import SAMPLES

_ODD: list[dict[str, Any]] = [
    {
        "resourceType": "Observation",
        "id": "odd1",
        "code": [{"text": "a list where one is expected"}, "scalar"],
        "subject": "Patient/1",
        "valueQuantity": {"value": 2, "unit": "x"},
        "value": {"value": 3},
        "effectivePeriod": {"start": "2020"},
        "effectiveDateTime": "2021",
        "component": [
            {"code": {"coding": [{"code": "c1"}]}, "valueString": "s"},
            {"code": {"coding": [{"code": "c1"}]}, "valueCodeableConcept": {"text": "t"}},
            {"code": {"coding": [{"code": "c2"}]}, "valueSampledData": {"period": 1}},
            "not an object",
            [{"code": "nested list"}],
        ],
    },
    {
        "resourceType": "Observation",
        "id": "odd2",
        "code": {"coding": [{"system": "s", "code": "same"}]},
        "component": [{"code": {"coding": [{"system": "s", "code": "same"}]}}],
        "subject": {"reference": "http://x/fhir/Patient/9/_history/2"},
        "valueBoolean": True,
        "dataAbsentReasonX": {"text": "not a choice of dataAbsentReason"},
        "effectiveInstant": "2020-01-01T00:00:00Z",
        "effectivex": "2020",
    },
    {
        "resourceType": "Patient",
        "id": "odd3",
        "deceasedBoolean": False,
        "multipleBirthInteger": 2,
        "link": [{"other": {"reference": "Patient/1"}, "type": "seealso"}, {"other": {}}],
        "telecom": [{"system": "email"}, {"value": "no system"}, 7],
        "name": {"family": "single, not a list"},
    },
    {
        "resourceType": "Encounter",
        "id": "odd4",
        "subject": {"type": "Patient", "identifier": {"value": "x"}},
        "participant": [{"individual": {"reference": "Practitioner/p"}}, {"period": {}}],
        "location": [{"location": {"reference": "#contained"}}],
    },
]


def _variants() -> Iterator[dict[str, Any]]:
    for sample in [*SAMPLES, *_ODD]:
        yield sample
        for key in sample:
            if key in ("resourceType", "id"):
                continue
            smaller = copy.deepcopy(sample)
            del smaller[key]
            yield smaller


def _same(type_name: str, expression: str, resource: dict[str, Any]) -> None:
    fast = compile_expression(expression)
    plain = reference_fhirpath.compile_expression(expression)
    got = fast(resource)
    assert got == plain(resource), (type_name, expression, resource["id"])
    for base in got:
        # what the composite components are evaluated on
        start = Node(base.value, base.type)
        assert fast(base.value, start) == plain(base.value, start)


@pytest.mark.parametrize("resource", list(_variants()), ids=lambda r: f"{r['id']}-{len(r)}")
def test_every_expression_evaluates_as_the_plain_evaluator_does(resource: dict[str, Any]) -> None:
    registry = default_registry()
    params = registry.for_type(resource["resourceType"]).values()
    assert params
    for param in params:
        _same(resource["resourceType"], param.expression, resource)
        for component in param.components:
            plain = reference_fhirpath.compile_expression(component.expression)
            fast = compile_expression(component.expression)
            for base in reference_fhirpath.compile_expression(param.expression)(resource):
                assert fast(base.value, base) == plain(base.value, base), component.expression


def test_the_odd_resources_reach_the_corners() -> None:
    # The differential test above only means something if the corners are exercised.
    value = compile_expression("(Observation.value as Quantity)")
    assert value(_ODD[0]) == []  # a literal ``value`` key hides the choice elements
    without = {k: v for k, v in _ODD[0].items() if k != "value"}
    assert value(without) == [Node({"value": 2, "unit": "x"}, "Quantity")]
    assert compile_expression("Observation.value")(_ODD[0]) == [Node({"value": 3})]
    assert compile_expression("(Observation.value as boolean)")(_ODD[1]) == [Node(True, "boolean")]
    assert compile_expression("Observation.dataAbsentReason")(_ODD[1]) == []
    patient = compile_expression("Observation.subject.where(resolve() is Patient)")
    assert patient(_ODD[1]) == [Node({"reference": "http://x/fhir/Patient/9/_history/2"})]
    combo = compile_expression("Observation.code | Observation.component.code")
    assert len(combo(_ODD[1])) == 1  # equal values are one item of a union
