"""The trace id in the stored resource: a meta.tag coding, valid FHIR, replacing an older one."""

from __future__ import annotations

import copy
from typing import Any

from fhir.resources.R4B.observation import Observation

from fhir_store.writer import TRACE_SYSTEM, trace_tag_of, with_trace_tag

UNASSIGNED = {"system": "urn:caregraph:tag", "code": "unassigned"}


def observation(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "150456"}]},
        "valueQuantity": {"value": 98, "unit": "%"},
        **extra,
    }


def test_the_trace_tag_is_added_beside_other_tags_without_touching_the_input() -> None:
    source = observation(meta={"source": "urn:x", "tag": [UNASSIGNED]})
    before = copy.deepcopy(source)
    tagged = with_trace_tag(source, "ab" * 16)
    assert source == before
    assert tagged["meta"] == {
        "source": "urn:x",
        "tag": [UNASSIGNED, {"system": TRACE_SYSTEM, "code": "ab" * 16}],
    }
    assert trace_tag_of(tagged) == "ab" * 16
    Observation.model_validate(tagged)  # a valid R4 Observation


def test_a_second_trace_replaces_the_first_and_a_resource_without_meta_gets_one() -> None:
    once = with_trace_tag(observation(), "1" * 32)
    twice = with_trace_tag(once, "2" * 32)
    assert twice["meta"]["tag"] == [{"system": TRACE_SYSTEM, "code": "2" * 32}]
    assert trace_tag_of(observation()) is None
    assert trace_tag_of(observation(meta={"tag": "not a list"})) is None
    odd = with_trace_tag(observation(meta={"tag": "not a list"}), "3" * 32)
    assert odd["meta"]["tag"] == [{"system": TRACE_SYSTEM, "code": "3" * 32}]
