"""Property: whatever a response holds, a restricted view lets out only its patients' data."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from security.compartment import in_compartment
from security.errors import Forbidden
from security.filter import View, filter_body

PATIENTS = ["p1", "p2", "p3"]
MINE = frozenset({"p1", "p2"})

references = st.one_of(
    st.sampled_from(PATIENTS).map(lambda p: {"reference": f"Patient/{p}"}),
    st.sampled_from(["Device/d", "Group/g", "urn:uuid:x", "https://x/fhir/Patient/p1"]).map(
        lambda r: {"reference": r}
    ),
    st.just({"identifier": {"value": "p1"}}),
)
observations = st.builds(
    lambda i, s, perf: {
        "resourceType": "Observation",
        "id": f"o{i}",
        "subject": s,
        "performer": perf,
    },
    st.integers(0, 99),
    references,
    st.lists(references, max_size=2),
)
patients = st.builds(
    lambda p: {"resourceType": "Patient", "id": p}, st.sampled_from([*PATIENTS, "p4"])
)
devices = st.builds(
    lambda p: {"resourceType": "Device", "id": "d", "patient": {"reference": f"Patient/{p}"}},
    st.sampled_from(PATIENTS),
)
resources = st.one_of(observations, patients, devices)
entries = st.builds(
    lambda r, mode, deleted: (
        {"fullUrl": "x", "request": {"method": "DELETE"}}
        if deleted
        else {"resource": r, "search": {"mode": mode}}
    ),
    resources,
    st.sampled_from(["match", "include"]),
    st.booleans(),
)
bundles = st.builds(
    lambda kind, es, total, paged: {
        "resourceType": "Bundle",
        "type": kind,
        "total": total,
        "link": [{"relation": "next", "url": "n"}] if paged else [],
        "entry": es,
    },
    st.sampled_from(["searchset", "history", "batch-response", "transaction-response"]),
    st.lists(entries, max_size=8),
    st.integers(0, 20),
    st.booleans(),
)


def _resources(body: Any) -> list[dict[str, Any]]:
    found = []
    for entry in body.get("entry", []):
        resource = entry.get("resource")
        if isinstance(resource, dict):
            found.append(resource)
    return found


@given(bundles)
def test_no_foreign_resource_leaves(bundle: dict[str, Any]) -> None:
    view = View(lambda t: True, MINE)
    shown, hidden = filter_body(bundle, view)
    for resource in _resources(shown):
        assert in_compartment(resource, MINE)
    kept = len(_resources(shown))
    assert kept + hidden >= len(_resources(bundle))
    if "total" in shown:
        assert shown["total"] <= kept


@given(resources)
def test_single_resources_are_all_or_nothing(resource: dict[str, Any]) -> None:
    view = View(lambda t: True, MINE)
    try:
        shown, _ = filter_body(resource, view)
    except Forbidden:
        assert not in_compartment(resource, MINE)
    else:
        assert shown == resource and in_compartment(resource, MINE)
