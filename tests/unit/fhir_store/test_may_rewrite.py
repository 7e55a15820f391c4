"""``bundles._may_rewrite``: a transaction entry is walked for references only when one
of them could be rewritten; skipping the walk must never skip a rewrite."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_store.bundles import _may_rewrite

IDS = {"urn:uuid:9d3f": "Patient/abc", "http://partner.example/fhir/Patient/7": "Patient/p7"}


def obs(reference: Any, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "subject": {"reference": reference}, **more}


@pytest.mark.parametrize(
    ("resource", "walk"),
    [
        (obs("Patient/1"), False),
        ({"resourceType": "Observation", "status": "final"}, False),
        (obs("urn:uuid:9d3f"), True),
        (obs("http://partner.example/fhir/Patient/7"), True),
        (obs("Patient?identifier=urn:oid:1.2|42"), True),
        # an escaped character: the text does not show the value as it is
        (obs('Patient/"1'), True),
        (obs("Patient/1\\2"), True),
        # a reference deep inside, in an extension or a contained resource
        (obs("Patient/1", extension=[{"valueReference": {"reference": "urn:uuid:9d3f"}}]), True),
        (obs("Patient/1", contained=[obs("Patient?name=x")]), True),
        # "reference" as text, not as a key, and a reference that is not a string
        (obs("Patient/1", note=[{"text": '"reference":"urn:uuid:9d3f"'}]), False),
        (obs({"not": "a string"}), False),
        (obs("Patient/1", valueInteger=2**70), True),  # orjson refuses: walked
    ],
)
def test_walked_exactly_when_a_reference_may_change(resource: dict[str, Any], walk: bool) -> None:
    assert _may_rewrite(resource, IDS) is walk
